//! Round trip against real servers: the RDB parser and the DUMP payloads it
//! captures, checked against what `redis-server` itself says.
//!
//! For a Redis 7.0 (the Debian package, RDB 10) and a Redis 6.0.9
//! (`scripts/deps.sh`, RDB 9) a test fills a fresh server from a seeded RNG
//! with data that crosses every encoding boundary of the default config:
//! intset → hashtable at 513 members; zset listpack/ziplist → skiplist at
//! 129 members or a 65-byte member; hash listpack/ziplist → hashtable at 513
//! fields or a 65-byte value; multi-node quicklists; every ziplist/listpack
//! string and integer width; LZF and raw strings; streams with deletions,
//! groups, PELs and consumers. It writes three DBs, with TTLs and binary key
//! names, then `SAVE`s and compares three views of every key:
//!
//! * the parser's: `KeyStart`, the chunks and `KeyEnd` folded into a
//!   [`KeyView`]; the file is parsed again through readers that return a few
//!   bytes at a time, so that inputs ending inside a unit are tested on
//!   every run, and each parse must agree;
//! * the server's: TYPE, PEXPIRETIME (or PTTL on 6.0), and the value read
//!   back with GET, LRANGE, SMEMBERS, HGETALL, ZRANGE, XRANGE, XINFO and
//!   XPENDING;
//! * a second, empty 7.0 server's, after `RESTORE` of every captured payload
//!   (the writer's fast path, from both RDB 9 and RDB 10 sources).
//!
//! Differences are collected rather than asserted one at a time, so a
//! failure lists every key that differs, with its db and what differed.
//! `SHARDSYNC_ROUNDTRIP_SEED=<n>` replays another dataset.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    error::Error,
    fmt::Write as _,
    fs::{self, File},
    io::{self, Read},
    path::Path,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use common::{RedisOptions, RedisServer};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use shardsync::rdb::{
    consts::*, json::JsonWriter, Chunk, Event, KeyStart, ParserOptions, RdbReader, StreamId, ValueKind,
};
use shardsync::resp::{Cmd, ConnectOptions, Connection, Value};

type TestResult = Result<(), Box<dyn Error>>;

const DEFAULT_SEED: u64 = 0x5348_4152_4453_594e;
const SEED_ENV: &str = "SHARDSYNC_ROUNDTRIP_SEED";
/// The DBs the dataset is written to: the default one, its neighbour, and
/// one with a gap before it.
const DBS: [u64; 3] = [0, 1, 5];
/// Times the server reports as "idle" or "TTL" are turned back into absolute
/// times with the local clock; they may differ from the stored ones by the
/// time between the server's reading of its clock and ours.
const CLOCK_SLACK_MS: i64 = 2_000;
/// Payloads up to this size are captured; every key of the dataset fits.
const CAPTURE_LIMIT: usize = 64 << 20;
/// At most this many differences are printed (all are counted).
const SHOWN_DIFFS: usize = 60;

fn seed() -> u64 {
    std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED)
}

