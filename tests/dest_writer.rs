//! The destination writer against real servers.
//!
//! A Redis 7.0 source is filled with every type (strings of every encoding
//! and size, lists, sets, zsets with extreme scores, hashes, streams with
//! deletions, groups, PELs, consumers with and without pending entries, an
//! empty stream), in two DBs, some keys with TTLs; it `SAVE`s, and the
//! RDB is parsed with payload capture and written to a destination through
//! `Rewriter` and `DestWriter`. Then every key of the destination is compared
//! with the source server's own view (type, value, TTL ±1.5 s, stream
//! entries, metadata, groups, consumers and PEL):
//!
//! * an empty 7.0 destination: the RESTORE path;
//! * an empty 6.0.9 destination: the command path (7.0 payloads do not
//!   restore there);
//! * a 7.0 destination with the command path forced and a small buffer, so
//!   the big keys are built under temporary names.
//!
//! Then conflicts (intercept, skip, overwrite), the TTL gap, error
//! classification (OOM, READONLY, NOREPLICAS), and retries after a lost
//! connection: a proxy that swallows replies makes the server apply a window
//! whose replies never arrive, and the re-send must not double anything.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    error::Error,
    fs::File,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use common::{RedisOptions, RedisServer};
use shardsync::dest::{
    dest_info, ApplyBatch, ApplyCmd, ApplyReport, Conflict, DestCaps, DestWriter, ErrorClass, RewriteOptions,
    RewriteStats, Rewriter, WriterOptions,
};
use shardsync::rdb::{Event, ParserOptions, RdbReader};
use shardsync::resp::{Cmd, ConnectOptions, Connection, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

type TestResult = Result<(), Box<dyn Error>>;

const TAG: &str = "shardsync-test-tmp";
const TTL_SLACK_MS: i64 = 1_500;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

async fn connect(addr: &str) -> Result<Connection, Box<dyn Error>> {
    Ok(Connection::connect(addr, &ConnectOptions::default()).await?)
}

fn cmd(args: &[&[u8]]) -> Cmd {
    Cmd::from_args(args.iter().copied())
}

async fn run(conn: &mut Connection, cmds: Vec<Cmd>) -> TestResult {
    for (c, reply) in cmds.iter().zip(conn.pipeline(&cmds).await?) {
        if let Value::Error(e) = reply {
            return Err(format!("{c:?}: {e}").into());
        }
    }
    Ok(())
}

// ---- the dataset --------------------------------------------------------

/// Fills DBs 0 and 2 with every type and encoding; returns the key count.
async fn fill(conn: &mut Connection) -> Result<usize, Box<dyn Error>> {
    let mut c: Vec<Cmd> = Vec::new();
    for db in [b"0", b"2"] {
        c.push(cmd(&[b"SELECT", db]));
        c.push(cmd(&[b"SET", b"str:small", b"hello"]));
        c.push(cmd(&[b"SET", b"str:int", b"1234567"]));
        c.push(cmd(&[b"SET", b"str:empty", b""]));
        c.push(cmd(&[b"SET", b"str:bin\x00\xff", b"\x00\r\n\xff"]));
        c.push(Cmd::new("SET").arg("str:lzf").arg("abc".repeat(40_000)));
        let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        c.push(Cmd::new("SET").arg("str:big").arg(noise));
        c.push(Cmd::new("SET").arg("str:ttl").arg("t").arg("PX").arg("3600000"));
        c.push(cmd(&[b"RPUSH", b"list:small", b"a", b"b", b"1", b"-5"]));
        let mut big = Cmd::new("RPUSH").arg("list:big");
        for i in 0..3_000 {
            big.push_arg(format!("item-{i}"));
        }
        c.push(big);
        c.push(Cmd::new("PEXPIRE").arg("list:big").arg("7200000"));
        c.push(cmd(&[b"SADD", b"set:int", b"1", b"2", b"3", b"100000"]));
        let mut set = Cmd::new("SADD").arg("set:big");
        for i in 0..700 {
            set.push_arg(format!("member-{i}"));
        }
        c.push(set);
        c.push(cmd(&[b"SADD", b"set:small", b"x", b"y"]));
        c.push(cmd(&[
            b"ZADD",
            b"zset:small",
            b"inf",
            b"top",
            b"-inf",
            b"bottom",
            b"0.1",
            b"tenth",
            b"1e300",
            b"huge",
            b"-2.5e-7",
            b"tiny",
            b"3",
            b"three",
        ]));
        let mut zbig = Cmd::new("ZADD").arg("zset:big");
        for i in 0..1_000 {
            zbig.push_arg(format!("{}", f64::from(i) / 7.0));
            zbig.push_arg(format!("m{i}"));
        }
        c.push(zbig);
        c.push(cmd(&[b"HSET", b"hash:small", b"f1", b"v1", b"f2", b"2"]));
        let mut hbig = Cmd::new("HSET").arg("hash:big");
        for i in 0..700 {
            hbig.push_arg(format!("field-{i}"));
            hbig.push_arg(format!("value-{i}"));
        }
        c.push(hbig);
        c.push(Cmd::new("PEXPIRE").arg("hash:small").arg("5400000"));
        // Streams: entries with a deletion, two groups, PEL, an idle consumer.
        for i in 1..=20u64 {
            c.push(
                Cmd::new("XADD").arg("stream:full").arg(format!("{i}-1")).arg("n").arg(i.to_string()).arg("k").arg("v"),
            );
        }
        c.push(cmd(&[b"XDEL", b"stream:full", b"5-1"]));
        c.push(cmd(&[b"XGROUP", b"CREATE", b"stream:full", b"g1", b"0"]));
        c.push(cmd(&[b"XGROUP", b"CREATE", b"stream:full", b"g2", b"10-1"]));
        c.push(cmd(&[b"XREADGROUP", b"GROUP", b"g1", b"alice", b"COUNT", b"6", b"STREAMS", b"stream:full", b">"]));
        c.push(cmd(&[b"XREADGROUP", b"GROUP", b"g1", b"bob", b"COUNT", b"3", b"STREAMS", b"stream:full", b">"]));
        c.push(cmd(&[b"XREADGROUP", b"GROUP", b"g1", b"alice", b"COUNT", b"2", b"STREAMS", b"stream:full", b"0"]));
        c.push(cmd(&[b"XACK", b"stream:full", b"g1", b"2-1", b"3-1"]));
        c.push(cmd(&[b"XGROUP", b"CREATECONSUMER", b"stream:full", b"g1", b"idle"]));
        c.push(cmd(&[b"XGROUP", b"CREATE", b"stream:empty", b"g", b"$", b"MKSTREAM"]));
        c.push(cmd(&[b"XADD", b"stream:trimmed", b"7-7", b"a", b"b"]));
        c.push(cmd(&[b"XDEL", b"stream:trimmed", b"7-7"]));
    }
    run(conn, c).await?;
    run(conn, vec![cmd(&[b"SELECT", b"0"])]).await?;
    Ok(2 * 19)
}

/// A filled 7.0 source, saved; returns the server and its RDB path.
async fn source() -> Result<(RedisServer, usize), Box<dyn Error>> {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server.addr()).await?;
    let keys = fill(&mut conn).await?;
    conn.query(&Cmd::new("SAVE")).await?;
    Ok((server, keys))
}

