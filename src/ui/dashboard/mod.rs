//! The dashboard: what the operator watches while the task runs.
//!
//! State is the newest engine snapshot plus what the UI derives from the
//! stream of them: the throughput history (one sample a second, for the
//! sparkline), each shard's recent copy progress (for the ETA), and the
//! event log (engine alerts, and shard state changes). `update` turns keys
//! into engine commands, verify runs, report saves and a clean stop; it
//! never waits on anything.

mod help;
mod render;
pub mod report;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent};

use super::common::{is_ctrl, Notice, TaskInfo};
use super::field::TextField;
use super::msg::{Effect, Msg, Signal};
use super::theme::{Theme, Tone};
use crate::engine::snapshot::{ShardSnapshot, ShardState, TaskSnapshot};
use crate::engine::Command;
use crate::verify::{VerifyMode, VerifyProgress, VerifyReport};

/// Throughput samples kept: ten minutes at one a second.
pub const HISTORY_SECS: usize = 600;
/// Events kept in the log pane (the log file has them all).
const EVENTS_KEPT: usize = 1000;
/// Copy progress samples per shard for the ETA: the last 30 seconds.
const RATE_WINDOW_MS: i64 = 30_000;
/// Lag in milliseconds: up to the first is fine, up to the second is
/// worth a look, beyond is trouble (the table's colours, and the help
/// screen that explains them).
pub const LAG_MS_WARN: u64 = 1_000;
pub const LAG_MS_BAD: u64 = 10_000;
/// Lag in bytes, the same way.
pub const LAG_BYTES_WARN: u64 = 1 << 20;
pub const LAG_BYTES_BAD: u64 = 64 << 20;

/// A line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub ts_ms: i64,
    pub shard: String,
    pub tone: Tone,
    pub message: String,
}

/// Where the task is, as far as the dashboard is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Quit (or a signal) was taken: shards are stopping and writing
    /// checkpoints; keys wait.
    Stopping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Shards,
    Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Main,
    /// One shard in full.
    Detail,
}