/// Small chunks, so big strings and collections arrive in many pieces and
/// the streaming paths (raw and LZF strings read in parts, element runs cut
/// mid-value, PELs split across chunks) are exercised.
fn parser_options() -> ParserOptions {
    ParserOptions {
        chunk_items: 50,
        chunk_bytes: 4096,
        capture_payload: Some(CAPTURE_LIMIT),
        restore_versions: 0,
        seal_payloads: true,
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A byte string for messages: escaped, cut at 48 bytes, with its length.
fn show(b: &[u8]) -> String {
    const MAX: usize = 48;
    let head = b[..b.len().min(MAX)].escape_ascii().to_string();
    if b.len() > MAX {
        format!("\"{head}…\" ({} bytes)", b.len())
    } else {
        format!("\"{head}\"")
    }
}

// ---------------------------------------------------------------------------
// The logical model both sides are reduced to.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expiry {
    Never,
    /// An exact absolute time in unix ms (the RDB, PEXPIRETIME).
    At(i64),
    /// An absolute time derived from PTTL and the local clock.
    About(i64),
}

impl Expiry {
    fn same(self, other: Expiry) -> bool {
        match (self, other) {
            (Expiry::Never, Expiry::Never) => true,
            (Expiry::At(a), Expiry::At(b)) => a == b,
            (Expiry::At(a) | Expiry::About(a), Expiry::At(b) | Expiry::About(b)) => (a - b).abs() <= CLOCK_SLACK_MS,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Logical {
    String(Vec<u8>),
    List(Vec<Bytes>),
    Set(BTreeSet<Bytes>),
    Zset(BTreeMap<Bytes, f64>),
    Hash(BTreeMap<Bytes, Bytes>),
    Stream(StreamView),
}

impl Logical {
    /// The name TYPE answers with.
    fn kind(&self) -> &'static str {
        match self {
            Logical::String(_) => "string",
            Logical::List(_) => "list",
            Logical::Set(_) => "set",
            Logical::Zset(_) => "zset",
            Logical::Hash(_) => "hash",
            Logical::Stream(_) => "stream",
        }
    }
}

/// A stream as far as both the RDB and the server's replies describe it.
/// The `Option`s are Redis 7.0 additions (RDB stream type 19, XINFO fields)
/// and are compared only when both sides have them.
#[derive(Debug, Clone, Default, PartialEq)]
struct StreamView {
    entries: Vec<(StreamId, Vec<Bytes>)>,
    length: u64,
    last_id: StreamId,
    first_id: Option<StreamId>,
    max_deleted_id: Option<StreamId>,
    entries_added: Option<u64>,
    groups: BTreeMap<Bytes, GroupView>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct GroupView {
    last_id: StreamId,
    /// -1 when Redis marks it unknown (stored as 2^64-1, shown as nil).
    entries_read: Option<i64>,
    pending: BTreeMap<StreamId, PendingView>,
    consumers: BTreeMap<Bytes, ConsumerView>,
}

#[derive(Debug, Clone, PartialEq)]
struct PendingView {
    consumer: Bytes,
    delivery_count: u64,
    /// Compared within [`CLOCK_SLACK_MS`]: the server only tells the idle time.
    delivery_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct ConsumerView {
    pending: u64,
    seen_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct KeyView {
    expiry: Expiry,
    value: Logical,
}

type DbKey = (u64, Bytes);

fn show_db_key((db, key): &DbKey) -> String {
    format!("db {db} key {}", show(key))
}

// ---------------------------------------------------------------------------
// Filling a server.
// ---------------------------------------------------------------------------

const WORDS: &[&str] = &[
    "shard",
    "sync",
    "redis",
    "twemproxy",
    "replica",
    "offset",
    "backlog",
    "spool",
    "quicklist",
    "listpack",
    "ziplist",
    "intset",
    "skiplist",
    "stream",
    "consumer",
    "group",
    "pending",
    "checksum",
    "payload",
    "restore",
];

/// Integers at every width boundary of ziplist, listpack, intset and the RDB
/// int string encodings, and strings that look like integers but are not.
const INT_EDGES: &[&str] = &[
    "0",
    "1",
    "12",
    "13",
    "-1",
    "127",
    "128",
    "-128",
    "-129",
    "255",
    "256",
    "4095",
    "4096",
    "12345",
    "-4096",
    "-4097",
    "32767",
    "32768",
    "-32768",
    "-32769",
    "8388607",
    "8388608",
    "-8388608",
    "-8388609",
    "100000",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967296",
    "140737488355328",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "007",
    "+1",
    "-0",
    "1e3",
    " 1",
    "0x10",
];

/// Scores a zset must keep bit for bit: infinities, signed zero, fractions
/// that have no short decimal form, extremes, integers beyond 2^53.
const SCORE_EDGES: &[&str] = &[
    "-inf",
    "+inf",
    "0",
    "-0",
    "0.1",
    "-2.5",
    "3.141592653589793",
    "1e300",
    "-1e-300",
    "4.9e-324",
    "1.7976931348623157e308",
    "9007199254740993",
    "1e18",
    "-1e18",
    "42",
    "-7",
    "1.5e-5",
    "123456789012",
    "-0.000001",
    "5",
];

/// Element sizes around the ziplist/listpack string-length widths (6, 12 or
/// 14 and 32 bits), the ziplist prevlen width (254) and the 8 KB quicklist
/// node size.
const ELEMENT_SIZES: &[usize] =
    &[63, 64, 65, 100, 253, 254, 255, 4095, 4096, 4097, 5000, 8191, 8192, 16383, 16384, 20000];

/// Writes one DB's share of the dataset as commands.
struct DatasetBuilder {
    rng: StdRng,
    cmds: Vec<Cmd>,
    keys: Vec<Vec<u8>>,
}

impl DatasetBuilder {
    fn new(seed: u64, db: u64) -> Self {
        DatasetBuilder {
            rng: StdRng::seed_from_u64(seed ^ db.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            cmds: vec![Cmd::new("SELECT").arg(db.to_string())],
            keys: Vec::new(),
        }
    }

    /// Records a key (for the TTL pass) and returns it.
    fn key(&mut self, name: impl AsRef<[u8]>) -> Vec<u8> {
        let k = name.as_ref().to_vec();
        self.keys.push(k.clone());
        k
    }

    fn push(&mut self, cmd: Cmd) {
        self.cmds.push(cmd);
    }

    fn word(&mut self) -> String {
        let w = WORDS[self.rng.gen_range(0..WORDS.len())];
        format!("{w}{}", self.rng.gen_range(0..1000))
    }

    /// Compressible text of exactly `len` bytes.
    fn text(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            out.extend_from_slice(WORDS[self.rng.gen_range(0..WORDS.len())].as_bytes());
            out.push(b' ');
        }
        out.truncate(len);
        out
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.rng.fill(&mut out[..]);
        out
    }

    /// Half text, half random bytes.
    fn value(&mut self, len: usize) -> Vec<u8> {
        if self.rng.gen_bool(0.5) {
            self.text(len)
        } else {
            self.random_bytes(len)
        }
    }

    /// `n` distinct integers from `range`.
    fn distinct_ints(&mut self, n: usize, range: std::ops::RangeInclusive<i64>) -> Vec<i64> {
        let mut seen = BTreeSet::new();
        while seen.len() < n {
            seen.insert(self.rng.gen_range(range.clone()));
        }
        let mut v: Vec<i64> = seen.into_iter().collect();
        v.shuffle(&mut self.rng);
        v
    }

    fn build(mut self, db: u64) -> Vec<Cmd> {
        let k = self.key("db:id");
        self.push(Cmd::new("SET").arg(k).arg(db.to_string()));
        self.strings();
        self.lists();
        self.sets();
        self.zsets();
        self.hashes();
        self.streams();
        self.binary_keys();
        self.ttls();
        self.cmds
    }

    fn strings(&mut self) {
        let short = self.word();
        let k = self.key("str:short");
        self.push(Cmd::new("SET").arg(k).arg(short));
        let k = self.key("str:empty");
        self.push(Cmd::new("SET").arg(k).arg(""));
        for v in INT_EDGES {
            let k = self.key(format!("str:int:{v}"));
            self.push(Cmd::new("SET").arg(k).arg(v));
        }
        // rdbcompression applies from 21 bytes on.
        for len in [20, 21] {
            let k = self.key(format!("str:len{len}"));
            self.push(Cmd::new("SET").arg(k).arg(vec![b'a'; len]));
        }
        let plan: [(&str, usize, bool); 4] = [
            ("str:long:text", 300, true),
            ("str:long:random", 300, false),
            ("str:big:text", 100_000, true),
            ("str:big:random", 50_000, false),
        ];
        for (name, len, text) in plan {
            let v = if text { self.text(len) } else { self.random_bytes(len) };
            let k = self.key(name);
            self.push(Cmd::new("SET").arg(k).arg(v));
        }
        let k = self.key("str:binary");
        self.push(Cmd::new("SET").arg(k).arg((0..=255u8).collect::<Vec<u8>>()));
        let k = self.key("str:bitmap");
        self.push(Cmd::new("SETBIT").arg(k).arg("100000").arg("1"));
        let k = self.key("str:append");
        for _ in 0..5 {
            let piece = self.text(30);
            self.push(Cmd::new("APPEND").arg(&k).arg(piece));
        }
        let k = self.key("str:counter");
        self.push(Cmd::new("INCRBY").arg(&k).arg("-40000"));
        let k = self.key("str:float");
        self.push(Cmd::new("INCRBYFLOAT").arg(&k).arg("3.25"));
    }

    fn lists(&mut self) {
        let k = self.key("list:small");
        let mut cmd = Cmd::new("RPUSH").arg(&k);
        for _ in 0..5 {
            cmd.push_arg(self.word());
        }
        cmd.push_arg("");
        self.push(cmd);

        let k = self.key("list:ints");
        let mut cmd = Cmd::new("RPUSH").arg(&k);
        for v in INT_EDGES {
            cmd.push_arg(v);
        }
        self.push(cmd);

        // Well over 8 KB: several quicklist nodes.
        let k = self.key("list:large");
        let mut cmd = Cmd::new("RPUSH").arg(&k);
        for i in 0..600 {
            let v = if i % 7 == 0 {
                self.rng.gen_range(-100_000i64..100_000).to_string().into_bytes()
            } else {
                let len = self.rng.gen_range(10..40);
                self.value(len)
            };
            cmd.push_arg(v);
        }
        self.push(cmd);

        let k = self.key("list:bigvals");
        let mut cmd = Cmd::new("RPUSH").arg(&k);
        for &len in ELEMENT_SIZES {
            let v = self.value(len);
            cmd.push_arg(v);
            cmd.push_arg(self.word());
        }
        self.push(cmd);

        // Built from both ends and edited in place.
        let k = self.key("list:edited");
        let mut cmd = Cmd::new("LPUSH").arg(&k);
        for i in 0..200 {
            cmd.push_arg(i.to_string());
        }
        self.push(cmd);
        let mut cmd = Cmd::new("RPUSH").arg(&k);
        for _ in 0..50 {
            cmd.push_arg(self.word());
        }
        self.push(cmd);
        self.push(Cmd::new("LINSERT").arg(&k).arg("BEFORE").arg("100").arg("inserted"));
        self.push(Cmd::new("LSET").arg(&k).arg("3").arg(vec![b'z'; 70]));
        self.push(Cmd::new("LREM").arg(&k).arg("0").arg("150"));
        self.push(Cmd::new("LTRIM").arg(&k).arg("2").arg("-3"));
    }

    fn sets(&mut self) {
        let plan: [(&str, usize, i64); 3] = [
            ("set:intset16", 20, i64::from(i16::MAX)),
            ("set:intset32", 20, i64::from(i32::MAX)),
            ("set:intset64", 20, i64::MAX),
        ];
        for (name, n, max) in plan {
            let mut ints = self.distinct_ints(n, -max..=max);
            if max == i64::MAX {
                ints.extend([i64::MIN, i64::MAX]);
            }
            let k = self.key(name);
            let mut cmd = Cmd::new("SADD").arg(k);
            for i in ints {
                cmd.push_arg(i.to_string());
            }
            self.push(cmd);
        }
        // set-max-intset-entries is 512.
        for n in [512, 513] {
            let ints = self.distinct_ints(n, -1_000_000..=1_000_000);
            let k = self.key(format!("set:ints:{n}"));
            let mut cmd = Cmd::new("SADD").arg(k);
            for i in ints {
                cmd.push_arg(i.to_string());
            }
            self.push(cmd);
        }
        let k = self.key("set:strings:small");
        let mut cmd = Cmd::new("SADD").arg(k).arg("");
        for _ in 0..10 {
            cmd.push_arg(self.word());
        }
        self.push(cmd);
        let k = self.key("set:strings:large");
        let mut cmd = Cmd::new("SADD").arg(k);
        for _ in 0..300 {
            let len = self.rng.gen_range(1..80);
            cmd.push_arg(self.value(len));
        }
        self.push(cmd);
        let k = self.key("set:mixed");
        let mut cmd = Cmd::new("SADD").arg(k);
        for v in INT_EDGES {
            cmd.push_arg(v);
        }
        self.push(cmd);
        // An intset that shrank.
        let k = self.key("set:srem");
        let ints = self.distinct_ints(100, -50_000..=50_000);
        let mut add = Cmd::new("SADD").arg(&k);
        let mut rem = Cmd::new("SREM").arg(&k);
        for (n, i) in ints.iter().enumerate() {
            add.push_arg(i.to_string());
            if n % 2 == 0 {
                rem.push_arg(i.to_string());
            }
        }
        self.push(add);
        self.push(rem);
    }

    fn zadd(&mut self, key: &[u8], members: impl IntoIterator<Item = (String, Vec<u8>)>) {
        let mut cmd = Cmd::new("ZADD").arg(key);
        for (score, member) in members {
            cmd.push_arg(score);
            cmd.push_arg(member);
        }
        self.push(cmd);
    }

    fn random_score(&mut self) -> String {
        match self.rng.gen_range(0..4) {
            0 => self.rng.gen_range(-1000i64..1000).to_string(),
            1 => format!("{}", self.rng.gen_range(-1e6f64..1e6)),
            2 => format!("{:e}", self.rng.gen_range(-1e300f64..1e300)),
            _ => SCORE_EDGES[self.rng.gen_range(0..SCORE_EDGES.len())].to_string(),
        }
    }

    fn zsets(&mut self) {
        let k = self.key("zset:special");
        let members: Vec<_> =
            SCORE_EDGES.iter().enumerate().map(|(i, s)| (s.to_string(), format!("m{i}").into_bytes())).collect();
        self.zadd(&k, members);
        // zset-max-ziplist-entries / zset-max-listpack-entries is 128.
        for n in [128usize, 129] {
            let k = self.key(format!("zset:{n}"));
            let members: Vec<_> = (0..n).map(|i| (self.random_score(), format!("member:{i}").into_bytes())).collect();
            self.zadd(&k, members);
        }
        // zset-max-*-value is 64.
        for len in [64usize, 65] {
            let k = self.key(format!("zset:member{len}"));
            let mut members: Vec<_> = (0..5).map(|i| (self.random_score(), format!("m{i}").into_bytes())).collect();
            let long = self.value(len);
            members.push(("1.5".to_string(), long));
            members.push(("2".to_string(), Vec::new()));
            self.zadd(&k, members);
        }
        // A skiplist (binary doubles in the RDB) holding the special scores.
        let k = self.key("zset:skiplist:special");
        let mut members: Vec<_> =
            SCORE_EDGES.iter().enumerate().map(|(i, s)| (s.to_string(), format!("edge{i}").into_bytes())).collect();
        for _ in 0..200 {
            let len = self.rng.gen_range(1..30);
            members.push((self.random_score(), self.value(len)));
        }
        self.zadd(&k, members);
        self.push(Cmd::new("ZINCRBY").arg(&k).arg("0.5").arg("edge4"));
        let k = self.key("zset:incr");
        for _ in 0..10 {
            let m = format!("m{}", self.rng.gen_range(0..4));
            self.push(Cmd::new("ZINCRBY").arg(&k).arg("1.25").arg(m));
        }
    }

    fn hset(&mut self, key: &[u8], fields: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        let mut cmd = Cmd::new("HSET").arg(key);
        for (f, v) in fields {
            cmd.push_arg(f);
            cmd.push_arg(v);
        }
        self.push(cmd);
    }

    fn hashes(&mut self) {
        let k = self.key("hash:small");
        let mut fields = vec![(b"".to_vec(), b"empty field".to_vec()), (b"empty value".to_vec(), Vec::new())];
        for (i, v) in INT_EDGES.iter().enumerate() {
            fields.push((format!("int{i}").into_bytes(), v.as_bytes().to_vec()));
        }
        for v in &INT_EDGES[..8] {
            fields.push((v.as_bytes().to_vec(), self.word().into_bytes()));
        }
        self.hset(&k, fields);
        // hash-max-ziplist-entries / hash-max-listpack-entries is 512.
        for n in [512usize, 513] {
            let k = self.key(format!("hash:{n}"));
            let fields: Vec<_> = (0..n)
                .map(|i| {
                    let len = self.rng.gen_range(0..40);
                    (format!("field:{i}").into_bytes(), self.value(len))
                })
                .collect();
            self.hset(&k, fields);
        }
        // hash-max-*-value is 64.
        for len in [64usize, 65] {
            let k = self.key(format!("hash:value{len}"));
            let long = self.value(len);
            let fields = vec![(b"a".to_vec(), b"1".to_vec()), (b"long".to_vec(), long)];
            self.hset(&k, fields);
        }
        let k = self.key("hash:bigvals");
        let fields: Vec<_> =
            ELEMENT_SIZES.iter().map(|&len| (format!("len{len}").into_bytes(), self.value(len))).collect();
        self.hset(&k, fields);
        let k = self.key("hash:binary");
        let fields: Vec<_> = (0..20)
            .map(|_| {
                let (fl, vl) = (self.rng.gen_range(1..20), self.rng.gen_range(0..30));
                (self.random_bytes(fl), self.random_bytes(vl))
            })
            .collect();
        self.hset(&k, fields);
        let k = self.key("hash:edited");
        let fields: Vec<_> = (0..40).map(|i| (format!("f{i}").into_bytes(), i.to_string().into_bytes())).collect();
        self.hset(&k, fields);
        self.push(Cmd::new("HINCRBY").arg(&k).arg("f3").arg("1000000"));
        self.push(Cmd::new("HINCRBYFLOAT").arg(&k).arg("f4").arg("0.1"));
        self.push(Cmd::new("HDEL").arg(&k).arg("f5").arg("f6").arg("f7"));
    }

    fn streams(&mut self) {
        self.main_stream();

        // Auto IDs, trimmed exactly on every add.
        let k = self.key("stream:auto");
        for i in 0..60 {
            let v = self.word();
            self.push(
                Cmd::new("XADD").arg(&k).arg("MAXLEN").arg("40").arg("*").arg("n").arg(i.to_string()).arg("w").arg(v),
            );
        }
        self.push(Cmd::new("XGROUP").arg("CREATE").arg(&k).arg("readers").arg("0"));
        self.push(
            Cmd::new("XREADGROUP")
                .arg("GROUP")
                .arg("readers")
                .arg("r1")
                .arg("COUNT")
                .arg("7")
                .arg("STREAMS")
                .arg(&k)
                .arg(">"),
        );

        // A group on a stream that never had an entry.
        let k = self.key("stream:empty-group");
        self.push(Cmd::new("XGROUP").arg("CREATE").arg(&k).arg("g").arg("$").arg("MKSTREAM"));

        // Every entry deleted after delivery: no listpack node is left, the
        // PEL still points at the deleted IDs.
        let k = self.key("stream:all-deleted");
        for id in ["5-1", "5-2", "6-0"] {
            self.push(Cmd::new("XADD").arg(&k).arg(id).arg("f").arg("v"));
        }
        self.push(Cmd::new("XGROUP").arg("CREATE").arg(&k).arg("g").arg("0"));
        self.push(Cmd::new("XREADGROUP").arg("GROUP").arg("g").arg("c").arg("STREAMS").arg(&k).arg(">"));
        self.push(Cmd::new("XDEL").arg(&k).arg("5-1").arg("5-2").arg("6-0"));

        // IDs whose deltas from the node's master ID wrap around i64.
        let k = self.key("stream:bigids");
        for id in ["0-1", "1-1", "18446744073709551614-5", "18446744073709551615-18446744073709551614"] {
            self.push(Cmd::new("XADD").arg(&k).arg(id).arg("big").arg(id));
        }
    }

    fn main_stream(&mut self) {
        let k = self.key("stream:main");
        let mut ids = Vec::new();
        for i in 0..300u64 {
            let id = format!("{}-{}", 1_700_000_000_000 + i * 3, i % 4);
            let mut cmd = Cmd::new("XADD").arg(&k).arg(&id);
            match i % 25 {
                // Fields other than the master entry's.
                7 | 19 => {
                    cmd.push_arg("other");
                    cmd.push_arg(self.word());
                }
                // Same fields, a value bigger than a node (stream-node-max-bytes 4096).
                3 => {
                    cmd.push_arg("temp");
                    cmd.push_arg(self.value(5000));
                    cmd.push_arg("humidity");
                    cmd.push_arg("0");
                    cmd.push_arg("site");
                    cmd.push_arg("");
                }
                _ => {
                    cmd.push_arg("temp");
                    cmd.push_arg(self.rng.gen_range(-40i64..60).to_string());
                    cmd.push_arg("humidity");
                    cmd.push_arg(format!("{:.2}", self.rng.gen_range(0.0f64..100.0)));
                    cmd.push_arg("site");
                    cmd.push_arg(self.word());
                }
            }
            self.push(cmd);
            ids.push(id);
        }
        let mut deleted: Vec<String> = ids.choose_multiple(&mut self.rng, 30).cloned().collect();
        deleted.sort();
        let mut xdel = Cmd::new("XDEL").arg(&k);
        for id in &deleted {
            xdel.push_arg(id);
        }
        self.push(xdel);
        let live: Vec<&String> = ids.iter().filter(|id| !deleted.contains(id)).collect();

        let read = |group: &str, consumer: &str, count: usize, from: &str| {
            Cmd::new("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count.to_string())
                .arg("STREAMS")
                .arg(&k)
                .arg(from)
        };
        self.push(Cmd::new("XGROUP").arg("CREATE").arg(&k).arg("g1").arg("0"));
        self.push(read("g1", "alice", 40, ">"));
        self.push(read("g1", "bob", 30, ">"));
        let mut ack = Cmd::new("XACK").arg(&k).arg("g1");
        for id in live[..40].iter().step_by(3) {
            ack.push_arg(id);
        }
        self.push(ack);
        // Re-delivers alice's pending entries: their delivery counts go up.
        self.push(read("g1", "alice", 100, "0"));
        let mut claim = Cmd::new("XCLAIM").arg(&k).arg("g1").arg("carol").arg("0");
        for id in &live[40..50] {
            claim.push_arg(id);
        }
        self.push(claim);

        // Nobody reads from g2: no consumers, empty PEL.
        self.push(Cmd::new("XGROUP").arg("CREATE").arg(&k).arg("g2").arg("$"));
        self.push(Cmd::new("XGROUP").arg("CREATE").arg(&k).arg("g3").arg(live[100]));
        self.push(read("g3", "dave", 10, ">"));
        self.push(
            Cmd::new("XREADGROUP")
                .arg("GROUP")
                .arg("g3")
                .arg("erin")
                .arg("COUNT")
                .arg("5")
                .arg("NOACK")
                .arg("STREAMS")
                .arg(&k)
                .arg(">"),
        );
        // frank ends with nothing pending.
        self.push(read("g3", "frank", 2, ">"));
        self.push(Cmd::new("XACK").arg(&k).arg("g3").arg(live[116]).arg(live[117]));

        for i in 0..20u64 {
            let id = format!("{}-0", 1_800_000_000_000 + i);
            let v = self.word();
            self.push(Cmd::new("XADD").arg(&k).arg(id).arg("temp").arg(i.to_string()).arg("late").arg(v));
        }
        // Drops the oldest entries, some of them still pending.
        self.push(Cmd::new("XTRIM").arg(&k).arg("MAXLEN").arg("280"));
        // The last ID moves past the last entry.
        self.push(Cmd::new("XSETID").arg(&k).arg("1900000000000-7"));
    }

    fn binary_keys(&mut self) {
        let k = self.key(b"bin:\x00\x01\r\n\xff");
        self.push(Cmd::new("SET").arg(k).arg(b"\x00\xff"));
        let k = self.key((0..=255u8).collect::<Vec<u8>>());
        self.push(Cmd::new("RPUSH").arg(k).arg("a").arg(b"\x00"));
        // The empty key name is a valid key.
        let k = self.key(b"");
        self.push(Cmd::new("HSET").arg(k).arg("f").arg("v"));
        let k = self.key("ключ:üñí 🔑");
        self.push(Cmd::new("SADD").arg(k).arg("x").arg("y"));
        let name = self.random_bytes(1000);
        let k = self.key(name);
        self.push(Cmd::new("ZADD").arg(k).arg("1").arg("a").arg("2").arg("b"));
        let k = self.key("key with \"quotes\" and spaces");
        self.push(Cmd::new("SET").arg(k).arg("v"));
    }

    /// A quarter of the keys expire, all far in the future; one at a fixed
    /// absolute time.
    fn ttls(&mut self) {
        let keys = self.keys.clone();
        for k in &keys {
            if self.rng.gen_bool(0.25) {
                let ms = self.rng.gen_range(1_000_000_000i64..100_000_000_000);
                self.push(Cmd::new("PEXPIRE").arg(k).arg(ms.to_string()));
            }
        }
        self.push(Cmd::new("PEXPIREAT").arg("str:short").arg("4102444800000"));
    }
}

/// Keys of db 0 whose encoding on the server is checked, so the dataset
/// provably crosses the boundaries (names differ between 6.0 and 7.0).
const ENCODINGS: &[(&str, &[&str])] = &[
    ("str:short", &["embstr"]),
    ("str:int:12345", &["int"]),
    ("str:long:text", &["raw"]),
    ("list:small", &["quicklist", "listpack"]),
    ("list:large", &["quicklist"]),
    ("set:intset16", &["intset"]),
    ("set:intset64", &["intset"]),
    ("set:ints:512", &["intset"]),
    ("set:ints:513", &["hashtable"]),
    ("set:strings:small", &["hashtable", "listpack"]),
    ("set:strings:large", &["hashtable"]),
    ("zset:special", &["ziplist", "listpack"]),
    ("zset:128", &["ziplist", "listpack"]),
    ("zset:129", &["skiplist"]),
    ("zset:member64", &["ziplist", "listpack"]),
    ("zset:member65", &["skiplist"]),
    ("zset:skiplist:special", &["skiplist"]),
    ("hash:small", &["ziplist", "listpack"]),
    ("hash:512", &["ziplist", "listpack"]),
    ("hash:513", &["hashtable"]),
    ("hash:value64", &["ziplist", "listpack"]),
    ("hash:value65", &["hashtable"]),
    ("stream:main", &["stream"]),
];

// ---------------------------------------------------------------------------
// Reading the RDB.
// ---------------------------------------------------------------------------

struct ParsedKey {
    start: KeyStart,
    view: KeyView,
    payload: Option<Bytes>,
}

#[derive(Default)]
struct ParsedRdb {
    version: u32,
    aux: BTreeMap<Vec<u8>, Bytes>,
    /// `Some(checksum)` once `Eof` arrived.
    eof: Option<Option<u64>>,
    keys: BTreeMap<DbKey, ParsedKey>,
    rdb_types: BTreeSet<u8>,
    warnings: Vec<String>,
}

/// The key being assembled from chunks.
struct OpenKey {
    start: KeyStart,
    value: Logical,
    group: Option<Bytes>,
    consumer: Option<Bytes>,
}

impl OpenKey {
    fn new(start: KeyStart) -> Result<Self, String> {
        let value = match start.kind {
            ValueKind::String => Logical::String(Vec::new()),
            ValueKind::List => Logical::List(Vec::new()),
            ValueKind::Set => Logical::Set(BTreeSet::new()),
            ValueKind::Zset => Logical::Zset(BTreeMap::new()),
            ValueKind::Hash => Logical::Hash(BTreeMap::new()),
            ValueKind::Stream => Logical::Stream(StreamView::default()),
            ValueKind::Module => return Err("a module value in a dataset without modules".into()),
        };
        Ok(OpenKey { start, value, group: None, consumer: None })
    }

    fn add(&mut self, chunk: Chunk) -> Result<(), String> {
        let OpenKey { value, group, consumer, .. } = self;
        match (value, chunk) {
            (Logical::String(s), Chunk::String(b)) => s.extend_from_slice(&b),
            (Logical::List(l), Chunk::ListItems(items)) => l.extend(items),
            (Logical::Set(set), Chunk::SetMembers(members)) => {
                for m in members {
                    if !set.insert(m.clone()) {
                        return Err(format!("set member {} twice", show(&m)));
                    }
                }
            }
            (Logical::Zset(z), Chunk::ZsetMembers(members)) => {
                for (m, score) in members {
                    if z.insert(m.clone(), score).is_some() {
                        return Err(format!("zset member {} twice", show(&m)));
                    }
                }
            }
            (Logical::Hash(h), Chunk::HashFields(fields)) => {
                for f in fields {
                    if f.expire_at_ms.is_some() {
                        return Err(format!("hash field {} has a field TTL", show(&f.field)));
                    }
                    if h.insert(f.field.clone(), f.value).is_some() {
                        return Err(format!("hash field {} twice", show(&f.field)));
                    }
                }
            }
            (Logical::Stream(s), Chunk::StreamEntries(entries)) => {
                s.entries.extend(entries.into_iter().map(|e| (e.id, e.fields)));
            }
            (Logical::Stream(s), Chunk::StreamMeta(m)) => {
                s.length = m.length;
                s.last_id = m.last_id;
                s.first_id = m.first_id;
                s.max_deleted_id = m.max_deleted_id;
                s.entries_added = m.entries_added;
            }
            (Logical::Stream(s), Chunk::StreamGroup(g)) => {
                let view = GroupView {
                    last_id: g.last_id,
                    // u64::MAX is how Redis stores "unknown" (-1).
                    entries_read: g.entries_read.map(|n| n as i64),
                    ..GroupView::default()
                };
                if s.groups.insert(g.name.clone(), view).is_some() {
                    return Err(format!("group {} twice", show(&g.name)));
                }
                *group = Some(g.name.clone());
                *consumer = None;
            }
            (Logical::Stream(s), Chunk::StreamGroupPending(pel)) => {
                let g = current_group(s, group)?;
                for p in pel {
                    let entry = PendingView {
                        consumer: Bytes::new(),
                        delivery_count: p.delivery_count,
                        delivery_time_ms: p.delivery_time_ms,
                    };
                    if g.pending.insert(p.id, entry).is_some() {
                        return Err(format!("PEL entry {} twice", p.id));
                    }
                }
            }
            (Logical::Stream(s), Chunk::StreamConsumer(c)) => {
                let g = current_group(s, group)?;
                let view = ConsumerView { pending: 0, seen_time_ms: c.seen_time_ms };
                if g.consumers.insert(c.name.clone(), view).is_some() {
                    return Err(format!("consumer {} twice", show(&c.name)));
                }
                *consumer = Some(c.name.clone());
            }
            (Logical::Stream(s), Chunk::StreamConsumerPending(ids)) => {
                let g = current_group(s, group)?;
                let name = consumer.clone().ok_or("consumer PEL before any consumer")?;
                for id in ids {
                    let entry =
                        g.pending.get_mut(&id).ok_or_else(|| format!("consumer PEL ID {id} not in the group's PEL"))?;
                    if !entry.consumer.is_empty() {
                        return Err(format!("PEL entry {id} owned by two consumers"));
                    }
                    entry.consumer = name.clone();
                    if let Some(c) = g.consumers.get_mut(&name) {
                        c.pending += 1;
                    }
                }
            }
            (value, chunk) => return Err(format!("chunk {chunk:?} in a {} value", value.kind())),
        }
        Ok(())
    }

    fn finish(self) -> (KeyStart, KeyView) {
        let expiry = self.start.expire_at_ms.map_or(Expiry::Never, Expiry::At);
        (self.start, KeyView { expiry, value: self.value })
    }
}

fn current_group<'a>(s: &'a mut StreamView, group: &Option<Bytes>) -> Result<&'a mut GroupView, String> {
    let name = group.as_ref().ok_or("a group's data before any group")?;
    s.groups.get_mut(name).ok_or_else(|| format!("group {} vanished", show(name)))
}

/// Read sizes that make the input end at many different offsets inside
/// units (IDs, elements, blobs, LZF runs): a resumable parser that does not
/// rewind a half-read unit fails here every time, not only when a 256 KB
/// file read happens to end at the wrong byte.
const SPLIT_READS: [usize; 4] = [1, 13, 509, 4099];

/// A reader whose reads return at most `n` bytes.
struct SplitReads<'a> {
    data: &'a [u8],
    n: usize,
}

impl Read for SplitReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.n.min(buf.len()).min(self.data.len());
        buf[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// Parses the file as the engine would (a `File`), then again through
/// [`SPLIT_READS`]; every way must give the same keys, values and payloads.
fn parse_rdb(path: &Path) -> Result<ParsedRdb, Box<dyn Error>> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let parsed = fold_events(file).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    let data = fs::read(path)?;
    for n in SPLIT_READS {
        let again = fold_events(SplitReads { data: &data, n }).map_err(|e| format!("reads of {n} bytes: {e}"))?;
        let mut diffs = Vec::new();
        same_parse(&parsed, &again, &format!("reads of {n} bytes"), &mut diffs);
        if !diffs.is_empty() {
            return Err(
                format!("{} parsed differently in reads of {n} bytes:\n{}", path.display(), diffs.join("\n")).into()
            );
        }
    }
    Ok(parsed)
}

/// Differences between two parses of the same file.
fn same_parse(a: &ParsedRdb, b: &ParsedRdb, name_b: &str, diffs: &mut Vec<String>) {
    if (a.version, &a.aux, a.eof, &a.warnings, &a.rdb_types) != (b.version, &b.aux, b.eof, &b.warnings, &b.rdb_types) {
        diffs.push("header, aux fields, EOF, warnings or RDB types differ".into());
    }
    compare_keys(
        "keys",
        ("the file read", name_b),
        &a.keys.keys().map(|(db, k)| Bytes::from(format!("{db}:{}", show(k)))).collect(),
        &b.keys.keys().map(|(db, k)| Bytes::from(format!("{db}:{}", show(k)))).collect(),
        diffs,
    );
    for (id, p) in &a.keys {
        let Some(q) = b.keys.get(id) else { continue };
        if p.start != q.start {
            diffs.push(format!("{}: KeyStart {:?} vs {:?}", show_db_key(id), p.start, q.start));
        }
        let what = show_db_key(id);
        Comparison { what, names: ("the file read", name_b), out: diffs }.views(&p.view, &q.view);
        if p.payload != q.payload {
            diffs.push(format!("{}: the DUMP payloads differ", show_db_key(id)));
        }
    }
}

fn fold_events<R: Read>(src: R) -> Result<ParsedRdb, String> {
    let mut reader = RdbReader::with_options(src, parser_options());
    // The canonical JSON renderer must accept every event of a real file too.
    let mut json = JsonWriter::new(Vec::new());
    let mut out = ParsedRdb::default();
    let mut open: Option<OpenKey> = None;
    while let Some(ev) = reader.next_event().map_err(|e| e.to_string())? {
        json.event(&ev).map_err(|e| format!("JsonWriter: {e}"))?;
        match ev {
            Event::Header { version } => out.version = version,
            Event::Aux(kv) => {
                let (key, value) = *kv;
                out.aux.insert(key.to_vec(), value);
            }
            Event::KeyStart(start) => {
                if open.is_some() {
                    return Err(format!("KeyStart of {} while {} is open", show(&start.key), context_of(&open)));
                }
                let what = show_db_key(&(start.db, start.key.clone()));
                open = Some(OpenKey::new(*start).map_err(|e| format!("{what}: {e}"))?);
            }
            Event::Chunk(chunk) => {
                let key = open.as_mut().ok_or("a chunk outside any key")?;
                if let Err(e) = key.add(chunk) {
                    return Err(format!("{}: {e}", context_of(&open)));
                }
            }
            Event::KeyEnd { payload } => {
                let (start, view) = open.take().ok_or("KeyEnd outside any key")?.finish();
                out.rdb_types.insert(start.rdb_type);
                let id = (start.db, start.key.clone());
                if out.keys.contains_key(&id) {
                    return Err(format!("{} appears twice", show_db_key(&id)));
                }
                out.keys.insert(id, ParsedKey { start, view, payload });
            }
            Event::Warning(w) => out.warnings.push(format!("offset {}: {}", w.offset, w.message)),
            Event::Eof { checksum } => out.eof = Some(checksum),
            _ => {}
        }
    }
    if open.is_some() {
        return Err(format!("the file ended inside {}", context_of(&open)));
    }
    let rendered = String::from_utf8(json.into_inner()).map_err(|e| format!("JsonWriter wrote non-UTF-8: {e}"))?;
    let mut key_lines = 0;
    for line in rendered.lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("JSON line {line:.200}: {e}"))?;
        key_lines += usize::from(v.get("key").is_some());
    }
    if key_lines != out.keys.len() {
        return Err(format!("JsonWriter wrote {key_lines} keys, the parser yielded {}", out.keys.len()));
    }
    Ok(out)
}

fn context_of(open: &Option<OpenKey>) -> String {
    open.as_ref().map_or_else(String::new, |k| show_db_key(&(k.start.db, k.start.key.clone())))
}

// ---------------------------------------------------------------------------
// Reading a live server.
// ---------------------------------------------------------------------------

/// A connection to a server under test, knowing what its version offers.
struct LiveServer {
    conn: Connection,
    name: String,
    version: String,
    /// PEXPIRETIME exists from 7.0 on; before, only the relative PTTL.
    has_pexpiretime: bool,
}

impl LiveServer {
    async fn connect(server: &RedisServer, name: &str) -> Result<LiveServer, Box<dyn Error>> {
        let mut conn = Connection::connect(&server.addr(), &ConnectOptions::default()).await?;
        let info = conn.query(&Cmd::new("INFO").arg("server")).await?;
        let info = info.as_str().ok_or("INFO server is not text")?.to_owned();
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .ok_or("INFO server has no redis_version")?
            .trim()
            .to_owned();
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Ok(LiveServer { conn, name: format!("{name} ({version})"), version, has_pexpiretime: major >= 7 })
    }

    async fn query(&mut self, cmd: Cmd) -> Result<Value, String> {
        self.conn.query(&cmd).await.map_err(|e| format!("{}: {e}", self.name))
    }

    /// Runs commands as one pipeline; any error reply fails, naming the command.
    async fn pipeline_ok(&mut self, cmds: &[Cmd]) -> Result<Vec<Value>, String> {
        let replies = self.conn.pipeline(cmds).await.map_err(|e| format!("{}: {e}", self.name))?;
        for (cmd, reply) in cmds.iter().zip(&replies) {
            if let Some(e) = reply.as_error() {
                return Err(format!("{}: {cmd:?} failed: {e}", self.name));
            }
        }
        Ok(replies)
    }

    async fn select(&mut self, db: u64) -> Result<(), String> {
        self.query(Cmd::new("SELECT").arg(db.to_string())).await.map(drop)
    }

    /// Every key of the selected DB.
    async fn keys(&mut self) -> Result<BTreeSet<Bytes>, String> {
        let mut keys = BTreeSet::new();
        let mut cursor = Bytes::from_static(b"0");
        loop {
            let reply = array(self.query(Cmd::new("SCAN").arg(&cursor).arg("COUNT").arg("1000")).await?)?;
            let [next, batch]: [Value; 2] = reply.try_into().map_err(|_| "SCAN reply is not [cursor, keys]")?;
            cursor = bulk(next)?;
            for k in array(batch)? {
                keys.insert(bulk(k)?);
            }
            if &cursor[..] == b"0" {
                return Ok(keys);
            }
        }
    }

    async fn encoding(&mut self, key: &str) -> Result<String, String> {
        let reply = self.query(Cmd::new("OBJECT").arg("ENCODING").arg(key)).await?;
        Ok(reply.as_str().ok_or_else(|| format!("OBJECT ENCODING {key}: {reply:?}"))?.to_owned())
    }

    /// The key's type, expiry and whole value, from the selected DB.
    async fn view(&mut self, key: &Bytes) -> Result<KeyView, String> {
        let kind = self.query(Cmd::new("TYPE").arg(key)).await?;
        let kind = kind.as_str().ok_or("TYPE reply is not text")?.to_owned();
        let expiry = if self.has_pexpiretime {
            match int(&self.query(Cmd::new("PEXPIRETIME").arg(key)).await?)? {
                -1 => Expiry::Never,
                -2 => return Err("the key vanished".into()),
                at => Expiry::At(at),
            }
        } else {
            match int(&self.query(Cmd::new("PTTL").arg(key)).await?)? {
                -1 => Expiry::Never,
                -2 => return Err("the key vanished".into()),
                ttl => Expiry::About(now_ms() + ttl),
            }
        };
        let value = match kind.as_str() {
            "string" => Logical::String(bulk(self.query(Cmd::new("GET").arg(key)).await?)?.to_vec()),
            "list" => Logical::List(bulks(self.query(Cmd::new("LRANGE").arg(key).arg("0").arg("-1")).await?)?),
            "set" => Logical::Set(bulks(self.query(Cmd::new("SMEMBERS").arg(key)).await?)?.into_iter().collect()),
            "hash" => Logical::Hash(pairs(self.query(Cmd::new("HGETALL").arg(key)).await?)?.into_iter().collect()),
            "zset" => {
                let reply = self.query(Cmd::new("ZRANGE").arg(key).arg("0").arg("-1").arg("WITHSCORES")).await?;
                let mut z = BTreeMap::new();
                for (member, score) in pairs(reply)? {
                    let text = std::str::from_utf8(&score).map_err(|_| "score is not text")?;
                    let score: f64 = text.parse().map_err(|_| format!("score {text:?} is not a number"))?;
                    z.insert(member, score);
                }
                Logical::Zset(z)
            }
            "stream" => Logical::Stream(self.stream(key).await?),
            other => return Err(format!("unexpected TYPE {other:?}")),
        };
        Ok(KeyView { expiry, value })
    }

    async fn stream(&mut self, key: &Bytes) -> Result<StreamView, String> {
        let mut s = StreamView::default();
        for entry in array(self.query(Cmd::new("XRANGE").arg(key).arg("-").arg("+")).await?)? {
            let [id, fields]: [Value; 2] = array(entry)?.try_into().map_err(|_| "XRANGE entry is not [id, fields]")?;
            s.entries.push((stream_id(&id)?, bulks(fields)?));
        }
        let info = fields(self.query(Cmd::new("XINFO").arg("STREAM").arg(key)).await?)?;
        let get = |name: &str| info.get(name).ok_or_else(|| format!("XINFO STREAM has no {name}"));
        s.length = int(get("length")?)? as u64;
        s.last_id = stream_id(get("last-generated-id")?)?;
        s.first_id = info.get("recorded-first-entry-id").map(stream_id).transpose()?;
        s.max_deleted_id = info.get("max-deleted-entry-id").map(stream_id).transpose()?;
        s.entries_added = info.get("entries-added").map(|v| int(v).map(|n| n as u64)).transpose()?;

        for group in array(self.query(Cmd::new("XINFO").arg("GROUPS").arg(key)).await?)? {
            let info = fields(group)?;
            let get = |name: &str| info.get(name).ok_or_else(|| format!("XINFO GROUPS has no {name}"));
            let name = bulk(get("name")?.clone())?;
            let mut g = GroupView {
                last_id: stream_id(get("last-delivered-id")?)?,
                entries_read: info.get("entries-read").map(|v| if v.is_nil() { Ok(-1) } else { int(v) }).transpose()?,
                ..GroupView::default()
            };
            let pending = self
                .query(Cmd::new("XPENDING").arg(key).arg(&name).arg("-").arg("+").arg("1000000"))
                .await
                .map(array)??;
            let now = now_ms();
            for p in pending {
                let [id, consumer, idle, count]: [Value; 4] =
                    array(p)?.try_into().map_err(|_| "XPENDING entry is not [id, consumer, idle, count]")?;
                let view = PendingView {
                    consumer: bulk(consumer)?,
                    delivery_count: int(&count)? as u64,
                    delivery_time_ms: now - int(&idle)?,
                };
                g.pending.insert(stream_id(&id)?, view);
            }
            let consumers = self.query(Cmd::new("XINFO").arg("CONSUMERS").arg(key).arg(&name)).await.map(array)??;
            let now = now_ms();
            for c in consumers {
                let info = fields(c)?;
                let get = |name: &str| info.get(name).ok_or_else(|| format!("XINFO CONSUMERS has no {name}"));
                let view =
                    ConsumerView { pending: int(get("pending")?)? as u64, seen_time_ms: now - int(get("idle")?)? };
                g.consumers.insert(bulk(get("name")?.clone())?, view);
            }
            s.groups.insert(name, g);
        }
        Ok(s)
    }
}

fn bulk(v: Value) -> Result<Bytes, String> {
    let kind = v.kind();
    v.into_bytes().ok_or_else(|| format!("expected a string, got {kind}"))
}

fn array(v: Value) -> Result<Vec<Value>, String> {
    let kind = v.kind();
    v.into_array().ok_or_else(|| format!("expected an array, got {kind}"))
}

fn bulks(v: Value) -> Result<Vec<Bytes>, String> {
    array(v)?.into_iter().map(bulk).collect()
}

fn int(v: &Value) -> Result<i64, String> {
    v.as_int().ok_or_else(|| format!("expected an integer, got {v:?}"))
}

/// A flat `[a, b, c, d]` reply as `(a, b), (c, d)`.
fn pairs(v: Value) -> Result<Vec<(Bytes, Bytes)>, String> {
    let items = bulks(v)?;
    if items.len() % 2 != 0 {
        return Err(format!("{} elements, expected pairs", items.len()));
    }
    Ok(items.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect())
}

/// An XINFO reply (`[name, value, name, value, …]`) by name.
fn fields(v: Value) -> Result<HashMap<String, Value>, String> {
    let items = array(v)?;
    let mut map = HashMap::new();
    let mut it = items.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        map.insert(String::from_utf8_lossy(&bulk(name)?).into_owned(), value);
    }
    Ok(map)
}

fn stream_id(v: &Value) -> Result<StreamId, String> {
    let text = v.as_str().ok_or_else(|| format!("expected a stream ID, got {v:?}"))?;
    let (ms, seq) = text.split_once('-').ok_or_else(|| format!("stream ID {text:?} has no '-'"))?;
    let parse = |n: &str| n.parse::<u64>().map_err(|_| format!("stream ID {text:?} is not <ms>-<seq>"));
    Ok(StreamId { ms: parse(ms)?, seq: parse(seq)? })
}

// ---------------------------------------------------------------------------
// Comparing two views of one key.
// ---------------------------------------------------------------------------

/// Describes how `a` (seen by `names.0`) differs from `b` (seen by `names.1`).
struct Comparison<'a> {
    what: String,
    names: (&'a str, &'a str),
    out: &'a mut Vec<String>,
}

