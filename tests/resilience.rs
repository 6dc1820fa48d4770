//! Faults survived with nothing lost and nothing doubled, against real
//! servers: the tool SIGKILLed during non-idempotent writes, the source
//! dropping the link mid-snapshot and mid-stream, the destination crashing
//! (with and without persistence), a backlog too small to resume from, and
//! a destination out of memory.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::compare;
use common::task::{finish, info_stat, run_binary, task_file};
use common::wait::wait_for;
use common::RedisServer;
use shardsync::config::TaskConfig;
use shardsync::engine::{self, task::Command};
use shardsync::resp::{Cmd, Connection};
use tokio_util::sync::CancellationToken;

const HEARTBEAT: &[u8] = b"SHARDSYNC_HEARTBEAT";

/// Writers of the commands a replay would double (INCR, INCRBYFLOAT,
/// LPUSH, RPOPLPUSH, APPEND), pipelined in rounds against each master until
/// stopped. Returns the rounds written.
fn start_writers(addrs: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut conns = Vec::new();
        for a in &addrs {
            conns.push(compare::connect(a).await);
        }
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (n, c) in conns.iter_mut().enumerate() {
                let mut cmds = Vec::new();
                for j in 0..20u64 {
                    let k = (round * 20 + j) % 37;
                    cmds.push(Cmd::from_args(["INCR", &format!("n{n}:{k}")]));
                    cmds.push(Cmd::from_args(["INCRBYFLOAT", &format!("f{n}:{k}"), "0.25"]));
                    cmds.push(Cmd::from_args(["LPUSH", &format!("l{n}:{}", k % 5), &format!("{round}.{j}")]));
                    cmds.push(Cmd::from_args(["RPOPLPUSH", &format!("l{n}:{}", k % 5), &format!("r{n}")]));
                    cmds.push(Cmd::from_args(["APPEND", &format!("a{n}:{}", k % 7), "x"]));
                }
                for r in c.pipeline(&cmds).await.expect("writers' pipeline") {
                    assert!(!r.is_error(), "writer: {r}");
                }
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        round
    })
}

async fn synced(handle: &engine::EngineHandle) {
    common::wait::synced(handle, Duration::from_secs(90)).await;
}

