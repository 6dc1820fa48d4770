//! The exit codes of the contract (`docs/exit-codes.md`), shared by every
//! command: 0 success, 1 the command ran and something failed or differs,
//! 2 the task file is wrong and nothing was done.

/// Success.
pub const EXIT_OK: i32 = 0;
/// The command ran and something failed or differs.
pub const EXIT_FAILED: i32 = 1;
/// The task file (or the command line) is wrong; nothing was done.
pub const EXIT_BAD_CONFIG: i32 = 2;
