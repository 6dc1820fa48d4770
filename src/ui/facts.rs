//! What the UI shows of the library's answers (server probes, precheck
//! lines, verify progress and results), as plain data a test can build by
//! hand. `effects` turns the library's types into these, in one place; the
//! screens never see a socket or a library future.

use std::collections::BTreeMap;

/// A server's answers to the wizard's "test" (from `probe::probe`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    pub version: String,
    /// `master` or `replica of HOST:PORT` (with `, link down` when it is).
    pub role: String,
    pub is_master: bool,
    /// `standalone`, `cluster` or `sentinel`.
    pub mode: String,
    pub used_memory: u64,
    /// 0: no limit.
    pub maxmemory: u64,
    pub maxmemory_policy: Option<String>,
    /// The `databases` setting, when the server tells.
    pub databases: Option<u32>,
    /// Keys per DB that holds any.
    pub keyspace: BTreeMap<u32, u64>,
}

impl ServerInfo {
    pub fn keys(&self) -> u64 {
        self.keyspace.values().sum()
    }
}

/// The outcome of a "test" button.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Probe {
    #[default]
    Untested,
    Testing,
    Ok(ServerInfo),
    /// The probe's sentence for the operator.
    Failed(String),
}

impl Probe {
    pub fn info(&self) -> Option<&ServerInfo> {
        match self {
            Probe::Ok(i) => Some(i),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

impl CheckStatus {
    pub fn word(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
        }
    }
}

/// One precheck item (from `precheck::CheckResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub id: String,
    /// `source server1 (127.0.0.1:7001)`, `destination 127.0.0.1:6379`, `state dir`.
    pub subject: String,
    pub title: String,
    pub status: CheckStatus,
    /// One line with the measured numbers.
    pub reason: String,
    /// What to do, for a warn or a fail.
    pub fix: Option<String>,
}

/// How deep a verify compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyDepth {
    Counts,
    Keys,
    Full,
}

impl VerifyDepth {
    pub fn word(self) -> &'static str {
        match self {
            VerifyDepth::Counts => "counts",
            VerifyDepth::Keys => "keys",
            VerifyDepth::Full => "full",
        }
    }
}

/// A running verify's progress (from `verify::VerifyProgress`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyProgress {
    pub phase: String,
    pub compared: u64,
    pub total: u64,
    pub differences: u64,
}

/// One DB's counts in a verify result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbCountLine {
    pub db: u32,
    pub source_total: u64,
    pub destination: u64,
}

/// A finished verify (from `verify::VerifyReport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub depth: VerifyDepth,
    pub equal: bool,
    pub counts: Vec<DbCountLine>,
    pub compared: u64,
    /// The first differences, one line each: `shard db key: kind detail`.
    pub differences: Vec<String>,
    pub differences_total: u64,
    /// Keys that kept changing while compared (written to during the run).
    pub unsettled_total: u64,
    pub elapsed_ms: u64,
}
