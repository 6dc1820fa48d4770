//! Keys that stress the copy, against real servers: big keys (the binary's
//! memory stays bounded, a reader never sees half a key, a second copy with
//! `overwrite` duplicates nothing), the TTL gap (a key whose TTL passes
//! between the snapshot and its application, then is PERSISTed in the
//! stream) and cross-shard collisions (the alert names both shards).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::compare;
use common::wait::synced as wait_synced;
use common::RedisServer;
use shardsync::config::TaskConfig;
use shardsync::engine;
use shardsync::engine::collision;
use shardsync::resp::{Cmd, Connection, Value};
use tokio_util::sync::CancellationToken;

const HEARTBEAT: &[u8] = b"SHARDSYNC_HEARTBEAT";

fn task_file(dir: &Path, file: &str, sources: &[(&str, String)], dest: &str, sync: &str) -> PathBuf {
    let state = dir.join(format!("{file}.state"));
    let mut t = format!("name = \"t\"\nstate_dir = \"{}\"\n", state.display());
    for (name, addr) in sources {
        t.push_str(&format!("\n[[source]]\nname = \"{name}\"\naddr = \"{addr}\"\n"));
    }
    t.push_str(&format!("\n[destination]\naddr = \"{dest}\"\n\n[sync]\n{sync}"));
    let p = dir.join(file);
    fs::write(&p, t).expect("task file");
    p
}

async fn cmd(c: &mut Connection, args: &[&str]) -> Value {
    let v = c.send(&Cmd::from_args(args.iter().copied())).await.unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(!v.is_error(), "{args:?} -> {v}");
    v
}

async fn pipeline_ok(c: &mut Connection, cmds: &[Cmd]) {
    let replies = c.pipeline(cmds).await.expect("pipeline");
    if let Some(e) = replies.iter().find(|r| r.is_error()) {
        panic!("filling the source: {e}");
    }
}

