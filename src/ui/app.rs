//! The UI loop: terminal events, results and signals in; `update`; effects
//! out; a redraw when something on screen changed.
//!
//! Drawing is throttled, not ticking: a key is drawn at once, anything
//! else (engine snapshots arrive four times a second) at most every
//! [`FRAME`], and an unchanged screen is not drawn at all, so an idle
//! dashboard costs next to nothing on the CPU or a slow SSH link.
//!
//! Leaving is always through a clean stop: quit, SIGHUP (the SSH session
//! dropped), SIGTERM, SIGINT and a terminal whose input ended all make the
//! engine apply what it received and write checkpoints before the loop
//! returns; the terminal is restored by its guard whatever happens.

use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use ratatui::widgets::Widget;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dashboard::{self, Dashboard};
use super::effects::{EffectRunner, Step};
use super::msg::{Effect, Msg, Signal};
use super::terminal::Tui;
use super::theme::Theme;
use super::wizard::{self, Wizard};
use crate::engine::state_lock::StateLock;

/// The shortest time between two redraws that no key asked for.
pub const FRAME: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    Wizard(Box<Wizard>),
    Dashboard(Box<Dashboard>),
}

/// How the UI ended, for the lines printed after the terminal is back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The task file the wizard saved, and the variables it reads passwords from.
    pub saved: Option<(PathBuf, Vec<(String, String)>)>,
    /// Each shard's end, when a task ran.
    pub stopped: Option<Vec<(String, Result<(), String>)>>,
    /// What each shard's last full copy came to (shard, summary).
    pub copies: Vec<(String, String)>,
    /// What the engine's shutdown could not finish (see `TaskSnapshot::closing_notes`).
    pub closing_notes: Vec<String>,
    /// What stopped the UI when it was not the operator.
    pub signal: Option<Signal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub screen: Screen,
    pub theme: Theme,
    /// Something on screen changed since the last draw.
    pub dirty: bool,
    pub outcome: Outcome,
    /// Set when the loop should return.
    pub done: bool,
}

impl App {
    pub fn wizard(w: Wizard) -> App {
        let theme = w.theme;
        App { screen: Screen::Wizard(Box::new(w)), theme, dirty: true, outcome: Outcome::default(), done: false }
    }

    pub fn dashboard(d: Dashboard) -> App {
        let theme = d.theme;
        App { screen: Screen::Dashboard(Box::new(d)), theme, dirty: true, outcome: Outcome::default(), done: false }
    }
}

impl Widget for &App {
    fn render(self, area: ratatui::layout::Rect, buf: &mut ratatui::buffer::Buffer) {
        match &self.screen {
            Screen::Wizard(w) => w.as_ref().render(area, buf),
            Screen::Dashboard(d) => d.as_ref().render(area, buf),
        }
    }
}

/// What the dashboard's last snapshot says the shutdown left undone.
fn closing_notes(app: &App) -> Vec<String> {
    match &app.screen {
        Screen::Dashboard(d) => d.snapshot.closing_notes.clone(),
        Screen::Wizard(_) => Vec::new(),
    }
}

/// What the dashboard's last snapshot says each full copy came to.
fn copies(app: &App) -> Vec<(String, String)> {
    match &app.screen {
        Screen::Dashboard(d) => {
            d.snapshot.shards.iter().filter_map(|s| Some((s.shard.clone(), s.copy_summary()?))).collect()
        }
        Screen::Wizard(_) => Vec::new(),
    }
}

