//! Writes a benchmark dataset as a RESP command stream for `redis-cli --pipe`.
//!
//! Two datasets, both fully determined by `--seed` (same seed, same bytes):
//!
//! * `mixed` — the standard dataset of `PERF.md`: `--keys` keys (default 1,000,000),
//!   70% strings of 16–512 random bytes, 10% hashes of 10 fields, 10% lists of 10
//!   elements, 5% sets and 5% zsets of 10 members; 10% of keys get a TTL far in the
//!   future (`PEXPIREAT` around 2100), so nothing expires while a benchmark runs.
//!   Collection elements are 8–44 random bytes, which puts the RDB near the 303.6 MB
//!   that PERF.md quotes for 1M keys.
//! * `list` — one list of `--len` elements (default 5,000,000) of 8–32 random bytes,
//!   pushed in `RPUSH` batches of `--batch`: the big-key case for streaming and RSS.
//!
//! ```text
//! cargo run --release --example gen_dataset -- mixed --keys 1000000 | redis-cli --pipe
//! cargo run --release --example gen_dataset -- list --len 5000000 | redis-cli --pipe
//! ```

use std::io::{self, BufWriter, Write};

use clap::{Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// 2100-01-01T00:00:00Z in milliseconds: TTLs are spread over the following year.
const FAR_FUTURE_MS: u64 = 4_102_444_800_000;
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
/// Sizes of collection elements (hash values, list elements, set and zset members):
/// PERF.md does not give them; 8–44 random bytes bring the 1M-key RDB to about the
/// 303.6 MB it quotes.
const ELEMENT_MIN: usize = 8;
const ELEMENT_MAX: usize = 44;

#[derive(Parser)]
#[command(about = "Write a seeded benchmark dataset as RESP for `redis-cli --pipe`")]
struct Args {
    /// Seed of the random generator.
    #[arg(long, default_value_t = 42, global = true)]
    seed: u64,
    #[command(subcommand)]
    dataset: Dataset,
}

#[derive(Subcommand)]
enum Dataset {
    /// The standard mixed dataset of PERF.md.
    Mixed {
        /// Number of keys.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
    },
    /// One big list.
    List {
        /// Number of elements.
        #[arg(long, default_value_t = 5_000_000)]
        len: u64,
        /// Elements per RPUSH.
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// Name of the list key.
        #[arg(long, default_value = "biglist")]
        key: String,
    },
}

/// Encodes commands as RESP arrays of bulk strings into a buffered writer.
struct RespWriter<W: Write> {
    out: W,
}

impl<W: Write> RespWriter<W> {
    fn array_header(&mut self, len: usize) -> io::Result<()> {
        write!(self.out, "*{len}\r\n")
    }

    fn bulk(&mut self, arg: &[u8]) -> io::Result<()> {
        write!(self.out, "${}\r\n", arg.len())?;
        self.out.write_all(arg)?;
        self.out.write_all(b"\r\n")
    }

    fn command(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.array_header(args.len())?;
        args.iter().try_for_each(|a| self.bulk(a))
    }
}

/// Fills `buf` with `min..=max` random bytes.
fn random_bytes(rng: &mut StdRng, buf: &mut Vec<u8>, min: usize, max: usize) {
    buf.resize(rng.gen_range(min..=max), 0);
    rng.fill_bytes(buf);
}

/// Writes `cmd key` followed by `per_element` arguments for each of `count` elements.
fn collection<W: Write>(
    out: &mut RespWriter<W>,
    rng: &mut StdRng,
    cmd: &[u8],
    key: &[u8],
    count: usize,
    mut element: impl FnMut(&mut StdRng, usize, &mut RespWriter<W>) -> io::Result<()>,
    per_element: usize,
) -> io::Result<()> {
    out.array_header(2 + count * per_element)?;
    out.bulk(cmd)?;
    out.bulk(key)?;
    (0..count).try_for_each(|i| element(rng, i, out))
}

fn mixed<W: Write>(out: &mut RespWriter<W>, rng: &mut StdRng, keys: u64) -> io::Result<()> {
    const MEMBERS: usize = 10;
    let mut value = Vec::with_capacity(512);
    for i in 0..keys {
        let kind = rng.gen_range(0..100u32);
        let key = format!("{}:{i:08}", key_prefix(kind));
        let key = key.as_bytes();
        match kind {
            0..=69 => {
                random_bytes(rng, &mut value, 16, 512);
                out.command(&[b"SET", key, &value])?;
            }
            70..=79 => collection(
                out,
                rng,
                b"HSET",
                key,
                MEMBERS,
                |rng, j, out| {
                    out.bulk(format!("field-{j}").as_bytes())?;
                    random_bytes(rng, &mut value, ELEMENT_MIN, ELEMENT_MAX);
                    out.bulk(&value)
                },
                2,
            )?,
            80..=89 => collection(
                out,
                rng,
                b"RPUSH",
                key,
                MEMBERS,
                |rng, _, out| {
                    random_bytes(rng, &mut value, ELEMENT_MIN, ELEMENT_MAX);
                    out.bulk(&value)
                },
                1,
            )?,
            90..=94 => collection(
                out,
                rng,
                b"SADD",
                key,
                MEMBERS,
                |rng, _, out| {
                    random_bytes(rng, &mut value, ELEMENT_MIN, ELEMENT_MAX);
                    out.bulk(&value)
                },
                1,
            )?,
            _ => collection(
                out,
                rng,
                b"ZADD",
                key,
                MEMBERS,
                |rng, _, out| {
                    let score: f64 = rng.gen_range(-1.0e6..1.0e6);
                    out.bulk(score.to_string().as_bytes())?;
                    random_bytes(rng, &mut value, ELEMENT_MIN, ELEMENT_MAX);
                    out.bulk(&value)
                },
                2,
            )?,
        }
        if rng.gen_ratio(1, 10) {
            let at = FAR_FUTURE_MS + rng.gen_range(0..YEAR_MS);
            out.command(&[b"PEXPIREAT", key, at.to_string().as_bytes()])?;
        }
    }
    Ok(())
}

fn key_prefix(kind: u32) -> &'static str {
    match kind {
        0..=69 => "str",
        70..=79 => "hash",
        80..=89 => "list",
        90..=94 => "set",
        _ => "zset",
    }
}

