//! Parser throughput on the standard 1M-key mixed dataset (PERF.md): keys/s
//! and MB/s on one core, events consumed but not rendered.
//!
//! `make bench` builds `target/bench-data/mixed-1m.rdb` first (with a real
//! redis-server, scripts/bench-rdb.sh). Without it (as under `cargo test
//! --all-targets`) the bench says so and measures nothing.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardsync::rdb::{Event, ParserOptions, RdbReader};

fn dataset() -> Option<(PathBuf, Vec<u8>)> {
    let dir = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data"));
    let path = dir.join("mixed-1m.rdb");
    std::fs::read(&path).ok().map(|d| (path, d))
}

/// Parse the whole file; returns the number of keys.
fn parse(data: &[u8], capture: Option<usize>) -> u64 {
    parse_with(data, ParserOptions { capture_payload: capture, ..Default::default() })
}

/// As a full copy parses when the destination restores the file's RDB
/// version: each key's DUMP payload captured (up to the default
/// `big_key_bytes`), compact encodings (listpacks, intsets, ziplists) left
/// undecoded since the payload carries them, and each payload's CRC-64 left
/// to the connection that sends it (`Cmd::arg_dump_payload`).
fn as_the_sync(data: &[u8]) -> u64 {
    let opts = ParserOptions {
        capture_payload: Some(shardsync::config::DEFAULT_BIG_KEY_BYTES as usize),
        restore_versions: u128::MAX,
        seal_payloads: false,
        ..Default::default()
    };
    parse_with(data, opts)
}

fn parse_with(data: &[u8], opts: ParserOptions) -> u64 {
    let mut reader = RdbReader::with_options(data, opts);
    let mut keys = 0;
    while let Some(ev) = reader.next_event().expect("the benchmark RDB parses") {
        if let Event::KeyEnd { .. } = ev {
            keys += 1;
        }
    }
    keys
}

fn bench(c: &mut Criterion) {
    let Some((path, data)) = dataset() else {
        eprintln!("rdb_parse: target/bench-data/mixed-1m.rdb is missing; `make bench` builds it (skipping)");
        return;
    };
    let keys = parse(&data, None);
    eprintln!("rdb_parse: {} keys, {} bytes in {}", keys, data.len(), path.display());
    let mut g = c.benchmark_group("rdb_parse_mixed_1m");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(keys));
    g.bench_function("keys", |b| b.iter(|| parse(&data, None)));
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("bytes", |b| b.iter(|| parse(&data, None)));
    g.bench_function("bytes_with_dump_payloads", |b| b.iter(|| parse(&data, Some(16 << 20))));
    g.throughput(Throughput::Elements(keys));
    g.bench_function("keys_as_the_sync_parses", |b| b.iter(|| as_the_sync(&data)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
