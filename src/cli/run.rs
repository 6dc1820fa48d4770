//! `shardsync run --config F --headless [--json] [--until-synced]`: the
//! headless front end on the engine handle.

use std::path::Path;
use std::time::Duration;

use shardsync::config::TaskConfig;
use shardsync::engine;
use shardsync::engine::state_lock::StateLock;
use shardsync::headless;
use shardsync::precheck::{CheckStatus, PrecheckOptions};
use tokio_util::sync::CancellationToken;

use super::exit::{EXIT_FAILED, EXIT_OK};

/// Like `println!`/`eprintln!`, but a terminal that went away (a dropped
/// SSH session) or a closed pipe does not panic: the task must still stop
/// cleanly and write its checkpoints.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub fn run(config: &Path, json: bool, until_synced: bool) -> i32 {
    let (task, rt) = match super::task_and_runtime(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(run_task(task, json, until_synced))
}

async fn run_task(task: TaskConfig, json: bool, until_synced: bool) -> i32 {
    let cancel = CancellationToken::new();
    let signals = cancel.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // SIGHUP too: a dropped SSH session must stop the task cleanly
        // (checkpoints written), not kill it half-way.
        let mut hangup = signal(SignalKind::hangup()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = received(term.as_mut()) => {},
            _ = received(hangup.as_mut()) => {},
        }
        signals.cancel();
    });
    // Held until the process ends.
    let _lock = match admit(&task, json).await {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let handle = engine::spawn(task, cancel.clone());
    tokio::spawn(operator_commands(handle.commands.clone(), cancel.clone()));
    let mut status = handle.status.clone();
    let mut paused_shown = std::collections::HashSet::<String>::new();
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
                out!("{line}");
            }
        }
        for s in &snap.shards {
            let shown = alerts_shown.entry(s.shard.clone()).or_default();
            let new = (s.alerts_total - *shown) as usize;
            for a in s.alerts.iter().skip(s.alerts.len().saturating_sub(new)) {
                err!("alert: {}: {}", s.shard, a.message);
            }
            *shown = s.alerts_total;
            if s.paused_on_error && paused_shown.insert(s.shard.clone()) {
                err!(
                    "shard {} is paused: fix the destination, then type `resume {}` (or `resume`) and Enter here",
                    s.shard,
                    s.shard
                );
            } else if !s.paused_on_error {
                paused_shown.remove(&s.shard);
            }
        }
        if let Some(f) = snap.failed() {
            let err = f.last_error.clone().unwrap_or_else(|| "failed".into());
            if json {
                out!("{}", headless::failed_json(&f.shard, &err));
            }
            // On stderr too: a failure must reach whoever watches the run.
            err!("error: shard {} failed: {err}", f.shard);
            cancel.cancel();
            let _ = handle.stop().await;
            closing(&status.borrow().clone(), json);
            return EXIT_FAILED;
        }
        if until_synced && snap.all_synced() {
            for line in headless::render_tick(&snap, json) {
                out!("{line}");
            }
            synced = true;
            break;
        }
    }
    let results = handle.stop().await;
    closing(&status.borrow().clone(), json);
    let mut code = EXIT_OK;
    for (shard, r) in &results {
        if let Err(e) = r {
            code = EXIT_FAILED;
            if json {
                out!("{}", headless::failed_json(shard, &e.to_string()));
            }
            err!("error: shard {shard} failed: {e}");
        }
    }
    if synced && code == EXIT_OK {
        out!("{}", headless::synced_json());
    }
    code
}

/// The closing lines, from the engine's last snapshot: a last progress
/// record (or line) per shard, and on stderr what each full copy came to.
fn closing(snap: &shardsync::engine::snapshot::TaskSnapshot, json: bool) {
    for line in headless::render_tick(snap, json) {
        out!("{line}");
    }
    for s in &snap.shards {
        if let Some(summary) = s.copy_summary() {
            err!("{}: {}; full copy: {summary}", s.shard, s.state.as_str());
        }
    }
    for note in &snap.closing_notes {
        err!("warning: {note}");
    }
}

