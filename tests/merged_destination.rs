//! A merged destination (several shards in one destination) against real
//! servers: commands of one shard that would reach the other shards' data
//! are refused with an alert naming the shard and the offset, and `MOVE` /
//! `COPY … DB` are mirrored only for the DBs the task copies.

mod common;

use std::time::{Duration, Instant};

use common::compare;
use common::task::task_file;
use common::wait::wait_for;
use common::RedisServer;
use shardsync::config::TaskConfig;
use shardsync::engine::{self, snapshot::ShardState, task::Command};
use shardsync::resp::{Cmd, Connection, Value};
use tokio_util::sync::CancellationToken;

async fn synced(handle: &engine::EngineHandle) {
    common::wait::synced(handle, Duration::from_secs(60)).await;
}

async fn cmd(c: &mut Connection, args: &[&str]) -> Value {
    let v = c.send(&Cmd::from_args(args.iter().copied())).await.unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(!v.is_error(), "{args:?} -> {v}");
    v
}

async fn get(c: &mut Connection, db: &str, key: &str) -> Option<String> {
    cmd(c, &["SELECT", db]).await;
    c.send(&Cmd::from_args(["GET", key])).await.expect("get").as_str().map(str::to_owned)
}

/// Writes a marker on `source` (DB 0) and waits for it on the destination:
/// a shard that is incremental has then applied everything before it.
async fn drain(source: &mut Connection, dest: &mut Connection, n: &str) {
    cmd(source, &["SELECT", "0"]).await;
    cmd(source, &["SET", &format!("drain:{n}"), "1"]).await;
    let limit = Instant::now() + Duration::from_secs(20);
    while get(dest, "0", &format!("drain:{n}")).await.is_none() {
        assert!(Instant::now() < limit, "drain {n} did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alerts of `shard` that contain `text`.
fn alerts(handle: &engine::EngineHandle, shard: &str, text: &str) -> Vec<(Option<u64>, String)> {
    handle
        .status
        .borrow()
        .shards
        .iter()
        .filter(|s| s.shard == shard)
        .flat_map(|s| s.alerts.iter().filter(|a| a.message.contains(text)).map(|a| (a.offset, a.message.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reaching_other_shards_data_are_refused_and_moves_are_mirrored() {
    let m1 = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("m1");
    let m2 = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("m2");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let (mut c1, mut c2) = (compare::connect(&m1.addr()).await, compare::connect(&m2.addr()).await);
    cmd(&mut c1, &["SET", "one:a", "1"]).await;
    for (db, v) in [("0", "two-in-0"), ("1", "two-in-1")] {
        cmd(&mut c2, &["SELECT", db]).await;
        cmd(&mut c2, &["SET", "two:k", v]).await;
    }
    cmd(&mut c2, &["SELECT", "0"]).await;
    cmd(&mut c1, &["FUNCTION", "LOAD", "#!lua name=lib1\nredis.register_function('f1', function() return 1 end)"])
        .await;
    let dir = tempfile::tempdir().expect("tmp");
    // DBs 0 and 1 are copied; 2 is not.
    let path =
        task_file(dir.path(), &[("server1", m1.addr()), ("server2", m2.addr())], &dest.addr(), "databases = [0, 1]\n");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    synced(&handle).await;
    let mut d = compare::connect(&dest.addr()).await;

    // SWAPDB on server1 would swap server2's keys too: refused.
    cmd(&mut c1, &["SWAPDB", "0", "1"]).await;
    cmd(&mut c1, &["SWAPDB", "0", "1"]).await;
    // FUNCTION FLUSH would remove what every shard loaded: refused.
    cmd(&mut c1, &["FUNCTION", "FLUSH"]).await;
    // MOVE into a DB the task does not copy: the destination mirrors only
    // the copied DBs, so the key goes from them.
    cmd(&mut c1, &["SET", "one:moved-out", "x"]).await;
    cmd(&mut c1, &["MOVE", "one:moved-out", "2"]).await;
    // MOVE and COPY between copied DBs.
    cmd(&mut c1, &["SET", "one:moved", "m"]).await;
    cmd(&mut c1, &["MOVE", "one:moved", "1"]).await;
    cmd(&mut c1, &["SET", "one:copied", "c"]).await;
    cmd(&mut c1, &["COPY", "one:copied", "one:copy", "DB", "1"]).await;
    drain(&mut c1, &mut d, "1").await;
    // Alerts reach the status channel a few times a second.
    wait_for(&handle, "the alerts", Duration::from_secs(5), |s| {
        s.shards.iter().any(|s| s.alerts.iter().any(|a| a.message.contains("FUNCTION FLUSH")))
    })
    .await;
    let swaps = alerts(&handle, "server1", "SWAPDB");
    assert_eq!(swaps.len(), 2, "{swaps:?}");
    assert!(swaps.iter().all(|(offset, m)| offset.is_some() && m.contains("source server1 at offset")), "{swaps:?}");
    let flush = alerts(&handle, "server1", "FUNCTION FLUSH");
    assert!(flush.len() == 1 && flush[0].1.contains("NOT applied"), "{flush:?}");
    let lib = d.send(&Cmd::from_args(["FUNCTION", "LIST"])).await.expect("function list");
    assert!(format!("{lib:?}").contains("lib1"), "the library is still loaded: {lib:?}");
    // server2's keys where they were.
    assert_eq!(get(&mut d, "0", "two:k").await.as_deref(), Some("two-in-0"));
    assert_eq!(get(&mut d, "1", "two:k").await.as_deref(), Some("two-in-1"));
    assert_eq!(get(&mut d, "0", "one:moved-out").await, None, "moved out of the copied DBs");
    assert_eq!(get(&mut d, "2", "one:moved-out").await, None, "DB 2 is not the task's");
    assert_eq!(get(&mut d, "1", "one:moved").await.as_deref(), Some("m"));
    assert_eq!(get(&mut d, "0", "one:moved").await, None);
    assert_eq!(get(&mut d, "1", "one:copy").await.as_deref(), Some("c"));

    // A MOVE from DB 2 (not copied) into DB 0: its value is not in the
    // stream. The shard pauses before going on, naming key, DBs and offset.
    cmd(&mut c1, &["SELECT", "2"]).await;
    cmd(&mut c1, &["SET", "one:hidden", "h"]).await;
    cmd(&mut c1, &["MOVE", "one:hidden", "0"]).await;
    cmd(&mut c1, &["SELECT", "0"]).await;
    cmd(&mut c1, &["SET", "one:after", "a"]).await;
    wait_for(&handle, "server1 paused", Duration::from_secs(20), |s| {
        s.shards.iter().any(|s| s.shard == "server1" && s.paused_on_error && s.state == ShardState::Stopped)
    })
    .await;
    let held = alerts(&handle, "server1", "MOVE of key \"one:hidden\"");
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0].1.contains("source DB 2 (not copied) into DB 0") && held[0].1.contains("offset"), "{held:?}");
    assert_eq!(get(&mut d, "0", "one:after").await, None, "nothing after it is applied while paused");
    // server2 goes on meanwhile.
    cmd(&mut c2, &["SET", "two:later", "l"]).await;
    drain(&mut c2, &mut d, "2").await;
    assert_eq!(get(&mut d, "0", "two:later").await.as_deref(), Some("l"));
    handle.commands.send(Command::ResumeShard("server1".into())).await.expect("resume");
    drain(&mut c1, &mut d, "3").await;
    assert_eq!(get(&mut d, "0", "one:after").await.as_deref(), Some("a"), "resumed without the MOVE");
    assert_eq!(get(&mut d, "0", "one:hidden").await, None);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selects_inside_a_source_transaction_follow_the_db_map() {
    let m1 = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let mut c1 = compare::connect(&m1.addr()).await;
    cmd(&mut c1, &["SET", "before", "b"]).await;
    let dir = tempfile::tempdir().expect("tmp");
    // Source DB 1 goes to destination DB 5.
    let path =
        task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "databases = [0, 1]\n[sync.db_map]\n1 = 5\n");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    synced(&handle).await;
    let tx = [
        Cmd::from_args(["MULTI"]),
        Cmd::from_args(["SELECT", "1"]),
        Cmd::from_args(["SET", "in-one", "1"]),
        Cmd::from_args(["SELECT", "0"]),
        Cmd::from_args(["SET", "in-zero", "0"]),
        Cmd::from_args(["EXEC"]),
    ];
    let replies = c1.pipeline(&tx).await.expect("transaction");
    assert!(replies.iter().all(|r| !r.is_error()), "{replies:?}");
    let mut d = compare::connect(&dest.addr()).await;
    drain(&mut c1, &mut d, "tx").await;
    assert_eq!(get(&mut d, "5", "in-one").await.as_deref(), Some("1"), "DB 1 is destination DB 5");
    assert_eq!(get(&mut d, "1", "in-one").await, None);
    assert_eq!(get(&mut d, "0", "in-zero").await.as_deref(), Some("0"));
    handle.stop().await;
}
