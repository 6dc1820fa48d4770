//! Carrying out [`Effect`]s: the one place where the UI calls the library
//! (probes, the precheck, verify, saving the task file, the engine). Each
//! effect that waits runs as its own tokio task and reports back with a
//! [`Msg`] on the loop's channel; nothing here blocks the loop. Results are
//! turned into the UI's own terms (`facts`) on the way.
//!
//! The runner holds what outlives one effect: the running engine (its
//! handle, and a task forwarding its snapshots), the precheck in flight
//! (replaced by a newer one), and the verify's cancellation token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::common::TaskInfo;
use super::msg::{Effect, Msg, ProbeRequest};
use crate::clock::now_ms;
use crate::config::{nutcracker, save, TaskConfig};
use crate::engine::state_lock::{self, StateLock};
use crate::engine::{self, EngineHandle};
use crate::verify::{VerifyMode, VerifyOptions, VerifyProgress};

/// What the loop does after an effect.
#[derive(Debug)]
pub enum Step {
    Continue,
    /// A result known at once, to be handled like any other message.
    Msg(Msg),
    /// Leave the UI.
    Exit,
}

/// How often a running verify's progress reaches the screen at most.
const VERIFY_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub struct EffectRunner {
    tx: mpsc::Sender<Msg>,
    /// Parent of the engine's token.
    root: CancellationToken,
    engine: Option<EngineHandle>,
    /// The task's state dir lock, held while its engine runs.
    lock: Option<StateLock>,
    task: Option<Arc<TaskConfig>>,
    precheck: Option<JoinHandle<()>>,
    verify: Option<CancellationToken>,
}

impl EffectRunner {
    pub fn new(tx: mpsc::Sender<Msg>, root: CancellationToken) -> EffectRunner {
        EffectRunner { tx, root, engine: None, lock: None, task: None, precheck: None, verify: None }
    }

    /// Whether an engine runs (and must be stopped before leaving).
    pub fn engine_running(&self) -> bool {
        self.engine.is_some()
    }

    pub fn run(&mut self, effect: Effect) -> Step {
        match effect {
            Effect::Probe(requests) => {
                for r in requests {
                    tokio::spawn(probe(r, self.tx.clone()));
                }
                Step::Continue
            }
            Effect::ReadNutcracker(path) => {
                tokio::spawn(read_nutcracker(path, self.tx.clone()));
                Step::Continue
            }
            Effect::Precheck(task) => {
                if let Some(old) = self.precheck.take() {
                    old.abort();
                }
                tracing::info!(task = %task.name, "precheck started");
                self.precheck = Some(tokio::spawn(precheck(*task, self.tx.clone())));
                Step::Continue
            }
            Effect::Save { config, path, passwords } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = tokio::task::spawn_blocking(move || {
                        save(&config, &path, passwords)
                            .map(|vars| {
                                tracing::info!(path = %path.display(), ?passwords, "task file saved");
                                vars.into_iter().map(|v| (v.entry, v.var)).collect()
                            })
                            .map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("saving the task file stopped: {e}")));
                    let _ = tx.send(Msg::Saved(result)).await;
                });
                Step::Continue
            }
            Effect::Start(task) => Step::Msg(self.start(*task, None)),
            Effect::Engine(cmd) => {
                tracing::info!(?cmd, "operator command");
                if let Some(e) = &self.engine {
                    // The engine takes commands at once; a full queue means
                    // it is stopping, and the command no longer matters.
                    let _ = e.commands.try_send(cmd);
                }
                Step::Continue
            }
            Effect::Verify(mode) => {
                let Some(task) = self.task.clone() else {
                    return Step::Msg(Msg::VerifyDone(Err("no task is running".into())));
                };
                if let Some(old) = self.verify.take() {
                    old.cancel();
                }
                let cancel = self.root.child_token();
                self.verify = Some(cancel.clone());
                tracing::info!(mode = mode.as_str(), "verify started");
                tokio::spawn(verify(task, mode, self.tx.clone(), cancel));
                Step::Continue
            }
            Effect::CancelVerify => {
                if let Some(c) = self.verify.take() {
                    c.cancel();
                }
                Step::Continue
            }
            Effect::SaveReport { path, text } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = write_report(&path, &text).await.map(|()| path.clone());
                    match &result {
                        Ok(p) => tracing::info!(path = %p.display(), "status report saved"),
                        Err(e) => tracing::warn!("status report not saved: {e}"),
                    }
                    let _ = tx.send(Msg::ReportSaved(result)).await;
                });
                Step::Continue
            }
            Effect::StopTask => {
                let Some(handle) = self.engine.take() else {
                    return Step::Msg(Msg::EngineStopped(Vec::new()));
                };
                if let Some(v) = self.verify.take() {
                    v.cancel();
                }
                tracing::info!("stopping the task: every shard applies what it has and writes its checkpoint");
                let tx = self.tx.clone();
                let lock = self.lock.take();
                let status = handle.status.clone();
                tokio::spawn(async move {
                    let results = handle.stop().await;
                    // How each shard ended, for the lines after the UI.
                    let closing = status.borrow().clone();
                    let _ = tx.send(Msg::Snapshot(Box::new(closing))).await;
                    // Another process may take the task over only now.
                    drop(lock);
                    for (shard, r) in &results {
                        match r {
                            Ok(()) => tracing::info!(shard = %shard, "stopped, checkpoint written"),
                            Err(e) => tracing::error!(shard = %shard, "failed: {e}"),
                        }
                    }
                    // The UI only shows how each shard ended: the text, decided upon already.
                    let ended = results.into_iter().map(|(shard, r)| (shard, r.map_err(|e| e.to_string()))).collect();
                    let _ = tx.send(Msg::EngineStopped(ended)).await;
                });
                Step::Continue
            }
            Effect::Exit => Step::Exit,
        }
    }

    /// Starts the engine and the task forwarding its snapshots, under the
    /// task's state dir lock (`lock`, or taken here). The precheck has
    /// passed (the wizard's step 5, or `run` before the UI).
    pub fn start(&mut self, task: TaskConfig, lock: Option<StateLock>) -> Msg {
        let lock = match lock.map_or_else(|| state_lock::acquire(&task.state_path()), Ok) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("task not started: {e}");
                return Msg::StartFailed(e.to_string());
            }
        };
        self.lock = Some(lock);
        let info = TaskInfo::of(&task, now_ms());
        tracing::info!(task = %task.name, sources = task.sources.len(), destination = %task.destination.addr, "task started");
        let task = Arc::new(task);
        let handle = engine::spawn((*task).clone(), self.root.child_token());
        let mut status = handle.status.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            // A `watch` holds the newest snapshot only: a slow screen skips
            // snapshots instead of queueing them.
            while status.changed().await.is_ok() {
                let snap = status.borrow_and_update().clone();
                if tx.send(Msg::Snapshot(Box::new(snap))).await.is_err() {
                    break;
                }
            }
        });
        self.engine = Some(handle);
        self.task = Some(task);
        Msg::Started(Box::new(info))
    }
}