/// What is drawn over the view.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help,
    ConfirmQuit,
    VerifyChoose,
    VerifyPanel,
    ReportPath(TextField),
    /// The selected event in full.
    EventDetail,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum VerifyState {
    #[default]
    Idle,
    Running {
        mode: VerifyMode,
        progress: VerifyProgress,
    },
    Done(Box<VerifyReport>),
    Failed {
        mode: VerifyMode,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    pub task: TaskInfo,
    pub snapshot: TaskSnapshot,
    /// The clock, from the newest snapshot (drawing never reads the time).
    pub now_ms: i64,
    /// Applied ops/s summed over shards, one sample a second, newest last.
    pub throughput: VecDeque<u64>,
    /// The second of the newest throughput sample.
    last_sample_sec: Option<i64>,
    /// Per shard: (ts_ms, rdb_applied) over the last [`RATE_WINDOW_MS`].
    pub copy_samples: BTreeMap<String, VecDeque<(i64, u64)>>,
    pub events: VecDeque<Event>,
    /// Events ever logged (the log file writes those past what it wrote).
    pub events_total: u64,
    alerts_seen: BTreeMap<String, u64>,
    pub selected: usize,
    pub focus: Focus,
    /// Selected event, counted from the newest (0).
    pub event_cursor: usize,
    pub view: View,
    pub overlay: Option<Overlay>,
    pub verify: VerifyState,
    pub phase: Phase,
    pub notice: Option<Notice>,
    pub theme: Theme,
}

impl Dashboard {
    pub fn new(task: TaskInfo, theme: Theme) -> Dashboard {
        let now_ms = task.started_ms;
        Dashboard {
            task,
            snapshot: TaskSnapshot::default(),
            now_ms,
            throughput: VecDeque::with_capacity(HISTORY_SECS),
            last_sample_sec: None,
            copy_samples: BTreeMap::new(),
            events: VecDeque::new(),
            events_total: 0,
            alerts_seen: BTreeMap::new(),
            selected: 0,
            focus: Focus::Shards,
            event_cursor: 0,
            view: View::Main,
            overlay: None,
            verify: VerifyState::Idle,
            phase: Phase::Running,
            notice: None,
            theme,
        }
    }

    pub fn selected_shard(&self) -> Option<&ShardSnapshot> {
        self.snapshot.shards.get(self.selected)
    }

    fn event(&mut self, ts_ms: i64, shard: &str, tone: Tone, message: String) {
        self.events.push_back(Event { ts_ms, shard: shard.to_owned(), tone, message });
        self.events_total += 1;
        if self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    /// Takes a snapshot in; true when something on screen changes.
    pub fn apply_snapshot(&mut self, snap: TaskSnapshot) -> bool {
        let ts = snap.shards.iter().map(|s| s.ts_ms).max().unwrap_or(self.now_ms).max(self.now_ms);
        let new_second = ts / 1000 != self.now_ms / 1000;
        let old = std::mem::take(&mut self.snapshot);
        let mut changed = new_second || !same_but_time(&old, &snap);
        for s in &snap.shards {
            // State changes the operator should find in the log.
            let before = old.shards.iter().find(|o| o.shard == s.shard);
            let seen = self.alerts_seen.entry(s.shard.clone()).or_insert(0);
            let new = s.alerts_total.saturating_sub(*seen) as usize;
            *seen = s.alerts_total;
            let fresh: Vec<_> = s.alerts.iter().skip(s.alerts.len().saturating_sub(new)).cloned().collect();
            // An alert that says why (a lost link) makes the change's own
            // line redundant.
            let explained = s.last_error.as_ref().is_some_and(|e| fresh.iter().any(|a| a.message.contains(e.as_str())));
            if let Some(message) = transition(before, s).filter(|_| !explained) {
                let tone = match s.state {
                    ShardState::Failed => Tone::Bad,
                    ShardState::Reconnecting => Tone::Warn,
                    _ => Tone::Normal,
                };
                self.event(s.ts_ms, &s.shard, tone, message);
            }
            for a in fresh {
                let tone = if a.message.starts_with("paused") { Tone::Bad } else { Tone::Warn };
                let message = match a.offset {
                    Some(o) => format!("{} (offset {o})", a.message),
                    None => a.message,
                };
                self.event(a.ts_ms, &s.shard, tone, message);
                changed = true;
            }
            let samples = self.copy_samples.entry(s.shard.clone()).or_default();
            if samples.back().is_none_or(|(t, b)| *b != s.rdb_applied || ts - t >= 1000) {
                // A new copy (its bytes went back) starts the window over.
                if samples.back().is_some_and(|(_, b)| *b > s.rdb_applied) {
                    samples.clear();
                }
                samples.push_back((ts, s.rdb_applied));
            }
            while samples.front().is_some_and(|(t, _)| ts - t > RATE_WINDOW_MS) {
                samples.pop_front();
            }
        }
        // One throughput sample per second passed (a gap repeats the last).
        let sec = ts / 1000;
        let last = self.last_sample_sec.unwrap_or(sec - 1);
        if sec > last {
            let total: u64 = snap.shards.iter().map(|s| s.ops_per_sec).sum();
            let gap = ((sec - last) as usize).min(HISTORY_SECS);
            for _ in 0..gap {
                self.throughput.push_back(total);
            }
            while self.throughput.len() > HISTORY_SECS {
                self.throughput.pop_front();
            }
            self.last_sample_sec = Some(sec);
        }
        self.now_ms = ts;
        self.snapshot = snap;
        self.selected = self.selected.min(self.snapshot.shards.len().saturating_sub(1));
        changed
    }

    /// Milliseconds to the end of `shard`'s full copy at its recent pace.
    pub fn eta_ms(&self, s: &ShardSnapshot) -> Option<u64> {
        let total = s.rdb_total?;
        let samples = self.copy_samples.get(&s.shard)?;
        let (t0, b0) = *samples.front()?;
        let (t1, b1) = *samples.back()?;
        if t1 <= t0 || b1 <= b0 {
            return None;
        }
        let rate = (b1 - b0) as f64 / (t1 - t0) as f64;
        Some((total.saturating_sub(s.rdb_applied) as f64 / rate) as u64)
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.now_ms.saturating_sub(self.task.started_ms).max(0) as u64
    }

    /// The selected event (cursor counts from the newest).
    pub fn selected_event(&self) -> Option<&Event> {
        self.events.len().checked_sub(1 + self.event_cursor).and_then(|i| self.events.get(i))
    }
}

/// Equal snapshots apart from their timestamps.
fn same_but_time(a: &TaskSnapshot, b: &TaskSnapshot) -> bool {
    a.shards.len() == b.shards.len()
        && a.shards.iter().zip(&b.shards).all(|(x, y)| ShardSnapshot { ts_ms: y.ts_ms, ..x.clone() } == *y)
        && a.destination.map(|d| (d.keys, d.used_memory, d.ops_per_sec))
            == b.destination.map(|d| (d.keys, d.used_memory, d.ops_per_sec))
}

/// The log line for a shard's change of state, if it changed.
fn transition(before: Option<&ShardSnapshot>, now: &ShardSnapshot) -> Option<String> {
    let was = before.map(|b| b.state);
    if was == Some(now.state) {
        return None;
    }
    let why = now.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
    Some(match now.state {
        ShardState::Connecting if was.is_none() => "connecting to the source".to_owned(),
        ShardState::Connecting => "connecting to the source again".to_owned(),
        ShardState::Handshake => "replication handshake".to_owned(),
        ShardState::Rdb => "full copy started".to_owned(),
        ShardState::Incremental => {
            format!("full copy applied ({} keys): incremental", super::format::count(now.keys_applied))
        }
        ShardState::Reconnecting => format!("reconnecting{why}"),
        ShardState::Stopped if now.paused_on_error => format!("paused on an error{why}"),
        ShardState::Stopped => "stopped (paused or stopping)".to_owned(),
        ShardState::Failed => format!("FAILED{why}"),
    })
}

/// The dashboard's `update`.
pub fn update(d: &mut Dashboard, msg: Msg) -> Option<Effect> {
    match msg {
        Msg::Key(key) => on_key(d, key),
        Msg::Snapshot(snap) => {
            d.apply_snapshot(*snap);
            None
        }
        Msg::VerifyProgress(p) => {
            if let VerifyState::Running { progress, .. } = &mut d.verify {
                *progress = p;
            }
            None
        }
        Msg::VerifyDone(result) => {
            let mode = match &d.verify {
                VerifyState::Running { mode, .. } => *mode,
                _ => return None,
            };
            let now = d.now_ms;
            d.verify = match result {
                Ok(report) => {
                    let done = report.mode.as_str();
                    let (tone, text) = if report.is_equal() {
                        (Tone::Good, format!("verify ({done}): the sources and the destination are equal"))
                    } else {
                        (Tone::Bad, format!("verify ({done}): {} (v shows them)", verdict(&report)))
                    };
                    d.event(now, "verify", tone, text);
                    VerifyState::Done(report)
                }
                Err(error) => {
                    d.event(now, "verify", Tone::Bad, format!("verify ({}) failed: {error}", mode.as_str()));
                    VerifyState::Failed { mode, error }
                }
            };
            None
        }
        Msg::ReportSaved(result) => {
            d.notice = Some(match result {
                Ok(path) => Notice { tone: Tone::Good, text: format!("status report saved to {}", path.display()) },
                Err(e) => Notice { tone: Tone::Bad, text: e },
            });
            None
        }
        Msg::Signal(sig) => {
            let why = match sig {
                Signal::Hangup => "the terminal hung up",
                Signal::Terminate => "SIGTERM",
                Signal::Interrupt => "SIGINT",
            };
            let now = d.now_ms;
            d.event(now, "task", Tone::Warn, format!("{why}: stopping cleanly, writing checkpoints"));
            stop(d)
        }
        Msg::InputClosed => stop(d),
        Msg::Resize
        | Msg::Probed { .. }
        | Msg::NutcrackerRead { .. }
        | Msg::PrecheckLine(_)
        | Msg::PrecheckDone(_)
        | Msg::Saved(_)
        | Msg::Started(_)
        | Msg::StartFailed(_)
        | Msg::EngineStopped(_) => None,
    }
}

/// What a verify that is not equal found, in a few words.
pub fn verdict(r: &VerifyReport) -> String {
    match r.mode {
        VerifyMode::Counts => {
            let off = r.counts.iter().filter(|c| !c.is_equal()).count();
            format!("{off} DB(s) with other counts")
        }
        VerifyMode::Keys | VerifyMode::Full => {
            let mut t = format!("{} difference(s)", super::format::count(r.differences_total));
            if r.unsettled_total > 0 {
                t.push_str(&format!(", {} key(s) still changing", super::format::count(r.unsettled_total)));
            }
            t
        }
    }
}

fn stop(d: &mut Dashboard) -> Option<Effect> {
    if d.phase == Phase::Stopping {
        return None;
    }
    d.phase = Phase::Stopping;
    d.overlay = None;
    Some(Effect::StopTask)
}

fn on_key(d: &mut Dashboard, key: KeyEvent) -> Option<Effect> {
    if d.phase == Phase::Stopping {
        return None;
    }
    d.notice = None;
    if let Some(overlay) = d.overlay.take() {
        return overlay_key(d, overlay, key);
    }
    if is_ctrl(&key, 'c') {
        d.overlay = Some(Overlay::ConfirmQuit);
        return None;
    }
    match key.code {
        KeyCode::Char('q') => d.overlay = Some(Overlay::ConfirmQuit),
        KeyCode::Char('?') | KeyCode::F(1) => d.overlay = Some(Overlay::Help),
        KeyCode::Esc if d.view == View::Detail => d.view = View::Main,
        KeyCode::Enter if d.focus == Focus::Events && d.selected_event().is_some() => {
            d.overlay = Some(Overlay::EventDetail)
        }
        KeyCode::Enter if d.focus == Focus::Events => {}
        KeyCode::Enter => d.view = if d.view == View::Main { View::Detail } else { View::Main },
        KeyCode::Tab => d.focus = if d.focus == Focus::Shards { Focus::Events } else { Focus::Shards },
        KeyCode::Up | KeyCode::Char('k') => match d.focus {
            Focus::Shards => d.selected = d.selected.saturating_sub(1),
            Focus::Events => d.event_cursor = (d.event_cursor + 1).min(d.events.len().saturating_sub(1)),
        },
        KeyCode::Down | KeyCode::Char('j') => match d.focus {
            Focus::Shards => d.selected = (d.selected + 1).min(d.snapshot.shards.len().saturating_sub(1)),
            Focus::Events => d.event_cursor = d.event_cursor.saturating_sub(1),
        },
        KeyCode::End => d.event_cursor = 0,
        KeyCode::Char('p') => {
            let s = d.selected_shard()?;
            let paused = s.state == ShardState::Stopped || s.paused_on_error;
            let name = s.shard.clone();
            let now = d.now_ms;
            let (cmd, text) = if paused {
                (Command::ResumeShard(name.clone()), "resume asked by the operator")
            } else {
                (Command::PauseShard(name.clone()), "pause asked by the operator (the source keeps spooling)")
            };
            d.event(now, &name, Tone::Normal, text.to_owned());
            return Some(Effect::Engine(cmd));
        }
        KeyCode::Char('R') => {
            let now = d.now_ms;
            d.event(now, "task", Tone::Normal, "resume of every shard asked by the operator".to_owned());
            return Some(Effect::Engine(Command::ResumeAll));
        }
        KeyCode::Char('v') => {
            d.overlay = Some(match d.verify {
                VerifyState::Idle => Overlay::VerifyChoose,
                _ => Overlay::VerifyPanel,
            })
        }
        KeyCode::Char('s') => {
            let path = d.task.state_path.join(format!("status-{}.txt", report::file_stamp(d.now_ms)));
            d.overlay = Some(Overlay::ReportPath(TextField::new(path.to_string_lossy())));
        }
        _ => {}
    }
    None
}

fn overlay_key(d: &mut Dashboard, overlay: Overlay, key: KeyEvent) -> Option<Effect> {
    match overlay {
        Overlay::ConfirmQuit => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                let now = d.now_ms;
                d.event(now, "task", Tone::Normal, "quit: stopping cleanly, writing checkpoints".to_owned());
                stop(d)
            }
            _ => None,
        },
        Overlay::Help | Overlay::EventDetail => None,
        Overlay::VerifyChoose => {
            let mode = match key.code {
                KeyCode::Char('c') => VerifyMode::Counts,
                KeyCode::Char('k') => VerifyMode::Keys,
                KeyCode::Char('f') => VerifyMode::Full,
                _ => return None,
            };
            d.verify = VerifyState::Running { mode, progress: VerifyProgress::default() };
            d.overlay = Some(Overlay::VerifyPanel);
            let now = d.now_ms;
            d.event(now, "verify", Tone::Normal, format!("verify ({}) started", mode.as_str()));
            Some(Effect::Verify(mode))
        }
        Overlay::VerifyPanel => match key.code {
            KeyCode::Char('x') if matches!(d.verify, VerifyState::Running { .. }) => {
                d.overlay = Some(Overlay::VerifyPanel);
                Some(Effect::CancelVerify)
            }
            KeyCode::Char('n') if !matches!(d.verify, VerifyState::Running { .. }) => {
                d.overlay = Some(Overlay::VerifyChoose);
                None
            }
            KeyCode::Esc | KeyCode::Char('v') | KeyCode::Char('q') => None,
            _ => {
                d.overlay = Some(Overlay::VerifyPanel);
                None
            }
        },
        Overlay::ReportPath(mut field) => match key.code {
            KeyCode::Esc => None,
            KeyCode::Enter => {
                let path = PathBuf::from(field.value().trim());
                Some(Effect::SaveReport { path, text: report::render(d) })
            }
            _ => {
                field.handle_key(key);
                d.overlay = Some(Overlay::ReportPath(field));
                None
            }
        },
    }
}

pub use render::render_dashboard;

#[cfg(test)]
mod tests;
