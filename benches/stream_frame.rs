//! Command-stream framing on one core: commands/s of the framer alone (what
//! the replication link does with every byte it receives, to know where
//! each command ends) and of the decoder (what the consumer does with a
//! catch-up it reads back from the spool: frame, then hand out each
//! command without copying it).
//!
//! The stream is built in memory, shaped like `redis-benchmark -t
//! set,lpush,hset -d 64 -r 1000000` replicated: `SET`, `LPUSH` and `HSET`
//! in turn, 16-byte keys, 64-byte values, a `SELECT` first.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardsync::source::psync::{PsyncDecoder, PsyncEvent, PsyncFramer};

const COMMANDS: usize = 200_000;

fn push_cmd(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn stream() -> Vec<u8> {
    let mut out = Vec::with_capacity(COMMANDS * 110);
    push_cmd(&mut out, &[b"SELECT", b"0"]);
    let value = [b'x'; 64];
    for i in 0..COMMANDS - 1 {
        let key = format!("key:{:012}", (i * 7919) % 1_000_000);
        match i % 3 {
            0 => push_cmd(&mut out, &[b"SET", key.as_bytes(), &value]),
            1 => push_cmd(&mut out, &[b"LPUSH", b"mylist", &value]),
            _ => push_cmd(&mut out, &[b"HSET", key.as_bytes(), b"element:__rand_int__", &value]),
        }
    }
    out
}

/// Frames the whole stream; returns the commands found.
fn frame(data: &[u8]) -> u64 {
    let mut framer = PsyncFramer::in_commands(0);
    let (mut at, mut n) = (0, 0);
    while let Some((_, len)) = framer.next_frame(&data[at..]).expect("the benchmark stream frames") {
        at += len;
        n += 1;
    }
    assert_eq!(at, data.len());
    n
}

/// Decodes the stream fed in 64 KiB reads, as the consumer reads a spool.
fn decode(data: &[u8]) -> u64 {
    let mut decoder = PsyncDecoder::in_commands(0);
    let mut n = 0;
    for piece in data.chunks(64 << 10) {
        decoder.feed(piece);
        while let Some(event) = decoder.next_event().expect("the benchmark stream decodes") {
            if let PsyncEvent::Command(_) = event {
                n += 1;
            }
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let data = stream();
    assert_eq!(frame(&data), COMMANDS as u64);
    assert_eq!(decode(&data), COMMANDS as u64);
    let mut g = c.benchmark_group("stream_frame");
    g.sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(COMMANDS as u64));
    g.bench_function("framer", |b| b.iter(|| frame(&data)));
    g.bench_function("decoder", |b| b.iter(|| decode(&data)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