fn redis6() -> Result<RedisOptions, Box<dyn Error>> {
    Ok(RedisOptions::redis6()?)
}

// ---- copying ------------------------------------------------------------

struct Copy {
    stats: RewriteStats,
    report: ApplyReport,
    /// Retryable failures the copy went through.
    retries: u32,
}

/// Parses `rdb` and writes it to `addr` with the rewrite options `tune`
/// sets up (destination caps, conflict mode), in batches of ~1000.
async fn copy(
    rdb: &Path,
    addr: &str,
    conflict: Conflict,
    tune: impl FnOnce(&mut RewriteOptions),
) -> Result<Copy, Box<dyn Error>> {
    let mut conn = connect(addr).await?;
    let caps = dest_info(&mut conn).await?;
    copy_on(conn, caps, rdb, conflict, tune).await
}

async fn copy_on(
    conn: Connection,
    caps: DestCaps,
    rdb: &Path,
    conflict: Conflict,
    tune: impl FnOnce(&mut RewriteOptions),
) -> Result<Copy, Box<dyn Error>> {
    let mut opts = RewriteOptions::new(caps, conflict);
    opts.temp_tag = TAG.to_owned();
    tune(&mut opts);
    let mut writer = DestWriter::with_connection(conn, WriterOptions::new(conflict));
    let mut rw = Rewriter::new(opts);
    // As the engine parses: each payload's CRC-64 is left to the connection.
    let parse = ParserOptions { capture_payload: Some(64 << 20), seal_payloads: false, ..ParserOptions::default() };
    let mut reader = RdbReader::with_options(File::open(rdb)?, parse);
    let mut batch = ApplyBatch::new();
    let mut report = ApplyReport::default();
    let mut out: Vec<ApplyCmd> = Vec::new();
    let mut retries = 0;
    while let Some(ev) = reader.next_event()? {
        if matches!(ev, Event::Eof { .. }) {
            break;
        }
        rw.feed(ev, reader.offset(), now_ms(), &mut out)?;
        batch.extend(out.drain(..));
        if batch.len() >= 1000 {
            retries += apply_retrying(&mut writer, &mut batch, &mut report).await?;
        }
    }
    retries += apply_retrying(&mut writer, &mut batch, &mut report).await?;
    Ok(Copy { stats: rw.stats().clone(), report, retries })
}

/// What the engine does: retryable failures are retried after a pause.
async fn apply_retrying(
    writer: &mut DestWriter,
    batch: &mut ApplyBatch,
    report: &mut ApplyReport,
) -> Result<u32, shardsync::dest::ApplyError> {
    let mut retries = 0;
    loop {
        match writer.apply(batch, report).await {
            Ok(()) => return Ok(retries),
            Err(e) if e.is_retryable() && retries < 200 => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn rdb_path(server: &RedisServer) -> std::path::PathBuf {
    server.dir().join("dump.rdb")
}

// ---- comparing ----------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Val {
    String(Bytes),
    List(Vec<Bytes>),
    Set(BTreeSet<Bytes>),
    Zset(Vec<(Bytes, Bytes)>),
    Hash(BTreeMap<Bytes, Bytes>),
    Stream(Box<StreamView>),
}

#[derive(Debug, PartialEq)]
struct StreamView {
    entries: Vec<Value>,
    length: i64,
    last_id: Bytes,
    /// 7.0 only: entries-added, max-deleted-entry-id.
    v7: Option<(i64, Bytes)>,
    groups: Vec<GroupView>,
}

#[derive(Debug, PartialEq)]
struct GroupView {
    name: Bytes,
    last_delivered: Bytes,
    pending: i64,
    entries_read: Option<Value>,
    consumers: BTreeMap<Bytes, i64>,
    /// (id, consumer, delivery count).
    pel: Vec<(Bytes, Bytes, i64)>,
}

fn field<'a>(flat: &'a [Value], name: &str) -> Option<&'a Value> {
    flat.chunks(2).find(|kv| kv[0].as_str() == Some(name)).map(|kv| &kv[1])
}

fn bytes(v: &Value) -> Bytes {
    v.as_bytes().map(Bytes::copy_from_slice).unwrap_or_default()
}

async fn q(conn: &mut Connection, args: &[&[u8]]) -> Result<Value, Box<dyn Error>> {
    Ok(conn.query(&cmd(args)).await?)
}

