//! A task's life around its runs: it runs in one process at a time, and
//! `finish` removes what the tool left once the migration is over.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::task::{finish, run_binary, task_file};
use common::RedisServer;

fn shardsync(args: &[&str], task: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(args)
        .arg("--config")
        .arg(task)
        .stdin(Stdio::null())
        .output()
        .expect("shardsync");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn wait_until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_task_runs_once_and_finish_removes_its_traces() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let dest = RedisServer::with_config(&[]).expect("dest");
    for i in 0..100 {
        m1.redis_cli(&["SET", &format!("k{i}"), "v"]).expect("set");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", m1.addr())], &dest.addr(), "");
    let ckpt = "SHARDSYNC_HEARTBEAT:ckpt:server1";

    let mut first = run_binary(&path, false);
    wait_until("the copy", Duration::from_secs(60), || {
        dest.redis_cli(&["DBSIZE"]).is_ok_and(|n| n == "101")
            && dest.redis_cli(&["GET", ckpt]).is_ok_and(|v| v.contains("\"offset\":"))
    });
    // A second process on the same task is refused, and so is finish.
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(30));
    assert_eq!(code, 1, "{out}");
    let holder = format!("another shardsync process runs this task (pid {})", first.id());
    assert!(out.contains(&holder), "{out}");
    let (code, out) = shardsync(&["check"], &path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  not already running: another shardsync process runs this task"), "{out}");
    let (code, out) = shardsync(&["finish"], &path);
    assert_eq!(code, 1, "{out}");
    assert!(dest.redis_cli(&["EXISTS", ckpt]).expect("exists") == "1", "finish changed nothing");

    // Stopped (SIGTERM): finish removes the checkpoint, heartbeat and state.
    let pid = first.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let status = first.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    m1.redis_cli(&["SET", "SHARDSYNC_HEARTBEAT", "1"]).expect("a heartbeat left behind");
    assert!(dir.path().join("state/t").exists());
    let (code, out) = shardsync(&["finish"], &path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("removed 1 checkpoint keys"), "{out}");
    assert_eq!(dest.redis_cli(&["EXISTS", ckpt]).expect("exists"), "0");
    assert_eq!(m1.redis_cli(&["EXISTS", "SHARDSYNC_HEARTBEAT"]).expect("exists"), "0");
    assert!(!dir.path().join("state/t").exists(), "state dir removed");
    assert_eq!(dest.redis_cli(&["DBSIZE"]).expect("dbsize"), "100", "the data stays");
    // Nothing left to remove is not an error.
    let (code, out) = shardsync(&["finish"], &path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("removed 0 checkpoint keys"), "{out}");
}
