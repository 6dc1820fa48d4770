//! The terminal UI end to end: the real binary in a detached tmux session
//! of a fixed size, driven with `send-keys`, read with `capture-pane`,
//! against real redis-servers.
//!
//! `wizard_to_synced_then_quit` walks the wizard from an empty screen
//! (typing the sources and the destination, testing them, the precheck,
//! saving without passwords), starts the sync, waits for both shards to be
//! `incremental`, writes more through the sources, verifies (full) from the
//! dashboard, resizes it to 80×24, quits with `q` `y`, and
//! checks the destination holds every key and the saved file no password.
//! `run_dashboard_stops_cleanly_on_hangup` opens `shardsync run` on that
//! file and kills the tmux server under it, as a dropped SSH session
//! would: the task must stop with its checkpoints written.
//!
//! Waits poll the screen with generous deadlines (a loaded 2-core machine
//! is slow to fork a snapshot); nothing is asserted after a fixed sleep.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{RedisOptions, RedisServer};

/// The longest wait for something to appear on screen.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(90);
const DEST_PASSWORD: &str = "e2e-Secret-42";

/// A tmux server of our own (its own socket), killed on drop: the test's
/// sessions never touch the user's tmux, and never outlive the test.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        Tmux { socket: format!("shardsync-e2e-{tag}-{}", std::process::id()) }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs (is it installed?)")
    }

    /// A detached 120×40 session running `command` in `dir`, with `env`.
    fn start(&self, dir: &Path, env: &[(&str, &str)], command: &str) {
        let mut args: Vec<String> =
            ["new-session", "-d", "-s", "e2e", "-x", "120", "-y", "40", "-c"].iter().map(|s| s.to_string()).collect();
        args.push(dir.display().to_string());
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(command.to_owned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.cmd(&refs);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success(), "send-keys {keys:?}");
    }

    /// Types `text` literally.
    fn text(&self, text: &str) {
        assert!(self.cmd(&["send-keys", "-t", "e2e", "-l", text]).status.success(), "send-keys -l {text}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "e2e"]).stdout).into_owned()
    }

    /// Polls the screen until `pred` holds; the screen then.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("waited {SCREEN_TIMEOUT:?} for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("`{text}`"), |s| s.contains(text))
    }

    /// Escape alone: crossterm reads ESC followed at once by a key as Alt+key.
    fn escape(&self) {
        self.keys(&["Escape"]);
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

fn source(keys: u32, prefix: &str) -> RedisServer {
    // Disk-based replication: no 5 s diskless delay before each snapshot.
    let s = RedisServer::start(RedisOptions::new().config("repl-diskless-sync no")).expect("redis-server starts");
    let mut script = String::new();
    for i in 0..keys {
        script.push_str(&format!("SET {prefix}:{i} value-{i}\n"));
        if i % 10 == 0 {
            script.push_str(&format!("HSET {prefix}:h{i} f1 a f2 b\n"));
        }
    }
    pipe(&s, &script);
    s
}

/// Sends commands to `s` through `redis-cli`, one a line.
fn pipe(s: &RedisServer, script: &str) {
    use std::io::Write;
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &s.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli runs");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("commands written");
    assert!(child.wait().expect("redis-cli ends").success());
}

fn dbsize(s: &RedisServer) -> u64 {
    s.redis_cli(&["DBSIZE"]).expect("DBSIZE").trim().parse().expect("a number")
}

/// The sources' keys arrived: the destination holds as many keys as the
/// sources together (a source's heartbeat key is never copied; the
/// destination's extra is one checkpoint key per shard: the two cancel).
fn wait_copied(dest: &RedisServer, sources: &[&RedisServer]) {
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let want: u64 = sources.iter().map(|s| dbsize(s)).sum();
        let got = dbsize(dest);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "destination holds {got} keys, the sources {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_shardsync")
}

/// Adds a source in the wizard's editor.
fn add_source(t: &Tmux, name: &str, addr: &str) {
    t.keys(&["a"]);
    t.wait_text("Add source");
    t.text(name);
    t.keys(&["Tab"]);
    t.text(addr);
    t.keys(&["Tab", "Enter"]);
    t.wait_text(addr);
}

