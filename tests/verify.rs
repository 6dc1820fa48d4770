//! `shardsync verify` against real servers: an equal pair is equal in every
//! mode; a pair with one difference of each kind (and big keys with one
//! changed element) has each named; a verify running while the sync
//! engine applies a live write load reports nothing that is not there, and
//! still finds what is; the exit codes of the contract.
//!
//! The pairs are built by writing the same commands to a source and the
//! destination (two sources merge into one destination, two DBs), so these
//! tests do not depend on the sync engine; only the live one runs it.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::task::{task_file, verify_binary};
use common::{RedisOptions, RedisServer};
use rand::{Rng, SeedableRng};
use shardsync::config::TaskConfig;
use shardsync::engine;
use shardsync::resp::{Cmd, ConnectOptions, Connection};
use shardsync::verify::{self, DiffKind, VerifyMode, VerifyOptions, VerifyProgress, VerifyReport};
use tokio_util::sync::CancellationToken;

const HEARTBEAT: &str = "SHARDSYNC_HEARTBEAT";

async fn connect(addr: &str) -> Connection {
    Connection::connect(addr, &ConnectOptions::default()).await.unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// Sends `cmds` in DB `db` of `addr`, pipelined; every reply must be a success.
async fn write(addr: &str, db: u32, cmds: &[Cmd]) {
    let mut c = connect(addr).await;
    c.query(&Cmd::new("SELECT").arg(db.to_string())).await.expect("select");
    for chunk in cmds.chunks(500) {
        let replies = c.pipeline(chunk).await.expect("pipeline");
        for (cmd, reply) in chunk.iter().zip(&replies) {
            assert!(!reply.is_error(), "{cmd:?} -> {reply}");
        }
    }
}

fn cmd(args: &[&str]) -> Cmd {
    Cmd::from_args(args.iter().copied())
}

/// Every type and encoding, TTLs, and keys bigger than verify reads whole
/// (`small_string_bytes` 8 KiB, `small_elements` 128), all named `<p>:…`.
fn dataset(p: &str) -> Vec<Cmd> {
    let k = |name: &str| format!("{p}:{name}");
    let mut cmds = vec![
        cmd(&["SET", &k("str"), "hello world"]),
        Cmd::new("SET").arg(k("bin")).arg(b"\x00\xff\r\n"),
        cmd(&["SET", &k("empty"), ""]),
        cmd(&["SET", &k("int"), "12345"]),
        cmd(&["SET", &k("ttl"), "x", "PX", "600000"]),
        cmd(&["RPUSH", &k("list"), "a", "b", "c", "a"]),
        cmd(&["SADD", &k("intset"), "1", "2", "3", "100"]),
        cmd(&["SADD", &k("set"), "x", "y", "z"]),
        cmd(&["ZADD", &k("zset"), "1.5", "a", "-inf", "b", "0.1", "c", "3", "d"]),
        cmd(&["HSET", &k("hash"), "f1", "v1", "f2", "v2", "f3", ""]),
        cmd(&["HSET", &k("hashttl"), "f", "v"]),
        cmd(&["PEXPIRE", &k("hashttl"), "900000"]),
        cmd(&["XADD", &k("stream"), "1-1", "f", "v"]),
        cmd(&["XADD", &k("stream"), "2-1", "g", "w", "h", "x"]),
        cmd(&["XGROUP", "CREATE", &k("stream"), "grp", "1-1"]),
        cmd(&["SET", &k("bigstr"), &"0123456789".repeat(4000)]),
    ];
    for chunk in (0..3000).collect::<Vec<_>>().chunks(500) {
        let mut c = Cmd::new("HSET").arg(k("bighash"));
        for i in chunk {
            c = c.arg(format!("f{i}")).arg(format!("value-{i}"));
        }
        cmds.push(c);
    }
    let mut list = Cmd::new("RPUSH").arg(k("biglist"));
    let mut set = Cmd::new("SADD").arg(k("bigset"));
    let mut zset = Cmd::new("ZADD").arg(k("bigzset"));
    for i in 0..1500 {
        list = list.arg(format!("e{i}"));
    }
    for i in 0..1200 {
        set = set.arg(format!("m{i}"));
    }
    for i in 0..2000 {
        zset = zset.arg(format!("{}", i as f64 / 4.0)).arg(format!("m{i}"));
    }
    cmds.extend([list, set, zset]);
    for i in 0..300 {
        cmds.push(cmd(&["SET", &k(&format!("k:{i}")), &format!("value {i}")]));
        if i % 10 == 0 {
            cmds.push(cmd(&["PEXPIRE", &k(&format!("k:{i}")), "3600000"]));
        }
    }
    cmds
}

/// Keys `dataset` creates.
const DATASET_KEYS: u64 = 13 + 4 + 300;

/// Runs the library call with default options but `mode`.
async fn verify_lib(task: &Path, mode: VerifyMode) -> (VerifyReport, VerifyProgress) {
    let task = TaskConfig::load(task).expect("task");
    let (tx, rx) = tokio::sync::watch::channel(VerifyProgress::default());
    let report = verify::run(&task, &VerifyOptions::with_mode(mode), tx, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("verify --mode {mode}: {e}"));
    let progress = rx.borrow().clone();
    (report, progress)
}

fn kinds(r: &VerifyReport) -> BTreeSet<(String, u32, String, DiffKind)> {
    r.differences
        .iter()
        .map(|d| (d.shard.clone(), d.db, String::from_utf8_lossy(&d.key).into_owned(), d.kind))
        .collect()
}

/// The last line of `--json` output: the report record.
fn json_report(stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no output: {stdout}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equal_pair_is_equal_in_every_mode() {
    // Two sources (one a Redis 6.0) merged into one destination, two DBs.
    let s1 = RedisServer::start(RedisOptions::new()).expect("s1");
    let s2 = RedisServer::start(RedisOptions::redis6().expect("redis 6.0.9 (run scripts/deps.sh)")).expect("s2");
    let dest = RedisServer::start(RedisOptions::new()).expect("dest");
    for (src, name) in [(&s1, "a"), (&s2, "b")] {
        for db in [0, 1] {
            let cmds = dataset(&format!("{name}{db}"));
            write(&src.addr(), db, &cmds).await;
            write(&dest.addr(), db, &cmds).await;
        }
        // The tool's own keys: never compared, never counted.
        write(&src.addr(), 0, &[cmd(&["SET", HEARTBEAT, "1700000000000"])]).await;
    }
    write(&dest.addr(), 0, &[cmd(&["SET", &format!("{HEARTBEAT}:ckpt:server1"), "{}"])]).await;
    write(&dest.addr(), 0, &[cmd(&["SET", &format!("{HEARTBEAT}:ckpt:server2"), "{}"])]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let task = task_file(dir.path(), &[("server1", s1.addr()), ("server2", s2.addr())], &dest.addr(), "");

    let (counts, _) = verify_lib(&task, VerifyMode::Counts).await;
    assert!(counts.is_equal(), "{counts:#?}");
    let shape: Vec<(u32, u64, u64)> = counts.counts.iter().map(|c| (c.db, c.source_total, c.destination)).collect();
    assert_eq!(shape, vec![(0, 2 * DATASET_KEYS, 2 * DATASET_KEYS), (1, 2 * DATASET_KEYS, 2 * DATASET_KEYS)]);
    assert_eq!(
        counts.counts[0].sources,
        vec![("server1".into(), 0, DATASET_KEYS), ("server2".into(), 0, DATASET_KEYS)]
    );
    assert_eq!(counts.compared, 0, "counts mode reads no key");

    for mode in [VerifyMode::Keys, VerifyMode::Full] {
        let (r, progress) = verify_lib(&task, mode).await;
        assert!(r.is_equal(), "{mode}: {r:#?}");
        assert_eq!(r.compared, 4 * DATASET_KEYS, "{mode}: every source key but the heartbeat");
        assert_eq!((r.differences_total, r.unsettled_total), (0, 0));
        assert_eq!(
            (progress.phase.as_str(), progress.compared, progress.total),
            ("done", 4 * DATASET_KEYS, 4 * DATASET_KEYS)
        );
    }

    for mode in ["counts", "keys", "full"] {
        let (code, out, err) = verify_binary(&task, &["--mode", mode]);
        assert_eq!(code, 0, "--mode {mode}:\n{out}\n{err}");
        assert!(out.contains("result: EQUAL"), "{out}");
    }
    let (code, out, err) = verify_binary(&task, &["--mode", "full", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let report = json_report(&out);
    assert_eq!((report["event"].as_str(), report["equal"].as_bool()), (Some("report"), Some(true)), "{report}");
    assert_eq!(report["compared"], 4 * DATASET_KEYS);
    assert_eq!(report["counts"][1]["sources"][1]["shard"], "server2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_difference_is_named_with_its_kind() {
    // A Redis 6.0 destination: no SMISMEMBER/ZMSCORE, the pipelined
    // lookups are used for the big set and zset.
    let s1 = RedisServer::start(RedisOptions::new()).expect("s1");
    let s2 = RedisServer::start(RedisOptions::new()).expect("s2");
    let dest = RedisServer::start(RedisOptions::redis6().expect("redis 6.0.9 (run scripts/deps.sh)")).expect("dest");
    for (src, p, db) in [(&s1, "a0", 0), (&s2, "b1", 1)] {
        let cmds = dataset(p);
        write(&src.addr(), db, &cmds).await;
        write(&dest.addr(), db, &cmds).await;
    }
    write(
        &dest.addr(),
        0,
        &[
            cmd(&["DEL", "a0:str"]),
            cmd(&["SET", "a0:int", "12346"]),
            cmd(&["PEXPIRE", "a0:ttl", "300000"]),
            cmd(&["DEL", "a0:hash"]),
            cmd(&["SET", "a0:hash", "now a string"]),
            cmd(&["HSET", "a0:bighash", "f2500", "changed"]),
            cmd(&["SETRANGE", "a0:bigstr", "30000", "Z"]),
        ],
    )
    .await;
    write(
        &dest.addr(),
        1,
        &[
            cmd(&["LSET", "b1:biglist", "1200", "changed"]),
            cmd(&["ZADD", "b1:bigzset", "42", "m1500"]),
            cmd(&["SREM", "b1:bigset", "m700"]),
            cmd(&["SADD", "b1:bigset", "intruder"]),
            cmd(&["PERSIST", "b1:hashttl"]),
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let task = task_file(dir.path(), &[("server1", s1.addr()), ("server2", s2.addr())], &dest.addr(), "");

    let (full, _) = verify_lib(&task, VerifyMode::Full).await;
    let d = |shard: &str, db: u32, key: &str, kind: DiffKind| (shard.to_string(), db, key.to_string(), kind);
    let expected: BTreeSet<_> = [
        d("server1", 0, "a0:str", DiffKind::Missing),
        d("server1", 0, "a0:int", DiffKind::Value),
        d("server1", 0, "a0:ttl", DiffKind::Ttl),
        d("server1", 0, "a0:hash", DiffKind::Type),
        d("server1", 0, "a0:bighash", DiffKind::Value),
        d("server1", 0, "a0:bigstr", DiffKind::Value),
        d("server2", 1, "b1:biglist", DiffKind::Value),
        d("server2", 1, "b1:bigzset", DiffKind::Value),
        d("server2", 1, "b1:bigset", DiffKind::Value),
        d("server2", 1, "b1:hashttl", DiffKind::Ttl),
    ]
    .into();
    assert_eq!(kinds(&full), expected, "{full:#?}");
    assert!(!full.is_equal());
    assert_eq!((full.differences_total, full.unsettled_total, full.compared), (10, 0, 2 * DATASET_KEYS));
    let detail = |key: &str| {
        full.differences.iter().find(|d| &d.key[..] == key.as_bytes()).map(|d| d.detail.clone()).unwrap_or_default()
    };
    assert_eq!(detail("a0:hash"), "type: source hash, destination string");
    assert_eq!(detail("a0:str"), "missing: source has a string, destination has no such key");
    assert!(
        detail("a0:int").starts_with(r#"value: first difference at byte 4: source "5", destination "6""#),
        "{}",
        detail("a0:int")
    );
    let ttl = detail("a0:ttl");
    assert!(ttl.starts_with("ttl: source 59") && ttl.contains("destination 29"), "{ttl}");
    assert!(
        detail("a0:bighash").contains(r#"field "f2500": source "value-2500", destination "changed""#),
        "{}",
        detail("a0:bighash")
    );
    assert!(detail("a0:bigstr").contains("first difference at byte 30000"), "{}", detail("a0:bigstr"));
    assert!(
        detail("b1:biglist").contains(r#"element 1200 differs: source "e1200", destination "changed""#),
        "{}",
        detail("b1:biglist")
    );
    assert!(
        detail("b1:bigzset").contains(r#"member "m1500": source score 375, destination score 42"#),
        "{}",
        detail("b1:bigzset")
    );
    assert!(detail("b1:bigset").contains(r#"member "m700" only on the source"#), "{}", detail("b1:bigset"));
    assert!(detail("b1:hashttl").ends_with("destination none"), "{}", detail("b1:hashttl"));

    // Keys mode sees what changes existence and type only.
    let (keys, _) = verify_lib(&task, VerifyMode::Keys).await;
    let expected_keys: BTreeSet<_> =
        [d("server1", 0, "a0:str", DiffKind::Missing), d("server1", 0, "a0:hash", DiffKind::Type)].into();
    assert_eq!(kinds(&keys), expected_keys);

    // Counts mode: the missing key, in server1's DB.
    let (counts, _) = verify_lib(&task, VerifyMode::Counts).await;
    assert!(!counts.is_equal());
    let shape: Vec<(u32, u64, u64)> = counts.counts.iter().map(|c| (c.db, c.source_total, c.destination)).collect();
    assert_eq!(shape, vec![(0, DATASET_KEYS, DATASET_KEYS - 1), (1, DATASET_KEYS, DATASET_KEYS)]);

    let (code, out, err) = verify_binary(&task, &["--mode", "full"]);
    assert_eq!(code, 1, "{out}\n{err}");
    for line in [
        r#"db0 "a0:str" missing: source has a string, destination has no such key [server1]"#,
        r#"db0 "a0:hash" type: source hash, destination string [server1]"#,
        "result: DIFFERENT: 10 keys differ",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    let (code, out, _) = verify_binary(&task, &["--mode", "counts"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("destination has 1 fewer") && out.contains("result: DIFFERENT key counts"), "{out}");
    let (code, out, _) = verify_binary(&task, &["--mode", "keys", "--json"]);
    assert_eq!(code, 1, "{out}");
    let report = json_report(&out);
    assert_eq!((report["equal"].as_bool(), report["differences_total"].as_u64()), (Some(false), Some(2)));
    assert_eq!(report["differences"][0]["key"], "a0:hash");
    assert_eq!(report["differences"][0]["kind"], "type");
}

/// Writes to `live:<type>:<n>` keys, `rate` a second in total, until `stop`.
fn start_writer(
    addr: String,
    keys: u64,
    rate: u64,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = connect(&addr).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let tick = Duration::from_millis(10);
        let per_tick = (rate / 100).max(1);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let cmds: Vec<Cmd> = (0..per_tick)
                .map(|_| {
                    let n = rng.gen_range(0..keys);
                    let v = rng.gen::<u32>().to_string();
                    match rng.gen_range(0..4) {
                        0 => cmd(&["SET", &format!("live:s:{n}"), &v]),
                        1 => cmd(&["INCR", &format!("live:n:{n}")]),
                        2 => cmd(&["LPUSH", &format!("live:l:{n}"), &v]),
                        _ => cmd(&["HSET", &format!("live:h:{n}"), &format!("f{}", v.len()), &v]),
                    }
                })
                .collect();
            let replies = c.pipeline(&cmds).await.expect("writer");
            assert!(replies.iter().all(|r| !r.is_error()), "{replies:?}");
            written.fetch_add(per_tick, Ordering::Relaxed);
            tokio::time::sleep(tick.saturating_sub(started.elapsed())).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_fooled_by_writes_during_the_run() {
    let s1 = RedisServer::start(RedisOptions::new()).expect("s1");
    let dest = RedisServer::start(RedisOptions::new()).expect("dest");
    write(&s1.addr(), 0, &dataset("a0")).await;
    let filler: Vec<Cmd> = (0..5000).map(|i| cmd(&["SET", &format!("filler:{i}"), &format!("{i:0>64}")])).collect();
    write(&s1.addr(), 0, &filler).await;
    let dir = tempfile::tempdir().expect("tmp");
    let task = task_file(dir.path(), &[("server1", s1.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&task).expect("task"), CancellationToken::new());
    common::wait::synced(&handle, Duration::from_secs(60)).await;

    // 4,000 live keys, 2,000 writes a second: each key is written every
    // two seconds on average, while verify reads everything several times.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = start_writer(s1.addr(), 1000, 2000, stop.clone(), written.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // A lag spike: the shard stops applying for a moment, so verify starts
    // on a destination hundreds of writes behind, which the sync then
    // catches up while verify runs.
    handle.commands.send(engine::Command::PauseShard("server1".into())).await.expect("pause");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let run = {
        let task = TaskConfig::load(&task).expect("task");
        let (tx, mut rx) = tokio::sync::watch::channel(VerifyProgress::default());
        let phases = tokio::spawn(async move {
            let mut seen = Vec::new();
            while rx.changed().await.is_ok() {
                seen.push(rx.borrow_and_update().clone());
            }
            seen
        });
        let run = tokio::spawn(async move {
            verify::run(&task, &VerifyOptions::with_mode(VerifyMode::Full), tx, CancellationToken::new()).await
        });
        (run, phases)
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    handle.commands.send(engine::Command::ResumeShard("server1".into())).await.expect("resume");
    let report = run.0.await.expect("join").expect("verify");
    let progress = run.1.await.expect("join");
    let during = written.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert!(during > 2000, "the writer ran during the verify ({during} writes)");
    let suspects = progress.iter().map(|p| p.differences).max().unwrap_or(0);
    assert!(
        suspects > 0 && progress.iter().any(|p| p.phase.contains("re-check")),
        "the first pass saw keys behind, the re-checks cleared them: {progress:#?}"
    );
    assert_eq!(report.differences_total, 0, "false differences: {:#?}", report.differences);
    // Only a key written at every re-check may stay unsettled: a live one.
    assert!(report.unsettled.iter().all(|d| d.key.starts_with(b"live:")), "{:#?}", report.unsettled);
    assert!(report.unsettled_total <= 3, "{:#?}", report.unsettled);
    assert!(report.compared >= DATASET_KEYS + 5000, "{report:#?}");

    // Still live, but a real difference: found, and nothing else.
    common::wait::synced(&handle, Duration::from_secs(60)).await;
    write(&dest.addr(), 0, &[cmd(&["SET", "filler:42", "tampered"])]).await;
    let (report, _) = verify_lib(&task, VerifyMode::Full).await;
    let keys: Vec<_> =
        report.differences.iter().map(|d| (String::from_utf8_lossy(&d.key).into_owned(), d.kind)).collect();
    assert_eq!(keys, vec![("filler:42".to_string(), DiffKind::Value)], "{report:#?}");
    handle.stop().await;
}

#[test]
fn exit_codes_for_a_bad_task_file_and_an_unreachable_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"t\"\nnot_a_key = 1\n").expect("write");
    let (code, _, err) = verify_binary(&bad, &["--mode", "keys"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not_a_key"), "{err}");

    let port = common::free_port().expect("port");
    let dest = RedisServer::start(RedisOptions::new()).expect("dest");
    let task = task_file(dir.path(), &[("server1", format!("127.0.0.1:{port}"))], &dest.addr(), "");
    let (code, out, err) = verify_binary(&task, &["--mode", "full"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains(&format!("cannot connect to source server1 (127.0.0.1:{port})")), "{err}");
}
