//! Quick parse-speed probe: `cargo run --release --example parse_speed FILE`.
use shardsync::rdb::{Event, RdbReader};
fn main() {
    let path = std::env::args().nth(1).expect("usage: parse_speed FILE");
    let size = std::fs::metadata(&path).expect("stat").len();
    let t = std::time::Instant::now();
    let mut reader = RdbReader::new(std::fs::File::open(&path).expect("open"));
    let mut keys = 0u64;
    while let Some(ev) = reader.next_event().expect("parse") {
        if let Event::KeyEnd { .. } = ev {
            keys += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!("{keys} keys in {s:.3} s: {:.2} M keys/s, {:.0} MB/s", keys as f64 / s / 1e6, size as f64 / s / 1e6);
}
