//! The two vocabularies of the UI loop: [`Msg`], what happened (a key, a
//! result coming back, a new engine snapshot, a signal), and [`Effect`],
//! what `update` asks the loop to do (everything with I/O). `update`
//! functions turn a `Msg` into state changes and at most one `Effect`.

use std::path::PathBuf;

use crossterm::event::KeyEvent;

use super::common::TaskInfo;
use crate::config::nutcracker::Pool;
use crate::config::{SavePasswords, Secret, TaskConfig};
use crate::engine::snapshot::TaskSnapshot;
use crate::precheck::CheckResult;
use crate::probe::ServerFacts;
use crate::verify::{VerifyMode, VerifyProgress, VerifyReport};

/// Which "test" a probe answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeTarget {
    /// A source row, by its id (rows can move while a probe runs).
    Source(u64),
    Destination,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    pub target: ProbeTarget,
    pub addr: String,
    pub password: Secret,
    /// The tool's own keys there (heartbeat, checkpoints): not counted as data.
    pub own_keys: Vec<String>,
}

/// A signal the process got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The terminal went away (a dropped SSH session).
    Hangup,
    Terminate,
    Interrupt,
}

/// Everything the UI reacts to.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// The terminal was resized (it is redrawn at the new size).
    Resize,
    Probed {
        target: ProbeTarget,
        /// The address probed: an answer for an address since edited is dropped.
        addr: String,
        result: Result<Box<ServerFacts>, String>,
    },
    NutcrackerRead {
        path: PathBuf,
        result: Result<Vec<Pool>, String>,
    },
    /// One precheck item, as it completes.
    PrecheckLine(CheckResult),
    /// Every item (the report, in its order).
    PrecheckDone(Vec<CheckResult>),
    /// The task file was written; the variables it reads passwords from.
    Saved(Result<Vec<(String, String)>, String>),
    /// The engine runs; the dashboard takes over.
    Started(Box<TaskInfo>),
    StartFailed(String),
    Snapshot(Box<TaskSnapshot>),
    VerifyProgress(VerifyProgress),
    VerifyDone(Result<Box<VerifyReport>, String>),
    ReportSaved(Result<PathBuf, String>),
    /// Every shard stopped (checkpoints written), with each one's outcome.
    EngineStopped(Vec<(String, Result<(), String>)>),
    Signal(Signal),
    /// The terminal's input ended or failed: nobody is there any more.
    InputClosed,
}

/// What `update` asks the loop to do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    Probe(Vec<ProbeRequest>),
    ReadNutcracker(PathBuf),
    Precheck(Box<TaskConfig>),
    Save {
        config: Box<TaskConfig>,
        path: PathBuf,
        passwords: SavePasswords,
    },
    /// Start the engine on this task (after the intercept preflight).
    Start(Box<TaskConfig>),
    Engine(crate::engine::Command),
    Verify(VerifyMode),
    CancelVerify,
    SaveReport {
        path: PathBuf,
        text: String,
    },
    /// Stop every shard cleanly (checkpoints), then `EngineStopped`.
    StopTask,
    /// Leave the UI now (nothing is running).
    Exit,
}
