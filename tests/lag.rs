//! A lag that never lies, against real servers: while a shard is paused
//! under writes its `lag_ms` keeps growing — in the engine's snapshots, on
//! the dashboard drawn from them, and in the headless NDJSON records — and
//! after the resume it falls back under a second.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::compare;
use common::task::{headless_with_open_stdin, task_file};
use common::wait::wait_for;
use common::RedisServer;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use shardsync::config::TaskConfig;
use shardsync::engine::{self, snapshot::TaskSnapshot, task::Command as EngineCommand};
use shardsync::resp::Cmd;
use shardsync::ui::common::TaskInfo;
use shardsync::ui::dashboard::{self, Dashboard};
use shardsync::ui::msg::Msg;
use shardsync::ui::theme::Theme;
use tokio_util::sync::CancellationToken;

/// A writer of a few hundred SETs a second until stopped.
fn writer(addr: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = compare::connect(&addr).await;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let cmds: Vec<Cmd> =
                (0..20).map(|j| Cmd::from_args(["SET", &format!("k:{}", (i + j) % 500), "v"])).collect();
            c.pipeline(&cmds).await.expect("writes");
            i += 20;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// The dashboard as a reader sees it, drawn from `snap`.
fn dashboard_text(task: &TaskConfig, snap: TaskSnapshot) -> String {
    let mut d = Dashboard::new(TaskInfo::of(task, snap.shards[0].ts_ms), Theme::mono());
    dashboard::update(&mut d, Msg::Snapshot(Box::new(snap)));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
    terminal.draw(|f| f.render_widget(&d, f.area())).expect("draw");
    let buf = terminal.backend().buffer();
    (0..24).map(|y| (0..80).map(|x| buf[(x, y)].symbol()).collect::<String>() + "\n").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_shards_lag_keeps_growing_in_the_engine_and_on_the_dashboard() {
    let src = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "heartbeat_ms = 200\n");
    let task = TaskConfig::load(&path).expect("task");
    let handle = engine::spawn(task.clone(), CancellationToken::new());
    wait_for(&handle, "synced", Duration::from_secs(30), TaskSnapshot::all_synced).await;
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(src.addr(), stop.clone());
    handle.commands.send(EngineCommand::PauseShard("server1".into())).await.expect("pause");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let snap = handle.status.borrow().clone();
    let lag = snap.shards[0].lag_ms.expect("lag measured");
    assert!(lag >= 9_000, "paused 10 s, lag {lag} ms");
    let screen = dashboard_text(&task, snap);
    // The shard's row, its total and its colour all say the same: 9 s or more.
    let row = screen.lines().find(|l| l.contains("server1")).expect("the shard's row");
    assert!(row.contains("paused") && (row.contains(" 9s ") || row.contains(" 10s ")), "{screen}");
    let total = screen.lines().find(|l| l.contains("total")).expect("the total row");
    assert!(total.contains(" 9s ") || total.contains(" 10s "), "{screen}");
    handle.commands.send(EngineCommand::ResumeShard("server1".into())).await.expect("resume");
    wait_for(&handle, "the lag back under a second", Duration::from_secs(10), |s| {
        s.shards[0].lag_ms.is_some_and(|l| l < 1_000)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    w.await.expect("writer");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_shards_lag_keeps_growing_in_the_json_records() {
    let src = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).expect("source");
    let dest = RedisServer::with_config(&[]).expect("dest");
    let dir = tempfile::tempdir().expect("tmp");
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "heartbeat_ms = 200\n");
    let (mut child, lines) = headless_with_open_stdin(&path);
    let mut stdin = child.stdin.take().expect("stdin");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in lines {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    let next = |limit: Instant| rx.recv_timeout(limit.saturating_duration_since(Instant::now())).ok();
    // Synced first.
    let limit = Instant::now() + Duration::from_secs(30);
    while !next(limit).is_some_and(|r| r["state"] == "incremental" && r["lag_bytes"] == 0) {
        assert!(Instant::now() < limit, "not synced");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(src.addr(), stop.clone());
    writeln!(stdin, "pause server1").expect("pause");
    let paused = Instant::now();
    let mut highest = 0;
    while paused.elapsed() < Duration::from_secs(11) {
        if let Some(r) = next(paused + Duration::from_secs(11)) {
            highest = highest.max(r["lag_ms"].as_u64().unwrap_or(0));
        }
    }
    assert!(highest >= 9_000, "paused 11 s, the records' lag reached {highest} ms");
    writeln!(stdin, "resume server1").expect("resume");
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        let r = next(limit).expect("a record");
        if r["lag_ms"].as_u64().is_some_and(|l| l < 1_000) && r["state"] == "incremental" {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    w.await.expect("writer");
    writeln!(stdin, "stop").expect("stop");
    drop(stdin);
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status}");
}