async fn read_key(conn: &mut Connection, key: &[u8], v7: bool) -> Result<(Val, i64), Box<dyn Error>> {
    let kind = q(conn, &[b"TYPE", key]).await?;
    let pttl = q(conn, &[b"PTTL", key]).await?.as_int().unwrap_or(-3);
    let list = |v: Value| v.into_array().unwrap_or_default().iter().map(bytes).collect::<Vec<_>>();
    let val = match kind.as_str().unwrap_or_default() {
        "string" => Val::String(bytes(&q(conn, &[b"GET", key]).await?)),
        "list" => Val::List(list(q(conn, &[b"LRANGE", key, b"0", b"-1"]).await?)),
        "set" => Val::Set(list(q(conn, &[b"SMEMBERS", key]).await?).into_iter().collect()),
        "zset" => {
            let flat = list(q(conn, &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]).await?);
            Val::Zset(flat.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect())
        }
        "hash" => {
            let flat = list(q(conn, &[b"HGETALL", key]).await?);
            Val::Hash(flat.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect())
        }
        "stream" => Val::Stream(Box::new(read_stream(conn, key, v7).await?)),
        other => return Err(format!("unexpected type {other} for {}", key.escape_ascii()).into()),
    };
    Ok((val, pttl))
}

async fn read_stream(conn: &mut Connection, key: &[u8], v7: bool) -> Result<StreamView, Box<dyn Error>> {
    let entries = q(conn, &[b"XRANGE", key, b"-", b"+"]).await?.into_array().unwrap_or_default();
    let info = q(conn, &[b"XINFO", b"STREAM", key]).await?.into_array().unwrap_or_default();
    let int = |v: Option<&Value>| v.and_then(Value::as_int).unwrap_or(-1);
    let mut view = StreamView {
        entries,
        length: int(field(&info, "length")),
        last_id: field(&info, "last-generated-id").map(bytes).unwrap_or_default(),
        v7: v7.then(|| {
            (int(field(&info, "entries-added")), field(&info, "max-deleted-entry-id").map(bytes).unwrap_or_default())
        }),
        groups: Vec::new(),
    };
    for g in q(conn, &[b"XINFO", b"GROUPS", key]).await?.into_array().unwrap_or_default() {
        let g = g.into_array().unwrap_or_default();
        let name = field(&g, "name").map(bytes).unwrap_or_default();
        let mut consumers = BTreeMap::new();
        for c in q(conn, &[b"XINFO", b"CONSUMERS", key, &name]).await?.into_array().unwrap_or_default() {
            let c = c.into_array().unwrap_or_default();
            consumers.insert(field(&c, "name").map(bytes).unwrap_or_default(), int(field(&c, "pending")));
        }
        let pel = q(conn, &[b"XPENDING", key, &name, b"-", b"+", b"100000"])
            .await?
            .into_array()
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let p = p.into_array().unwrap_or_default();
                (bytes(&p[0]), bytes(&p[1]), p[3].as_int().unwrap_or(-1))
            })
            .collect();
        view.groups.push(GroupView {
            last_delivered: field(&g, "last-delivered-id").map(bytes).unwrap_or_default(),
            pending: int(field(&g, "pending")),
            entries_read: if v7 { field(&g, "entries-read").cloned() } else { None },
            consumers,
            pel,
            name,
        });
    }
    Ok(view)
}

async fn keys_of(conn: &mut Connection, db: &[u8]) -> Result<BTreeSet<Bytes>, Box<dyn Error>> {
    q(conn, &[b"SELECT", db]).await?;
    let keys = q(conn, &[b"KEYS", b"*"]).await?;
    Ok(keys.into_array().unwrap_or_default().iter().map(bytes).collect())
}

/// Every key of DBs 0 and 2 equal on both servers; returns the differences.
async fn compare(src: &str, dst: &str, v7: bool) -> Result<Vec<String>, Box<dyn Error>> {
    let (mut a, mut b) = (connect(src).await?, connect(dst).await?);
    let mut diffs = Vec::new();
    for db in [b"0".as_slice(), b"2", b"1"] {
        let (ka, kb) = (keys_of(&mut a, db).await?, keys_of(&mut b, db).await?);
        if ka != kb {
            diffs.push(format!(
                "db {}: keys differ: source-only {:?}, destination-only {:?}",
                db.escape_ascii(),
                ka.difference(&kb).collect::<Vec<_>>(),
                kb.difference(&ka).collect::<Vec<_>>()
            ));
        }
        if db != b"1" {
            assert_eq!(ka.len(), 19, "db {}: the dataset was not read back", db.escape_ascii());
        }
        for key in ka.intersection(&kb) {
            let (va, ta) = read_key(&mut a, key, v7).await?;
            if key.as_ref() == b"stream:full" {
                sanity(&va, v7);
            }
            let (vb, tb) = read_key(&mut b, key, v7).await?;
            if va != vb {
                diffs.push(format!(
                    "db {} key {}: source {va:?}\n  destination {vb:?}",
                    db.escape_ascii(),
                    key.escape_ascii()
                ));
            }
            if (ta < 0) != (tb < 0) || (ta - tb).abs() > TTL_SLACK_MS {
                diffs.push(format!("db {} key {}: TTL {ta} vs {tb}", db.escape_ascii(), key.escape_ascii()));
            }
        }
    }
    Ok(diffs)
}

/// The stream comparison really sees the stream's parts.
fn sanity(val: &Val, v7: bool) {
    let Val::Stream(s) = val else { panic!("stream:full is not a stream: {val:?}") };
    assert_eq!((s.entries.len(), s.length, s.last_id.as_ref()), (19, 19, b"20-1".as_slice()));
    if v7 {
        assert_eq!(s.v7, Some((20, Bytes::from_static(b"5-1"))));
    }
    assert_eq!(s.groups.len(), 2);
    let g1 = &s.groups[0];
    assert_eq!((g1.name.as_ref(), g1.pending, g1.pel.len()), (b"g1".as_slice(), 7, 7));
    assert_eq!(g1.consumers.len(), 3, "{:?}", g1.consumers);
    assert_eq!(g1.entries_read.is_some(), v7);
    assert!(g1.pel.iter().any(|(_, _, count)| *count == 2), "a redelivered entry: {:?}", g1.pel);
}

