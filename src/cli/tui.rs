//! `shardsync` / `shardsync tui [--config F]` (the wizard, then the
//! dashboard) and `shardsync run --config F` without `--headless` (the
//! dashboard straight away, after the precheck).
//!
//! Everything printed goes out before the terminal is taken or after it is
//! given back; while the UI runs, the log file is the only output.

use std::path::{Path, PathBuf};

use color_eyre::eyre::{Result, WrapErr};
use shardsync::config::{TaskConfig, DEFAULT_STATE_DIR};
use shardsync::engine::state_lock::StateLock;
use shardsync::ui::app::{self, App, Outcome};
use shardsync::ui::common::TaskInfo;
use shardsync::ui::dashboard::Dashboard;
use shardsync::ui::log;
use shardsync::ui::msg::Signal;
use shardsync::ui::terminal::TerminalSession;
use shardsync::ui::theme::Theme;
use shardsync::ui::wizard::Wizard;

use super::exit::{EXIT_BAD_CONFIG, EXIT_FAILED, EXIT_OK};

/// The wizard, empty or filled from `config`.
pub fn wizard(config: Option<&Path>) -> Result<i32> {
    let theme = Theme::from_env();
    let wizard = match config {
        Some(path) => match TaskConfig::load(path) {
            Ok(task) => Wizard::prefilled(&task, path, theme),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(EXIT_BAD_CONFIG);
            }
        },
        None => Wizard::new(theme),
    };
    run_wizard(wizard)
}

/// Runs `wizard` (then the dashboard of the task it starts) to the end.
pub fn run_wizard(wizard: Wizard) -> Result<i32> {
    let state_dir = wizard.base.state_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let rt = runtime()?;
    rt.block_on(run_ui(App::wizard(wizard), None, &state_dir))
}

/// `shardsync run --config F`: the precheck, then the dashboard.
pub fn dashboard(config: &Path) -> Result<i32> {
    let task = match TaskConfig::load(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_BAD_CONFIG);
        }
    };
    let rt = runtime()?;
    rt.block_on(async {
        // Checked before the terminal is taken; the lock is held until the
        // engine has stopped.
        let lock = match super::run::admit(&task, false).await {
            Ok(lock) => lock,
            Err(code) => return Ok(code),
        };
        let info = TaskInfo::of(&task, shardsync::clock::now_ms());
        let app = App::dashboard(Dashboard::new(info, Theme::from_env()));
        let state_dir = task.state_dir.clone();
        run_ui(app, Some((task, lock)), &state_dir).await
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().wrap_err("while starting the async runtime")
}

/// Takes the terminal, runs the UI, gives the terminal back, then says how
/// it ended.
pub async fn run_ui(app: App, start: Option<(TaskConfig, StateLock)>, state_dir: &Path) -> Result<i32> {
    let log_path =
        log::init(state_dir).wrap_err_with(|| format!("while creating the log file in {}", state_dir.display()))?;
    tracing::info!("shardsync {} UI started", env!("CARGO_PKG_VERSION"));
    let outcome = {
        let mut session = TerminalSession::enter().wrap_err("while setting up the terminal")?;
        app::run(&mut session.terminal, app, start).await.wrap_err("while running the UI")?
        // The session drops here: the terminal is restored before printing.
    };
    tracing::info!(?outcome.signal, "UI ended");
    Ok(report(&outcome, &log_path))
}

/// Lines for the operator after the UI, and the exit code.
fn report(outcome: &Outcome, log_path: &Path) -> i32 {
    // After a hangup there is nobody to read this; printing to a dead
    // terminal fails silently.
    if outcome.signal == Some(Signal::Hangup) {
        let failed = outcome.stopped.iter().flatten().any(|(_, r)| r.is_err());
        return if failed { EXIT_FAILED } else { EXIT_OK };
    }
    // `println!` panics when the terminal is gone; these lines are worth
    // an attempt, not a crash.
    let say = |line: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    let mut code = EXIT_OK;
    if let Some((path, vars)) = &outcome.saved {
        say(format!("task saved to {}", path.display()));
        if !vars.is_empty() {
            say(format!(
                "it reads passwords from the environment; before `shardsync run --config {}`, export:",
                path.display()
            ));
            for (entry, var) in vars {
                say(format!("  {var}  (password of {entry})"));
            }
        }
    }
    if let Some(results) = &outcome.stopped {
        for (shard, r) in results {
            if let Some((_, copy)) = outcome.copies.iter().find(|(s, _)| s == shard) {
                say(format!("{shard}: full copy: {copy}"));
            }
            match r {
                Ok(()) => say(format!("{shard}: stopped, checkpoint written")),
                Err(e) => {
                    code = EXIT_FAILED;
                    say(format!("{shard}: FAILED: {e}"));
                }
            }
        }
        for note in &outcome.closing_notes {
            say(format!("warning: {note}"));
        }
        if !results.is_empty() {
            say("`shardsync run --config <task file>` continues from the checkpoints.".to_owned());
        }
    }
    say(format!("log: {}", log_path.display()));
    code
}