fn list<W: Write>(out: &mut RespWriter<W>, rng: &mut StdRng, key: &str, len: u64, batch: u64) -> io::Result<()> {
    let batch = batch.max(1);
    let mut element = Vec::with_capacity(32);
    let mut pushed = 0;
    while pushed < len {
        let n = batch.min(len - pushed);
        let count = usize::try_from(n).map_err(io::Error::other)?;
        collection(
            out,
            rng,
            b"RPUSH",
            key.as_bytes(),
            count,
            |rng, _, out| {
                random_bytes(rng, &mut element, 8, 32);
                out.bulk(&element)
            },
            1,
        )?;
        pushed += n;
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let stdout = io::stdout().lock();
    match generate(&args, BufWriter::with_capacity(1 << 20, stdout)) {
        // `gen_dataset … | head` is fine: the reader has seen all it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn generate<W: Write>(args: &Args, out: W) -> io::Result<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut out = RespWriter { out };
    match &args.dataset {
        Dataset::Mixed { keys } => mixed(&mut out, &mut rng, *keys)?,
        Dataset::List { len, batch, key } => list(&mut out, &mut rng, key, *len, *batch)?,
    }
    out.out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cmdline: &[&str]) -> Vec<u8> {
        let args = Args::try_parse_from(cmdline).expect("valid test arguments");
        let mut out = Vec::new();
        generate(&args, &mut out).expect("writing to a Vec");
        out
    }

    /// Splits a RESP stream of arrays of bulk strings into commands.
    fn commands(mut buf: &[u8]) -> Vec<Vec<Vec<u8>>> {
        fn line<'a>(buf: &mut &'a [u8], prefix: u8) -> usize {
            assert_eq!(buf[0], prefix);
            let end = buf.windows(2).position(|w| w == b"\r\n").expect("CRLF");
            let n = std::str::from_utf8(&buf[1..end]).expect("ascii").parse().expect("number");
            *buf = &buf[end + 2..];
            n
        }
        let mut cmds = Vec::new();
        while !buf.is_empty() {
            let argc = line(&mut buf, b'*');
            let mut cmd = Vec::with_capacity(argc);
            for _ in 0..argc {
                let len = line(&mut buf, b'$');
                cmd.push(buf[..len].to_vec());
                assert_eq!(&buf[len..len + 2], b"\r\n");
                buf = &buf[len + 2..];
            }
            cmds.push(cmd);
        }
        cmds
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = run(&["gen", "mixed", "--keys", "500"]);
        assert_eq!(a, run(&["gen", "mixed", "--keys", "500"]));
        assert_ne!(a, run(&["gen", "--seed", "7", "mixed", "--keys", "500"]));
    }

    #[test]
    fn mixed_has_the_standard_shape() {
        let keys = 20_000;
        let cmds = commands(&run(&["gen", "mixed", "--keys", &keys.to_string()]));
        let count = |name: &[u8]| cmds.iter().filter(|c| c[0] == name).count();
        let share = |name: &[u8]| count(name) as f64 / keys as f64;
        assert_eq!(cmds.len() - count(b"PEXPIREAT"), keys);
        for (name, expected) in [
            (&b"SET"[..], 0.70),
            (b"HSET", 0.10),
            (b"RPUSH", 0.10),
            (b"SADD", 0.05),
            (b"ZADD", 0.05),
            (b"PEXPIREAT", 0.10),
        ] {
            let got = share(name);
            assert!((got - expected).abs() < 0.015, "{name:?}: {got} of keys, expected {expected}");
        }
        for c in &cmds {
            match &c[0][..] {
                b"SET" => assert!((16..=512).contains(&c[2].len())),
                b"HSET" | b"ZADD" => assert_eq!(c.len(), 2 + 20),
                b"RPUSH" | b"SADD" => assert_eq!(c.len(), 2 + 10),
                b"PEXPIREAT" => {
                    let at: u64 = std::str::from_utf8(&c[2]).expect("ascii").parse().expect("ms");
                    assert!(at >= FAR_FUTURE_MS);
                }
                other => panic!("unexpected command {other:?}"),
            }
        }
    }

    #[test]
    fn list_is_pushed_in_batches() {
        let cmds = commands(&run(&["gen", "list", "--len", "2500", "--batch", "1000"]));
        let sizes: Vec<usize> = cmds.iter().map(|c| c.len() - 2).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert!(cmds.iter().all(|c| c[0] == b"RPUSH" && c[1] == b"biglist"));
    }
}
