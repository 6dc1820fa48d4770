//! The wizard: six steps from nothing to a running task, each with its own
//! state, key handling and drawing (one module per step), under a step bar
//! and a footer of key hints.
//!
//! ```text
//! Sources ─▶ Destination ─▶ Conflict ─▶ Databases ─▶ Precheck ─▶ Review & start
//! ```
//!
//! `update` is the only way the state changes: a key or a result comes in,
//! the state moves, and at most one [`Effect`] goes out (probe these
//! servers, run the precheck on this task, save and start). Moving to the
//! next step validates the current one; entering a step asks for what it
//! shows (the destination's key counts, the sources' databases, the
//! precheck) when what it has is missing or was measured for other input.

mod conflict;
mod databases;
mod destination;
mod precheck;
mod render;
mod review;
mod sources;

use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent};

pub use conflict::ConflictStep;
pub use databases::{DatabasesStep, DbRow};
pub use destination::{DestField, DestinationStep};
pub use precheck::{PrecheckState, PrecheckStep};
pub use review::{ReviewField, ReviewPhase, ReviewStep};
pub use sources::{EditorField, ImportDialog, ImportPhase, SourceEditor, SourceRow, SourcesDialog, SourcesStep};

use super::common::{is_ctrl, Notice};
use super::facts::Probe;
use super::msg::{Effect, Msg, ProbeRequest, ProbeTarget};
use super::theme::{Theme, Tone};
use crate::config::{
    is_valid_task_name, Addr, DestConfig, Secret, SourceConfig, SyncConfig, TaskConfig, DEFAULT_STATE_DIR,
};

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Sources,
    Destination,
    Conflict,
    Databases,
    Precheck,
    Review,
}

impl Step {
    pub const ALL: [Step; 6] =
        [Step::Sources, Step::Destination, Step::Conflict, Step::Databases, Step::Precheck, Step::Review];

    pub fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }

    /// The name in the step bar.
    pub fn name(self) -> &'static str {
        match self {
            Step::Sources => "Sources",
            Step::Destination => "Destination",
            Step::Conflict => "Conflicts",
            Step::Databases => "Databases",
            Step::Precheck => "Precheck",
            Step::Review => "Review & start",
        }
    }

    /// The name in a narrow step bar (the current step keeps its full name).
    pub fn short_name(self) -> &'static str {
        match self {
            Step::Sources => "Sources",
            Step::Destination => "Dest",
            Step::Conflict => "Conflicts",
            Step::Databases => "DBs",
            Step::Precheck => "Precheck",
            Step::Review => "Start",
        }
    }

    /// The heading of the step's pane.
    pub fn heading(self) -> &'static str {
        match self {
            Step::Sources => "Source masters: the Redis-Servers behind twemproxy",
            Step::Destination => "Destination Redis",
            Step::Conflict => "Keys the destination already has",
            Step::Databases => "Databases to copy",
            Step::Precheck => "Precheck",
            Step::Review => "Review, save and start",
        }
    }

    fn next(self) -> Option<Step> {
        Step::ALL.get(self.number()).copied()
    }

    fn prev(self) -> Option<Step> {
        self.number().checked_sub(2).and_then(|i| Step::ALL.get(i).copied())
    }
}

/// What a prefilled task file brings beyond the fields the steps edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// Kept from the file (else `<task file's directory>/.shardsync`).
    pub state_dir: Option<PathBuf>,
    /// Every `[sync]` setting the wizard does not ask about.
    pub sync: SyncConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wizard {
    pub step: Step,
    pub sources: SourcesStep,
    pub destination: DestinationStep,
    pub conflict: ConflictStep,
    pub databases: DatabasesStep,
    pub precheck: PrecheckStep,
    pub review: ReviewStep,
    pub base: Base,
    pub notice: Option<Notice>,
    /// "Quit the wizard?" is on screen.
    pub confirm_quit: bool,
    pub theme: Theme,
}