/// The whole UI's `update`: screen changes here, the rest per screen.
pub fn update(app: &mut App, msg: Msg) -> Option<Effect> {
    match msg {
        Msg::Started(info) => {
            if let Screen::Wizard(w) = &app.screen {
                app.outcome.saved = Some((w.review.file_path(), w.review.vars.clone()));
            }
            app.screen = Screen::Dashboard(Box::new(Dashboard::new(*info, app.theme)));
            app.dirty = true;
            None
        }
        Msg::EngineStopped(results) => {
            app.outcome.stopped = Some(results);
            app.outcome.copies = copies(app);
            app.outcome.closing_notes = closing_notes(app);
            app.done = true;
            None
        }
        Msg::Snapshot(snap) => {
            if let Screen::Dashboard(d) = &mut app.screen {
                app.dirty |= d.apply_snapshot(*snap);
            }
            None
        }
        msg => {
            if let Msg::Signal(s) = &msg {
                app.outcome.signal = Some(*s);
            }
            app.dirty = true;
            let effect = match &mut app.screen {
                Screen::Wizard(w) => wizard::update(w, msg),
                Screen::Dashboard(d) => dashboard::update(d, msg),
            };
            if effect == Some(Effect::Exit) {
                app.done = true;
            }
            effect
        }
    }
}

/// SIGHUP, SIGTERM and SIGINT as messages. In raw mode Ctrl-C is a key,
/// so SIGINT only comes from `kill`.
struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.hangup.recv() => Signal::Hangup,
            _ = self.terminate.recv() => Signal::Terminate,
            _ = self.interrupt.recv() => Signal::Interrupt,
        }
    }
}

