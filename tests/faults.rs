//! Faults that left the operator stuck or misled (issue 13's F1–F5), each
//! against real servers and the real binary where it matters:
//!
//! * F1: a run killed during the first shard's full copy, with the other
//!   shard still waiting for it, starts again (intercept accepts a
//!   destination that holds only what this task wrote).
//! * F2: `stop` on standard input, or SIGTERM, ends a headless run within
//!   seconds whatever standard input is doing, with a closing record.
//! * F3: the state directory is the owner's only (0700, files 0600).
//! * F4: a shard resumed after a destination's wrong password follows what
//!   it does (incremental again), not `reconnecting`.
//! * F5: a source's wrong password pauses that shard (the task goes on)
//!   and a resume retries it.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::compare;
use common::task::{finish, headless_with_open_stdin, run_binary, task_file};
use common::wait::wait_for;
use common::{RedisOptions, RedisServer};
use shardsync::config::TaskConfig;
use shardsync::engine::{self, snapshot::ShardState, snapshot::TaskSnapshot, task::Command as EngineCommand};
use shardsync::resp::Cmd;
use tokio_util::sync::CancellationToken;

/// `redis-cli` on `server` as it is once its password was changed to
/// `changed` (the harness's own helper logs in with the old one).
fn as_changed(server: &RedisServer, args: &[&str]) {
    let port = server.port().to_string();
    let _ = Command::new("redis-cli").args(["-p", &port, "-a", "changed", "--no-auth-warning"]).args(args).output();
}

const HEARTBEAT: &[u8] = b"SHARDSYNC_HEARTBEAT";

async fn fill(addr: &str, prefix: &str, keys: usize) {
    let mut c = compare::connect(addr).await;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let cmds: Vec<Cmd> = chunk.iter().map(|i| Cmd::from_args(["SET", &format!("{prefix}:{i}"), "v"])).collect();
        c.pipeline(&cmds).await.expect("fill");
    }
}