impl Wizard {
    /// An empty wizard; the task file defaults to `./<name>.toml`.
    pub fn new(theme: Theme) -> Wizard {
        Wizard {
            step: Step::Sources,
            sources: SourcesStep::default(),
            destination: DestinationStep::new("", Secret::none()),
            conflict: ConflictStep::default(),
            databases: DatabasesStep::default(),
            precheck: PrecheckStep::default(),
            review: ReviewStep::new("migration", Path::new("migration.toml")),
            base: Base { state_dir: None, sync: SyncConfig::default() },
            notice: None,
            confirm_quit: false,
            theme,
        }
    }

    /// A wizard filled from a task (`shardsync tui --config F`, the demo),
    /// saving back to `path`.
    pub fn prefilled(task: &TaskConfig, path: &Path, theme: Theme) -> Wizard {
        let mut w = Wizard::new(theme);
        for s in &task.sources {
            w.sources.push(&s.name, &s.addr.to_string(), s.password.clone());
        }
        w.destination = DestinationStep::new(&task.destination.addr.to_string(), task.destination.password.clone());
        w.conflict = ConflictStep::new(task.sync.conflict);
        w.databases.preset = task.sync.databases.clone();
        w.review = ReviewStep::new(&task.name, path);
        w.review.save_passwords = task.sources.iter().map(|s| &s.password).chain([&task.destination.password]).any(
            // A file that held passwords keeps holding them; one that read
            // them from variables keeps doing that.
            |p| !p.is_empty() && p.env_var().is_none(),
        );
        w.base = Base { state_dir: Some(task.state_dir.clone()), sync: task.sync.clone() };
        w
    }

    /// The task as the steps describe it now.
    pub fn task_config(&self) -> Result<TaskConfig, String> {
        let sources = self.sources.configs()?;
        let destination = self.destination.config()?;
        let name = self.review.name.value().trim().to_owned();
        if !is_valid_task_name(&name) {
            return Err(format!(
                "task name `{name}`: use letters, digits, `.`, `_` and `-` only (it names the state directory)"
            ));
        }
        let path = self.review.file_path();
        let state_dir = self.base.state_dir.clone().unwrap_or_else(|| {
            path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join(DEFAULT_STATE_DIR)
        });
        let mut sync = self.base.sync.clone();
        sync.conflict = self.conflict.mode;
        sync.databases = Some(self.databases.selected());
        Ok(TaskConfig { name, state_dir, sources, destination, sync })
    }

    /// Where logs and spools go (`<state_dir>/<name>`), for the log file.
    pub fn state_path(&self) -> PathBuf {
        match self.task_config() {
            Ok(t) => t.state_path(),
            Err(_) => self.base.state_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        }
    }

    /// Names the tool's own keys on each probed server (the heartbeat on a
    /// source, the checkpoints on the destination), so a former run's keys
    /// are not counted as data.
    fn with_own_keys(&self, mut requests: Vec<ProbeRequest>) -> Vec<ProbeRequest> {
        let sync = &self.base.sync;
        for r in &mut requests {
            r.own_keys = match r.target {
                ProbeTarget::Source(_) => vec![sync.heartbeat_key.clone()],
                ProbeTarget::Destination => self.sources.rows.iter().map(|s| sync.checkpoint_key(&s.name)).collect(),
            };
        }
        requests
    }

    fn notice(&mut self, tone: Tone, text: impl Into<String>) {
        self.notice = Some(Notice { tone, text: text.into() });
    }

    /// Whether the step has a dialog or a text field that takes every key.
    fn captures_keys(&self) -> bool {
        match self.step {
            Step::Sources => self.sources.dialog.is_some(),
            Step::Destination => true,
            Step::Review => self.review.focus != ReviewField::Start && self.review.focus != ReviewField::Passwords,
            Step::Precheck => self.precheck.detail,
            Step::Conflict | Step::Databases => false,
        }
    }