/// What the loop got from the terminal.
fn terminal_msgs(event: Event) -> Vec<Msg> {
    match event {
        Event::Key(k) if k.kind != KeyEventKind::Release => vec![Msg::Key(k)],
        Event::Resize(..) => vec![Msg::Resize],
        // A paste types its characters; a line break in it must not press
        // Enter (it would submit a half-pasted form).
        Event::Paste(text) => text
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Runs the UI until it is done. `start` is a task to run at once, with
/// its state dir lock (the dashboard of `shardsync run`); without it the
/// app's screen starts.
pub async fn run(
    terminal: &mut Tui,
    mut app: App,
    start: Option<(crate::config::TaskConfig, StateLock)>,
) -> std::io::Result<Outcome> {
    let (tx, mut rx) = mpsc::channel::<Msg>(256);
    let root = CancellationToken::new();
    let mut runner = EffectRunner::new(tx, root.clone());
    let mut signals = Signals::new()?;
    let mut events = EventStream::new();
    let mut input_open = true;
    let mut drawable = true;
    let mut logged_events = 0u64;
    let mut last_draw = Instant::now();
    let mut pending: Vec<Msg> = Vec::new();
    if let Some((task, lock)) = start {
        pending.push(runner.start(task, Some(lock)));
    }
    draw(terminal, &app, &mut drawable);
    loop {
        let next_frame = last_draw + FRAME;
        let msg = match pending.pop() {
            Some(m) => m,
            None => tokio::select! {
                ev = events.next(), if input_open => match ev {
                    Some(Ok(ev)) => {
                        pending = terminal_msgs(ev);
                        pending.reverse();
                        continue;
                    }
                    // No terminal to read from: nobody can press q any more.
                    Some(Err(_)) | None => {
                        input_open = false;
                        tracing::warn!("terminal input ended");
                        Msg::InputClosed
                    }
                },
                Some(m) = rx.recv() => m,
                s = signals.recv() => {
                    tracing::warn!(?s, "signal");
                    // A hung-up terminal cannot be drawn on.
                    if s == Signal::Hangup {
                        drawable = false;
                    }
                    Msg::Signal(s)
                }
                _ = tokio::time::sleep_until(next_frame), if app.dirty => {
                    draw(terminal, &app, &mut drawable);
                    app.dirty = false;
                    last_draw = Instant::now();
                    continue;
                }
            },
        };
        let immediate = matches!(msg, Msg::Key(_) | Msg::Resize);
        let effect = update(&mut app, msg);
        log_new_events(&app, &mut logged_events);
        if let Some(effect) = effect {
            match runner.run(effect) {
                Step::Continue => {}
                Step::Msg(m) => pending.push(m),
                Step::Exit => app.done = true,
            }
        }
        if app.done {
            break;
        }
        if app.dirty && (immediate || last_draw.elapsed() >= FRAME) {
            draw(terminal, &app, &mut drawable);
            app.dirty = false;
            last_draw = Instant::now();
        }
    }
    // Whatever ended the loop, a running engine stops cleanly first.
    if runner.engine_running() {
        runner.run(Effect::StopTask);
        while let Some(m) = rx.recv().await {
            match m {
                Msg::EngineStopped(results) => {
                    app.outcome.stopped = Some(results);
                    app.outcome.copies = copies(&app);
                    app.outcome.closing_notes = closing_notes(&app);
                    break;
                }
                Msg::Snapshot(snap) => {
                    update(&mut app, Msg::Snapshot(snap));
                }
                _ => {}
            }
        }
    }
    root.cancel();
    Ok(app.outcome)
}

fn draw(terminal: &mut Tui, app: &App, drawable: &mut bool) {
    if !*drawable {
        return;
    }
    if let Err(e) = terminal.draw(|f| f.render_widget(app, f.area())) {
        // The terminal went away (or its writes fail): keep running the
        // task to a clean stop without a screen.
        tracing::warn!("cannot draw: {e}");
        *drawable = false;
    }
}

/// Writes the dashboard's events the log has not seen yet.
fn log_new_events(app: &App, logged: &mut u64) {
    let Screen::Dashboard(d) = &app.screen else { return };
    let new = d.events_total.saturating_sub(*logged) as usize;
    for e in d.events.iter().skip(d.events.len().saturating_sub(new)) {
        tracing::info!(shard = %e.shard, "{}", e.message);
    }
    *logged = d.events_total;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::ShardState;
    use crate::ui::common::TaskInfo;
    use crate::ui::testing::{ch, shard, task_snapshot, T0};

    fn info() -> TaskInfo {
        TaskInfo {
            name: "t".into(),
            destination: "127.0.0.1:7010".into(),
            sources: vec![("s1".into(), "127.0.0.1:7001".into())],
            state_path: PathBuf::from("/tmp/state/t"),
            started_ms: T0,
        }
    }

    #[test]
    fn a_started_task_replaces_the_wizard_with_its_dashboard() {
        let mut app = App::wizard(Wizard::new(Theme::mono()));
        assert_eq!(update(&mut app, Msg::Started(Box::new(info()))), None);
        assert!(matches!(&app.screen, Screen::Dashboard(d) if d.task.name == "t"));
        assert_eq!(app.outcome.saved.as_ref().map(|(p, _)| p.clone()), Some(PathBuf::from("migration.toml")));
    }

    #[test]
    fn only_a_visible_change_asks_for_a_redraw() {
        let mut app = App::dashboard(Dashboard::new(info(), Theme::mono()));
        app.dirty = false;
        update(&mut app, Msg::Snapshot(Box::new(task_snapshot(vec![shard("s1", ShardState::Incremental, T0)], T0))));
        assert!(app.dirty);
        app.dirty = false;
        update(
            &mut app,
            Msg::Snapshot(Box::new(task_snapshot(vec![shard("s1", ShardState::Incremental, T0 + 250)], T0 + 250))),
        );
        assert!(!app.dirty, "the same figures a quarter second later");
        update(&mut app, ch('?'));
        assert!(app.dirty);
    }

    #[test]
    fn the_end_of_the_engine_ends_the_loop() {
        let mut app = App::dashboard(Dashboard::new(info(), Theme::mono()));
        update(&mut app, Msg::Signal(Signal::Hangup));
        assert_eq!(app.outcome.signal, Some(Signal::Hangup));
        assert!(!app.done, "the engine stops first");
        update(&mut app, Msg::EngineStopped(vec![("s1".into(), Ok(()))]));
        assert!(app.done);
        let mut app = App::wizard(Wizard::new(Theme::mono()));
        assert_eq!(update(&mut app, Msg::Signal(Signal::Terminate)), Some(Effect::Exit));
        assert!(app.done);
    }

    #[test]
    fn a_paste_types_its_characters_without_pressing_enter() {
        let msgs = terminal_msgs(Event::Paste("ab\nc".into()));
        let keys: Vec<KeyCode> = msgs
            .iter()
            .map(|m| match m {
                Msg::Key(k) => k.code,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(keys, [KeyCode::Char('a'), KeyCode::Char('b'), KeyCode::Char('c')]);
    }
}
