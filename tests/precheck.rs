//! The precheck against real servers: every check passes on a healthy
//! task, and each one is made to warn or fail by a server configured for
//! it (or, for the spool disk, a file system too small for it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::task::{cmd, finish, run_binary};
use common::{compare, Nutcracker, RedisOptions, RedisServer};
use shardsync::config::{Secret, TaskConfig};
use shardsync::precheck::{self, CheckStatus, PrecheckReport};
use shardsync::probe::{self, ProbeError};
use shardsync::resp::Cmd;

/// A source line of a task file: name, address, password ("" for none).
struct Src<'a>(&'a str, String, &'a str);

fn task_text(dir: &Path, sources: &[Src], dest: &str, dest_password: &str, sync: &str) -> PathBuf {
    let mut t = format!("name = \"t\"\nstate_dir = \"{}\"\n", dir.join("state").display());
    for Src(name, addr, password) in sources {
        t.push_str(&format!("\n[[source]]\nname = \"{name}\"\naddr = \"{addr}\"\npassword = \"{password}\"\n"));
    }
    t.push_str(&format!("\n[destination]\naddr = \"{dest}\"\npassword = \"{dest_password}\"\n\n[sync]\n{sync}\n"));
    let p = dir.join("task.toml");
    std::fs::write(&p, t).expect("task file");
    p
}

async fn precheck_of(path: &Path) -> PrecheckReport {
    let task = TaskConfig::load(path).expect("task");
    precheck::run(&task, None).await
}

/// The status of check `id` for `subject`, with the whole report when absent.
fn status(report: &PrecheckReport, id: &str, subject: &str) -> CheckStatus {
    report.find(id, subject).unwrap_or_else(|| panic!("no {id} for {subject}: {report:#?}")).status
}

fn reason<'a>(report: &'a PrecheckReport, id: &str, subject: &str) -> &'a str {
    report.find(id, subject).map(|c| c.reason.as_str()).unwrap_or_default()
}

fn fix<'a>(report: &'a PrecheckReport, id: &str, subject: &str) -> &'a str {
    report.find(id, subject).and_then(|c| c.fix.as_deref()).unwrap_or_default()
}

async fn fill(addr: &str, db: u32, keys: usize, value_len: usize) {
    let mut c = compare::connect(addr).await;
    cmd(&mut c, &["SELECT", &db.to_string()]).await;
    let value = "v".repeat(value_len);
    let cmds: Vec<Cmd> = (0..keys).map(|i| Cmd::from_args(["SET", &format!("k{db}:{i}"), value.as_str()])).collect();
    for chunk in cmds.chunks(1000) {
        c.pipeline(chunk).await.expect("fill");
    }
}

/// A non-loopback IPv4 address of this machine: a client connecting to it
/// is not "local" for Redis's protected mode, and a server bound to
/// 127.0.0.1 refuses it. A machine with none (a bare container) gets one
/// added to `lo` (a /32 of global scope, which needs root, as CI has), and
/// it is removed on drop.
struct OutsideAddress {
    ip: String,
    added: bool,
}

const ADDED_ADDRESS: &str = "10.213.0.1/32";

fn outside_address() -> OutsideAddress {
    fn global_ipv4() -> Option<String> {
        let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next())
            .map(str::to_owned)
    }
    if let Some(ip) = global_ipv4() {
        return OutsideAddress { ip, added: false };
    }
    let _ = Command::new("ip").args(["addr", "add", ADDED_ADDRESS, "dev", "lo"]).status();
    let ip = global_ipv4().expect("this test needs a non-loopback IPv4 address (ip -4 addr), or root to add one to lo");
    OutsideAddress { ip, added: true }
}