#[test]
fn wizard_to_synced_then_quit_then_hangup() {
    let s1 = source(3000, "s1");
    let s2 = source(2000, "s2");
    let dest = RedisServer::start(RedisOptions::new().password(DEST_PASSWORD)).expect("destination starts");
    let dir = tempfile::tempdir().expect("temp dir");

    let task_file = walk_the_wizard(&s1, &s2, &dest, dir.path());

    // The file: mode 0600, no password, the variable it reads instead.
    let text = std::fs::read_to_string(&task_file).expect("task file saved");
    assert!(!text.contains(DEST_PASSWORD), "{text}");
    assert!(text.contains("password_env = \"SHARDSYNC_DESTINATION_PASSWORD\""), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&task_file).expect("task file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    hangup_stops_the_dashboard(&s1, &s2, &dest, dir.path(), &task_file);
}

fn walk_the_wizard(s1: &RedisServer, s2: &RedisServer, dest: &RedisServer, dir: &Path) -> PathBuf {
    let t = Tmux::new("wizard");
    t.start(dir, &[], &format!("{}; echo shardsync-exit=$?; sleep 600", binary()));
    t.wait_text("1. Source masters");
    add_source(&t, "server1", &s1.addr());
    add_source(&t, "server2", &s2.addr());
    t.keys(&["T"]);
    // Each row's test column: `master <version> · <n> keys`.
    t.wait_for("both sources tested", |s| {
        s.match_indices("master ").filter(|(i, _)| s[i + 7..].starts_with(|c: char| c.is_ascii_digit())).count() == 2
    });

    t.keys(&["C-n"]);
    t.wait_text("2. Destination");
    t.text(&dest.addr());
    t.keys(&["Tab"]);
    t.text(DEST_PASSWORD);
    t.keys(&["C-t"]);
    let screen = t.wait_text("maxmemory-policy");
    assert!(!screen.contains(DEST_PASSWORD), "a password on screen:\n{screen}");

    t.keys(&["C-n"]);
    t.wait_text("The destination is empty now");
    t.keys(&["C-n"]);
    t.wait_for("the databases with their keys", |s| s.contains("db0") && s.contains("server2 2,200"));
    t.keys(&["C-n"]);
    let screen = t.wait_for("the precheck's verdict", |s| s.contains("Passed:") || s.contains("to acknowledge"));
    if screen.contains("to acknowledge") {
        t.keys(&["A"]);
        t.wait_text("Passed:");
    }
    t.keys(&["C-n"]);
    t.wait_text("[ Save & start ]");
    t.keys(&["Enter"]);

    // The dashboard: both shards copy, then follow the stream.
    let screen = t.wait_for("both shards incremental and caught up", |s| s.contains("2/2 synced"));
    assert!(screen.contains("server1") && screen.contains("incremental"), "{screen}");
    wait_copied(dest, &[s1, s2]);
    // Writes after the copy arrive through the stream.
    pipe(s1, "SET after:1 x\nINCR after:counter\nDEL s1:0\n");
    pipe(s2, "RPUSH after:list a b c\n");
    wait_copied(dest, &[s1, s2]);
    assert_eq!(dest.redis_cli(&["GET", "after:counter"]).expect("GET"), "1");
    assert_eq!(dest.redis_cli(&["EXISTS", "s1:0"]).expect("EXISTS"), "0");
    assert_eq!(dest.redis_cli(&["HGET", "s2:h10", "f2"]).expect("HGET"), "b");

    // Verify from the dashboard: values and TTLs, while the task runs.
    t.keys(&["v"]);
    t.wait_text("c  counts");
    t.keys(&["f"]);
    // `verify (full): ` (with the colon) is the finished run's headline.
    let screen = t.wait_for("the verify's verdict", |s| s.contains("verify (full): "));
    assert!(screen.contains("verify (full): EQUAL"), "{screen}");
    t.escape();

    // A resize is drawn at once, to the new size: at 80 columns the footer
    // keeps help and quit, and no line is longer than the screen.
    assert!(t.cmd(&["resize-window", "-t", "e2e", "-x", "80", "-y", "24"]).status.success());
    let screen = t.wait_for("the 80x24 layout", |s| s.contains("q quit") && !s.contains("Tab events"));
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    // A heartbeat on its way through shows as a few bytes of lag for a
    // moment (a shard is then not counted synced): the layout must show
    // both synced, not at the very frame the resize drew.
    let screen = t.wait_for("both shards synced at 80x24", |s| s.contains("2/2 synced"));
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");

    t.keys(&["q"]);
    t.wait_text("Stop task migration and quit?");
    t.keys(&["y"]);
    let screen = t.wait_text("shardsync-exit=");
    assert!(screen.contains("shardsync-exit=0"), "{screen}");
    assert!(screen.contains("server1: stopped, checkpoint written"), "{screen}");
    assert!(screen.contains("export:") && screen.contains("SHARDSYNC_DESTINATION_PASSWORD"), "{screen}");
    // The terminal is back: the shell's output is on the normal screen.
    assert!(!screen.contains("Events"), "{screen}");
    dir.join("migration.toml")
}

fn hangup_stops_the_dashboard(s1: &RedisServer, s2: &RedisServer, dest: &RedisServer, dir: &Path, task: &Path) {
    let t = Tmux::new("hangup");
    let command = format!("{} run --config {}", binary(), task.display());
    t.start(dir, &[("SHARDSYNC_DESTINATION_PASSWORD", DEST_PASSWORD)], &command);
    // It resumes from the checkpoints: incremental without a new copy.
    t.wait_for("the dashboard caught up", |s| s.contains("2/2 synced"));
    pipe(s2, "SET before-hangup 1\n");
    wait_copied(dest, &[s1, s2]);
    let log = dir.join(".shardsync").join("shardsync.log");
    let before = std::fs::read_to_string(&log).expect("the log file").len();
    // What a dropped SSH session does: the terminal goes, SIGHUP comes.
    let _ = t.cmd(&["kill-server"]);
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).expect("the log file");
        let tail = &text[before.min(text.len())..];
        if tail.contains("UI ended") {
            assert!(tail.contains("Hangup"), "{tail}");
            assert!(tail.contains("stopped, checkpoint written shard=server1"), "{tail}");
            assert!(tail.contains("stopped, checkpoint written shard=server2"), "{tail}");
            assert!(!text.contains(DEST_PASSWORD), "a password in the log");
            break;
        }
        assert!(Instant::now() < deadline, "no clean stop after SIGHUP; the log since:\n{tail}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ckpt = dest.redis_cli(&["GET", "SHARDSYNC_HEARTBEAT:ckpt:server2"]).expect("GET");
    assert!(!ckpt.is_empty(), "server2's checkpoint is on the destination");
}
