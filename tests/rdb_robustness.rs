//! The parser under hostile conditions: input split at every byte, tiny
//! chunk sizes, truncation at every offset, absurd lengths, damaged bytes,
//! and randomly mutated fixtures. Never a panic, a hang or a huge allocation;
//! always an error naming a byte offset.

use std::io::Read;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use shardsync::rdb::json::JsonWriter;
use shardsync::rdb::{Event, ParserOptions, RdbError, RdbReader};

/// The project's corpus (tests/fixtures/rdb, always there).
fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rdb")
}

/// The shared corpus, an optional extra beside the repository; when it is
/// absent the tests below run on the project's corpus alone and say so.
fn shared_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/rdb");
    if dir.is_dir() {
        Some(dir)
    } else {
        // Said once, and past the harness's capture of test output: the
        // shared part of these tests is skipped, not passed.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: the shared RDB corpus ({} not present); these tests run on tests/fixtures/rdb only",
                dir.display()
            );
        });
        None
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let p = project_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rdb_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rdb"))
        .map(|p| (p.file_name().expect("name").to_string_lossy().into_owned(), std::fs::read(&p).expect("read")))
        .collect();
    v.sort();
    v
}

/// The project's corpus, and the shared one when present.
fn all_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut v = rdb_files(&project_dir());
    assert!(v.len() >= 5, "the project's RDB corpus is missing files (make rdb-fixtures)");
    if let Some(dir) = shared_dir() {
        v.extend(rdb_files(&dir));
    }
    v
}

/// A reader that hands out at most `n` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.n.min(buf.len()).min(self.data.len());
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

fn render<R: Read>(r: R, opts: ParserOptions) -> Result<String, RdbError> {
    let mut reader = RdbReader::with_options(r, opts);
    let mut w = JsonWriter::new(Vec::new());
    while let Some(ev) = reader.next_event()? {
        w.event(&ev).expect("render");
    }
    Ok(String::from_utf8(w.into_inner()).expect("utf8"))
}

fn tiny() -> ParserOptions {
    ParserOptions {
        chunk_items: 1,
        chunk_bytes: 1,
        capture_payload: Some(1 << 20),
        restore_versions: 0,
        seal_payloads: true,
    }
}

#[test]
fn byte_at_a_time_and_tiny_chunks_give_the_same_result() {
    for (name, data) in all_fixtures() {
        let whole = render(&data[..], ParserOptions::default());
        let trickled = render(Trickle { data: &data, n: 1 }, ParserOptions::default());
        let chunked = render(Trickle { data: &data, n: 7 }, tiny());
        // Reads ending at odd places while a chunk collects many elements:
        // an element cut by the end of the input must be re-read whole.
        for n in [5, 13] {
            let odd = render(Trickle { data: &data, n }, ParserOptions::default());
            match (&whole, &odd) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}: {n}-byte reads differ"),
                (Err(a), Err(b)) => assert_eq!(a.offset(), b.offset(), "{name}: {a} vs {b}"),
                _ => panic!("{name}: {n}-byte reads: {whole:?} vs {odd:?}"),
            }
        }
        match (&whole, &trickled, &chunked) {
            (Ok(a), Ok(b), Ok(c)) => {
                assert_eq!(a, b, "{name}: byte-at-a-time differs");
                assert_eq!(a, c, "{name}: tiny chunks differ");
            }
            (Err(a), Err(b), Err(c)) => {
                assert_eq!(a.to_string(), b.to_string(), "{name}");
                assert_eq!(a.offset(), c.offset(), "{name}: {a} vs {c}");
            }
            _ => panic!("{name}: outcomes differ: {whole:?} / {trickled:?} / {chunked:?}"),
        }
    }
}

