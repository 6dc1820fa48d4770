//! `shardsync run --config F --headless [--json] [--until-synced]`: the
//! headless front end on the engine handle.

use std::path::Path;
use std::time::Duration;

use shardsync::config::TaskConfig;
use shardsync::engine;
use shardsync::headless;
use tokio_util::sync::CancellationToken;

/// Exit codes of the contract.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_BAD_CONFIG: i32 = 2;

pub fn run(config: &Path, json: bool, until_synced: bool) -> i32 {
    let task = match TaskConfig::load(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_CONFIG;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    rt.block_on(run_task(task, json, until_synced))
}

async fn run_task(task: TaskConfig, json: bool, until_synced: bool) -> i32 {
    let cancel = CancellationToken::new();
    let signals = cancel.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term_recv = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term_recv => {},
        }
        signals.cancel();
    });
    if let Err(e) = engine::task::preflight(&task).await {
        if json {
            println!("{}", headless::failed_json("destination", &e));
        }
        eprintln!("error: {e}");
        return EXIT_FAILED;
    }
    let handle = engine::spawn(task, cancel.clone());
    let mut status = handle.status.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut alerts_shown = std::collections::HashMap::<String, u64>::new();
    let mut synced = false;
    loop {
        // Progress once a second; failure and catch-up are noticed as soon
        // as a snapshot shows them (a few times a second).
        let print = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => true,
            r = status.changed() => {
                if r.is_err() {
                    break;
                }
                false
            }
        };
        let snap = status.borrow_and_update().clone();
        if print {
            for line in headless::render_tick(&snap, json) {
                println!("{line}");
            }
        }
        for s in &snap.shards {
            let shown = alerts_shown.entry(s.shard.clone()).or_default();
            let new = (s.alerts_total - *shown) as usize;
            for a in s.alerts.iter().skip(s.alerts.len().saturating_sub(new)) {
                eprintln!("alert: {}: {}", s.shard, a.message);
            }
            *shown = s.alerts_total;
        }
        if let Some(f) = snap.failed() {
            let err = f.last_error.clone().unwrap_or_else(|| "failed".into());
            if json {
                println!("{}", headless::failed_json(&f.shard, &err));
            } else {
                eprintln!("error: shard {} failed: {err}", f.shard);
            }
            cancel.cancel();
            let _ = handle.stop().await;
            return EXIT_FAILED;
        }
        if until_synced && snap.all_synced() {
            for line in headless::render_tick(&snap, json) {
                println!("{line}");
            }
            synced = true;
            break;
        }
    }
    let results = handle.stop().await;
    let mut code = EXIT_OK;
    for (shard, r) in &results {
        if let Err(e) = r {
            code = EXIT_FAILED;
            if json {
                println!("{}", headless::failed_json(shard, e));
            } else {
                eprintln!("error: shard {shard} failed: {e}");
            }
        }
    }
    if synced && code == EXIT_OK {
        println!("{}", headless::synced_json());
    }
    code
}
