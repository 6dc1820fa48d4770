//! Command implementations that print to the terminal.
//!
//! One module a command; `exit` holds the exit codes they all return, and
//! `check` the printing of a precheck report that `run` reuses (the
//! dependencies point one way: `run` → `check`, `tui` → `run`, all → `exit`).

pub mod check;
pub mod demo;
pub mod exit;
pub mod finish;
pub mod rdb;
pub mod run;
pub mod tui;
pub mod verify;

use std::path::Path;

use shardsync::config::TaskConfig;

use exit::{EXIT_BAD_CONFIG, EXIT_FAILED};

/// The task file and a runtime to run it on, as every task command starts;
/// on failure the reason is printed and the exit code returned (2 for a
/// bad task file, as the contract says).
pub fn task_and_runtime(config: &Path) -> Result<(TaskConfig, tokio::runtime::Runtime), i32> {
    let task = TaskConfig::load(config).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_CONFIG
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        EXIT_FAILED
    })?;
    Ok((task, rt))
}
