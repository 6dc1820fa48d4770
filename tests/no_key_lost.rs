//! No key lost, and never silently, against real servers: the ways a key
//! or a write could go missing without a word, each forced here.
//!
//! * What issue 11's runs took for lost keys: with two masters on a host
//!   (`full_syncs_per_host = 1`) the second master's copy starts after the
//!   first's, so a marker key written on it just before is in its snapshot,
//!   which is applied in the snapshot's own order. The marker reaches the
//!   destination while older keys are still on their way: a marker is not a
//!   drain while a shard copies. Synced (every shard incremental and caught
//!   up) is.
//! * A stop while a flush waits (the rate limit) must not move the
//!   checkpoint past commands that were never sent.
//! * A stream resumed with `+CONTINUE` must go on in the DB it was in: the
//!   master does not repeat its `SELECT`.
//! * A snapshot that arrives without one of its keys (a source with
//!   `rdbchecksum no` behind a path that drops bytes) is caught by the key
//!   accounting and fails the shard with the numbers.
//! * The destination's connection dropped in the middle of the snapshot's
//!   windows: every key is still written once, and the accounting adds up.
//! * A destination that restarts from a save made part-way through a full
//!   copy still holds the copy's "copying" mark but not the keys confirmed
//!   after it: its new `run_id` gives it away, and the shard copies again.
//!
//! The big-key build cut after its `DEL` is in `tests/dest_writer.rs`,
//! which has the proxy that forces it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::compare;
use common::task::{finish, run_binary, task_file};
use common::wait::wait_for;
use common::RedisServer;
use shardsync::config::TaskConfig;
use shardsync::engine::{self, snapshot::ShardState, snapshot::TaskSnapshot};
use shardsync::resp::Cmd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const HEARTBEAT: &[u8] = b"SHARDSYNC_HEARTBEAT";

async fn synced(handle: &engine::EngineHandle) {
    common::wait::synced(handle, Duration::from_secs(90)).await;
}