impl Drop for OutsideAddress {
    fn drop(&mut self) {
        if self.added {
            let _ = Command::new("ip").args(["addr", "del", ADDED_ADDRESS, "dev", "lo"]).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_on_a_healthy_task() {
    let (m1, m2) = (RedisServer::with_config(&[]).expect("m1"), RedisServer::with_config(&[]).expect("m2"));
    let dest = RedisServer::with_config(&[]).expect("dest");
    fill(&m1.addr(), 0, 200, 100).await;
    fill(&m2.addr(), 0, 100, 100).await;
    fill(&m2.addr(), 2, 50, 100).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_text(dir.path(), &[Src("s1", m1.addr(), ""), Src("s2", m2.addr(), "")], &dest.addr(), "", "");
    let report = precheck_of(&path).await;
    let not_passed: Vec<_> = report.checks.iter().filter(|c| c.status != CheckStatus::Pass).collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    let ids: std::collections::BTreeSet<&str> = report.checks.iter().map(|c| c.id).collect();
    for id in [
        "source.reachable",
        "source.redis",
        "source.role",
        "source.psync",
        "source.backlog",
        "source.heartbeat",
        "destination.reachable",
        "destination.redis",
        "destination.writable",
        "destination.version",
        "destination.eviction",
        "destination.memory",
        "destination.databases",
        "destination.conflict",
        "destination.multi",
        "task.databases",
        "task.disk",
    ] {
        assert!(ids.contains(id), "{id} missing: {report:#?}");
    }
    assert_eq!(report.checks.iter().filter(|c| c.id == "source.psync").count(), 2, "one per source");
    assert!(reason(&report, "task.databases", "task").contains("db0 (300 keys), db2 (50 keys)"), "{report:#?}");
    assert!(reason(&report, "destination.databases", "").contains("writes db0, db2"), "{report:#?}");
    // The binary: exit 0, and --json carries every check.
    let out = Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(["check", "--json", "--config"])
        .arg(&path)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["passed"], true);
    assert_eq!(v["checks"].as_array().map(Vec::len), Some(report.checks.len()));
    assert_eq!(v["checks"][0]["status"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_and_wrong_passwords_fail_with_what_to_do() {
    let locked = RedisServer::start(RedisOptions::new().password("s3cret")).expect("locked");
    let acl = RedisServer::with_config(&["user admin on >Rp829dlwa ~* &* +@all"]).expect("acl dest");
    let closed = common::free_port().expect("port");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_text(
        dir.path(),
        &[Src("down", format!("127.0.0.1:{closed}"), ""), Src("locked", locked.addr(), "wrong")],
        &acl.addr(),
        "admin:nope",
        "",
    );
    let report = precheck_of(&path).await;
    assert!(!report.passed());
    assert_eq!(status(&report, "source.reachable", "down"), CheckStatus::Fail);
    assert!(reason(&report, "source.reachable", "down").contains("connection refused"), "{report:#?}");
    assert!(fix(&report, "source.reachable", "down").contains("bind"), "{report:#?}");
    assert_eq!(status(&report, "source.reachable", "locked"), CheckStatus::Fail);
    assert!(reason(&report, "source.reachable", "locked").contains("wrong password"), "{report:#?}");
    assert!(fix(&report, "source.reachable", "locked").contains("`password` of source locked"), "{report:#?}");
    assert_eq!(status(&report, "destination.reachable", "destination"), CheckStatus::Fail);
    assert!(reason(&report, "destination.reachable", "destination").contains("user `admin`"), "{report:#?}");
    // An unreachable server gets one failure, not one per check.
    assert!(report.find("source.psync", "down").is_none());

    // The right user:password passes.
    let path = task_text(dir.path(), &[Src("locked", locked.addr(), "s3cret")], &acl.addr(), "admin:Rp829dlwa", "");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "source.reachable", "locked"), CheckStatus::Pass);
    assert_eq!(status(&report, "destination.reachable", "destination"), CheckStatus::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_mode_and_bind_refusals_are_explained() {
    let outside = outside_address();
    let ip = &outside.ip;
    // Protected mode: no password, a client from outside the loopback.
    let guarded = RedisServer::with_config(&[&format!("bind 127.0.0.1 {ip}"), "protected-mode yes"]).expect("guarded");
    // Bound to loopback only: the outside address is refused.
    let local_only = RedisServer::with_config(&[]).expect("local only");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_text(
        dir.path(),
        &[
            Src("guarded", format!("{ip}:{}", guarded.port()), ""),
            Src("local", format!("{ip}:{}", local_only.port()), ""),
        ],
        &dest.addr(),
        "",
        "",
    );
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "source.reachable", "guarded"), CheckStatus::Fail);
    assert!(reason(&report, "source.reachable", "guarded").contains("protected mode"), "{report:#?}");
    assert!(fix(&report, "source.reachable", "guarded").contains("requirepass"), "{report:#?}");
    // Redis writes DENIED and closes at once, racing our PING: whichever
    // comes first, the answer is the same.
    let guarded_addr = format!("{ip}:{}", guarded.port());
    for _ in 0..30 {
        let e = probe::probe(&guarded_addr, &Secret::none()).await.expect_err("denied");
        assert!(matches!(e, ProbeError::ProtectedMode { .. }), "{e}");
    }
    assert_eq!(status(&report, "source.reachable", "local"), CheckStatus::Fail);
    assert!(fix(&report, "source.reachable", "local").contains("`bind` line"), "{report:#?}");
    // From the loopback both are fine.
    let path = task_text(
        dir.path(),
        &[Src("guarded", guarded.addr(), ""), Src("local", local_only.addr(), "")],
        &dest.addr(),
        "",
        "",
    );
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "source.reachable", "guarded"), CheckStatus::Pass);
    assert_eq!(status(&report, "source.reachable", "local"), CheckStatus::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twemproxy_port_is_recognised_as_a_proxy() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let proxy = Nutcracker::start(&[m1.addr()]).expect("nutcracker");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let path =
        task_text(dir.path(), &[Src("proxy", proxy.addr(), ""), Src("real", m1.addr(), "")], &dest.addr(), "", "");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "source.reachable", "proxy"), CheckStatus::Pass);
    assert_eq!(status(&report, "source.redis", "proxy"), CheckStatus::Fail);
    let why = reason(&report, "source.redis", "proxy");
    assert!(why.contains("twemproxy") && why.contains("nutcracker.yml"), "{why}");
    assert_eq!(status(&report, "source.redis", "real"), CheckStatus::Pass);
    // A proxy as the destination is refused the same way.
    let path = task_text(dir.path(), &[Src("real", m1.addr(), "")], &proxy.addr(), "", "");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "destination.redis", "destination"), CheckStatus::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_renamed_psync() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    let replica = RedisServer::with_config(&[&format!("replicaof 127.0.0.1 {}", m1.port())]).expect("replica");
    let renamed =
        RedisServer::with_config(&["rename-command PSYNC \"\"", "rename-command SYNC \"\""]).expect("renamed");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_text(
        dir.path(),
        &[Src("replica", replica.addr(), ""), Src("renamed", renamed.addr(), ""), Src("master", m1.addr(), "")],
        &dest.addr(),
        "",
        "",
    );
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "source.role", "replica"), CheckStatus::Warn);
    assert!(reason(&report, "source.role", "replica").contains(&format!("replica of 127.0.0.1:{}", m1.port())));
    assert!(fix(&report, "source.role", "replica").contains(&m1.addr()), "{report:#?}");
    assert_eq!(status(&report, "source.role", "master"), CheckStatus::Pass);
    assert_eq!(status(&report, "source.psync", "renamed"), CheckStatus::Fail);
    assert!(fix(&report, "source.psync", "renamed").contains("rename-command PSYNC"), "{report:#?}");
    assert_eq!(status(&report, "source.psync", "master"), CheckStatus::Pass);
    // A read-only replica as the destination refuses writes.
    let path = task_text(dir.path(), &[Src("master", m1.addr(), "")], &replica.addr(), "", "");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "destination.writable", "destination"), CheckStatus::Fail);
    assert!(reason(&report, "destination.writable", "destination").contains("READONLY"), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_version_eviction_memory_and_multi() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    fill(&m1.addr(), 0, 3000, 1000).await;
    let older = RedisServer::start(RedisOptions::redis6().expect("redis 6")).expect("6.0.9");
    let lru = RedisServer::with_config(&["maxmemory-policy allkeys-lru"]).expect("lru");
    let small = RedisServer::with_config(&["maxmemory 2mb"]).expect("small");
    let no_multi = RedisServer::with_config(&["rename-command MULTI \"\""]).expect("no multi");
    let dir = tempfile::tempdir().expect("tmp");
    let check = |dest: String| {
        let path = task_text(dir.path(), &[Src("s1", m1.addr(), "")], &dest, "", "");
        async move { precheck_of(&path).await }
    };
    let report = check(older.addr()).await;
    assert_eq!(status(&report, "destination.version", ""), CheckStatus::Warn);
    assert!(reason(&report, "destination.version", "").contains("s1 runs 7.0"), "{report:#?}");
    assert!(report.passed(), "an older destination works, slower");

    // The command forms the source has used that 6.0.9 lacks: LMOVE is
    // rewritten; functions have no equivalent there (a pause at each).
    assert_eq!(status(&report, "destination.forms", ""), CheckStatus::Pass, "{report:#?}");
    let mut c = shardsync::resp::Connection::connect(&m1.addr(), &Default::default()).await.expect("m1");
    for args in [
        &["RPUSH", "l", "a", "b"][..],
        &["LMOVE", "l", "l2", "LEFT", "RIGHT"],
        &["FUNCTION", "LOAD", "#!lua name=f\nredis.register_function('f', function() return 1 end)"],
    ] {
        let v = c.send(&shardsync::resp::Cmd::from_args(args.iter().copied())).await.expect("command");
        assert!(!v.is_error(), "{args:?}: {v}");
    }
    let report = check(older.addr()).await;
    assert_eq!(status(&report, "destination.forms", ""), CheckStatus::Warn, "{report:#?}");
    let why = reason(&report, "destination.forms", "");
    assert!(why.contains("FUNCTION LOAD/DELETE/FLUSH/RESTORE (s1: function|load 1), from 7.0.0"), "{why}");
    assert!(why.contains("LMOVE (s1: lmove 1) → RPOPLPUSH"), "{why}");
    assert!(fix(&report, "destination.forms", "").contains("version 7.0.0 or newer"), "{report:#?}");
    assert!(report.passed(), "a warning: the task can start");

    let report = check(lru.addr()).await;
    assert_eq!(status(&report, "destination.eviction", ""), CheckStatus::Warn);
    assert!(reason(&report, "destination.eviction", "").contains("allkeys-lru"), "{report:#?}");
    assert!(fix(&report, "destination.eviction", "").contains("CONFIG SET maxmemory-policy noeviction"));

    let report = check(small.addr()).await;
    assert_eq!(status(&report, "destination.memory", ""), CheckStatus::Fail, "{report:#?}");
    let why = reason(&report, "destination.memory", "");
    assert!(why.contains("maxmemory 2.0 MB") && why.contains("the sources' data is ~"), "{why}");
    assert!(fix(&report, "destination.memory", "").contains("CONFIG SET maxmemory"), "{report:#?}");
    assert_eq!(status(&check(lru.addr()).await, "destination.memory", ""), CheckStatus::Pass);

    let report = check(no_multi.addr()).await;
    assert_eq!(status(&report, "destination.multi", ""), CheckStatus::Warn, "{report:#?}");
    assert!(fix(&report, "destination.multi", "").contains("sync.checkpoint = \"local\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_modes_and_database_selection() {
    let m1 = RedisServer::with_config(&[]).expect("m1");
    fill(&m1.addr(), 0, 20, 10).await;
    fill(&m1.addr(), 3, 5, 10).await;
    let dest = RedisServer::with_config(&["databases 4"]).expect("dest");
    fill(&dest.addr(), 0, 7, 10).await;
    let dir = tempfile::tempdir().expect("tmp");
    let check = |sync: &str| {
        let path = task_text(dir.path(), &[Src("s1", m1.addr(), "")], &dest.addr(), "", sync);
        async move { precheck_of(&path).await }
    };
    let report = check("conflict = \"intercept\"").await;
    assert_eq!(status(&report, "destination.conflict", ""), CheckStatus::Fail);
    assert!(reason(&report, "destination.conflict", "").contains("db0 holds 7 keys"), "{report:#?}");
    let report = check("conflict = \"overwrite\"").await;
    assert_eq!(status(&report, "destination.conflict", ""), CheckStatus::Warn);
    assert!(reason(&report, "destination.conflict", "").contains("db0 holds 7 keys"), "{report:#?}");
    assert!(report.passed());
    let report = check("conflict = \"skip\"").await;
    assert_eq!(status(&report, "destination.conflict", ""), CheckStatus::Warn);
    // Only db3 selected: db0's keys do not matter, db3 is empty there.
    let report = check("conflict = \"intercept\"\ndatabases = [3]").await;
    assert_eq!(status(&report, "destination.conflict", ""), CheckStatus::Pass, "{report:#?}");
    assert_eq!(status(&report, "task.databases", "task"), CheckStatus::Pass);
    assert!(reason(&report, "task.databases", "task").contains("not selected: db0 (20 keys)"), "{report:#?}");

    // A DB the destination does not have, and a selection empty everywhere.
    let report = check("conflict = \"overwrite\"\ndatabases = [0, 5]").await;
    assert_eq!(status(&report, "destination.databases", ""), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "destination.databases", "").contains("writes db5 but the destination has 4 databases"));
    assert!(fix(&report, "destination.databases", "").contains("databases 6"), "{report:#?}");
    assert_eq!(status(&report, "task.databases", "task"), CheckStatus::Warn);
    assert!(reason(&report, "task.databases", "task").contains("db5 selected but empty"), "{report:#?}");

    // Without CONFIG (renamed, as managed services do), SELECT tells.
    let no_config = RedisServer::with_config(&["databases 4", "rename-command CONFIG \"\""]).expect("no CONFIG");
    let path = task_text(dir.path(), &[Src("s1", m1.addr(), "")], &no_config.addr(), "", "databases = [0, 5]");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "destination.databases", ""), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "destination.databases", "").contains("writes db5"), "{report:#?}");
    // INFO still says the eviction policy.
    assert_eq!(status(&report, "destination.eviction", ""), CheckStatus::Pass, "{report:#?}");

    // `run` refuses to start on a failed check, and says which.
    let path = task_text(dir.path(), &[Src("s1", m1.addr(), "")], &dest.addr(), "", "conflict = \"intercept\"");
    let (code, out) = finish(run_binary(&path, true), Duration::from_secs(30));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  conflict = \"intercept\": db0 holds 7 keys"), "{out}");
    assert!(out.contains("\"event\":\"failed\",\"shard\":\"precheck\""), "{out}");
    assert_eq!(dest.redis_cli(&["DBSIZE"]).expect("dbsize"), "7", "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_backlog_under_load_and_an_unwritable_heartbeat_warn() {
    let busy = RedisServer::with_config(&["repl-backlog-size 16kb", "client-output-buffer-limit replica 64kb 32kb 10"])
        .expect("busy");
    // This user may replicate and read, not SET; the other may not replicate.
    let no_set = RedisServer::with_config(&[
        "user sync on >pw ~* &* +@all -set",
        "user reader on >pw ~* &* +@read +info +ping +command +config",
    ])
    .expect("no set");
    // Its default user writes; `reader` may not.
    let dest =
        RedisServer::with_config(&["user reader on >pw ~* &* +@read +info +ping +command +config"]).expect("dest");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (busy.addr(), stop.clone());
        tokio::spawn(async move {
            let mut c = compare::connect(&addr).await;
            let value = "w".repeat(1000);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let cmds: Vec<Cmd> =
                    (0..50).map(|j| Cmd::from_args(["SET", &format!("w{}", (i + j) % 500), value.as_str()])).collect();
                c.pipeline(&cmds).await.expect("writes");
                i += 50;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_text(
        dir.path(),
        &[Src("busy", busy.addr(), ""), Src("noset", no_set.addr(), "sync:pw")],
        &dest.addr(),
        "",
        "",
    );
    let report = precheck_of(&path).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert_eq!(status(&report, "source.backlog", "busy"), CheckStatus::Warn, "{report:#?}");
    let why = reason(&report, "source.backlog", "busy");
    assert!(why.contains("/s of writes") && why.contains("repl-backlog-size 16.0 KB"), "{why}");
    assert!(why.contains("client-output-buffer-limit replica 64.0 KB"), "{why}");
    let what = fix(&report, "source.backlog", "busy");
    assert!(what.contains("CONFIG SET repl-backlog-size") && what.contains("client-output-buffer-limit"), "{what}");
    assert_eq!(status(&report, "source.backlog", "noset"), CheckStatus::Pass, "a quiet source: {report:#?}");
    assert_eq!(status(&report, "source.heartbeat", "noset"), CheckStatus::Warn);
    assert!(reason(&report, "source.heartbeat", "noset").contains("NOPERM"), "{report:#?}");
    assert_eq!(status(&report, "source.heartbeat", "busy"), CheckStatus::Pass);
    assert_eq!(status(&report, "source.psync", "noset"), CheckStatus::Pass);
    assert!(report.passed(), "warnings only");

    // The ACL: a user that may not replicate, and one that may not write to
    // the destination, fail.
    let path = task_text(dir.path(), &[Src("reader", no_set.addr(), "reader:pw")], &dest.addr(), "reader:pw", "");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "source.psync", "reader"), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "source.psync", "reader").contains("may not replicate"), "{report:#?}");
    assert!(fix(&report, "source.psync", "reader").contains("+psync"), "{report:#?}");
    assert_eq!(status(&report, "destination.writable", ""), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "destination.writable", "").contains("NOPERM"), "{report:#?}");
    assert_eq!(dest.redis_cli(&["DBSIZE"]).expect("dbsize"), "0", "the write test leaves nothing");
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "this test mounts a small tmpfs and needs root (CI runs as root)");
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_disk_must_hold_the_largest_source() {
    let (m1, m2) = (RedisServer::with_config(&[]).expect("m1"), RedisServer::with_config(&[]).expect("m2"));
    fill(&m1.addr(), 0, 2000, 1000).await;
    fill(&m2.addr(), 0, 2000, 1000).await;
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let sources = [Src("s1", m1.addr(), ""), Src("s2", m2.addr(), "")];
    let with_state = |state: &Path| {
        let path = task_text(dir.path(), &sources, &dest.addr(), "", "");
        let text = std::fs::read_to_string(&path).expect("task");
        let text = text.replace(&dir.path().join("state").display().to_string(), &state.display().to_string());
        std::fs::write(&path, text).expect("task");
        path
    };
    // ~2.5 MB of data each: 1 MB of disk holds neither.
    let tiny = SmallDisk::mount(&dir.path().join("tiny"), "1m");
    let report = precheck_of(&with_state(&tiny.0)).await;
    assert_eq!(status(&report, "task.disk", "state dir"), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "task.disk", "state dir").contains("largest source ~"), "{report:#?}");
    // 4 MB holds the largest, not both.
    let mid = SmallDisk::mount(&dir.path().join("mid"), "4m");
    let report = precheck_of(&with_state(&mid.0)).await;
    assert_eq!(status(&report, "task.disk", "state dir"), CheckStatus::Warn, "{report:#?}");
    // A state dir that cannot be created.
    std::fs::write(dir.path().join("file"), b"").expect("file");
    let report = precheck_of(&with_state(&dir.path().join("file/state"))).await;
    assert_eq!(status(&report, "task.disk", "state dir"), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "task.disk", "state dir").contains("cannot create files"), "{report:#?}");
    drop((tiny, mid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_and_a_psync_that_cannot_be_confirmed() {
    let cluster = RedisServer::with_config(&["cluster-enabled yes"]).expect("cluster node");
    let no_command = RedisServer::with_config(&["rename-command COMMAND \"\""]).expect("COMMAND renamed");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_text(
        dir.path(),
        &[Src("node", cluster.addr(), ""), Src("nocommand", no_command.addr(), "")],
        &dest.addr(),
        "",
        "",
    );
    let report = precheck_of(&path).await;
    // A cluster node as a source copies like any master, but is unusual here.
    assert_eq!(status(&report, "source.role", "node"), CheckStatus::Warn, "{report:#?}");
    assert!(reason(&report, "source.role", "node").contains("cluster mode"), "{report:#?}");
    // PSYNC cannot be confirmed when COMMAND is renamed away.
    assert_eq!(status(&report, "source.psync", "nocommand"), CheckStatus::Warn, "{report:#?}");
    assert!(fix(&report, "source.psync", "nocommand").contains("rename-command PSYNC"), "{report:#?}");
    assert!(report.passed(), "warnings only: {report:#?}");
    // A cluster node as the destination: a cluster with no slots assigned
    // is not whole, and the precheck says which slots nobody serves.
    let path = task_text(dir.path(), &[Src("nocommand", no_command.addr(), "")], &cluster.addr(), "", "");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "destination.cluster", "destination"), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "destination.cluster", "").contains("no master serves slots 0-16383"), "{report:#?}");
    assert!(fix(&report, "destination.cluster", "").contains("redis-cli --cluster fix"), "{report:#?}");
    // A task that says the destination is standalone is refused on a cluster node.
    let text = std::fs::read_to_string(&path).expect("task");
    std::fs::write(&path, text.replace("[sync]", "kind = \"standalone\"\n\n[sync]")).expect("task");
    let report = precheck_of(&path).await;
    assert_eq!(status(&report, "destination.mode", "destination"), CheckStatus::Fail, "{report:#?}");
    assert!(reason(&report, "destination.mode", "").contains("cluster mode"), "{report:#?}");
}
