//! What the UI keeps of the library's answers: a "test" button's state
//! around a probe's `ServerFacts`, and verify progress and results as
//! plain data a test can build by hand. `effects` produces them, in one
//! place; the screens never see a socket or a library future.

use crate::probe::ServerFacts;

/// The outcome of a "test" button.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Probe {
    #[default]
    Untested,
    Testing,
    Ok(Box<ServerFacts>),
    /// The probe's sentence for the operator.
    Failed(String),
}

impl Probe {
    pub fn info(&self) -> Option<&ServerFacts> {
        match self {
            Probe::Ok(i) => Some(i),
            _ => None,
        }
    }
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