fn info_field(server: &RedisServer, section: &str, field: &str) -> u64 {
    let info = server.redis_cli(&["INFO", section]).expect("info");
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

// ---------------------------------------------------------------- big keys

const LIST: &str = "big:list";
const HASH: &str = "big:hash";
const ZSET: &str = "big:zset";
const STRING: &str = "big:string";
const LIST_LEN: usize = 2_000_000;
const HASH_LEN: usize = 1_000_000;
const ZSET_LEN: usize = 500_000;
const STRING_LEN: usize = 200 << 20;
/// Well above what a healthy streaming copy needs, far below the ~450 MB
/// of values the source holds: a copy that buffers a key whole fails.
const PEAK_RSS_LIMIT_KB: u64 = 200 * 1024;
/// Elements per filling command, and commands per pipeline round.
const ARGS_PER_CMD: usize = 1000;
const CMDS_PER_ROUND: usize = 100;

/// The four keys and the command that measures each.
const SIZES: [(&str, &str, usize); 4] =
    [("LLEN", LIST, LIST_LEN), ("HLEN", HASH, HASH_LEN), ("ZCARD", ZSET, ZSET_LEN), ("STRLEN", STRING, STRING_LEN)];

/// xorshift64: cheap, and its bytes do not compress, so the RDB carries the
/// string as 200 MB of raw bytes, not a few kB of LZF.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Builds the elements with many arguments per command, a round of
/// commands per pipeline: seconds, where one command per element would take
/// minutes.
async fn fill_collection(c: &mut Connection, len: usize, mut command: impl FnMut(usize, usize) -> Cmd) {
    let mut round = Vec::with_capacity(CMDS_PER_ROUND);
    for start in (0..len).step_by(ARGS_PER_CMD) {
        round.push(command(start, (start + ARGS_PER_CMD).min(len)));
        if round.len() == CMDS_PER_ROUND {
            pipeline_ok(c, &round).await;
            round.clear();
        }
    }
    pipeline_ok(c, &round).await;
}

async fn fill_big_keys(c: &mut Connection) {
    fill_collection(c, LIST_LEN, |from, to| {
        (from..to).fold(Cmd::new("RPUSH").arg(LIST), |cmd, i| cmd.arg(format!("{i:08}")))
    })
    .await;
    fill_collection(c, HASH_LEN, |from, to| {
        (from..to).fold(Cmd::new("HSET").arg(HASH), |cmd, i| cmd.arg(format!("f{i:07}")).arg(format!("v{i:07}")))
    })
    .await;
    // 20-byte members: the zset's elements pass the 16 MB big-key buffer,
    // so it is built under a temporary name like the others, not restored.
    fill_collection(c, ZSET_LEN, |from, to| {
        (from..to).fold(Cmd::new("ZADD").arg(ZSET), |cmd, i| {
            cmd.arg(format!("{}", i as f64 * 0.25 - 1000.0)).arg(format!("zmember-{i:012}"))
        })
    })
    .await;
    let string = noise(0x5eed, STRING_LEN);
    for round in string.chunks(8 << 20) {
        let cmds: Vec<Cmd> = round.chunks(1 << 20).map(|piece| Cmd::new("APPEND").arg(STRING).arg(piece)).collect();
        pipeline_ok(c, &cmds).await;
    }
    // A TTL on a built key: it must arrive with the rename.
    cmd(c, &["EXPIRE", HASH, "36000"]).await;
    for i in 0..100 {
        cmd(c, &["SET", &format!("small:{i}"), &format!("{i}")]).await;
    }
}

/// What the reader saw of the four keys on the destination.
#[derive(Debug, Default)]
struct Observed {
    polls: u64,
    /// Partial sizes, errors, and absences while they were not allowed.
    bad: Vec<String>,
}

type Shared = Arc<Mutex<Observed>>;

/// Polls the four sizes on the destination every few ms until `stop`.
/// Every observation must be 0 (absent) or the full size; while
/// `must_exist` is set, absent is wrong too.
async fn watch_sizes(addr: String, seen: Shared, stop: Arc<AtomicBool>, must_exist: Arc<AtomicBool>) {
    let mut c = compare::connect(&addr).await;
    let cmds: Vec<Cmd> = SIZES.iter().map(|(c, k, _)| Cmd::new(c).arg(k)).collect();
    let start = Instant::now();
    loop {
        // Read before polling, so the last poll follows the stop.
        let last = stop.load(Ordering::SeqCst);
        let must = must_exist.load(Ordering::SeqCst);
        let replies = match c.pipeline(&cmds).await {
            Ok(r) => r,
            Err(e) => {
                seen.lock().expect("lock").bad.push(format!("polling the destination: {e}"));
                return;
            }
        };
        {
            let mut seen = seen.lock().expect("lock");
            seen.polls += 1;
            for ((command, key, full), reply) in SIZES.iter().zip(&replies) {
                let problem = match reply.as_int() {
                    Some(n) if n as usize == *full => None,
                    Some(0) if must => Some("absent while a copy of it already existed".to_owned()),
                    Some(0) => None,
                    Some(n) => Some(format!("{n} of {full}: a partial key")),
                    None => Some(format!("reply {reply}")),
                };
                if let Some(p) = problem {
                    if seen.bad.len() < 20 {
                        seen.bad.push(format!("{command} {key} at {:?}: {p}", start.elapsed()));
                    }
                }
            }
        }
        if last {
            return;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

fn check_reader(what: &str, seen: &Shared) {
    // Copied out: a failed assertion must not poison the reader's lock.
    let (polls, bad) = {
        let seen = seen.lock().expect("lock");
        (seen.polls, seen.bad.clone())
    };
    assert!(
        bad.is_empty(),
        "{what}: the destination showed keys half-written or missing ({polls} polls):\n{}",
        bad.join("\n")
    );
}

/// A finished `shardsync run`: exit code, output, peak RSS.
struct Run {
    code: i32,
    output: String,
    peak_kb: u64,
    took: Duration,
}

fn status_kb(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs the real binary until it exits, sampling its peak RSS. Output goes
/// to a file: an unread pipe would stall a long run once it fills.
async fn run_measured(task: &Path, limit: Duration) -> Run {
    let log = task.with_extension("log");
    let out = fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(["run", "--config"])
        .arg(task)
        .args(["--headless", "--json", "--until-synced"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn shardsync");
    let status_path = format!("/proc/{}/status", child.id());
    let start = Instant::now();
    let mut peak_kb = 0;
    let code = loop {
        // VmHWM is the kernel's own high-water mark, so 50 ms sampling
        // misses nothing but the last 50 ms.
        if let Ok(s) = fs::read_to_string(&status_path) {
            peak_kb = peak_kb.max(status_kb(&s, "VmHWM")).max(status_kb(&s, "VmRSS"));
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shardsync did not finish in {limit:?}:\n{}", fs::read_to_string(&log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Run { code, output: fs::read_to_string(&log).unwrap_or_default(), peak_kb, took: start.elapsed() }
}

fn check_run(what: &str, run: &Run) {
    eprintln!("{what}: {:?}, peak RSS {} MB", run.took, run.peak_kb / 1024);
    assert_eq!(run.code, 0, "{what}: exit code\n{}", run.output);
    assert!(run.output.contains(r#"{"event":"synced"}"#), "{what}: no synced event\n{}", run.output);
    assert!(
        run.peak_kb > 0 && run.peak_kb < PEAK_RSS_LIMIT_KB,
        "{what}: peak RSS {} MB, limit {} MB (0: never sampled)",
        run.peak_kb / 1024,
        PEAK_RSS_LIMIT_KB / 1024
    );
}

/// Elements (or string bytes, times 512) per page of a big-key comparison.
const PAGE: usize = 10_000;

async fn query(c: &mut Connection, args: &[&[u8]]) -> Value {
    let v = c.send(&Cmd::from_args(args.iter().copied())).await.expect("query");
    assert!(!v.is_error(), "{:?} -> {v}", String::from_utf8_lossy(args[0]));
    v
}

fn byte_list(v: Value) -> Vec<Vec<u8>> {
    v.into_array().unwrap_or_default().into_iter().map(|x| x.into_bytes().unwrap_or_default().to_vec()).collect()
}

/// One big key, source vs destination, in pages: `compare::content` would
/// hold a 2M-element reply whole and, in a debug build, take most of a
/// minute for the four keys.
async fn compare_big(s: &mut Connection, d: &mut Connection, key: &str) -> Option<String> {
    let k = key.as_bytes();
    for what in [&b"TYPE"[..], b"PEXPIRETIME"] {
        let (sv, dv) = (query(s, &[what, k]).await, query(d, &[what, k]).await);
        if sv != dv {
            return Some(format!("{key}: {} {sv} vs {dv}", String::from_utf8_lossy(what)));
        }
    }
    let kind = query(s, &[b"TYPE", k]).await.as_str().unwrap_or_default().to_owned();
    let size = match kind.as_str() {
        "list" => &b"LLEN"[..],
        "hash" => b"HLEN",
        "zset" => b"ZCARD",
        "string" => b"STRLEN",
        other => return Some(format!("{key}: unexpected type {other}")),
    };
    let (sn, dn) = (query(s, &[size, k]).await.as_int(), query(d, &[size, k]).await.as_int());
    if sn != dn {
        return Some(format!("{key}: size {sn:?} vs {dn:?}"));
    }
    let n = sn.unwrap_or(0) as usize;
    if kind == "hash" {
        // Field order differs between servers: every source field, fetched
        // by name on the destination; with equal sizes that is equality.
        let mut cursor = b"0".to_vec();
        loop {
            let count = PAGE.to_string();
            let reply = query(s, &[b"HSCAN", k, &cursor, b"COUNT", count.as_bytes()]).await;
            let mut parts = reply.into_array().unwrap_or_default().into_iter();
            cursor = parts.next().and_then(Value::into_bytes).unwrap_or_default().to_vec();
            let flat = byte_list(parts.next().unwrap_or(Value::Array(None)));
            let (fields, values): (Vec<&[u8]>, Vec<&[u8]>) =
                flat.chunks(2).map(|p| (p[0].as_slice(), p[1].as_slice())).unzip();
            if !fields.is_empty() {
                let hmget: Vec<&[u8]> = [&b"HMGET"[..], k].into_iter().chain(fields.iter().copied()).collect();
                let got = byte_list(query(d, &hmget).await);
                if let Some(i) = (0..fields.len()).find(|&i| got[i] != values[i]) {
                    return Some(format!("{key}: field {}", String::from_utf8_lossy(fields[i])));
                }
            }
            if cursor == b"0" {
                return None;
            }
        }
    }
    let step = if kind == "string" { PAGE * 512 } else { PAGE };
    for from in (0..n).step_by(step) {
        let (a, b) = (from.to_string(), (from + step - 1).to_string());
        let page: Vec<&[u8]> = match kind.as_str() {
            "list" => vec![b"LRANGE", k, a.as_bytes(), b.as_bytes()],
            "zset" => vec![b"ZRANGE", k, a.as_bytes(), b.as_bytes(), b"WITHSCORES"],
            _ => vec![b"GETRANGE", k, a.as_bytes(), b.as_bytes()],
        };
        if query(s, &page).await != query(d, &page).await {
            return Some(format!("{key}: differs in elements {a}..={b}"));
        }
    }
    None
}

/// `compare::diff` for one source, with the big keys compared in pages.
async fn diff_with_big_keys(src: &RedisServer, dest: &RedisServer) -> Vec<String> {
    let started = Instant::now();
    let (mut s, mut d) = (compare::connect(&src.addr()).await, compare::connect(&dest.addr()).await);
    let mut out = Vec::new();
    let mut cursor = b"0".to_vec();
    let mut keys = 0u64;
    loop {
        let reply = query(&mut s, &[b"SCAN", &cursor, b"COUNT", b"1000"]).await;
        let mut parts = reply.into_array().unwrap_or_default().into_iter();
        cursor = parts.next().and_then(Value::into_bytes).unwrap_or_default().to_vec();
        for key in byte_list(parts.next().unwrap_or(Value::Array(None))) {
            if key == HEARTBEAT {
                continue;
            }
            keys += 1;
            let name = String::from_utf8_lossy(&key).into_owned();
            if SIZES.iter().any(|(_, k, _)| *k == name) {
                out.extend(compare_big(&mut s, &mut d, &name).await);
                continue;
            }
            let (st, sv, sttl) = compare::content(&mut s, &key).await;
            let (dt, dv, dttl) = compare::content(&mut d, &key).await;
            if (st, sv) != (dt, dv) || (sttl < 0) != (dttl < 0) || (sttl - dttl).abs() > 1500 {
                out.push(format!("{name}: differs"));
            }
        }
        if cursor == b"0" {
            break;
        }
    }
    // The checkpoint keys are the tool's own, not copies.
    let ckpt = format!("{}:ckpt:*", String::from_utf8_lossy(HEARTBEAT));
    let own = byte_list(query(&mut d, &[b"KEYS", ckpt.as_bytes()]).await).len() as u64;
    let held = query(&mut d, &[b"DBSIZE"]).await.as_int().unwrap_or(0) as u64 - own;
    if held != keys {
        out.push(format!("the destination holds {held} keys, the source {keys}"));
    }
    eprintln!("comparison: {keys} keys in {:?}", started.elapsed());
    out
}

async fn assert_no_diff(what: &str, src: &RedisServer, dest: &RedisServer) {
    let diffs = diff_with_big_keys(src, dest).await;
    assert!(diffs.is_empty(), "{what}: {} differences:\n{}", diffs.len(), diffs.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_keys_arrive_whole_with_bounded_memory_and_are_not_duplicated_by_overwrite() {
    let src = RedisServer::with_config(&["repl-diskless-sync yes", "repl-diskless-sync-delay 0"]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("destination");
    let mut s = compare::connect(&src.addr()).await;
    let t = Instant::now();
    fill_big_keys(&mut s).await;
    eprintln!("source filled in {:?}", t.elapsed());
    for (command, key, full) in SIZES {
        assert_eq!(cmd(&mut s, &[command, key]).await.as_int(), Some(full as i64), "{command} {key} on the source");
    }

    let seen = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let must_exist = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(watch_sizes(dest.addr(), seen.clone(), stop.clone(), must_exist.clone()));

    let dir = tempfile::tempdir().expect("tmp");
    let first =
        task_file(dir.path(), "first.toml", &[("server1", src.addr())], &dest.addr(), "conflict = \"intercept\"\n");
    let run = run_measured(&first, Duration::from_secs(180)).await;
    check_reader("first copy (intercept)", &seen);
    check_run("first copy (intercept)", &run);

    // The second copy must replace every key in one step: from here on an
    // absent key is as wrong as a partial one.
    must_exist.store(true, Ordering::SeqCst);
    for (command, key, full) in SIZES {
        assert_eq!(dest.redis_cli(&[command, key]).expect("size").trim(), full.to_string(), "{command} {key}");
    }
    assert_no_diff("first copy", &src, &dest).await;

    // Another shard name, as well as a fresh state dir: the task must do a
    // full copy, not resume from the first task's checkpoint.
    let full_syncs = info_field(&src, "stats", "sync_full");
    let second =
        task_file(dir.path(), "second.toml", &[("again", src.addr())], &dest.addr(), "conflict = \"overwrite\"\n");
    let run = run_measured(&second, Duration::from_secs(180)).await;
    stop.store(true, Ordering::SeqCst);
    reader.await.expect("reader");
    check_reader("second copy (overwrite)", &seen);
    check_run("second copy (overwrite)", &run);
    let polls = seen.lock().expect("lock").polls;
    assert!(polls > 100, "the reader polled only {polls} times");
    assert_eq!(info_field(&src, "stats", "sync_full"), full_syncs + 1, "the second task made a full copy");
    assert_eq!(dest.redis_cli(&["LLEN", LIST]).expect("llen").trim(), LIST_LEN.to_string(), "list duplicated");
    assert_no_diff("second copy", &src, &dest).await;
}

// ---------------------------------------------------------------- TTL gap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expiring_between_snapshot_and_apply_survives_a_persist_in_the_stream() {
    // Diskless without delay: the master forks at once, so the snapshot is
    // taken while `ttlgap` still has most of its TTL.
    let src = RedisServer::with_config(&["repl-diskless-sync yes", "repl-diskless-sync-delay 0"]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("destination");
    let mut s = compare::connect(&src.addr()).await;
    for round in 0..4 {
        let mut mset = Cmd::new("MSET");
        for i in round * 500..(round + 1) * 500 {
            mset = mset.arg(format!("k:{i}")).arg(format!("value {i}"));
        }
        pipeline_ok(&mut s, &[mset]).await;
    }
    cmd(&mut s, &["EXPIRE", "k:7", "36000"]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path =
        task_file(dir.path(), "task.toml", &[("server1", src.addr())], &dest.addr(), "conflict = \"intercept\"\n");
    let task = TaskConfig::load(&path).expect("task");
    let precheck = shardsync::precheck::run(&task, None).await;
    assert!(precheck.passed(), "{precheck:#?}");

    cmd(&mut s, &["SET", "ttlgap", "gap", "PX", "2000"]).await;
    let set_at = Instant::now();
    let handle = engine::spawn(task, CancellationToken::new());
    handle.commands.send(engine::Command::PauseShard("server1".into())).await.expect("pause");

    // `sync_full` counts the master's fork for us: from then on, a write is
    // in the stream, not the snapshot.
    while info_field(&src, "stats", "sync_full") == 0 {
        assert!(set_at.elapsed() < Duration::from_millis(1500), "the master did not fork for the snapshot in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000).saturating_sub(set_at.elapsed())).await;
    let persisted = cmd(&mut s, &["PERSIST", "ttlgap"]).await;
    assert_eq!(persisted.as_int(), Some(1), "ttlgap expired on the source before the PERSIST: test setup too slow");
    assert!(set_at.elapsed() < Duration::from_millis(1900), "PERSIST too late: {:?}", set_at.elapsed());

    // Past the TTL the snapshot holds (and a second more), still paused.
    tokio::time::sleep(Duration::from_millis(3200).saturating_sub(set_at.elapsed())).await;
    let snap = handle.status.borrow().clone();
    assert!(snap.shards[0].rdb_bytes > 0, "the snapshot was received while paused: {snap:#?}");
    assert_eq!(snap.shards[0].keys_applied, 0, "nothing applied while paused: {snap:#?}");
    assert_eq!(dest.redis_cli(&["DBSIZE"]).expect("dbsize").trim(), "0", "nothing applied while paused");
    assert_eq!(src.redis_cli(&["PTTL", "ttlgap"]).expect("pttl").trim(), "-1", "persisted on the source");

    handle.commands.send(engine::Command::ResumeShard("server1".into())).await.expect("resume");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_synced(&handle, Duration::from_secs(60)).await;
    assert_eq!(
        dest.redis_cli(&["GET", "ttlgap"]).expect("get").trim(),
        "gap",
        "ttlgap was dropped: its snapshot TTL had passed, but the stream's PERSIST keeps it on the source"
    );
    assert_eq!(dest.redis_cli(&["PTTL", "ttlgap"]).expect("pttl").trim(), "-1", "ttlgap must have no TTL left");
    let results = handle.stop().await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let diffs = compare::diff(&[src.addr()], &dest.addr(), &[HEARTBEAT]).await;
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

// ---------------------------------------------------------------- collisions

/// Two shards, both holding `dup`: one value reaches the destination, the
/// other shard's alert names the key and both shards (the message of
/// `engine::collision::collision_message`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_on_two_shards_raises_an_alert_naming_both() {
    let m1 = RedisServer::with_config(&[]).expect("server1");
    let m2 = RedisServer::with_config(&[]).expect("server2");
    let dest = RedisServer::with_config(&[]).expect("destination");
    let mut c1 = compare::connect(&m1.addr()).await;
    let mut c2 = compare::connect(&m2.addr()).await;
    cmd(&mut c1, &["SET", "dup", "from-server1"]).await;
    cmd(&mut c2, &["SET", "dup", "from-server2"]).await;
    for i in 0..200 {
        cmd(&mut c1, &["SET", &format!("a:{i}"), "1"]).await;
        cmd(&mut c2, &["SET", &format!("b:{i}"), "2"]).await;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(
        dir.path(),
        "task.toml",
        &[("server1", m1.addr()), ("server2", m2.addr())],
        &dest.addr(),
        "conflict = \"intercept\"\n",
    );
    let task = TaskConfig::load(&path).expect("task");
    let precheck = shardsync::precheck::run(&task, None).await;
    assert!(precheck.passed(), "{precheck:#?}");
    assert_eq!(collision::holders(&task, 0, b"dup").await, ["server1", "server2"], "both sources hold dup");
    let handle = engine::spawn(task, CancellationToken::new());
    wait_synced(&handle, Duration::from_secs(60)).await;
    let snap = handle.status.borrow().clone();
    handle.stop().await;

    let kept = dest.redis_cli(&["GET", "dup"]).expect("get");
    let (winner, loser) = match kept.trim() {
        "from-server1" => ("server1", "server2"),
        "from-server2" => ("server2", "server1"),
        other => panic!("dup on the destination is {other:?}, neither shard's value"),
    };
    let about_dup: Vec<(&str, &str)> = snap
        .shards
        .iter()
        .flat_map(|s| s.alerts.iter().map(move |a| (s.shard.as_str(), a.message.as_str())))
        .filter(|(_, m)| m.contains("dup"))
        .collect();
    assert_eq!(about_dup.len(), 1, "one alert about dup, from {loser}, whose value was not written: {about_dup:#?}");
    let (shard, message) = about_dup[0];
    assert_eq!(shard, loser, "the alert comes from the shard whose write was refused: {message}");
    for must in [
        "collision",
        "server1",
        "server2",
        &format!("written first (by {winner})"),
        &format!("{loser}'s was not written"),
    ] {
        assert!(message.contains(must), "the collision alert must name the key and both shards ({must:?}): {message}");
    }

    // The loser's value is the one difference; `dup` counts once per source.
    let diffs = compare::diff(&[m1.addr(), m2.addr()], &dest.addr(), &[HEARTBEAT]).await;
    let loser_addr = if loser == "server1" { m1.addr() } else { m2.addr() };
    assert!(
        diffs.len() == 2
            && diffs[0].starts_with(&format!("{loser_addr} db0 dup: value"))
            && diffs[1] == "destination db0 holds 401 keys, the sources 402",
        "only {loser}'s dup differs: {diffs:#?}"
    );
}

/// `holders` asks every source DB whose keys land in the destination DB,
/// and only those; a source it cannot reach is reported, not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_asks_each_source_db_mapped_to_the_destination_db() {
    let m1 = RedisServer::with_config(&[]).expect("server1");
    let m2 = RedisServer::with_config(&[]).expect("server2");
    let m3 = RedisServer::with_config(&[]).expect("server3");
    let nobody = format!("127.0.0.1:{}", common::free_port().expect("port"));
    m1.redis_cli(&["-n", "3", "SET", "k", "in db 3, mapped to 0"]).expect("set");
    m2.redis_cli(&["-n", "0", "SET", "k", "in db 0"]).expect("set");
    m3.redis_cli(&["-n", "2", "SET", "k", "in db 2, not copied"]).expect("set");
    m3.redis_cli(&["-n", "3", "SET", "only3", "x"]).expect("set");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(
        dir.path(),
        "task.toml",
        &[("server1", m1.addr()), ("server2", m2.addr()), ("server3", m3.addr()), ("gone", nobody)],
        "127.0.0.1:1",
        "conflict = \"intercept\"\ndatabases = [0, 3]\n[sync.db_map]\n3 = 0\n",
    );
    let task = TaskConfig::load(&path).expect("task");
    let survey = collision::survey(&task, 0, b"k").await;
    assert_eq!(survey.holders, ["server1", "server2"], "{survey:?}");
    assert_eq!(survey.unreachable.len(), 1, "{survey:?}");
    assert_eq!(survey.unreachable[0].0, "gone", "{survey:?}");
    assert_eq!(collision::holders(&task, 0, b"only3").await, ["server3"]);
    // Many keys in one pipeline per source: each answer lines up with its key.
    let many = collision::surveys(&task, &[(0, b"only3"), (0, b"missing"), (0, b"k")]).await;
    let held: Vec<&[String]> = many.iter().map(|s| s.holders.as_slice()).collect();
    assert_eq!(held, [&["server3".to_owned()][..], &[], &["server1".to_owned(), "server2".to_owned()]], "{many:?}");
    // DB 3 lands in 0 and DB 2 is not copied: nothing lands in them.
    assert!(collision::holders(&task, 3, b"only3").await.is_empty());
    assert!(collision::holders(&task, 2, b"k").await.is_empty());
}
