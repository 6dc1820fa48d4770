//! The CRC-64 that seals every DUMP payload of a full copy: `shardsync`'s
//! `crc64` (an aligned, zero-padded copy for mid-sized inputs) against
//! `crc-fast` called on the input where it lies, on payload sizes a full
//! copy of mixed-1m sends (most are a few hundred bytes). Inputs start at
//! every offset of a large buffer in turn, as payloads lie anywhere in the
//! parser's buffers.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardsync::crc64::crc64;

const INPUTS: usize = 1_000;

fn bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut g = c.benchmark_group("crc64");
    g.sample_size(20).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(INPUTS as u64));
    for len in [64usize, 120, 200, 300, 1_000, 4_000] {
        let inputs: Vec<&[u8]> = (0..INPUTS).map(|i| &data[i * 977 % (data.len() - len)..][..len]).collect();
        for input in &inputs {
            assert_eq!(crc64(input), crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, input));
        }
        g.bench_with_input(BenchmarkId::new("shardsync", len), &inputs, |b, inputs| {
            b.iter(|| inputs.iter().fold(0u64, |acc, i| acc ^ crc64(i)))
        });
        g.bench_with_input(BenchmarkId::new("crc-fast in place", len), &inputs, |b, inputs| {
            b.iter(|| {
                inputs.iter().fold(0u64, |acc, i| acc ^ crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, i))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