    /// Validates the current step and moves on, asking for what the next
    /// step shows.
    fn go_next(&mut self) -> Option<Effect> {
        if let Err(e) = self.validate(self.step) {
            self.notice(Tone::Bad, e);
            return None;
        }
        let next = self.step.next()?;
        self.enter(next)
    }

    fn go_back(&mut self) -> Option<Effect> {
        let prev = self.step.prev()?;
        self.notice = None;
        self.step = prev;
        None
    }

    /// Shows `step` and asks for what it needs.
    fn enter(&mut self, step: Step) -> Option<Effect> {
        self.step = step;
        self.notice = None;
        match step {
            Step::Sources | Step::Destination | Step::Review => None,
            // Counts change while the sources are written to: measured anew
            // each time the step shows them.
            Step::Conflict => self.destination.probe_again(),
            Step::Databases => {
                self.sources.forget_probes();
                let wanted = self.sources.probe_missing();
                self.databases.refresh(&self.sources.rows, self.destination.probe.info());
                wanted
            }
            Step::Precheck => match self.task_config() {
                Ok(task) => self.precheck.run_if_stale(task),
                Err(e) => {
                    self.notice(Tone::Bad, e);
                    None
                }
            },
        }
    }

    fn validate(&self, step: Step) -> Result<(), String> {
        match step {
            Step::Sources => self.sources.configs().map(drop),
            Step::Destination => {
                let dest = self.destination.config()?;
                if let Some(clash) =
                    self.sources.rows.iter().find(|r| r.addr.parse::<Addr>().is_ok_and(|a| a.same_server(&dest.addr)))
                {
                    return Err(format!(
                        "the destination {} is also source {}: a server cannot be copied into itself",
                        dest.addr, clash.name
                    ));
                }
                Ok(())
            }
            Step::Conflict => Ok(()),
            Step::Databases => {
                if self.databases.selected().is_empty() {
                    Err("select at least one database (Space toggles the one under the cursor)".into())
                } else {
                    Ok(())
                }
            }
            Step::Precheck => self.precheck.may_continue(),
            Step::Review => Ok(()),
        }
    }
}

/// The wizard's `update`.
pub fn update(w: &mut Wizard, msg: Msg) -> Option<Effect> {
    let effect = step_update(w, msg);
    match effect {
        Some(Effect::Probe(requests)) => Some(Effect::Probe(w.with_own_keys(requests))),
        other => other,
    }
}

fn step_update(w: &mut Wizard, msg: Msg) -> Option<Effect> {
    match msg {
        Msg::Key(key) => on_key(w, key),
        Msg::Probed { target, addr, result } => {
            let probe = match result {
                Ok(facts) => Probe::Ok(facts),
                Err(e) => Probe::Failed(e),
            };
            match target {
                ProbeTarget::Source(id) => w.sources.probed(id, &addr, probe),
                ProbeTarget::Destination => w.destination.probed(&addr, probe),
            }
            if w.step == Step::Databases {
                w.databases.refresh(&w.sources.rows, w.destination.probe.info());
            }
            None
        }
        Msg::NutcrackerRead { path, result } => {
            w.sources.nutcracker_read(&path, result);
            None
        }
        Msg::PrecheckLine(line) => {
            w.precheck.line(line);
            None
        }
        Msg::PrecheckDone(lines) => {
            w.precheck.done(lines);
            None
        }
        Msg::Saved(result) => w.review.saved(result),
        Msg::StartFailed(e) => {
            w.review.phase = ReviewPhase::Failed(e);
            None
        }
        Msg::Signal(_) | Msg::InputClosed => Some(Effect::Exit),
        Msg::Resize
        | Msg::Started(_)
        | Msg::Snapshot(_)
        | Msg::VerifyProgress(_)
        | Msg::VerifyDone(_)
        | Msg::ReportSaved(_)
        | Msg::EngineStopped(_) => None,
    }
}