/// A version-11 RDB with one raw string of `raw_len` bytes and one LZF
/// string of 1 + 264 * `refs` bytes, with a valid CRC64 trailer.
fn big_strings_rdb(raw_len: usize, refs: usize) -> Vec<u8> {
    let mut f = b"REDIS0011".to_vec();
    f.extend_from_slice(&[0x00, 0x03, b'r', b'a', b'w', 0x80]);
    f.extend_from_slice(&(raw_len as u32).to_be_bytes());
    f.extend((0..raw_len).map(|i| (i % 251) as u8));
    // LZF: a literal 'a', then back references of 264 bytes at distance 1.
    let mut lzf = vec![0x00, b'a'];
    for _ in 0..refs {
        lzf.extend_from_slice(&[0xe0, 0xff, 0x00]);
    }
    f.extend_from_slice(&[0x00, 0x03, b'l', b'z', b'f', 0xc3, 0x80]);
    f.extend_from_slice(&(lzf.len() as u32).to_be_bytes());
    f.push(0x80);
    f.extend_from_slice(&((1 + 264 * refs) as u32).to_be_bytes());
    f.extend_from_slice(&lzf);
    f.push(0xff);
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, &f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

#[test]
fn big_strings_stream_in_bounded_pieces() {
    let data = big_strings_rdb(100_000, 2_000);
    let mut reader = RdbReader::with_options(&data[..], ParserOptions { chunk_bytes: 4096, ..tiny() });
    let mut pieces: Vec<(Vec<u8>, usize, usize)> = Vec::new();
    while let Some(ev) = reader.next_event().expect("parses") {
        match ev {
            Event::KeyStart(k) => pieces.push((k.key.to_vec(), 0, 0)),
            Event::Chunk(shardsync::rdb::Chunk::String(b)) => {
                let last = pieces.last_mut().expect("a key");
                last.1 += 1;
                last.2 = last.2.max(b.len());
            }
            Event::Eof { checksum } => assert!(checksum.is_some()),
            _ => {}
        }
    }
    assert_eq!(pieces[0].0, b"raw");
    assert!(pieces[0].1 >= 25 && pieces[0].2 <= 4096, "raw string: {:?}", pieces[0]);
    assert_eq!(pieces[1].0, b"lzf");
    // 4096 compressed bytes expand to at most 88x: bounded, and many pieces.
    assert!(pieces[1].1 >= 2 && pieces[1].2 <= 4096 * 90, "lzf string: {:?}", pieces[1]);
    // And the content is exact.
    let out = render(&data[..], ParserOptions { chunk_bytes: 4096, ..tiny() }).expect("parses");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let lzf = lines.iter().find(|l| l["key"] == "lzf").expect("lzf key");
    assert_eq!(lzf["value"].as_str().map(str::len), Some(1 + 264 * 2_000));
    assert!(lzf["value"].as_str().is_some_and(|s| s.bytes().all(|b| b == b'a')));
}

#[test]
fn every_truncation_is_an_error_with_an_offset() {
    // Streams, listpacks with field TTLs, Valkey's format, the oldest
    // encodings (ziplists, and a zipmap in the shared corpus).
    let mut files: Vec<(String, Vec<u8>)> = ["redis-7.4__all_types.rdb", "valkey-9.1__all_types.rdb"]
        .into_iter()
        .map(|n| (n.to_owned(), fixture(n)))
        .collect();
    let oldest = rdb_files(&project_dir()).into_iter().next().expect("the project's corpus has files");
    files.push(oldest);
    if let Some(dir) = shared_dir() {
        for n in ["rdbtools__zipmap_with_big_values.rdb", "gen60__all_types.rdb"] {
            let p = dir.join(n);
            files.push((n.to_owned(), std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))));
        }
    }
    for (name, data) in files {
        // Every offset near the start, then a dense sample: quadratic work otherwise.
        let step = (data.len() / 1500).max(1);
        for cut in (0..data.len()).filter(|c| *c < 2048 || c % step == 0) {
            match render(&data[..cut], ParserOptions::default()) {
                Ok(_) => panic!("{name} cut at {cut} of {} was accepted", data.len()),
                Err(e) => {
                    assert!(e.offset().is_some_and(|o| o <= cut as u64), "{name} cut at {cut}: {e}");
                    assert!(matches!(e, RdbError::Truncated { .. }), "{name} cut at {cut}: {e}");
                }
            }
        }
    }
}