impl Comparison<'_> {
    fn differ(&mut self, detail: impl std::fmt::Display) {
        self.out.push(format!("{}: {detail}", self.what));
    }

    fn views(&mut self, a: &KeyView, b: &KeyView) {
        let (na, nb) = self.names;
        if !a.expiry.same(b.expiry) {
            self.differ(format_args!("expiry: {na} {:?}, {nb} {:?}", a.expiry, b.expiry));
        }
        match (&a.value, &b.value) {
            (Logical::String(x), Logical::String(y)) => self.sequence("string", "bytes", x, y, |b| show(&[*b])),
            (Logical::List(x), Logical::List(y)) => self.sequence("list", "elements", x, y, |e| show(e)),
            (Logical::Set(x), Logical::Set(y)) => {
                let x: BTreeMap<_, _> = x.iter().map(|m| (m.clone(), ())).collect();
                let y: BTreeMap<_, _> = y.iter().map(|m| (m.clone(), ())).collect();
                self.maps("set member", &x, &y, |_, _| true, |_| String::new());
            }
            (Logical::Hash(x), Logical::Hash(y)) => self.maps("hash field", x, y, |p, q| p == q, |v| show(v)),
            (Logical::Zset(x), Logical::Zset(y)) => {
                self.maps("zset member", x, y, |p, q| p.to_bits() == q.to_bits(), |s| format!("score {s:e}"))
            }
            (Logical::Stream(x), Logical::Stream(y)) => self.streams(x, y),
            (x, y) => self.differ(format_args!("type: {na} {}, {nb} {}", x.kind(), y.kind())),
        }
    }

    /// Lengths and the first differing position of two sequences.
    fn sequence<T: PartialEq>(&mut self, what: &str, unit: &str, x: &[T], y: &[T], show_item: impl Fn(&T) -> String) {
        let (na, nb) = self.names;
        if x == y {
            return;
        }
        let at = x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(x.len().min(y.len()));
        let item = |v: &[T]| v.get(at).map_or("(end)".to_string(), &show_item);
        self.differ(format_args!(
            "{what}: {na} has {} {unit}, {nb} {}; first difference at index {at}: {na} {}, {nb} {}",
            x.len(),
            y.len(),
            item(x),
            item(y)
        ));
    }

    fn maps<K: Ord + AsRef<[u8]>, V>(
        &mut self,
        what: &str,
        x: &BTreeMap<K, V>,
        y: &BTreeMap<K, V>,
        same: impl Fn(&V, &V) -> bool,
        show_value: impl Fn(&V) -> String,
    ) {
        const LISTED: usize = 3;
        let (na, nb) = self.names;
        let only = |p: &BTreeMap<K, V>, q: &BTreeMap<K, V>| -> Vec<String> {
            p.keys().filter(|k| !q.contains_key(*k)).map(|k| show(k.as_ref())).collect()
        };
        for (holder, missing) in [(na, only(x, y)), (nb, only(y, x))] {
            if !missing.is_empty() {
                self.differ(format_args!(
                    "{} {what}s only in {holder} (of {}/{}): {}",
                    missing.len(),
                    x.len(),
                    y.len(),
                    missing.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let changed: Vec<String> = x
            .iter()
            .filter_map(|(k, v)| {
                let w = y.get(k)?;
                (!same(v, w)).then(|| format!("{}: {na} {}, {nb} {}", show(k.as_ref()), show_value(v), show_value(w)))
            })
            .collect();
        if !changed.is_empty() {
            self.differ(format_args!(
                "{} {what}s differ: {}",
                changed.len(),
                changed.iter().take(LISTED).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
    }

    fn streams(&mut self, x: &StreamView, y: &StreamView) {
        let (na, nb) = self.names;
        self.sequence("stream", "entries", &x.entries, &y.entries, |(id, f)| {
            format!("{id} [{}]", f.iter().map(|b| show(b)).collect::<Vec<_>>().join(" "))
        });
        if (x.length, x.last_id) != (y.length, y.last_id) {
            self.differ(format_args!(
                "stream length/last ID: {na} {}/{}, {nb} {}/{}",
                x.length, x.last_id, y.length, y.last_id
            ));
        }
        // Only 7.0 knows these; a 6.0 server or an RDB 9 file has none.
        if let (Some(p), Some(q)) = (x.first_id, y.first_id) {
            if p != q {
                self.differ(format_args!("stream first ID: {na} {p}, {nb} {q}"));
            }
        }
        if let (Some(p), Some(q)) = (x.max_deleted_id, y.max_deleted_id) {
            if p != q {
                self.differ(format_args!("stream max deleted ID: {na} {p}, {nb} {q}"));
            }
        }
        if let (Some(p), Some(q)) = (x.entries_added, y.entries_added) {
            if p != q {
                self.differ(format_args!("stream entries added: {na} {p}, {nb} {q}"));
            }
        }
        let names = |s: &StreamView| s.groups.keys().map(|k| show(k)).collect::<Vec<_>>();
        if names(x) != names(y) {
            self.differ(format_args!("groups: {na} {:?}, {nb} {:?}", names(x), names(y)));
        }
        for (name, g) in &x.groups {
            if let Some(h) = y.groups.get(name) {
                self.group(&show(name), g, h);
            }
        }
    }

    fn group(&mut self, name: &str, g: &GroupView, h: &GroupView) {
        let (na, nb) = self.names;
        if g.last_id != h.last_id {
            self.differ(format_args!("group {name} last delivered ID: {na} {}, {nb} {}", g.last_id, h.last_id));
        }
        if let (Some(p), Some(q)) = (g.entries_read, h.entries_read) {
            if p != q {
                self.differ(format_args!("group {name} entries read: {na} {p}, {nb} {q}"));
            }
        }
        let ids = |g: &GroupView| g.pending.keys().copied().collect::<Vec<_>>();
        self.sequence(&format!("group {name} PEL"), "IDs", &ids(g), &ids(h), |id| id.to_string());
        for (id, p) in &g.pending {
            let Some(q) = h.pending.get(id) else { continue };
            if (&p.consumer, p.delivery_count) != (&q.consumer, q.delivery_count)
                || (p.delivery_time_ms - q.delivery_time_ms).abs() > CLOCK_SLACK_MS
            {
                self.differ(format_args!(
                    "group {name} PEL entry {id} (consumer, deliveries, delivered at): {na} ({}, {}, {}), {nb} ({}, {}, {})",
                    show(&p.consumer),
                    p.delivery_count,
                    p.delivery_time_ms,
                    show(&q.consumer),
                    q.delivery_count,
                    q.delivery_time_ms
                ));
            }
        }
        let names = |g: &GroupView| g.consumers.keys().map(|k| show(k)).collect::<Vec<_>>();
        if names(g) != names(h) {
            self.differ(format_args!("group {name} consumers: {na} {:?}, {nb} {:?}", names(g), names(h)));
        }
        for (consumer, c) in &g.consumers {
            let Some(d) = h.consumers.get(consumer) else { continue };
            if c.pending != d.pending || (c.seen_time_ms - d.seen_time_ms).abs() > CLOCK_SLACK_MS {
                self.differ(format_args!(
                    "group {name} consumer {} (pending, seen at): {na} ({}, {}), {nb} ({}, {})",
                    show(consumer),
                    c.pending,
                    c.seen_time_ms,
                    d.pending,
                    d.seen_time_ms
                ));
            }
        }
    }
}

fn compare_keys(what: &str, names: (&str, &str), a: &BTreeSet<Bytes>, b: &BTreeSet<Bytes>, out: &mut Vec<String>) {
    for (holder, p, q) in [(names.0, a, b), (names.1, b, a)] {
        let only: Vec<String> = p.difference(q).map(|k| show(k)).collect();
        if !only.is_empty() {
            out.push(format!("{what}: {} keys only in {holder}: {}", only.len(), only.join(", ")));
        }
    }
}

/// Fails the test with every difference found, or passes.
fn report(context: &str, diffs: &[String]) {
    if diffs.is_empty() {
        return;
    }
    let mut msg =
        format!("{context}: {} differences (seed {}, set {SEED_ENV} to replay another):\n", diffs.len(), seed());
    for d in diffs.iter().take(SHOWN_DIFFS) {
        let _ = writeln!(msg, "  - {d}");
    }
    if diffs.len() > SHOWN_DIFFS {
        let _ = writeln!(msg, "  … and {} more", diffs.len() - SHOWN_DIFFS);
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------
// The round trip.
// ---------------------------------------------------------------------------

/// One source server after steps 1 to 3: filled, saved, parsed, compared.
struct SourceRun {
    live: LiveServer,
    rdb: ParsedRdb,
    /// The source server's view of every key.
    views: BTreeMap<DbKey, KeyView>,
    diffs: Vec<String>,
    /// Last, so it is dropped (killed) after the connection.
    _server: RedisServer,
}

impl SourceRun {
    async fn start(opts: RedisOptions, name: &str) -> Result<SourceRun, Box<dyn Error>> {
        let started = Instant::now();
        let server = RedisServer::start(opts)?;
        let mut live = LiveServer::connect(&server, name).await?;
        for db in DBS {
            let cmds = DatasetBuilder::new(seed(), db).build(db);
            live.pipeline_ok(&cmds).await.map_err(|e| format!("filling db {db}: {e}"))?;
        }
        let mut diffs = Vec::new();
        live.select(0).await?;
        for (key, allowed) in ENCODINGS {
            let enc = live.encoding(key).await?;
            if !allowed.contains(&enc.as_str()) {
                diffs.push(format!("{}: db 0 key {key:?} is {enc}, the dataset meant {allowed:?}", live.name));
            }
        }
        live.query(Cmd::new("SAVE")).await?;
        let rdb = parse_rdb(&server.dir().join("dump.rdb")).map_err(|e| format!("{}: {e}", live.name))?;
        if !rdb.warnings.is_empty() {
            diffs.push(format!("the parser warned: {:?}", rdb.warnings));
        }
        if rdb.aux.get(&b"redis-ver"[..]).map(|v| &v[..]) != Some(live.version.as_bytes()) {
            diffs.push(format!(
                "aux redis-ver is {:?}, the server is {}",
                rdb.aux.get(&b"redis-ver"[..]),
                live.version
            ));
        }

        let mut views = BTreeMap::new();
        for db in DBS {
            live.select(db).await?;
            let on_server = live.keys().await?;
            let in_rdb: BTreeSet<Bytes> = rdb.keys.keys().filter(|(d, _)| *d == db).map(|(_, k)| k.clone()).collect();
            compare_keys(&format!("db {db}"), ("the RDB", "the server"), &in_rdb, &on_server, &mut diffs);
            for key in on_server {
                let id = (db, key);
                let view = live.view(&id.1).await.map_err(|e| format!("reading {}: {e}", show_db_key(&id)))?;
                if let Some(parsed) = rdb.keys.get(&id) {
                    if parsed.start.kind.as_str() != parsed.view.value.kind() {
                        diffs.push(format!("{}: KeyStart says {}", show_db_key(&id), parsed.start.kind.as_str()));
                    }
                    let what = format!("{} {}", live.name, show_db_key(&id));
                    Comparison { what, names: ("RDB", "server"), out: &mut diffs }.views(&parsed.view, &view);
                }
                views.insert(id, view);
            }
        }
        let stray: Vec<String> = rdb.keys.keys().filter(|(db, _)| !DBS.contains(db)).map(show_db_key).collect();
        if !stray.is_empty() {
            diffs.push(format!("keys in DBs never written: {stray:?}"));
        }
        eprintln!("{}: {} keys filled, saved, parsed and compared in {:?}", live.name, views.len(), started.elapsed());
        Ok(SourceRun { live, rdb, views, diffs, _server: server })
    }

    /// Step 4: RESTORE every captured payload into an empty 7.0 server and
    /// compare its view of every key with the source server's.
    async fn restore_and_compare(&mut self) -> TestResult {
        let started = Instant::now();
        let target = RedisServer::start(RedisOptions::new())?;
        let mut restored = LiveServer::connect(&target, "restore target").await?;
        let source = self.live.name.clone();
        let mut by_db: BTreeMap<u64, Vec<Cmd>> = BTreeMap::new();
        for ((db, key), parsed) in &self.rdb.keys {
            let Some(payload) = &parsed.payload else {
                self.diffs.push(format!("{}: no DUMP payload was captured", show_db_key(&(*db, key.clone()))));
                continue;
            };
            // ABSTTL keeps the source's absolute expiry, as the writer does.
            let mut cmd = Cmd::new("RESTORE").arg(key).arg(parsed.start.expire_at_ms.unwrap_or(0).to_string());
            cmd = cmd.arg_bytes(payload.clone()).arg("REPLACE");
            if parsed.start.expire_at_ms.is_some() {
                cmd = cmd.arg("ABSTTL");
            }
            by_db.entry(*db).or_insert_with(|| vec![Cmd::new("SELECT").arg(db.to_string())]).push(cmd);
        }
        for (db, cmds) in &by_db {
            let replies = restored.conn.pipeline(cmds).await?;
            for (cmd, reply) in cmds.iter().zip(&replies) {
                if !reply.is_ok() {
                    let key = cmd.args().get(1).map_or_else(String::new, |k| show(k));
                    let rdb_type = cmd.args().get(3).and_then(|p| p.first()).copied().unwrap_or(0);
                    self.diffs.push(format!("RESTORE of db {db} key {key} (RDB type {rdb_type}) answered {reply:?}"));
                }
            }
        }
        for db in DBS {
            restored.select(db).await?;
            let on_target = restored.keys().await?;
            let on_source: BTreeSet<Bytes> =
                self.views.keys().filter(|(d, _)| *d == db).map(|(_, k)| k.clone()).collect();
            compare_keys(&format!("db {db}"), (&source, "the restore target"), &on_source, &on_target, &mut self.diffs);
            for key in on_target {
                let id = (db, key);
                let view =
                    restored.view(&id.1).await.map_err(|e| format!("reading restored {}: {e}", show_db_key(&id)))?;
                if let Some(original) = self.views.get(&id) {
                    let what = format!("RESTORE from {source} into {}: {}", restored.version, show_db_key(&id));
                    Comparison { what, names: ("source", "restored"), out: &mut self.diffs }.views(original, &view);
                }
            }
        }
        eprintln!("{source}: {} payloads restored and compared in {:?}", self.rdb.keys.len(), started.elapsed());
        Ok(())
    }

    /// Every on-disk type the dataset is meant to produce was parsed.
    fn check_rdb_types(&mut self, expected: &[u8]) {
        let missing: Vec<u8> = expected.iter().copied().filter(|t| !self.rdb.rdb_types.contains(t)).collect();
        if !missing.is_empty() {
            self.diffs.push(format!(
                "RDB types {missing:?} never appeared (seen: {:?}); the dataset no longer crosses those encodings",
                self.rdb.rdb_types
            ));
        }
    }

    fn check_header(&mut self, version: u32, checksum: bool) {
        if self.rdb.version != version {
            self.diffs.push(format!("RDB version {}, expected {version}", self.rdb.version));
        }
        match self.rdb.eof {
            None => self.diffs.push("no Eof event".into()),
            Some(c) if c.is_some() != checksum => {
                self.diffs.push(format!("Eof checksum {c:?}, expected {}", if checksum { "one" } else { "none" }))
            }
            Some(_) => {}
        }
    }
}

fn redis6() -> Result<RedisOptions, Box<dyn Error>> {
    RedisOptions::redis6().map_err(|e| format!("{e} (run scripts/deps.sh or `make deps`)").into())
}

/// The on-disk types of the dataset in an RDB 9 file (Redis 6.0).
const RDB9_TYPES: &[u8] = &[
    TYPE_STRING,
    TYPE_SET,
    TYPE_ZSET_2,
    TYPE_HASH,
    TYPE_SET_INTSET,
    TYPE_ZSET_ZIPLIST,
    TYPE_HASH_ZIPLIST,
    TYPE_LIST_QUICKLIST,
    TYPE_STREAM_LISTPACKS,
];

/// The on-disk types of the dataset in an RDB 10 file (Redis 7.0).
const RDB10_TYPES: &[u8] = &[
    TYPE_STRING,
    TYPE_SET,
    TYPE_ZSET_2,
    TYPE_HASH,
    TYPE_SET_INTSET,
    TYPE_ZSET_LISTPACK,
    TYPE_HASH_LISTPACK,
    TYPE_LIST_QUICKLIST_2,
    TYPE_STREAM_LISTPACKS_2,
];

#[tokio::test]
async fn redis7_roundtrip() -> TestResult {
    // LFU makes every key carry a FREQ opcode before its type byte.
    let opts = RedisOptions::new().config("rdbcompression yes").config("maxmemory-policy allkeys-lfu");
    let mut run = SourceRun::start(opts, "redis 7.0").await?;
    assert!(
        run.live.version.starts_with("7.0."),
        "the system redis-server is {}, this test expects 7.0",
        run.live.version
    );
    run.check_header(10, true);
    run.check_rdb_types(RDB10_TYPES);
    let no_freq: Vec<String> =
        run.rdb.keys.iter().filter(|(_, k)| k.start.lfu_freq.is_none()).map(|(id, _)| show_db_key(id)).collect();
    if !no_freq.is_empty() {
        run.diffs.push(format!("keys without an LFU frequency under allkeys-lfu: {no_freq:?}"));
    }
    run.restore_and_compare().await?;
    report("Redis 7.0 round trip", &run.diffs);
    Ok(())
}

#[tokio::test]
async fn redis6_roundtrip() -> TestResult {
    // LRU makes every key carry an IDLE opcode before its type byte.
    let opts = redis6()?.config("rdbcompression yes").config("maxmemory-policy allkeys-lru");
    let mut run = SourceRun::start(opts, "redis 6.0.9").await?;
    assert_eq!(run.live.version, "6.0.9", "{} is not Redis 6.0.9", common::REDIS6_ENV);
    run.check_header(9, true);
    run.check_rdb_types(RDB9_TYPES);
    let no_idle: Vec<String> =
        run.rdb.keys.iter().filter(|(_, k)| k.start.idle_secs.is_none()).map(|(id, _)| show_db_key(id)).collect();
    if !no_idle.is_empty() {
        run.diffs.push(format!("keys without an LRU idle time under allkeys-lru: {no_idle:?}"));
    }
    run.restore_and_compare().await?;
    report("Redis 6.0.9 round trip", &run.diffs);
    Ok(())
}

/// Without compression every long string and every ziplist/listpack blob is
/// stored raw: the parser's other string path, on both versions.
#[tokio::test]
async fn rdbcompression_off() -> TestResult {
    for (opts, name, version) in
        [(RedisOptions::new(), "redis 7.0, rdbcompression no", 10), (redis6()?, "redis 6.0.9, rdbcompression no", 9)]
    {
        let mut run = SourceRun::start(opts.config("rdbcompression no"), name).await?;
        run.check_header(version, true);
        report(name, &run.diffs);
    }
    Ok(())
}

/// With the checksum disabled the trailer is eight zero bytes: `Eof` carries
/// no checksum and nothing is reported as corrupt.
#[tokio::test]
async fn rdbchecksum_off() -> TestResult {
    for (opts, name, version) in
        [(RedisOptions::new(), "redis 7.0, rdbchecksum no", 10), (redis6()?, "redis 6.0.9, rdbchecksum no", 9)]
    {
        let mut run = SourceRun::start(opts.config("rdbchecksum no"), name).await?;
        run.check_header(version, false);
        report(name, &run.diffs);
    }
    Ok(())
}
