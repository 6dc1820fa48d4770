//! Quick parse-speed probe: `cargo run --release --example parse_speed FILE [--as-sync]`.
//! `--as-sync` parses as a full copy does (DUMP payloads captured, compact
//! encodings left undecoded, their CRC-64 left to the sender); without it
//! every value is decoded into events.
use shardsync::rdb::{Event, ParserOptions, RdbReader};
fn main() {
    let path = std::env::args().nth(1).expect("usage: parse_speed FILE [--as-sync]");
    let as_sync = std::env::args().nth(2).as_deref() == Some("--as-sync");
    let opts = if as_sync {
        ParserOptions {
            capture_payload: Some(shardsync::config::DEFAULT_BIG_KEY_BYTES as usize),
            restore_versions: u128::MAX,
            seal_payloads: false,
            ..Default::default()
        }
    } else {
        ParserOptions::default()
    };
    let size = std::fs::metadata(&path).expect("stat").len();
    let t = std::time::Instant::now();
    let mut reader = RdbReader::with_options(std::fs::File::open(&path).expect("open"), opts);
    let mut keys = 0u64;
    while let Some(ev) = reader.next_event().expect("parse") {
        if let Event::KeyEnd { .. } = ev {
            keys += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!("{keys} keys in {s:.3} s: {:.2} M keys/s, {:.0} MB/s", keys as f64 / s / 1e6, size as f64 / s / 1e6);
}