#[test]
fn a_huge_length_does_not_allocate() {
    // A string key whose value claims 2^60 bytes (64-bit length prefix 0x81).
    let mut f = b"REDIS0011".to_vec();
    f.extend_from_slice(&[0x00, 0x01, b'k', 0x81]);
    f.extend_from_slice(&(1u64 << 60).to_be_bytes());
    f.extend_from_slice(b"only a few bytes");
    let e = render(&f[..], ParserOptions::default()).expect_err("must fail");
    assert!(matches!(e, RdbError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("\"k\""), "names the key: {e}");
    // Same for an element count followed by nothing.
    let mut f = b"REDIS0011".to_vec();
    f.extend_from_slice(&[0x01, 0x01, b'l', 0x81]);
    f.extend_from_slice(&(1u64 << 60).to_be_bytes());
    assert!(render(&f[..], ParserOptions::default()).is_err());
    // And an LZF string claiming an impossible expansion.
    let mut f = b"REDIS0011".to_vec();
    f.extend_from_slice(&[0x00, 0x01, b'z', 0xc3, 0x02, 0x81]);
    f.extend_from_slice(&(1u64 << 60).to_be_bytes());
    f.extend_from_slice(&[0x00, b'a']);
    let e = render(&f[..], ParserOptions::default()).expect_err("must fail");
    assert!(matches!(e, RdbError::Corrupt { .. }), "{e}");
}

#[test]
fn a_damaged_byte_is_caught_by_the_checksum_or_the_structure() {
    let data = fixture("redis-7.0__all_types.rdb");
    let eof = data.len() - 9;
    // Every byte would be quadratic work: a dense sample of about 4,000.
    for at in (9..eof).step_by((eof / 4000).max(3)) {
        let mut d = data.clone();
        d[at] ^= 0x20;
        if let Ok(out) = render(&d[..], ParserOptions::default()) {
            panic!("flipping byte {at} went unnoticed:\n{}", &out[..out.len().min(300)]);
        }
    }
    let mut d = data.clone();
    let last = d.len() - 1;
    d[last] ^= 1;
    match render(&d[..], ParserOptions::default()) {
        Err(RdbError::Checksum { stored, computed, .. }) => assert_ne!(stored, computed),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn unknown_type_and_bad_magic_name_what_was_found() {
    let e = render(&b"HELLO WORLD, NOT RDB"[..], ParserOptions::default()).expect_err("bad magic");
    assert!(e.to_string().contains("not an RDB file"), "{e}");
    let mut f = b"REDIS0009".to_vec();
    f.push(0x63);
    let e = render(&f[..], ParserOptions::default()).expect_err("bad type");
    assert!(e.to_string().contains("byte 9") && e.to_string().contains("99"), "{e}");
}

/// Parse a mutated file; anything but a panic or a hang is fine.
fn survive(data: &[u8]) {
    let mut reader = RdbReader::with_options(
        data,
        ParserOptions {
            chunk_items: 3,
            chunk_bytes: 70,
            capture_payload: Some(4096),
            restore_versions: 0,
            seal_payloads: true,
        },
    );
    let mut events = 0u64;
    loop {
        match reader.next_event() {
            Ok(Some(_)) => {
                events += 1;
                // A bounded input yields a bounded number of events.
                assert!(events < 10 * data.len() as u64 + 100, "runaway event stream");
            }
            Ok(None) => break,
            Err(e) => {
                assert!(e.offset().is_none_or(|o| o <= data.len() as u64 + 16), "offset past the input: {e}");
                break;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0xff), Just(0x80), Just(0x81), Just(0xc3), Just(0x3f), any::<u8>()]
        )
            .prop_map(|(a, b)| Mutation::Set(a, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..9)).prop_map(|(a, v)| Mutation::Insert(a, v)),
        (any::<usize>(), 1usize..16).prop_map(|(a, n)| Mutation::Remove(a, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut d: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if d.is_empty() {
            break;
        }
        let len = d.len();
        match m {
            Mutation::Flip(a, b) => d[a % len] ^= b,
            Mutation::Set(a, b) => d[a % len] = *b,
            Mutation::Insert(a, v) => {
                let at = a % len;
                d.splice(at..at, v.iter().copied());
            }
            Mutation::Remove(a, n) => {
                let at = a % len;
                d.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(a) => d.truncate(a % len),
        }
    }
    d
}

fn fuzz_cases() -> u32 {
    std::env::var("SHARDSYNC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_never_panic(pick in any::<prop::sample::Index>(), ms in proptest::collection::vec(mutation(), 1..6)) {
        let files = FIXTURES.with(|f| f.clone());
        let (_, data) = &files[pick.index(files.len())];
        let d = apply(data.clone(), &ms);
        survive(&d);
    }
}

thread_local! {
    static FIXTURES: std::rc::Rc<Vec<(String, Vec<u8>)>> = std::rc::Rc::new(all_fixtures());
}