fn on_key(w: &mut Wizard, key: KeyEvent) -> Option<Effect> {
    if w.confirm_quit {
        return match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Some(Effect::Exit),
            _ => {
                w.confirm_quit = false;
                None
            }
        };
    }
    if is_ctrl(&key, 'c') {
        w.confirm_quit = true;
        return None;
    }
    // Starting: the task is being saved and started; keys wait.
    if matches!(w.review.phase, ReviewPhase::Saving | ReviewPhase::Starting) {
        return None;
    }
    let modal = w.step == Step::Sources && w.sources.dialog.is_some() || w.step == Step::Precheck && w.precheck.detail;
    if !modal {
        if is_ctrl(&key, 'n') {
            return w.go_next();
        }
        if is_ctrl(&key, 'p') {
            return w.go_back();
        }
        if !w.captures_keys() && key.code == KeyCode::Char('q') && key.modifiers.is_empty() {
            w.confirm_quit = true;
            return None;
        }
    }
    w.notice = None;
    match w.step {
        Step::Sources => w.sources.on_key(key),
        Step::Destination => {
            let (effect, advance) = w.destination.on_key(key);
            if advance {
                return w.go_next();
            }
            effect
        }
        Step::Conflict => {
            if w.conflict.on_key(key) {
                return w.go_next();
            }
            None
        }
        Step::Databases => match w.databases.on_key(key) {
            databases::DbAction::None => None,
            databases::DbAction::Next => w.go_next(),
            databases::DbAction::Refresh => {
                w.sources.forget_probes();
                w.sources.probe_missing()
            }
        },
        Step::Precheck => match w.precheck.on_key(key) {
            precheck::PrecheckAction::None => None,
            precheck::PrecheckAction::Rerun => match w.task_config() {
                Ok(task) => {
                    w.precheck.ran_for = None;
                    w.precheck.run_if_stale(task)
                }
                Err(e) => {
                    w.notice(Tone::Bad, e);
                    None
                }
            },
        },
        Step::Review => {
            if !w.review.on_key(key) {
                return None;
            }
            // Save & start: the task must still be what the precheck passed.
            let task = match w.task_config() {
                Ok(t) => t,
                Err(e) => {
                    w.notice(Tone::Bad, e);
                    return None;
                }
            };
            if w.precheck.ran_for.as_deref() != Some(&task) || w.precheck.may_continue().is_err() {
                w.notice(Tone::Warn, "the task changed since the precheck: running it again");
                return w.enter(Step::Precheck);
            }
            w.review.start(task)
        }
    }
}

/// The probes for `rows` whose answers are missing.
fn probe_requests<'a>(rows: impl Iterator<Item = &'a mut SourceRow>) -> Vec<ProbeRequest> {
    rows.filter(|r| matches!(r.probe, Probe::Untested | Probe::Failed(_)) && r.addr.parse::<Addr>().is_ok())
        .map(|r| {
            r.probe = Probe::Testing;
            ProbeRequest {
                target: ProbeTarget::Source(r.id),
                addr: r.addr.trim().to_owned(),
                password: r.password.clone(),
                own_keys: Vec::new(),
            }
        })
        .collect()
}

/// The destination config of the fields.
fn dest_config(addr: &str, password: &Secret) -> Result<DestConfig, String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("give the destination's address as host:port".into());
    }
    let addr = addr.parse::<Addr>().map_err(|e| format!("destination address: {e}"))?;
    Ok(DestConfig { addr, password: password.clone(), kind: Default::default() })
}

fn source_config(row: &SourceRow) -> Result<SourceConfig, String> {
    let addr = row.addr.trim().parse::<Addr>().map_err(|e| format!("source {}: {e}", row.name))?;
    Ok(SourceConfig { name: row.name.clone(), addr, password: row.password.clone() })
}

pub use render::render_wizard;

#[cfg(test)]
mod tests;
