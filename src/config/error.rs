//! The one error type of the task file module. Its `Display` is the message
//! the user sees: the file, what is wrong, where (the line), and when it is
//! not obvious, what to write instead. The binary maps it to exit code 2.
//!
//! Messages never contain a password: values are echoed only for keys that
//! cannot hold one, and TOML type errors on password keys are reworded.

use std::path::{Path, PathBuf};

/// A task file that cannot be used, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", file.display())]
pub struct ConfigError {
    file: PathBuf,
    kind: ErrorKind,
}

/// What is wrong. Every variant that comes from the task file's text carries
/// the line (1-based) it refers to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task file (or the twemproxy config it names) cannot be read or written.
    #[error("cannot {action}: {source}")]
    Io { action: String, source: std::io::Error },

    /// Not valid TOML, or a value of the wrong TOML type.
    #[error("{message} (line {line})")]
    Syntax { line: usize, message: String },

    /// A key the schema does not have, usually a typo.
    #[error("unknown key `{key}` in {section} at line {line}; expected one of: {}", expected.join(", "))]
    UnknownKey { key: String, section: String, line: usize, expected: Vec<&'static str> },

    /// A value or a combination of values that cannot work.
    #[error("{message} (line {line})")]
    Invalid { line: usize, message: String },

    /// A problem with the file as a whole, not with one line.
    #[error("{message}")]
    Incomplete { message: String },

    /// `password_env` names a variable that is not set.
    #[error(
        "the environment variable `{var}` is not set (password_env of {entry}, line {line}); export it before running shardsync"
    )]
    MissingEnv { var: String, entry: String, line: usize },

    /// The nutcracker.yml named by `[twemproxy] config` is not usable.
    #[error("in the twemproxy config {}{}: {message}", file.display(), line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Twemproxy { file: PathBuf, line: Option<usize>, message: String },
}

impl ConfigError {
    pub(crate) fn new(file: &Path, kind: ErrorKind) -> ConfigError {
        ConfigError { file: file.to_path_buf(), kind }
    }

    /// The task file the error is about.
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The line of the task file the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match &self.kind {
            ErrorKind::Syntax { line, .. }
            | ErrorKind::UnknownKey { line, .. }
            | ErrorKind::Invalid { line, .. }
            | ErrorKind::MissingEnv { line, .. } => Some(*line),
            ErrorKind::Io { .. } | ErrorKind::Incomplete { .. } | ErrorKind::Twemproxy { .. } => None,
        }
    }
}