fn assert_equal(diffs: Vec<String>) {
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

// ---- full copies ---------------------------------------------------------

#[tokio::test]
async fn restore_path_into_an_empty_7_0() -> TestResult {
    let (src, keys) = source().await?;
    let dst = RedisServer::start(RedisOptions::new())?;
    let done = copy(&rdb_path(&src), &dst.addr(), Conflict::Intercept, |_| {}).await?;
    assert_eq!(done.stats.restored as usize, keys, "{:?}", done.stats);
    assert_eq!(done.stats.rewritten, 0);
    assert!(done.report.collisions.is_empty());
    assert_equal(compare(&src.addr(), &dst.addr(), true).await?);
    Ok(())
}

#[tokio::test]
async fn command_path_into_an_empty_6_0_9() -> TestResult {
    let (src, keys) = source().await?;
    let dst = RedisServer::start(redis6()?)?;
    let done = copy(&rdb_path(&src), &dst.addr(), Conflict::Intercept, |o| {
        assert_eq!(o.caps.rdb_version, 9);
    })
    .await?;
    assert_eq!(done.stats.rewritten as usize, keys, "{:?}", done.stats);
    assert_eq!(done.stats.restored, 0);
    assert_equal(compare(&src.addr(), &dst.addr(), false).await?);
    Ok(())
}

#[tokio::test]
async fn command_path_forced_on_7_0_with_big_keys_built_under_temporary_names() -> TestResult {
    let (src, keys) = source().await?;
    let dst = RedisServer::start(RedisOptions::new())?;
    let done = copy(&rdb_path(&src), &dst.addr(), Conflict::Overwrite, |o| {
        o.big_key_bytes = 0;
        o.buffer_bytes = 16 << 10;
        o.chunk_items = 100;
        o.chunk_bytes = 64 << 10;
    })
    .await?;
    assert_eq!(done.stats.rewritten as usize, keys);
    // Two DBs × (str:lzf, str:big, list:big, set:big, zset:big, hash:big).
    assert_eq!(done.stats.built, 12, "{:?}", done.stats);
    assert_equal(compare(&src.addr(), &dst.addr(), true).await?);
    Ok(())
}

// ---- conflicts ----------------------------------------------------------

/// Destination keys that clash with the dataset: one per form (RESTORE or
/// SET NX, a unit's RENAMENX, a build's RENAMENX).
async fn preset(addr: &str) -> TestResult {
    let mut conn = connect(addr).await?;
    run(
        &mut conn,
        vec![
            cmd(&[b"SET", b"str:small", b"mine"]),
            cmd(&[b"SET", b"list:small", b"mine"]),
            cmd(&[b"SET", b"list:big", b"mine"]),
        ],
    )
    .await
}

async fn get(addr: &str, key: &[u8]) -> Result<Value, Box<dyn Error>> {
    let mut conn = connect(addr).await?;
    Ok(conn.query(&cmd(&[b"GET", key])).await?)
}

async fn temp_keys(addr: &str) -> Result<usize, Box<dyn Error>> {
    let mut conn = connect(addr).await?;
    let mut n = 0;
    for db in [b"0".as_slice(), b"2"] {
        q(&mut conn, &[b"SELECT", db]).await?;
        n += q(&mut conn, &[b"KEYS", format!("*{TAG}*").as_bytes()]).await?.as_array().map_or(0, <[Value]>::len);
    }
    Ok(n)
}

#[tokio::test]
async fn intercept_reports_collisions_and_never_overwrites() -> TestResult {
    let (src, _) = source().await?;
    for (restore, label) in [(true, "restore path"), (false, "command path")] {
        let dst = RedisServer::start(RedisOptions::new())?;
        preset(&dst.addr()).await?;
        let done = copy(&rdb_path(&src), &dst.addr(), Conflict::Intercept, |o| {
            if !restore {
                o.big_key_bytes = 0;
                o.buffer_bytes = 16 << 10;
            }
        })
        .await?;
        let found: BTreeSet<Bytes> = done.report.collisions.iter().map(|c| c.key.clone()).collect();
        let expected: BTreeSet<Bytes> = ["str:small", "list:small", "list:big"].into_iter().map(Bytes::from).collect();
        assert_eq!(found, expected, "{label}");
        assert!(done.report.collisions.iter().all(|c| c.db == 0 && !c.uncertain), "{label}");
        for key in [b"str:small".as_slice(), b"list:small", b"list:big"] {
            assert_eq!(get(&dst.addr(), key).await?, Value::Bulk(Some(Bytes::from_static(b"mine"))), "{label}");
        }
        assert_eq!(temp_keys(&dst.addr()).await?, 0, "{label}: temporary keys left behind");
    }
    Ok(())
}

#[tokio::test]
async fn skip_keeps_the_destination_value_and_counts() -> TestResult {
    let (src, _) = source().await?;
    let dst = RedisServer::start(redis6()?)?;
    preset(&dst.addr()).await?;
    let done = copy(&rdb_path(&src), &dst.addr(), Conflict::Skip, |o| o.buffer_bytes = 16 << 10).await?;
    assert_eq!(done.report.kept, 3);
    assert!(done.report.collisions.is_empty());
    assert_eq!(get(&dst.addr(), b"list:big").await?, Value::Bulk(Some(Bytes::from_static(b"mine"))));
    assert_eq!(temp_keys(&dst.addr()).await?, 0);
    Ok(())
}

#[tokio::test]
async fn overwrite_replaces_keys_of_any_type() -> TestResult {
    let (src, _) = source().await?;
    for restore in [true, false] {
        let dst = RedisServer::start(RedisOptions::new())?;
        preset(&dst.addr()).await?;
        let done = copy(&rdb_path(&src), &dst.addr(), Conflict::Overwrite, |o| {
            if !restore {
                o.big_key_bytes = 0;
                o.buffer_bytes = 16 << 10;
            }
        })
        .await?;
        assert!(done.report.collisions.is_empty() && done.report.kept == 0);
        assert_equal(compare(&src.addr(), &dst.addr(), true).await?);
    }
    Ok(())
}

// ---- the TTL gap ----------------------------------------------------------

#[tokio::test]
async fn a_key_expired_since_the_snapshot_gets_the_grace_ttl() -> TestResult {
    let src = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&src.addr()).await?;
    run(
        &mut conn,
        vec![
            Cmd::new("SET").arg("short").arg("v").arg("PX").arg("300"),
            Cmd::new("RPUSH").arg("short:list").arg("a"),
            Cmd::new("PEXPIRE").arg("short:list").arg("300"),
            Cmd::new("SAVE"),
        ],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for restore in [true, false] {
        let dst = RedisServer::start(RedisOptions::new())?;
        let done = copy(&rdb_path(&src), &dst.addr(), Conflict::Intercept, |o| {
            o.ttl_grace_ms = 4_000;
            if !restore {
                o.big_key_bytes = 0;
            }
        })
        .await?;
        assert_eq!(done.stats.ttl_expired, 2, "{:?}", done.stats);
        let mut d = connect(&dst.addr()).await?;
        for key in [b"short".as_slice(), b"short:list"] {
            let pttl = q(&mut d, &[b"PTTL", key]).await?.as_int().unwrap_or(-9);
            assert!((2_500..=4_000).contains(&pttl), "{} PTTL {pttl} (restore: {restore})", key.escape_ascii());
        }
    }
    Ok(())
}

// ---- error classification ---------------------------------------------------

async fn copy_err(src: &RedisServer, dst: &RedisServer) -> Result<shardsync::dest::ApplyError, Box<dyn Error>> {
    match copy(&rdb_path(src), &dst.addr(), Conflict::Overwrite, |_| {}).await {
        Ok(_) => Err("the copy succeeded".into()),
        Err(e) => Ok(*e.downcast::<shardsync::dest::ApplyError>()?),
    }
}

#[tokio::test]
async fn out_of_memory_pauses_naming_the_key() -> TestResult {
    let (src, _) = source().await?;
    let dst = RedisServer::start(RedisOptions::new().config("maxmemory 1mb").config("maxmemory-policy noeviction"))?;
    let e = copy_err(&src, &dst).await?;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Pause, "OOM"), "{e}");
    let key = e.key().ok_or("no key in the error")?;
    let text = e.to_string();
    assert!(text.contains(&key) && text.contains("RESTORE") && text.contains("raise maxmemory"), "{text}");
    Ok(())
}

