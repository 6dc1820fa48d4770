//! Task files and the real binary, for the engine's integration tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardsync::resp::{Cmd, Connection, Value};

use super::RedisServer;

/// A task file in `dir` (state under `dir/state`), conflict `intercept`
/// unless `extra_sync` (lines of `[sync]`) says otherwise.
pub fn task_file(dir: &Path, sources: &[(&str, String)], dest: &str, extra_sync: &str) -> PathBuf {
    let mut t = format!("name = \"t\"\nstate_dir = \"{}\"\n", dir.join("state").display());
    for (name, addr) in sources {
        t.push_str(&format!("\n[[source]]\nname = \"{name}\"\naddr = \"{addr}\"\n"));
    }
    t.push_str(&format!("\n[destination]\naddr = \"{dest}\"\n\n[sync]\nconflict = \"intercept\"\n{extra_sync}"));
    let p = dir.join("task.toml");
    std::fs::write(&p, t).expect("task file");
    p
}

/// A command that must succeed.
pub async fn cmd(c: &mut Connection, args: &[&str]) -> Value {
    let v = c.send(&Cmd::from_args(args.iter().copied())).await.unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(!v.is_error(), "{args:?} -> {v}");
    v
}

/// A counter of `INFO stats` (`sync_full`, `sync_partial_ok`…).
pub fn info_stat(server: &RedisServer, field: &str) -> u64 {
    let info = server.redis_cli(&["INFO", "stats"]).expect("info");
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// `shardsync run --config F --headless --json [--until-synced]`. If the
/// test panics before [`finish`] takes it, the process is killed then (see
/// [`kill_on_panic`]): a failed test must not leave it retrying against
/// servers that are gone.
pub fn run_binary(task: &Path, until_synced: bool) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardsync"));
    c.args(["run", "--config"]).arg(task).args(["--headless", "--json"]);
    if until_synced {
        c.arg("--until-synced");
    }
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn shardsync");
    kill_on_panic(child.id());
    child
}

thread_local! {
    /// The `shardsync` processes this test thread started and has not
    /// finished with.
    static RUNNING: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Registers `pid` to be killed if this thread panics. The test servers
/// have guards that kill them when a test unwinds; a `Child` has none.
/// Only a process that is still this test binary's child and still runs
/// `shardsync` is killed, so a pid the system gave to another process
/// since is left alone.
fn kill_on_panic(pid: u32) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let pids = RUNNING.with(|r| std::mem::take(&mut *r.borrow_mut()));
            for pid in pids.into_iter().filter(|&p| is_our_shardsync(p)) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            previous(info);
        }));
    });
    RUNNING.with(|r| r.borrow_mut().push(pid));
}

/// Whether `pid` is a child of this process running the `shardsync` binary.
fn is_our_shardsync(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) state ppid …`: the name may hold spaces and `)`, so the
    // last `)` ends it.
    let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
    cmdline.starts_with(env!("CARGO_BIN_EXE_shardsync").as_bytes()) && ppid == Some(std::process::id())
}

/// Waits for the process to exit (killing it after `limit`): exit code and output.
pub fn finish(child: Child, limit: Duration) -> (i32, String) {
    RUNNING.with(|r| r.borrow_mut().retain(|&p| p != child.id()));
    let start = Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            return (status.code().unwrap_or(-1), text);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "shardsync did not finish in {limit:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `shardsync verify --config F ARGS…` to the end: exit code, stdout, stderr.
pub fn verify_binary(task: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(["verify", "--config"])
        .arg(task)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shardsync verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A headless JSON run with standard input kept open (a terminal that
/// types nothing): its stdout lines arrive on the returned channel.
pub fn headless_with_open_stdin(task: &Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(["run", "--config"])
        .arg(task)
        .args(["--headless", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shardsync");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}