/// What every front end does before the engine starts a task: the
/// precheck (a failed check keeps the task from starting; warnings are
/// printed and do not), then the task's state lock, which the caller holds
/// until the engine has stopped. On refusal, the exit code.
pub async fn admit(task: &TaskConfig, json: bool) -> Result<StateLock, i32> {
    err!("precheck of task {}…", task.name);
    // A shorter rate sample than `check`'s: the task should not wait a
    // second to start, and the rate only ever warns.
    let opts = PrecheckOptions { rate_sample: Duration::from_millis(250) };
    let report = shardsync::precheck::run_with(task, &opts, None).await;
    let notable: Vec<_> = report.checks.iter().filter(|c| c.status != CheckStatus::Pass).cloned().collect();
    for line in super::check::render(&notable) {
        err!("precheck: {line}");
    }
    if !report.passed() {
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| format!("{}: {}: {}", c.subject, c.title, c.reason))
            .collect();
        if json {
            out!("{}", headless::failed_json("precheck", &failed.join("; ")));
        }
        err!("error: {}", super::check::summary(&report));
        return Err(EXIT_FAILED);
    }
    engine::state_lock::acquire(&task.state_path()).map_err(|e| {
        if json {
            out!("{}", headless::failed_json("task", &e.to_string()));
        }
        err!("error: {e}");
        EXIT_FAILED
    })
}

/// Waits for a signal; forever when its handler could not be installed.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// What the operator can type on standard input while a headless task
/// runs: `pause <shard>`, `resume <shard>` (or `resume` for every shard),
/// `stop`. Standard input that is closed or not a terminal just ends this.
///
/// Lines are read on a thread of their own, not tokio's blocking pool: a
/// read of a terminal cannot be cancelled, and the runtime's shutdown would
/// wait for it (a `stop` or a signal would then hang until the next line).
/// The thread is left blocked in its read when the task ends; the process
/// exits under it.
async fn operator_commands(commands: tokio::sync::mpsc::Sender<engine::task::Command>, cancel: CancellationToken) {
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(8);
    let reader = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    if reader.is_err() {
        return;
    }
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => return,
            l = lines.recv() => l,
        };
        let Some(line) = line else { return };
        match parse_operator_line(&line) {
            Ok(Some(cmds)) => {
                for c in cmds {
                    let _ = commands.send(c).await;
                }
            }
            Ok(None) => {}
            Err(e) => err!("{e}"),
        }
    }
}

fn parse_operator_line(line: &str) -> Result<Option<Vec<engine::task::Command>>, String> {
    use engine::task::Command;
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(Some(match words.as_slice() {
        [] => return Ok(None),
        ["pause", shard] => vec![Command::PauseShard((*shard).to_owned())],
        ["resume", shard] => vec![Command::ResumeShard((*shard).to_owned())],
        ["resume"] => vec![Command::ResumeAll],
        ["stop"] => vec![Command::StopTask],
        _ => {
            return Err(format!("unknown command `{line}`: type `pause <shard>`, `resume <shard>`, `resume` or `stop`"))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::task::Command;

    #[test]
    fn operator_lines() {
        assert_eq!(parse_operator_line("  "), Ok(None));
        assert_eq!(parse_operator_line("resume server1"), Ok(Some(vec![Command::ResumeShard("server1".into())])));
        assert_eq!(parse_operator_line("resume"), Ok(Some(vec![Command::ResumeAll])));
        assert_eq!(parse_operator_line("pause s2"), Ok(Some(vec![Command::PauseShard("s2".into())])));
        assert_eq!(parse_operator_line("stop"), Ok(Some(vec![Command::StopTask])));
        assert!(parse_operator_line("resum").unwrap_err().contains("unknown command"));
    }
}
