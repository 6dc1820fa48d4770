//! What more than one screen (and the loop's vocabulary in `msg`) shares,
//! kept out of the screens so that none of them uses another: the task as
//! the dashboard knows it ([`TaskInfo`], which `Msg::Started` carries from
//! `effects`), the line of feedback under a pane ([`Notice`]), and the
//! Ctrl-key test (`is_ctrl`).
//!
//! It uses nothing of `msg`, `wizard` or `dashboard`; they all use it.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::theme::Tone;
use crate::config::TaskConfig;

/// What the dashboard knows of the task besides its snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub name: String,
    pub destination: String,
    /// (name, address) per source.
    pub sources: Vec<(String, String)>,
    /// `<state_dir>/<name>`: checkpoints, spools, logs, reports.
    pub state_path: PathBuf,
    pub started_ms: i64,
}

impl TaskInfo {
    pub fn of(task: &TaskConfig, started_ms: i64) -> TaskInfo {
        TaskInfo {
            name: task.name.clone(),
            destination: task.destination.addr.to_string(),
            sources: task.sources.iter().map(|s| (s.name.clone(), s.addr.to_string())).collect(),
            state_path: task.state_path(),
            started_ms,
        }
    }
}

/// A line under a pane: a validation error, or what just happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub tone: Tone,
    pub text: String,
}

/// Ctrl + `c`.
pub(crate) fn is_ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}