async fn assert_equal(sources: &[String], dest: &str) {
    let diffs = compare::diff(sources, dest, &[HEARTBEAT]).await;
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

fn start(path: &std::path::Path) -> engine::EngineHandle {
    engine::spawn(TaskConfig::load(path).expect("task"), CancellationToken::new())
}

/// `keys` strings `<prefix>:<i>` on `addr`.
async fn fill(addr: &str, prefix: &str, keys: usize) {
    let mut c = compare::connect(addr).await;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let cmds: Vec<Cmd> = chunk.iter().map(|i| Cmd::from_args(["SET", &format!("{prefix}:{i}"), "v"])).collect();
        c.pipeline(&cmds).await.expect("fill");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_written_before_a_shards_copy_arrives_before_older_keys_and_synced_waits_for_them() {
    let m1 = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("m1");
    let m2 = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("m2");
    let dest = RedisServer::with_config(&[]).expect("dest");
    const N: usize = 3000;
    fill(&m1.addr(), "a", N).await;
    fill(&m2.addr(), "b", N).await;
    let dir = tempfile::tempdir().expect("tmp");
    // Both on 127.0.0.1: one full copy at a time (the default), each spread
    // over about 3 s by the rate limit, so the order of arrival shows.
    let path = task_file(
        dir.path(),
        &[("server1", m1.addr()), ("server2", m2.addr())],
        &dest.addr(),
        "max_keys_per_sec = 1000\n",
    );
    let handle = start(&path);
    // Markers on the master whose copy waits for the other's: they are in
    // its snapshot, anywhere in it.
    let waiting = |snap: &TaskSnapshot| snap.shards.iter().any(|s| s.waiting.is_some());
    wait_for(&handle, "a shard waiting for the other's copy", Duration::from_secs(10), waiting).await;
    let late = handle.status.borrow().shards.iter().find(|s| s.waiting.is_some()).map(|s| s.shard.clone());
    let late = late.expect("a waiting shard");
    let (late_addr, prefix) = if late == "server1" { (m1.addr(), "a") } else { (m2.addr(), "b") };
    let mut c = compare::connect(&late_addr).await;
    let markers: Vec<Cmd> = (0..20).map(|i| Cmd::from_args(["SET", &format!("marker:{i}"), "m"])).collect();
    c.pipeline(&markers).await.expect("markers");
    // The first marker on the destination: that shard is still copying, and
    // keys written before the marker are not all there yet.
    let mut d = compare::connect(&dest.addr()).await;
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let gets: Vec<Cmd> = (0..20).map(|i| Cmd::from_args(["EXISTS", &format!("marker:{i}")])).collect();
        let found = d.pipeline(&gets).await.expect("exists").iter().any(|v| v.as_int() == Some(1));
        if found {
            break;
        }
        assert!(Instant::now() < limit, "no marker arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let older: Vec<Cmd> = (0..N).map(|i| Cmd::from_args(["EXISTS", &format!("{prefix}:{i}")])).collect();
    let there = d.pipeline(&older).await.expect("exists").iter().filter(|v| v.as_int() == Some(1)).count();
    assert!(there < N, "older keys of {late} are still on their way when a marker is there ({there} of {N})");
    // And the tool does not call it synced.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = handle.status.borrow().clone();
    let s = snap.shards.iter().find(|s| s.shard == late).expect("late shard");
    assert!(!s.is_synced() && !snap.all_synced(), "{s:#?}");
    // Synced means every key of every snapshot, confirmed and accounted for.
    synced(&handle).await;
    let snap = handle.status.borrow().clone();
    for s in &snap.shards {
        let held = if s.shard == late { N + 20 } else { N } as u64;
        assert_eq!(s.keys_applied + s.keys_skipped.total(), held + s.keys_skipped.own, "{s:#?}");
    }
    handle.stop().await;
    assert_equal(&[m1.addr(), m2.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_a_flush_waits_for_the_rate_limit_loses_no_command() {
    let src = RedisServer::with_config(&[]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    // 200 keys/s: every flush of the stream waits about a tenth of a second
    // before it is sent, which is where the stops below land.
    let limited = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "max_keys_per_sec = 200\n");
    let handle = start(&limited);
    synced(&handle).await;
    let mut c = compare::connect(&src.addr()).await;
    let mut written = 0;
    // Three rounds: 600 writes, then a stop while they trickle out.
    let mut handle = Some(handle);
    for round in 0..3 {
        let cmds: Vec<Cmd> =
            (0..600).map(|i| Cmd::from_args(["SET", &format!("k:{round}:{i}"), &format!("{round}.{i}")])).collect();
        c.pipeline(&cmds).await.expect("writes");
        written += cmds.len();
        let h = match handle.take() {
            Some(h) => h,
            None => start(&limited),
        };
        tokio::time::sleep(Duration::from_millis(700 + 150 * round)).await;
        let results = h.stop().await;
        assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    }
    // The rest without a limit.
    let free = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "");
    let h = start(&free);
    synced(&h).await;
    h.stop().await;
    assert_eq!(written, 1800);
    assert_equal(&[src.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_stays_in_its_db() {
    let src = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    // A heartbeat far apart: it is written in DB 0, and its SELECT would
    // put the stream back in a known DB.
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "heartbeat_ms = 600000\n");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    // A steady run of writes in DB 1, one SELECT at its start.
    let stop = Arc::new(AtomicBool::new(false));
    let n = Arc::new(AtomicU64::new(0));
    let (stop_w, n_w, addr) = (stop.clone(), n.clone(), src.addr());
    let writer = tokio::spawn(async move {
        let mut c = compare::connect(&addr).await;
        c.query(&Cmd::from_args(["SELECT", "1"])).await.expect("select");
        while !stop_w.load(Ordering::Relaxed) {
            let base = n_w.fetch_add(50, Ordering::Relaxed);
            // 2,000 keys rewritten over and over: a write lost or misplaced
            // shows as a stale value or a key in DB 0.
            let cmds: Vec<Cmd> = (base..base + 50)
                .map(|i| Cmd::from_args(["SET", &format!("d1:{}", i % 2000), &i.to_string()]))
                .collect();
            c.pipeline(&cmds).await.expect("writes");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    // SIGKILLed inside the run (nothing written on the way out), then
    // continued from the checkpoint, twice.
    for _ in 0..2 {
        let mut child = run_binary(&path, false);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(n.load(Ordering::Relaxed) > 1000, "the writer wrote during the kills");
    let mut d = compare::connect(&dest.addr()).await;
    let db0 = d.query(&Cmd::from_args(["DBSIZE"])).await.expect("dbsize").as_int().unwrap_or(-1);
    // DB 0 holds only the checkpoint key.
    assert_eq!(db0, 1, "DB 1's writes must not land in DB 0");
    assert_equal(&[src.addr()], &dest.addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_back_from_a_save_made_mid_copy_gets_the_whole_copy_again() {
    let src = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("source");
    let mut dest = RedisServer::with_config(&[]).expect("dest");
    fill(&src.addr(), "k", 20_000).await;
    let dir = tempfile::tempdir().expect("tmp");
    // Spread over about 4 s, so the save and the crash land inside the copy.
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "max_keys_per_sec = 5000\n");
    let handle = start(&path);
    let copied = |n: u64| move |s: &TaskSnapshot| s.shards.first().is_some_and(|s| s.keys_applied > n);
    wait_for(&handle, "5,000 keys copied", Duration::from_secs(30), copied(5000)).await;
    // A save with the copy's mark and part of its keys...
    dest.redis_cli(&["SAVE"]).expect("SAVE");
    wait_for(&handle, "10,000 keys copied", Duration::from_secs(30), copied(10_000)).await;
    // ...and the destination comes back from it, without what came after.
    dest.crash_and_restart(Duration::from_millis(200)).expect("restart the destination");
    wait_for(&handle, "the restart noticed", Duration::from_secs(30), |s| {
        s.shards.iter().any(|s| s.alerts.iter().any(|a| a.message.contains("restarted during a full copy")))
    })
    .await;
    synced(&handle).await;
    let snap = handle.status.borrow().clone();
    assert!(snap.shards[0].full_syncs >= 2, "copied again: {:#?}", snap.shards[0]);
    handle.stop().await;
    assert_equal(&[src.addr()], &dest.addr()).await;
}

/// A TCP proxy in front of a source that removes the first occurrence of
/// `cut` from what the source sends.
async fn cutting_proxy(upstream: String, cut: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else { return };
            let cut = cut.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                // Held back: the tail that could be the start of `cut`.
                let mut held: Vec<u8> = Vec::new();
                let mut done = false;
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    held.extend_from_slice(&buf[..n]);
                    if !done {
                        if let Some(at) = held.windows(cut.len()).position(|w| w == cut.as_slice()) {
                            held.drain(at..at + cut.len());
                            done = true;
                        }
                    }
                    // Hold back only a tail that may be the start of `cut`.
                    let keep = if done {
                        0
                    } else {
                        (1..cut.len().min(held.len() + 1)).rev().find(|&k| held.ends_with(&cut[..k])).unwrap_or(0)
                    };
                    let send: Vec<u8> = held.drain(..held.len() - keep).collect();
                    if cw.write_all(&send).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_missing_a_key_fails_the_shard_with_the_numbers() {
    // Without a checksum nothing else in the snapshot shows the gap.
    let src = RedisServer::with_config(&["rdbchecksum no", "repl-diskless-sync yes", "repl-diskless-sync-delay 0"])
        .expect("source");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let mut c = compare::connect(&src.addr()).await;
    let cmds: Vec<Cmd> = (0..500).map(|i| Cmd::from_args(["SET", &format!("k:{i}"), "value"])).collect();
    c.pipeline(&cmds).await.expect("fill");
    // An uncompressed string key as the RDB writes it: type 0, length-prefixed key and value.
    let value = "the value of the victim";
    c.query(&Cmd::from_args(["SET", "victim", value])).await.expect("victim");
    let mut cut = vec![0u8, 6];
    cut.extend_from_slice(b"victim");
    cut.push(value.len() as u8);
    cut.extend_from_slice(value.as_bytes());
    let proxy = cutting_proxy(src.addr(), cut).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", proxy)], &dest.addr(), "");
    let handle = start(&path);
    let mut status = handle.status.clone();
    let limit = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let snap = status.borrow_and_update().clone();
        if let Some(f) = snap.failed() {
            break f.clone();
        }
        assert!(!snap.all_synced(), "the shard reported synced over a missing key: {snap:#?}");
        assert!(Instant::now() < limit, "no failure within a minute: {snap:#?}");
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    };
    let error = failed.last_error.clone().unwrap_or_default();
    // 501 keys, and the heartbeat key when it was written before the fork.
    assert!(
        error.contains("held 501 keys when it was taken, but 500 were read")
            || error.contains("held 502 keys when it was taken, but 501 were read"),
        "{error}"
    );
    assert_eq!(failed.state, ShardState::Failed);
    let results = handle.join().await;
    assert!(results.iter().any(|(_, r)| r.is_err()), "{results:?}");
    // The checkpoint never called the copy whole: the next run copies again.
    let mut d = compare::connect(&dest.addr()).await;
    let ckpt = d.query(&Cmd::from_args(["GET", "SHARDSYNC_HEARTBEAT:ckpt:server1"])).await.expect("get");
    let ckpt = ckpt.as_str().unwrap_or_default().to_owned();
    assert!(ckpt.contains("\"offset\":null"), "{ckpt}");
}

/// A TCP proxy in front of a destination that cuts a connection once it
/// has forwarded the next of `cuts` bytes of the tool's commands (the last
/// entry first); connections that never send that much (the dashboard's
/// stats poller) pass untouched.
async fn cutting_dest_proxy(upstream: String, cuts: Vec<usize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let cuts = Arc::new(std::sync::Mutex::new(cuts));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else { return };
            let cuts = cuts.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                let mut sent = 0usize;
                let mut buf = vec![0u8; 16 << 10];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let limit = cuts.lock().expect("cuts").last().copied();
                    let (n, cut) = match limit {
                        Some(l) if sent + n >= l => (l - sent, true),
                        _ => (n, false),
                    };
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                    if cut {
                        cuts.lock().expect("cuts").pop();
                        // What the server answers still flows for a moment,
                        // then both sides are cut.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_link_cut_mid_snapshot_still_accounts_for_every_key() {
    let src = RedisServer::with_config(&[]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let mut c = compare::connect(&src.addr()).await;
    for chunk in (0..20_000).collect::<Vec<_>>().chunks(1000) {
        let cmds: Vec<Cmd> = chunk
            .iter()
            .map(|i| match i % 4 {
                0 => Cmd::from_args(["SET", &format!("s:{i}"), &"x".repeat(100)]),
                1 => Cmd::from_args(["RPUSH", &format!("l:{i}"), "a", "b", "c"]),
                2 => Cmd::from_args(["HSET", &format!("h:{i}"), "f", "v", "g", "w"]),
                _ => Cmd::from_args(["SADD", &format!("z:{i}"), "1", "2", "3"]),
            })
            .collect();
        c.pipeline(&cmds).await.expect("fill");
    }
    // The first connection (the applier's) is cut in the middle of the
    // snapshot's windows, the next one a little later; the rest pass.
    let proxy = cutting_dest_proxy(dest.addr(), vec![1_500_000, 400_000]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", src.addr())], &proxy, "");
    let handle = start(&path);
    synced(&handle).await;
    let snap = handle.status.borrow().clone();
    let s = &snap.shards[0];
    assert!(s.errors >= 1, "the cuts were seen: {s:#?}");
    assert_eq!(s.keys_applied, 20_000, "{s:#?}");
    // Nothing skipped but the heartbeat key, which the snapshot may hold.
    assert_eq!(s.keys_skipped.total() - s.keys_skipped.own, 0, "{s:#?}");
    handle.stop().await;
    assert_equal(&[src.addr()], &dest.addr()).await;
}