fn sigterm(pid: u32) {
    let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill").success();
    assert!(ok, "kill -TERM {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_a_run_killed_in_the_first_full_copy_starts_again() {
    let m1 = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("m1");
    let m2 = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("m2");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), "a", 20_000).await;
    fill(&m2.addr(), "b", 20_000).await;
    let dir = tempfile::tempdir().expect("tmp");
    // One host, one copy at a time, each spread over about 4 s.
    let slow = task_file(
        dir.path(),
        &[("server1", m1.addr()), ("server2", m2.addr())],
        &dest.addr(),
        "max_keys_per_sec = 5000\n",
    );
    let mut d = compare::connect(&dest.addr()).await;
    // Killed once the first copy has written keys (the other still waits).
    let mut child = run_binary(&slow, false);
    let start = Instant::now();
    loop {
        let keys = d.query(&Cmd::from_args(["DBSIZE"])).await.expect("dbsize").as_int().unwrap_or(0);
        if keys > 3000 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the copy did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // Every later run starts; the last catches up in full.
    let fast = task_file(dir.path(), &[("server1", m1.addr()), ("server2", m2.addr())], &dest.addr(), "");
    let (code, out) = finish(run_binary(&fast, true), Duration::from_secs(90));
    assert_eq!(code, 0, "{out}");
    let diffs = compare::diff(&[m1.addr(), m2.addr()], &dest.addr(), &[HEARTBEAT]).await;
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

/// Waits for the exit, at most `limit`: how long it took.
fn exits_within(child: &mut std::process::Child, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "{status}");
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running {limit:?} after being told to stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_f3_a_headless_run_stops_at_once_and_keeps_its_state_private() {
    let src = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&src.addr(), "k", 2000).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "");
    for how in ["stop on stdin", "SIGTERM"] {
        let (mut child, lines) = headless_with_open_stdin(&path);
        let limit = Instant::now() + Duration::from_secs(30);
        loop {
            let line = lines.recv_timeout(limit.saturating_duration_since(Instant::now())).expect("progress");
            if line.contains("\"state\":\"incremental\"") {
                break;
            }
        }
        match how {
            "SIGTERM" => sigterm(child.id()),
            _ => writeln!(child.stdin.as_mut().expect("stdin"), "stop").expect("stop"),
        }
        // Standard input stays open: the run must not wait for it.
        let took = exits_within(&mut child, Duration::from_secs(10));
        let rest: Vec<String> = lines.try_iter().collect();
        assert!(
            rest.iter().any(|l| l.contains("\"shard\":\"server1\"") && l.contains("\"state\":\"stopped\"")),
            "{how}: a closing record ({took:?}): {rest:?}"
        );
    }
    // F3: the state directory is the owner's only.
    let state = dir.path().join("state");
    let mut seen = 0;
    let mut dirs = vec![state.clone()];
    while let Some(d) = dirs.pop() {
        let mode = std::fs::metadata(&d).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                seen += 1;
                let mode = std::fs::metadata(&p).expect("file").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
        }
    }
    assert!(seen >= 3, "the lock, the checkpoint and a spool segment at least ({seen} files)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_f5_wrong_passwords_pause_the_shard_and_a_resume_goes_on() {
    let src = RedisServer::start(RedisOptions::new().password("src-pw").config("repl-diskless-sync-delay 0"))
        .expect("source");
    let dest = RedisServer::start(RedisOptions::new().password("dest-pw")).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("task.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"t\"\nstate_dir = \"{}\"\n\n[[source]]\nname = \"server1\"\naddr = \"{}\"\npassword = \"src-pw\"\n\n\
             [destination]\naddr = \"{}\"\npassword = \"dest-pw\"\n",
            dir.path().join("state").display(),
            src.addr(),
            dest.addr()
        ),
    )
    .expect("task");
    let handle = engine::spawn(TaskConfig::load(&path).expect("task"), CancellationToken::new());
    let synced = |s: &TaskSnapshot| s.all_synced();
    wait_for(&handle, "synced", Duration::from_secs(30), synced).await;
    let paused = |s: &TaskSnapshot| s.shards[0].paused_on_error && s.shards[0].state == ShardState::Stopped;
    let incremental = |s: &TaskSnapshot| s.shards[0].state == ShardState::Incremental && !s.shards[0].paused_on_error;

    // F5: the source's password changes and its link drops.
    src.redis_cli(&["CONFIG", "SET", "requirepass", "changed"]).expect("config");
    as_changed(&src, &["CLIENT", "KILL", "TYPE", "replica"]);
    wait_for(&handle, "paused on the source's password", Duration::from_secs(20), paused).await;
    let why = handle.status.borrow().shards[0].last_error.clone().unwrap_or_default();
    assert!(why.contains("wrong password"), "{why}");
    assert!(handle.status.borrow().failed().is_none(), "the task goes on");
    as_changed(&src, &["CONFIG", "SET", "requirepass", "src-pw"]);
    handle.commands.send(EngineCommand::ResumeAll).await.expect("resume");
    wait_for(&handle, "incremental after the resume", Duration::from_secs(20), incremental).await;

    // F4: the destination's password changes and its connections drop.
    dest.redis_cli(&["CONFIG", "SET", "requirepass", "changed"]).expect("config");
    as_changed(&dest, &["CLIENT", "KILL", "TYPE", "normal"]);
    // A write makes the applier reconnect (and meet the new password).
    let _ = src.redis_cli(&["SET", "after", "1"]);
    wait_for(&handle, "paused on the destination's password", Duration::from_secs(30), paused).await;
    as_changed(&dest, &["CONFIG", "SET", "requirepass", "dest-pw"]);
    handle.commands.send(EngineCommand::ResumeAll).await.expect("resume");
    // Its state follows what it does: incremental within seconds.
    wait_for(&handle, "incremental after the resume", Duration::from_secs(10), incremental).await;
    handle.stop().await;
}
