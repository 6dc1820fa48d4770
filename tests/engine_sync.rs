//! The sync engine end to end against real servers: the seed's topology
//! (2 masters with replicas behind nutcracker) with writers running during
//! and after the full copy, flush refusal, SIGTERM/SIGHUP and resume with
//! `+CONTINUE`, and both cross-version directions.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::compare;
use common::task::{cmd, finish, info_stat, run_binary, task_file};
use common::wait::synced as wait_synced;
use common::{Nutcracker, RedisOptions, RedisServer};
use shardsync::config::TaskConfig;
use shardsync::engine;
use shardsync::resp::{Cmd, Connection};
use tokio_util::sync::CancellationToken;

const HEARTBEAT: &[u8] = b"SHARDSYNC_HEARTBEAT";

/// One round of writes using the seed's command list: through nutcracker
/// where twemproxy supports the command, directly on a master otherwise.
async fn write_round(proxy: &mut Connection, m1: &mut Connection, m2: &mut Connection, i: usize) {
    let k = |p: &str| format!("{p}:{}", i % 50);
    for args in [
        vec!["SET".to_string(), k("s"), format!("v{i}")],
        vec!["APPEND".into(), k("s"), "+".into()],
        vec!["INCR".into(), k("n")],
        vec!["INCRBY".into(), k("n"), "3".into()],
        vec!["DECR".into(), k("n")],
        vec!["DECRBY".into(), k("n"), "2".into()],
        vec!["INCRBYFLOAT".into(), k("f"), "1.5".into()],
        vec!["GETSET".into(), k("g"), format!("{i}")],
        vec!["SETEX".into(), k("ex"), "1000".into(), "x".into()],
        vec!["PSETEX".into(), k("px"), "900000".into(), "y".into()],
        vec!["SETNX".into(), k("nx"), "first".into()],
        vec!["SETRANGE".into(), k("s"), "1".into(), "R".into()],
        vec!["SETBIT".into(), k("bits"), format!("{}", i % 64), "1".into()],
        vec!["LPUSH".into(), k("l"), format!("a{i}")],
        vec!["RPUSH".into(), k("l"), format!("b{i}"), "c".into()],
        vec!["LPUSHX".into(), k("l"), "lx".into()],
        vec!["RPUSHX".into(), k("l"), "rx".into()],
        vec!["LINSERT".into(), k("l"), "BEFORE".into(), "c".into(), "ins".into()],
        vec!["LSET".into(), k("l"), "0".into(), "set0".into()],
        vec!["LREM".into(), k("l"), "1".into(), "c".into()],
        vec!["LTRIM".into(), k("l"), "0".into(), "20".into()],
        vec!["RPOP".into(), k("l")],
        vec!["LPOP".into(), k("l")],
        vec!["HSET".into(), k("h"), "f1".into(), format!("{i}"), "f2".into(), "x".into()],
        vec!["HMSET".into(), k("h"), "f3".into(), "y".into()],
        vec!["HSETNX".into(), k("h"), "f4".into(), "z".into()],
        vec!["HINCRBY".into(), k("h"), "cnt".into(), "2".into()],
        vec!["HINCRBYFLOAT".into(), k("h"), "fl".into(), "0.25".into()],
        vec!["HDEL".into(), k("h"), "f2".into()],
        vec!["SADD".into(), k("set"), format!("m{i}"), "common".into()],
        vec!["SREM".into(), k("set"), format!("m{}", i.saturating_sub(3))],
        vec!["ZADD".into(), k("z"), format!("{i}"), format!("m{i}"), "1.5".into(), "half".into()],
        vec!["ZINCRBY".into(), k("z"), "2".into(), "half".into()],
        vec!["ZREM".into(), k("z"), format!("m{}", i.saturating_sub(5))],
        vec!["ZREMRANGEBYSCORE".into(), k("z"), "-inf".into(), format!("({}", i.saturating_sub(20))],
        vec!["ZREMRANGEBYRANK".into(), k("z"), "0".into(), "-30".into()],
        vec!["ZREMRANGEBYLEX".into(), k("zl"), "-".into(), "[b".into()],
        vec!["ZADD".into(), k("zl"), "0".into(), "a".into(), "0".into(), "c".into()],
        vec!["PFADD".into(), k("hll"), format!("e{i}")],
        vec!["GEOADD".into(), k("geo"), "13.36".into(), "38.11".into(), format!("p{i}")],
        vec!["EXPIRE".into(), k("l"), "5000".into()],
        vec!["PEXPIRE".into(), k("set"), "6000000".into()],
        vec!["EXPIREAT".into(), k("h"), "4102444800".into()],
        vec!["PEXPIREAT".into(), k("z"), "4102444800000".into()],
        vec!["PERSIST".into(), k("set")],
        vec!["DEL".into(), k("nx")],
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cmd(proxy, &a).await;
    }
    // Multi-key commands, hash-tagged, and what twemproxy does not proxy:
    // directly on the masters. Key names carry the master, as in a real
    // cluster where each key lives on one shard.
    let t = |p: &str| format!("{{tag{}-{}}}:{p}", i % 2, i % 7);
    for args in [
        vec!["MSET".to_string(), t("a"), "1".into(), t("b"), "2".into()],
        vec!["MSETNX".into(), t(&format!("nx{i}")), "1".into(), t(&format!("nx2{i}")), "2".into()],
        vec!["SADD".into(), t("s1"), "x".into(), "y".into(), format!("{i}")],
        vec!["SADD".into(), t("s2"), "y".into(), "z".into()],
        vec!["SUNIONSTORE".into(), t("su"), t("s1"), t("s2")],
        vec!["SINTERSTORE".into(), t("si"), t("s1"), t("s2")],
        vec!["SDIFFSTORE".into(), t("sd"), t("s1"), t("s2")],
        vec!["SMOVE".into(), t("s1"), t("s2"), "x".into()],
        vec!["SPOP".into(), t("sd")],
        vec!["ZADD".into(), t("z1"), "1".into(), "a".into(), "2".into(), "b".into()],
        vec!["ZUNIONSTORE".into(), t("zu"), "2".into(), t("z1"), t("zu")],
        vec!["ZINTERSTORE".into(), t("zi"), "1".into(), t("z1")],
        vec!["RPUSH".into(), t("src"), format!("{i}"), "more".into()],
        vec!["RPOPLPUSH".into(), t("src"), t("dst")],
        vec!["BRPOPLPUSH".into(), t("src"), t("dst"), "1".into()],
        vec!["BLPOP".into(), t("dst"), "1".into()],
        vec!["BRPOP".into(), t("src"), t("dst"), "1".into()],
        vec!["PFMERGE".into(), t("hllm"), t("hll")],
        vec!["BITOP".into(), "OR".into(), t("bo"), t("a"), t("b")],
        vec!["SET".into(), t("ren"), "r".into()],
        vec!["RENAME".into(), t("ren"), t(&format!("renamed{}", i % 3))],
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let master = if i % 2 == 0 { &mut *m1 } else { &mut *m2 };
        cmd(master, &a).await;
    }
    // MULTI/EXEC, a script (replicated as its effects), SELECT + MOVE, PUBLISH.
    let m = if i % 2 == 0 { &mut *m1 } else { &mut *m2 };
    let i2 = i % 2;
    let tx = [
        Cmd::from_args(["MULTI"]),
        Cmd::from_args(["INCR".to_string(), format!("tx:{i2}:{}", i % 5)]),
        Cmd::from_args(["LPUSH".to_string(), format!("txl:{i2}:{}", i % 5), format!("{i}")]),
        Cmd::from_args(["EXEC"]),
    ];
    let replies = m.pipeline(&tx).await.expect("transaction");
    assert!(replies.iter().all(|r| !r.is_error()), "{replies:?}");
    cmd(
        m,
        &[
            "EVAL",
            "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])",
            "2",
            &format!("ev:{i2}:{}", i % 4),
            &format!("evc:{i2}:{}", i % 4),
            &format!("{i}"),
        ],
    )
    .await;
    let sha = cmd(m, &["SCRIPT", "LOAD", "return redis.call('RPUSH', KEYS[1], ARGV[1])"]).await;
    let sha = sha.as_str().unwrap_or_default().to_string();
    cmd(m, &["EVALSHA", &sha, "1", &format!("evl:{i2}:{}", i % 4), &format!("{i}")]).await;
    cmd(m, &["SELECT", "3"]).await;
    cmd(m, &["SET", &format!("db3:{i2}:{}", i % 10), &format!("{i}")]).await;
    cmd(m, &["SELECT", "0"]).await;
    cmd(m, &["SET", &format!("mv:{i}"), "moving"]).await;
    cmd(m, &["MOVE", &format!("mv:{i}"), "4"]).await;
    cmd(m, &["PUBLISH", "chan", &format!("{i}")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_topology_full_and_incremental_with_live_writers() {
    // One master diskless, one disk-based: both transfer kinds.
    let m1 = RedisServer::with_config(&["repl-diskless-sync yes", "repl-diskless-sync-delay 0"]).expect("m1");
    let m2 = RedisServer::with_config(&["repl-diskless-sync no"]).expect("m2");
    let r1 = RedisServer::with_config(&[&format!("replicaof 127.0.0.1 {}", m1.port())]).expect("r1");
    let r2 = RedisServer::with_config(&[&format!("replicaof 127.0.0.1 {}", m2.port())]).expect("r2");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let proxy = Nutcracker::start(&[m1.addr(), m2.addr()]).expect("nutcracker");
    let mut p = Connection::connect(&proxy.addr(), &Default::default()).await.expect("proxy");
    let mut c1 = compare::connect(&m1.addr()).await;
    let mut c2 = compare::connect(&m2.addr()).await;
    // Mixed data through nutcracker before the task starts.
    for i in 0..400 {
        write_round_initial(&mut p, i).await;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr()), ("server2", m2.addr())], &dest.addr(), "");
    let task = TaskConfig::load(&path).expect("task");
    let precheck = shardsync::precheck::run(&task, None).await;
    assert!(precheck.passed(), "{precheck:#?}");
    let handle = engine::spawn(task, CancellationToken::new());
    // Writers during the full copy and after it.
    for i in 0..60 {
        write_round(&mut p, &mut c1, &mut c2, i).await;
    }
    wait_synced(&handle, Duration::from_secs(60)).await;
    for i in 60..120 {
        write_round(&mut p, &mut c1, &mut c2, i).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_synced(&handle, Duration::from_secs(60)).await;
    let snap = handle.status.borrow().clone();
    assert!(snap.shards.iter().all(|s| s.lag_ms.is_some()), "lag in ms measured: {snap:#?}");
    let status = handle.status.clone();
    let results = handle.stop().await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    // The stop waited for every helper: nothing left undone, nothing to report.
    let notes = status.borrow().closing_notes.clone();
    assert!(notes.is_empty(), "{notes:?}");
    let diffs = compare::diff(&[m1.addr(), m2.addr()], &dest.addr(), &[HEARTBEAT]).await;
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
    // The heartbeat key is gone from the sources too.
    for m in [&m1, &m2] {
        assert_eq!(m.redis_cli(&["EXISTS", "SHARDSYNC_HEARTBEAT"]).expect("exists").trim(), "0");
    }
    drop((r1, r2));
}

async fn write_round_initial(p: &mut Connection, i: usize) {
    cmd(p, &["SET", &format!("str:{i}"), &"x".repeat(i % 300)]).await;
    cmd(p, &["RPUSH", &format!("list:{i}"), "a", "b", &format!("{i}")]).await;
    cmd(p, &["HSET", &format!("hash:{i}"), "f", "v", "n", &format!("{i}")]).await;
    cmd(p, &["SADD", &format!("set:{i}"), "1", "2", &format!("{i}")]).await;
    cmd(p, &["ZADD", &format!("zset:{i}"), "1", "a", "2.5", &format!("m{i}")]).await;
    if i % 10 == 0 {
        cmd(p, &["EXPIRE", &format!("str:{i}"), "3600"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_on_one_shard_is_refused_and_reported() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let m2 = RedisServer::with_config(&[]).expect("m2");
    let dest = RedisServer::with_config(&[]).expect("dest");
    for i in 0..50 {
        m1.redis_cli(&["SET", &format!("a{i}"), "1"]).expect("set");
        m2.redis_cli(&["SET", &format!("b{i}"), "2"]).expect("set");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path =
        task_file(dir.path(), &[("server1", m1.addr()), ("server2", m2.addr())], &dest.addr(), "flush = \"refuse\"\n");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    wait_synced(&handle, Duration::from_secs(60)).await;
    m2.redis_cli(&["FLUSHALL"]).expect("flushall");
    m2.redis_cli(&["SET", "after", "flush"]).expect("set");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_synced(&handle, Duration::from_secs(30)).await;
    let snap = handle.status.borrow().clone();
    let s2 = snap.shards.iter().find(|s| s.shard == "server2").expect("server2");
    assert!(
        s2.alerts.iter().any(|a| a.message.contains("FLUSHALL") && a.offset.is_some()),
        "alert with shard and offset: {:?}",
        s2.alerts
    );
    handle.stop().await;
    let mut d = compare::connect(&dest.addr()).await;
    // server1's keys all remain, and so do server2's (the flush was refused);
    // db 0 also holds the two shards' checkpoint keys.
    assert_eq!(compare::keyspace(&mut d).await.get(&0), Some(&103));
    for shard in ["server1", "server2"] {
        let key = format!("SHARDSYNC_HEARTBEAT:ckpt:{shard}");
        assert_eq!(dest.redis_cli(&["EXISTS", &key]).expect("exists").trim(), "1", "{key}");
    }
    assert_eq!(dest.redis_cli(&["GET", "after"]).expect("get").trim(), "flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_restart_resumes_with_continue() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    for i in 0..100 {
        m1.redis_cli(&["RPUSH", "list", &format!("{i}")]).expect("rpush");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#"{"event":"synced"}"#), "{out}");
    let full = info_stat(&m1, "sync_full");
    // Incremental writes, a SIGTERM while running, more writes, a restart.
    let child = run_binary(&path, false);
    for i in 0..50 {
        m1.redis_cli(&["INCR", "counter"]).expect("incr");
        m1.redis_cli(&["LPUSH", "list", &format!("x{i}")]).expect("lpush");
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let (code, out) = finish(child, Duration::from_secs(30));
    assert_eq!(code, 0, "SIGTERM is a clean stop:\n{out}");
    for _ in 0..20 {
        m1.redis_cli(&["INCR", "counter"]).expect("incr");
    }
    let partial = info_stat(&m1, "sync_partial_ok");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert_eq!(info_stat(&m1, "sync_full"), full, "no new full copy");
    assert!(info_stat(&m1, "sync_partial_ok") > partial, "resumed with +CONTINUE");
    assert_eq!(dest.redis_cli(&["GET", "counter"]).expect("get").trim(), "70");
    // A hang-up (the SSH session of a headless run dropped) is a clean stop too.
    let child = run_binary(&path, false);
    for _ in 0..30 {
        m1.redis_cli(&["INCR", "counter"]).expect("incr");
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    let (code, out) = finish(child, Duration::from_secs(30));
    assert_eq!(code, 0, "SIGHUP is a clean stop:\n{out}");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert_eq!(info_stat(&m1, "sync_full"), full, "no new full copy");
    assert_eq!(dest.redis_cli(&["GET", "counter"]).expect("get").trim(), "100");
    let diffs = compare::diff(&[m1.addr()], &dest.addr(), &[HEARTBEAT]).await;
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

async fn cross_version(source: RedisServer, dest: RedisServer) {
    let mut s = compare::connect(&source.addr()).await;
    for i in 0..300 {
        cmd(&mut s, &["SET", &format!("s{i}"), &"v".repeat(i % 100)]).await;
        cmd(&mut s, &["RPUSH", &format!("l{i}"), "a", "b", &format!("{i}")]).await;
        cmd(&mut s, &["HSET", &format!("h{i}"), "f", &format!("{i}")]).await;
        cmd(&mut s, &["ZADD", &format!("z{i}"), &format!("{i}"), "m"]).await;
        cmd(&mut s, &["SADD", &format!("t{i}"), "1", "2", "x"]).await;
    }
    for i in 0..600 {
        cmd(&mut s, &["RPUSH", "biglist", &format!("element-{i}")]).await;
    }
    cmd(&mut s, &["XADD", "stream", "1-1", "f", "v"]).await;
    cmd(&mut s, &["PEXPIRE", "s5", "600000"]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", source.addr())], &dest.addr(), "");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    let diffs = compare::diff(&[source.addr()], &dest.addr(), &[HEARTBEAT]).await;
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis6_source_to_redis7_destination() {
    let source = RedisServer::start(RedisOptions::redis6().expect("redis 6.0.9 (run scripts/deps.sh)")).expect("6.0.9");
    cross_version(source, RedisServer::with_config(&[]).expect("7.0")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis7_source_to_redis6_destination() {
    let dest = RedisServer::start(RedisOptions::redis6().expect("redis 6.0.9 (run scripts/deps.sh)")).expect("6.0.9");
    cross_version(RedisServer::with_config(&[]).expect("7.0"), dest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_heartbeat_still_syncs_without_lag_ms() {
    // A read-only replica as the source: the heartbeat SET gets -READONLY.
    let master = RedisServer::with_config(&[]).expect("master");
    let replica = RedisServer::with_config(&[&format!("replicaof 127.0.0.1 {}", master.port())]).expect("replica");
    let dest = RedisServer::with_config(&[]).expect("dest");
    for i in 0..20 {
        master.redis_cli(&["SET", &format!("k{i}"), "v"]).expect("set");
    }
    // Wait for the replica to hold the data.
    let start = Instant::now();
    while replica.redis_cli(&["DBSIZE"]).expect("dbsize").trim() != "20" {
        assert!(start.elapsed() < Duration::from_secs(20), "replica never synced");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("replica", replica.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    wait_synced(&handle, Duration::from_secs(60)).await;
    master.redis_cli(&["SET", "later", "x"]).expect("set");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    wait_synced(&handle, Duration::from_secs(30)).await;
    let snap = handle.status.borrow().clone();
    let s = &snap.shards[0];
    assert_eq!(s.lag_ms, None, "no heartbeat, no lag in ms");
    assert!(s.alerts.iter().any(|a| a.message.contains("heartbeat")), "{:?}", s.alerts);
    handle.stop().await;
    assert_eq!(dest.redis_cli(&["GET", "later"]).expect("get").trim(), "x");
}

#[test]
fn a_bad_task_file_exits_2_naming_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "name = \"t\"\n[[source]]\nname = \"a\"\naddr = \"127.0.0.1:1\"\n[destination]\naddr = \"127.0.0.1:2\"\n[sync]\nconflcit = \"skip\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(["run", "--config"])
        .arg(&p)
        .args(["--headless"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conflcit") && err.contains("line 8"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_a_shard() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    m1.redis_cli(&["SET", "before", "1"]).expect("set");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    wait_synced(&handle, Duration::from_secs(60)).await;
    handle.commands.send(engine::Command::PauseShard("server1".into())).await.expect("pause");
    tokio::time::sleep(Duration::from_millis(500)).await;
    m1.redis_cli(&["SET", "while_paused", "1"]).expect("set");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        dest.redis_cli(&["EXISTS", "while_paused"]).expect("exists").trim(),
        "0",
        "nothing applied while paused"
    );
    assert_eq!(handle.status.borrow().shards[0].state, engine::snapshot::ShardState::Stopped);
    handle.commands.send(engine::Command::ResumeShard("server1".into())).await.expect("resume");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_synced(&handle, Duration::from_secs(30)).await;
    assert_eq!(dest.redis_cli(&["GET", "while_paused"]).expect("get").trim(), "1");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_selected_databases_are_copied_and_mapped() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    for db in ["0", "2", "3"] {
        m1.redis_cli(&["-n", db, "SET", &format!("snap{db}"), db]).expect("set");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path =
        task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "databases = [0, 3]\n[sync.db_map]\n3 = 5\n");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    wait_synced(&handle, Duration::from_secs(60)).await;
    for db in ["0", "2", "3"] {
        m1.redis_cli(&["-n", db, "SET", &format!("live{db}"), db]).expect("set");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_synced(&handle, Duration::from_secs(30)).await;
    handle.stop().await;
    let mut d = compare::connect(&dest.addr()).await;
    let ks = compare::keyspace(&mut d).await;
    assert_eq!(ks.get(&0), Some(&3), "2 keys and the checkpoint key: {ks:?}");
    assert_eq!(ks.get(&5), Some(&2), "db 3 lands in db 5: {ks:?}");
    assert!(!ks.contains_key(&2) && !ks.contains_key(&3), "{ks:?}");
    assert_eq!(dest.redis_cli(&["-n", "5", "GET", "live3"]).expect("get").trim(), "3");
}