async fn probe(r: ProbeRequest, tx: mpsc::Sender<Msg>) {
    let result = crate::probe::probe_with(&r.addr, &r.password, &r.own_keys).await;
    match &result {
        Ok(f) => tracing::info!(addr = %r.addr, version = %f.version, role = %f.role, keys = f.total_keys(), "probe"),
        Err(e) => tracing::warn!(addr = %r.addr, "probe failed: {e}"),
    }
    let result = result.map(Box::new).map_err(|e| e.to_string());
    let _ = tx.send(Msg::Probed { target: r.target, addr: r.addr, result }).await;
}

async fn read_nutcracker(path: PathBuf, tx: mpsc::Sender<Msg>) {
    let result = match tokio::fs::read_to_string(&path).await {
        Ok(text) => nutcracker::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) => Err(format!(
            "cannot read {}: {e}; give the nutcracker.yml the proxy runs with (its -c option)",
            path.display()
        )),
    };
    if let Err(e) = &result {
        tracing::warn!("nutcracker.yml not read: {e}");
    }
    let _ = tx.send(Msg::NutcrackerRead { path, result }).await;
}

async fn precheck(task: TaskConfig, tx: mpsc::Sender<Msg>) {
    let (line_tx, mut line_rx) = mpsc::channel(16);
    let forward = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(line) = line_rx.recv().await {
                if tx.send(Msg::PrecheckLine(line)).await.is_err() {
                    break;
                }
            }
        })
    };
    let report = crate::precheck::run(&task, Some(line_tx)).await;
    // Every line is on screen before the verdict.
    let _ = forward.await;
    for c in &report.checks {
        tracing::info!(id = c.id, subject = %c.subject, status = %c.status, "precheck: {}", c.reason);
    }
    let _ = tx.send(Msg::PrecheckDone(report.checks)).await;
}

async fn write_report(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {} for the report: {e}", dir.display()))?;
    }
    // Names the sources and their figures: the owner's only, like the state.
    crate::private_fs::write(path, text.as_bytes())
        .map_err(|e| format!("cannot write the report to {}: {e}", path.display()))
}

/// The dashboard's verify: `verify::run` on the running task, its progress
/// forwarded a few times a second at most, its report sent back whole.
async fn verify(task: Arc<TaskConfig>, mode: VerifyMode, tx: mpsc::Sender<Msg>, cancel: CancellationToken) {
    let (progress_tx, mut progress_rx) = watch::channel(VerifyProgress::default());
    let forward = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while progress_rx.changed().await.is_ok() {
                let p = progress_rx.borrow_and_update().clone();
                if tx.send(Msg::VerifyProgress(p)).await.is_err() {
                    break;
                }
                // The newest value waits in the `watch` meanwhile.
                tokio::time::sleep(VERIFY_PROGRESS_EVERY).await;
            }
        })
    };
    let result = crate::verify::run(&task, &VerifyOptions::with_mode(mode), progress_tx, cancel).await;
    forward.abort();
    match &result {
        Ok(r) => tracing::info!(
            mode = mode.as_str(),
            equal = r.is_equal(),
            compared = r.compared,
            differences = r.differences_total,
            unsettled = r.unsettled_total,
            "verify done"
        ),
        Err(e) => tracing::warn!(mode = mode.as_str(), "verify failed: {e}"),
    }
    let _ = tx.send(Msg::VerifyDone(result.map(Box::new).map_err(|e| e.to_string()))).await;
}
