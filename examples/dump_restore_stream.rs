//! Turn an RDB file into the equivalent `RESTORE` stream for `redis-cli --pipe`:
//! `cargo run --release --example dump_restore_stream -- dump.rdb > restore.resp`.
//! `--part I/N` keeps every N-th key starting with the I-th (1-based), in file order:
//! the N parts of one dataset, disjoint and together the whole, for multi-source runs.
//!
//! One `RESTORE key ttl payload [ABSTTL]` per key (the DUMP payload captured by the
//! crate's RDB parser), a `SELECT db` whenever the database changes. It is the
//! reference "destination ingest ceiling" of scripts/bench-sync.sh: what any
//! RESTORE-based tool sends, with no tool in between. Keys whose payload cannot
//! be captured (larger than `--max-payload`) are an error, so the stream is
//! never silently short.
use std::io::{BufWriter, Write};

use shardsync::rdb::{Event, ParserOptions, RdbReader};

fn bulk(out: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    write!(out, "${}\r\n", b.len())?;
    out.write_all(b)?;
    out.write_all(b"\r\n")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const USAGE: &str = "usage: dump_restore_stream FILE.rdb [--max-payload BYTES] [--part I/N] > out.resp";
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or(USAGE)?;
    let (mut max_payload, mut part, mut parts) = (1usize << 30, 0u64, 1u64);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--max-payload" => max_payload = value.parse()?,
            "--part" => {
                let (i, n) = value.split_once('/').ok_or(USAGE)?;
                (part, parts) = (i.parse::<u64>()?.checked_sub(1).ok_or(USAGE)?, n.parse()?);
                if part >= parts {
                    return Err(USAGE.into());
                }
            }
            _ => return Err(USAGE.into()),
        }
    }
    let opts = ParserOptions { capture_payload: Some(max_payload), ..ParserOptions::default() };
    let mut reader = RdbReader::with_options(std::fs::File::open(&path)?, opts);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let (mut db, mut key, mut expire) = (0u64, bytes::Bytes::new(), None);
    let (mut keys, mut seen) = (0u64, 0u64);
    while let Some(ev) = reader.next_event()? {
        match ev {
            Event::KeyStart(ks) => {
                if ks.db != db {
                    db = ks.db;
                    out.write_all(b"*2\r\n$6\r\nSELECT\r\n")?;
                    bulk(&mut out, db.to_string().as_bytes())?;
                }
                key = ks.key;
                expire = ks.expire_at_ms;
            }
            Event::KeyEnd { payload } => {
                seen += 1;
                if (seen - 1) % parts != part {
                    continue;
                }
                let payload = payload.ok_or_else(|| {
                    format!("key {:?}: no DUMP payload (larger than --max-payload?)", String::from_utf8_lossy(&key))
                })?;
                let ttl = expire.map_or(0, |at| at.max(1));
                out.write_all(if expire.is_some() { b"*5\r\n" } else { b"*4\r\n" })?;
                bulk(&mut out, b"RESTORE")?;
                bulk(&mut out, &key)?;
                bulk(&mut out, ttl.to_string().as_bytes())?;
                bulk(&mut out, &payload)?;
                if expire.is_some() {
                    bulk(&mut out, b"ABSTTL")?;
                }
                keys += 1;
            }
            Event::Warning(w) => eprintln!("warning at byte {}: {}", w.offset, w.message),
            _ => {}
        }
    }
    out.flush()?;
    eprintln!("{keys} RESTORE commands");
    Ok(())
}
