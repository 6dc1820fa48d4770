//! Errors of the RDB parser: every one names the byte offset where the file
//! stopped making sense and what was expected there.

#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("corrupt RDB at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("truncated RDB: the data ends at byte {offset} but {expected}")]
    Truncated { offset: u64, expected: String },
    #[error(
        "unsupported RDB: {what} (this build reads Redis RDB versions 1 to {foreign} — the types of versions up to {max} — \
         and Valkey's {valkey})",
        foreign = crate::rdb::consts::MAX_FOREIGN_VERSION,
        max = crate::rdb::consts::MAX_VERSION,
        valkey = crate::rdb::consts::VALKEY_VERSION
    )]
    Unsupported { what: String },
    #[error(
        "RDB checksum mismatch: the trailer at byte {offset} says {stored:#018x} but the content hashes to {computed:#018x}; the file is damaged"
    )]
    Checksum { offset: u64, stored: u64, computed: u64 },
    #[error("I/O error reading the RDB at byte {offset}: {source}")]
    Io { offset: u64, source: std::io::Error },
}

impl RdbError {
    /// The byte offset the error refers to, when there is one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            RdbError::Corrupt { offset, .. }
            | RdbError::Truncated { offset, .. }
            | RdbError::Checksum { offset, .. }
            | RdbError::Io { offset, .. } => Some(*offset),
            RdbError::Unsupported { .. } => None,
        }
    }
}