#[tokio::test]
async fn read_only_replica_and_missing_replicas_pause() -> TestResult {
    let (src, _) = source().await?;
    let nowhere = common::free_port()?;
    let replica = RedisServer::start(RedisOptions::new().config(format!("replicaof 127.0.0.1 {nowhere}")))?;
    let e = copy_err(&src, &replica).await?;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Pause, "READONLY"), "{e}");
    assert!(e.to_string().contains("read-only replica"), "{e}");
    let lonely = RedisServer::start(RedisOptions::new().config("min-replicas-to-write 1"))?;
    let e = copy_err(&src, &lonely).await?;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Pause, "NOREPLICAS"), "{e}");
    Ok(())
}

// ---- retries ----------------------------------------------------------------

/// Keeps the server busy in a script for `ms` milliseconds.
const BUSY_SCRIPT: &str = "local function now() local t = redis.call('TIME') return t[1] * 1000 + t[2] / 1000 end \
     local stop = now() + tonumber(ARGV[1]) while now() < stop do end return 1";

#[tokio::test]
async fn a_busy_destination_is_retried_until_it_answers() -> TestResult {
    let (src, keys) = source().await?;
    let dst = RedisServer::start(RedisOptions::new().config("busy-reply-threshold 50"))?;
    let mut conn = connect(&dst.addr()).await?;
    let caps = dest_info(&mut conn).await?;
    let addr = dst.addr();
    let script = tokio::spawn(async move {
        let mut side = connect(&addr).await.map_err(|e| e.to_string())?;
        side.send(&Cmd::new("EVAL").arg(BUSY_SCRIPT).arg("0").arg("1500")).await.map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let done = copy_on(conn, caps, &rdb_path(&src), Conflict::Intercept, |_| {}).await?;
    assert_eq!(script.await?.map_err(|e| e.to_string())?, Value::Integer(1));
    assert!(done.retries > 0, "the copy never met the busy script");
    assert_eq!(done.stats.restored as usize, keys);
    assert!(done.report.collisions.is_empty(), "re-sent RESTOREs are not collisions: {:?}", done.report.collisions);
    assert_equal(compare(&src.addr(), &dst.addr(), true).await?);
    Ok(())
}

/// A TCP proxy that, while `swallow` is set, forwards the client's bytes but
/// drops the server's replies and then closes the client connection: the
/// server applies commands whose replies never arrive. While `lose` is set,
/// it drops the client's bytes instead and closes: the commands never reach
/// the server.
struct Proxy {
    addr: String,
    swallow: Arc<AtomicBool>,
    lose: Arc<AtomicBool>,
}

async fn proxy(upstream: String) -> Result<Proxy, Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let swallow = Arc::new(AtomicBool::new(false));
    let lose = Arc::new(AtomicBool::new(false));
    let (flag, lose_flag) = (swallow.clone(), lose.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else { return };
            let (flag, lose_flag) = (flag.clone(), lose_flag.clone());
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = cr.read(&mut buf).await {
                        // Lost on the way: nothing reaches the server, and the
                        // server's side is shut (dropping `sw`): the server hangs
                        // up, which ends the loop below and the client's side.
                        if n == 0 || lose_flag.load(Ordering::SeqCst) || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if flag.load(Ordering::SeqCst) {
                        // Let the rest of the window reach the server, then hang up.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    Ok(Proxy { addr, swallow, lose })
}

#[tokio::test]
async fn a_lost_window_is_resent_without_doubling_big_list_pieces() -> TestResult {
    let dst = RedisServer::start(RedisOptions::new())?;
    let proxy = proxy(dst.addr()).await?;
    let mut conn = connect(&proxy.addr).await?;
    let caps: DestCaps = dest_info(&mut conn).await?;
    let mut opts = RewriteOptions::new(caps, Conflict::Intercept);
    opts.buffer_bytes = 64;
    opts.chunk_items = 10;
    opts.temp_tag = TAG.to_owned();
    let mut rw = Rewriter::new(opts);
    let mut cmds = Vec::new();
    let mut feed = |ev: Event, cmds: &mut Vec<ApplyCmd>| rw.feed(ev, 0, now_ms(), cmds);
    let items: Vec<Bytes> = (0..100).map(|i| Bytes::from(format!("e{i}"))).collect();
    let start = shardsync::rdb::KeyStart {
        db: 0,
        key: Bytes::from_static(b"big"),
        kind: shardsync::rdb::ValueKind::List,
        undecoded: false,
        rdb_type: 0,
        expire_at_ms: Some(now_ms() + 600_000),
        idle_secs: None,
        lfu_freq: None,
    };
    feed(Event::KeyStart(Box::new(start)), &mut cmds)?;
    for part in items.chunks(10) {
        feed(Event::Chunk(shardsync::rdb::Chunk::ListItems(part.to_vec())), &mut cmds)?;
    }
    feed(Event::KeyEnd { payload: None }, &mut cmds)?;
    // SELECT, DEL temp, 10 × RPUSH, MULTI PEXPIREAT RENAMENX EXEC.
    assert_eq!(cmds.len(), 16);
    let finish = cmds.split_off(12);
    let middle = cmds.split_off(6);
    let mut writer = DestWriter::with_connection(conn, WriterOptions::new(Conflict::Intercept));
    let mut report = ApplyReport::default();

    // The first pieces are confirmed.
    let mut batch = ApplyBatch::new();
    batch.extend(cmds);
    writer.apply(&mut batch, &mut report).await?;
    // The middle pieces are applied, but their replies are lost.
    let mut batch = ApplyBatch::new();
    batch.extend(middle);
    proxy.swallow.store(true, Ordering::SeqCst);
    let e = writer.apply(&mut batch, &mut report).await.expect_err("replies were swallowed");
    assert_eq!(e.class, ErrorClass::Retry, "{e}");
    assert_eq!(batch.len(), 6, "every unconfirmed command stays in the batch");
    proxy.swallow.store(false, Ordering::SeqCst);
    writer.apply(&mut batch, &mut report).await?;
    assert_eq!(writer.stats().guard_skips, 6, "LLEN showed all six applied");
    assert_eq!(writer.stats().reconnects, 1);

    // The final rename is applied, its reply lost; the re-send finds it done.
    let mut batch = ApplyBatch::new();
    batch.extend(finish);
    proxy.swallow.store(true, Ordering::SeqCst);
    assert!(writer.apply(&mut batch, &mut report).await.is_err());
    proxy.swallow.store(false, Ordering::SeqCst);
    writer.apply(&mut batch, &mut report).await?;
    assert!(report.collisions.is_empty(), "our own rename is not a collision: {:?}", report.collisions);

    let mut d = connect(&dst.addr()).await?;
    let list = q(&mut d, &[b"LRANGE", b"big", b"0", b"-1"]).await?.into_array().unwrap_or_default();
    assert_eq!(list.iter().map(bytes).collect::<Vec<_>>(), items);
    assert!(q(&mut d, &[b"PTTL", b"big"]).await?.as_int().unwrap_or(-1) > 500_000);
    assert_eq!(temp_keys(&dst.addr()).await?, 0);
    Ok(())
}

/// A big list's commands, split as: SELECT and `DEL temp`; the pieces; the
/// final `MULTI PEXPIREAT RENAMENX EXEC`; and the list's elements.
type BigBuild = (Vec<ApplyCmd>, Vec<ApplyCmd>, Vec<ApplyCmd>, Vec<Bytes>);

/// A big list's pieces for key `big` (100 elements in 10 `RPUSH`es under a
/// temporary name); see [`BigBuild`].
fn big_list_build(caps: DestCaps) -> Result<BigBuild, Box<dyn Error>> {
    let mut opts = RewriteOptions::new(caps, Conflict::Intercept);
    opts.buffer_bytes = 64;
    opts.chunk_items = 10;
    opts.temp_tag = TAG.to_owned();
    let mut rw = Rewriter::new(opts);
    let mut cmds = Vec::new();
    let mut feed = |ev: Event, cmds: &mut Vec<ApplyCmd>| rw.feed(ev, 0, now_ms(), cmds);
    let items: Vec<Bytes> = (0..100).map(|i| Bytes::from(format!("e{i}"))).collect();
    let start = shardsync::rdb::KeyStart {
        db: 0,
        key: Bytes::from_static(b"big"),
        kind: shardsync::rdb::ValueKind::List,
        undecoded: false,
        rdb_type: 0,
        expire_at_ms: Some(now_ms() + 600_000),
        idle_secs: None,
        lfu_freq: None,
    };
    feed(Event::KeyStart(Box::new(start)), &mut cmds)?;
    for part in items.chunks(10) {
        feed(Event::Chunk(shardsync::rdb::Chunk::ListItems(part.to_vec())), &mut cmds)?;
    }
    feed(Event::KeyEnd { payload: None }, &mut cmds)?;
    assert_eq!(cmds.len(), 16, "SELECT, DEL temp, 10 × RPUSH, MULTI PEXPIREAT RENAMENX EXEC");
    let finish = cmds.split_off(12);
    let pieces = cmds.split_off(2);
    Ok((cmds, pieces, finish, items))
}

#[tokio::test]
async fn a_build_whose_pieces_never_arrived_is_not_taken_for_renamed() -> TestResult {
    let dst = RedisServer::start(RedisOptions::new())?;
    let proxy = proxy(dst.addr()).await?;
    let mut conn = connect(&proxy.addr).await?;
    let caps: DestCaps = dest_info(&mut conn).await?;
    let (start, pieces, finish, items) = big_list_build(caps)?;
    let mut writer = DestWriter::with_connection(conn, WriterOptions::new(Conflict::Intercept));
    let mut report = ApplyReport::default();
    // `DEL temp` is confirmed: the temporary key does not exist now.
    let mut batch = ApplyBatch::new();
    batch.extend(start);
    writer.apply(&mut batch, &mut report).await?;
    // Then the pieces and the rename go out, and are lost on the way: the
    // temporary key still does not exist, as it would after the rename.
    let mut batch = ApplyBatch::new();
    batch.extend(pieces);
    batch.extend(finish);
    proxy.lose.store(true, Ordering::SeqCst);
    let e = writer.apply(&mut batch, &mut report).await.expect_err("the connection was cut");
    assert_eq!(e.class, ErrorClass::Retry, "{e}");
    proxy.lose.store(false, Ordering::SeqCst);
    writer.apply(&mut batch, &mut report).await?;
    assert_eq!(report.keys_written, 1, "the key is written once: {report:?}");
    let mut d = connect(&dst.addr()).await?;
    let list = q(&mut d, &[b"LRANGE", b"big", b"0", b"-1"]).await?.into_array().unwrap_or_default();
    assert_eq!(list.iter().map(bytes).collect::<Vec<_>>(), items, "every piece was sent again, then the rename");
    assert!(q(&mut d, &[b"PTTL", b"big"]).await?.as_int().unwrap_or(-1) > 500_000);
    assert_eq!(temp_keys(&dst.addr()).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_lost_window_of_units_is_resent_safely() -> TestResult {
    let (src, _) = source().await?;
    let dst = RedisServer::start(RedisOptions::new())?;
    let proxy = proxy(dst.addr()).await?;
    // Overwrite: every form is idempotent, so the whole copy may be re-sent.
    let rdb = rdb_path(&src);
    let mut conn = connect(&proxy.addr).await?;
    let caps = dest_info(&mut conn).await?;
    let mut opts = RewriteOptions::new(caps, Conflict::Overwrite);
    opts.big_key_bytes = 0;
    let mut rw = Rewriter::new(opts);
    let mut reader = RdbReader::with_options(
        File::open(rdb)?,
        ParserOptions { capture_payload: Some(1 << 20), ..ParserOptions::default() },
    );
    let mut batch = ApplyBatch::new();
    let mut out = Vec::new();
    while let Some(ev) = reader.next_event()? {
        rw.feed(ev, reader.offset(), now_ms(), &mut out)?;
        batch.extend(out.drain(..));
    }
    let mut writer = DestWriter::with_connection(conn, WriterOptions::new(Conflict::Overwrite));
    let mut report = ApplyReport::default();
    proxy.swallow.store(true, Ordering::SeqCst);
    let before = batch.len();
    assert!(writer.apply(&mut batch, &mut report).await.is_err());
    assert!(!batch.is_empty() && batch.len() <= before);
    proxy.swallow.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = writer.apply(&mut batch, &mut report).await {
        assert!(e.is_retryable() && Instant::now() < deadline, "{e}");
    }
    assert_equal(compare(&src.addr(), &dst.addr(), true).await?);
    Ok(())
}

// ---- measurement ----------------------------------------------------------

fn restore_batches(rdb: &Path, caps: DestCaps, batch_cmds: usize, mut sink: impl FnMut(ApplyBatch)) -> TestResult {
    let mut rw = Rewriter::new(RewriteOptions::new(caps, Conflict::Overwrite));
    let parse = ParserOptions { capture_payload: Some(1 << 20), ..ParserOptions::default() };
    let mut reader = RdbReader::with_options(File::open(rdb)?, parse);
    let (mut batch, mut out) = (ApplyBatch::new(), Vec::new());
    while let Some(ev) = reader.next_event()? {
        rw.feed(ev, reader.offset(), now_ms(), &mut out)?;
        batch.extend(out.drain(..));
        if batch.len() >= batch_cmds {
            sink(std::mem::take(&mut batch));
        }
    }
    sink(batch);
    Ok(())
}

/// Copies `rdb` into a fresh 7.0 with `window`-command windows; with
/// `overlap`, parsing runs on its own thread and hands batches over a
/// bounded channel (the engine's shape); without, only the writer is timed.
async fn timed_copy(rdb: &Path, window: usize, overlap: bool) -> Result<f64, Box<dyn Error>> {
    let dst = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&dst.addr()).await?;
    let caps = dest_info(&mut conn).await?;
    let mut wopts = WriterOptions::new(Conflict::Overwrite);
    wopts.window_cmds = window;
    let mut writer = DestWriter::with_connection(conn, wopts);
    let mut report = ApplyReport::default();
    let batch_cmds = window.max(1024);
    if !overlap {
        // The writer alone: batches built before the clock starts.
        let mut batches = Vec::new();
        restore_batches(rdb, caps, batch_cmds, |b| batches.push(b))?;
        let t = Instant::now();
        for mut batch in batches {
            writer.apply(&mut batch, &mut report).await?;
        }
        return Ok(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ApplyBatch>(4);
    let path = rdb.to_owned();
    let producer = std::thread::spawn(move || {
        restore_batches(&path, caps, batch_cmds, |b| {
            let _ = tx.blocking_send(b);
        })
        .map_err(|e| e.to_string())
    });
    while let Some(mut batch) = rx.recv().await {
        writer.apply(&mut batch, &mut report).await?;
    }
    producer.join().map_err(|_| "producer panicked")??;
    Ok(t.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `cargo test --release --test dest_writer -- --ignored --nocapture
/// window_sizes`: 200k RESTOREs with several window sizes, with and without
/// a separate parsing thread, against `redis-cli --pipe` of the same
/// commands (medians of 3 alternating runs).
#[tokio::test]
#[ignore = "measurement, run by hand"]
async fn window_sizes() -> TestResult {
    const KEYS: usize = 200_000;
    const RUNS: usize = 3;
    let src = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&src.addr()).await?;
    for start in (0..KEYS).step_by(10_000) {
        let cmds: Vec<Cmd> = (start..start + 10_000)
            .map(|i| Cmd::new("SET").arg(format!("key:{i:08}")).arg(format!("value-{i}-{}", "x".repeat(i % 200))))
            .collect();
        run(&mut conn, cmds).await?;
    }
    conn.query(&Cmd::new("SAVE")).await?;
    let rdb = rdb_path(&src);
    let caps = DestCaps::new(shardsync::dest::RedisVersion::new(7, 0, 0));

    // The same RESTOREs as a RESP file for `redis-cli --pipe`.
    let mut resp = Vec::new();
    restore_batches(&rdb, caps, 1024, |b| {
        for c in b.commands() {
            resp.extend_from_slice(format!("*{}\r\n", c.args().len()).as_bytes());
            for a in c.args().iter() {
                resp.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                resp.extend_from_slice(a);
                resp.extend_from_slice(b"\r\n");
            }
        }
    })?;
    let file = src.dir().join("restores.resp");
    std::fs::write(&file, &resp)?;

    let configs: Vec<(usize, bool)> = vec![(16, false), (128, false), (1024, false), (8192, false), (1024, true)];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); configs.len() + 2];
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut n = 0;
        restore_batches(&rdb, caps, 1024, |_| n += 1)?;
        times[0].push(t.elapsed().as_secs_f64());
        let dst = RedisServer::start(RedisOptions::new())?;
        let t = Instant::now();
        let status = std::process::Command::new("redis-cli")
            .args(["-p", &dst.port().to_string(), "--pipe"])
            .stdin(File::open(&file)?)
            .stdout(std::process::Stdio::null())
            .status()?;
        assert!(status.success());
        times[1].push(t.elapsed().as_secs_f64());
        for (i, (window, overlap)) in configs.iter().enumerate() {
            times[i + 2].push(timed_copy(&rdb, *window, *overlap).await?);
        }
    }
    let pipe = median(times[1].clone());
    println!("{KEYS} keys, medians of {RUNS} runs");
    println!("parse + rewrite, no I/O:        {:.3} s", median(times[0].clone()));
    println!("redis-cli --pipe of RESTOREs:  {pipe:.3} s");
    for (i, (window, overlap)) in configs.iter().enumerate() {
        let secs = median(times[i + 2].clone());
        let how = if *overlap { "with parsing " } else { "writer alone " };
        println!(
            "window {window:>5}, {how}: {secs:.3} s = {:.0} keys/s = {:.2}x --pipe",
            KEYS as f64 / secs,
            secs / pipe
        );
    }
    Ok(())
}

/// A probe of a master nothing is sent to (`DestWriter::probe`, which a
/// cluster destination runs on idle masters): a server that hangs costs
/// the probe's time limit, not a write, and is probed again only after
/// twice that; one that restarted without the checkpoints this writer
/// tracks is a `ROLLBACK_RESTART`, found before anything is written to it.
#[tokio::test]
async fn a_probe_catches_a_restart_and_does_not_wait_on_a_hung_server() -> TestResult {
    let mut server = RedisServer::start(RedisOptions::new())?;
    let mut w = DestWriter::connect(&server.addr(), WriterOptions::new(Conflict::Intercept)).await?;
    w.identify().await;
    w.track_checkpoints();
    w.track_checkpoint(Bytes::from_static(b"SHARDSYNC_HEARTBEAT:ckpt:s1:{06S}"), 10);
    w.probe(Duration::from_secs(5)).await?;

    server.signal("-STOP");
    let started = Instant::now();
    let hung = w.probe(Duration::from_millis(200)).await;
    let took = started.elapsed();
    server.signal("-CONT");
    assert!(hung.is_ok(), "a hung server is left to the next contact: {hung:?}");
    assert!(took < Duration::from_secs(2), "the probe took {took:?}");
    assert!(!w.probe_due(Duration::from_millis(1)), "the next probe waits twice the limit");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(w.probe_due(Duration::from_millis(1)));
    w.probe(Duration::from_secs(5)).await?;
    assert!(w.probe_due(Duration::from_millis(0)), "back to probing at every idle spell");

    // No persistence: it comes back empty, the tracked checkpoint gone.
    server.crash_and_restart(Duration::from_millis(100))?;
    let lost = w.probe(Duration::from_secs(5)).await.expect_err("the restart is caught");
    assert_eq!(lost.code, "ROLLBACK_RESTART", "{lost}");
    assert!(lost.to_string().contains("restarted (run_id"), "{lost}");
    // And nothing is written to it until a new full copy starts.
    let again = w.probe(Duration::from_secs(5)).await.expect_err("still lost");
    assert_eq!(again.code, "ROLLBACK_RESTART");
    Ok(())
}