async fn assert_equal(sources: &[String], dest: &str) {
    let diffs = compare::diff(sources, dest, &[HEARTBEAT]).await;
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

fn alerts(handle: &engine::EngineHandle) -> Vec<String> {
    handle.status.borrow().shards.iter().flat_map(|s| s.alerts.iter().map(|a| a.message.clone())).collect()
}

/// `keys` string keys named `k:<port>:<i>`: distinct on every server.
async fn fill(addr: &str, keys: usize, value_len: usize) {
    let mut c = compare::connect(addr).await;
    let value = "v".repeat(value_len);
    let port = addr.rsplit(':').next().unwrap_or_default();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
        let cmds: Vec<Cmd> = chunk.iter().map(|i| Cmd::from_args(["SET", &format!("k:{port}:{i}"), &value])).collect();
        c.pipeline(&cmds).await.expect("fill");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_non_idempotent_writes_resumes_exactly_once() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let m2 = RedisServer::with_config(&[]).expect("m2");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 2000, 20).await;
    fill(&m2.addr(), 2000, 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr()), ("server2", m2.addr())], &dest.addr(), "");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    let full = (info_stat(&m1, "sync_full"), info_stat(&m2, "sync_full"));
    let partial = (info_stat(&m1, "sync_partial_ok"), info_stat(&m2, "sync_partial_ok"));

    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(vec![m1.addr(), m2.addr()], stop.clone());
    // Killed twice mid-stream while the writers keep going.
    for _ in 0..2 {
        let child = run_binary(&path, false);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut child = child;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    stop.store(true, Ordering::Relaxed);
    let rounds = writers.await.expect("writers");
    assert!(rounds > 50, "the writers wrote during the kills ({rounds} rounds)");
    // The tail written after the last catch-up.
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert_eq!((info_stat(&m1, "sync_full"), info_stat(&m2, "sync_full")), full, "no new full copy");
    assert!(info_stat(&m1, "sync_partial_ok") >= partial.0 + 3, "every restart continued (server1)");
    assert!(info_stat(&m2, "sync_partial_ok") >= partial.1 + 3, "every restart continued (server2)");
    assert_equal(&[m1.addr(), m2.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_dropping_the_link_mid_snapshot_and_mid_stream() {
    // A slow diskless snapshot (0.3 ms per key): long enough to cut.
    let m1 =
        RedisServer::with_config(&["repl-diskless-sync yes", "repl-diskless-sync-delay 0", "rdb-key-save-delay 300"])
            .expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 8000, 50).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    wait_for(&handle, "receiving the snapshot", Duration::from_secs(30), |s| {
        s.shards.first().is_some_and(|s| s.rdb_bytes > 10_000)
    })
    .await;
    m1.redis_cli(&["CLIENT", "KILL", "TYPE", "replica"]).expect("kill mid-snapshot");
    m1.redis_cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"]).expect("config");
    synced(&handle).await;
    let snap = handle.status.borrow().clone();
    assert!(snap.shards[0].reconnects >= 1 && snap.shards[0].full_syncs >= 2, "a second full copy: {snap:#?}");

    // Mid-stream: the writers run across the cut.
    let partial = info_stat(&m1, "sync_partial_ok");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(vec![m1.addr()], stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    m1.redis_cli(&["CLIENT", "KILL", "TYPE", "replica"]).expect("kill mid-stream");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    writers.await.expect("writers");
    synced(&handle).await;
    assert!(info_stat(&m1, "sync_partial_ok") > partial, "the new link continued with +CONTINUE");
    let reasons = alerts(&handle);
    assert!(reasons.iter().any(|a| a.contains("connecting again")), "{reasons:?}");
    handle.stop().await;
    assert_equal(&[m1.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_crash_mid_stream_loses_and_doubles_nothing() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    // Persistence on: it keeps every write it acknowledged.
    let mut dest = RedisServer::with_config(&["appendonly yes", "appendfsync always"]).expect("dest");
    fill(&m1.addr(), 1000, 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    synced(&handle).await;
    let full = info_stat(&m1, "sync_full");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(vec![m1.addr()], stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    dest.crash_and_restart(Duration::from_millis(1500)).expect("restart the destination");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    writers.await.expect("writers");
    synced(&handle).await;
    let snap = handle.status.borrow().clone();
    assert!(snap.shards[0].errors > 0, "the outage was noticed: {snap:#?}");
    assert_eq!(info_stat(&m1, "sync_full"), full, "no new full copy");
    handle.stop().await;
    assert_equal(&[m1.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_lost_confirmed_writes_is_refilled() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    // No persistence: a crash loses everything, checkpoint included.
    let mut dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 1000, 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    synced(&handle).await;
    let full = info_stat(&m1, "sync_full");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(vec![m1.addr()], stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    dest.crash_and_restart(Duration::from_millis(500)).expect("restart the destination");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    writers.await.expect("writers");
    wait_for(&handle, "a new full copy", Duration::from_secs(30), |s| {
        s.shards.first().is_some_and(|s| s.full_syncs >= 2)
    })
    .await;
    synced(&handle).await;
    let reasons = alerts(&handle);
    assert!(reasons.iter().any(|a| a.contains("lost confirmed writes")), "{reasons:?}");
    assert_eq!(info_stat(&m1, "sync_full"), full + 1, "one new full copy");
    handle.stop().await;
    assert_equal(&[m1.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_too_small_to_resume_gives_a_clean_full_copy() {
    let m1 = RedisServer::with_config(&["repl-backlog-size 16kb"]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 500, 20).await;
    let mut c = compare::connect(&m1.addr()).await;
    for i in 0..100 {
        c.query(&Cmd::from_args(["RPUSH", "list", &format!("{i}")])).await.expect("rpush");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    let full = info_stat(&m1, "sync_full");
    // While the tool is down, far more than the backlog holds.
    for i in 0..2000 {
        c.query(&Cmd::from_args(["RPUSH", "list", &format!("more-{i}")])).await.expect("rpush");
        c.query(&Cmd::from_args(["INCR", "counter"])).await.expect("incr");
    }
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("backlog no longer holds it"), "the fallback is explained:\n{out}");
    assert_eq!(info_stat(&m1, "sync_full"), full + 1, "one new full copy");
    assert_eq!(dest.redis_cli(&["LLEN", "list"]).expect("llen").trim(), "2100", "nothing doubled");
    assert_equal(&[m1.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_pauses_the_shard_until_resumed() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let dest = RedisServer::with_config(&["maxmemory 4mb", "maxmemory-policy noeviction"]).expect("dest");
    fill(&m1.addr(), 4000, 2000).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    wait_for(&handle, "paused on OOM", Duration::from_secs(60), |s| {
        s.shards.first().is_some_and(|s| s.paused_on_error)
    })
    .await;
    let snap = handle.status.borrow().clone();
    let error = snap.shards[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("OOM") && error.contains("k:") && error.contains("maxmemory"), "{error}");
    assert_eq!(snap.shards[0].state.as_str(), "stopped");
    dest.redis_cli(&["CONFIG", "SET", "maxmemory", "0"]).expect("raise maxmemory");
    handle.commands.send(Command::ResumeShard("server1".into())).await.expect("resume");
    synced(&handle).await;
    // A write after the pause arrives too.
    let mut c = Connection::connect(&m1.addr(), &Default::default()).await.expect("m1");
    c.query(&Cmd::from_args(["SET", "after", "resume"])).await.expect("set");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    synced(&handle).await;
    handle.stop().await;
    assert_equal(&[m1.addr()], &dest.addr()).await;
}

fn bgsave_running(server: &RedisServer) -> bool {
    let info = server.redis_cli(&["INFO", "persistence"]).expect("info");
    info.lines().any(|l| l.trim() == "rdb_bgsave_in_progress:1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_sharing_a_host_never_fork_together() {
    // Both on 127.0.0.1; slow diskless snapshots (0.2 ms per key).
    let slow = ["repl-diskless-sync yes", "repl-diskless-sync-delay 0", "rdb-key-save-delay 200"];
    let m1 = RedisServer::with_config(&slow).expect("m1");
    let m2 = RedisServer::with_config(&slow).expect("m2");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 3000, 20).await;
    fill(&m2.addr(), 3000, 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr()), ("server2", m2.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    let (mut waited, mut both, mut forks) = (false, false, 0);
    let start = Instant::now();
    while !handle.status.borrow().all_synced() {
        assert!(start.elapsed() < Duration::from_secs(60), "not synced: {:#?}", handle.status.borrow());
        let (a, b) = (bgsave_running(&m1), bgsave_running(&m2));
        both |= a && b;
        forks += usize::from(a || b);
        waited |=
            handle.status.borrow().shards.iter().any(|s| s.waiting.as_deref().is_some_and(|w| w.contains("127.0.0.1")));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(forks > 10, "the snapshots were observed ({forks} samples)");
    assert!(!both, "the two masters on one host forked at the same time");
    assert!(waited, "the waiting shard said what it waits for");
    handle.stop().await;
    assert_equal(&[m1.addr(), m2.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_rate_limit_holds() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 3000, 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "max_keys_per_sec = 1000\n");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    let mut c = compare::connect(&dest.addr()).await;
    async fn dbsize(c: &mut Connection) -> i64 {
        c.query(&Cmd::new("DBSIZE")).await.expect("dbsize").as_int().unwrap_or(0)
    }
    // From the first key on, the copy is spread: never more than the rate
    // allows (plus one burst), however fast the machine.
    let started = loop {
        if dbsize(&mut c).await > 0 {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut samples = 0;
    loop {
        let keys = dbsize(&mut c).await;
        let allowed = 1000.0 * (started.elapsed().as_secs_f64() + 0.1) + 256.0;
        assert!((keys as f64) <= allowed, "{keys} keys after {:?} at 1000 keys/s", started.elapsed());
        samples += 1;
        if keys >= 3001 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the copy did not finish: {keys} keys");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(2700), "3000 keys at 1000/s took {:?}", started.elapsed());
    assert!(samples >= 20, "the copy was watched as it went ({samples} samples)");
    synced(&handle).await;
    handle.stop().await;
    assert_equal(&[m1.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_restarts_empty_mid_copy_gets_the_whole_copy_again() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let mut dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 6000, 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    // Slowed to ~3 s so the crash lands inside the copy.
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "max_keys_per_sec = 2000\n");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    wait_for(&handle, "keys copied", Duration::from_secs(30), |s| {
        s.shards.first().is_some_and(|s| s.keys_applied > 500)
    })
    .await;
    dest.crash_and_restart(Duration::from_millis(300)).expect("restart the destination");
    // The engine may apply the whole copy as one rate-limited batch, so the
    // crash can land after it; the loss is then noticed at the next stream
    // batch (a heartbeat a second), and a snapshot from before it would
    // still read "synced": wait for the notice first.
    wait_for(&handle, "the loss noticed", Duration::from_secs(30), |s| {
        s.shards.iter().any(|s| s.alerts.iter().any(|a| a.message.contains("lost confirmed writes")))
    })
    .await;
    synced(&handle).await;
    assert!(handle.status.borrow().shards[0].full_syncs >= 2, "copied again");
    handle.stop().await;
    assert_equal(&[m1.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_crashes_and_restarts_is_copied_again() {
    // With an AOF, the restarted master has its data but a new history.
    let mut m1 = RedisServer::with_config(&["appendonly yes", "appendfsync always"]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 1000, 20).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    synced(&handle).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(vec![m1.addr()], stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writers.await.expect("writers");
    m1.crash_and_restart(Duration::from_secs(2)).expect("restart the source");
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(vec![m1.addr()], stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    writers.await.expect("writers");
    wait_for(&handle, "reconnected", Duration::from_secs(60), |s| s.shards.first().is_some_and(|s| s.reconnects >= 1))
        .await;
    synced(&handle).await;
    handle.stop().await;
    assert_equal(&[m1.addr()], &dest.addr()).await;
}
