//! The UI's log file, `<state dir>/shardsync.log`: what the screen cannot
//! hold (every effect carried out, every event, signals, errors), appended,
//! without colour codes. Nothing is ever printed to the terminal while the
//! UI owns it. Passwords never reach it: requests are logged by address.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const LOG_FILE: &str = "shardsync.log";

/// Sends `tracing` events to `<dir>/shardsync.log` (created with `dir`).
/// Returns the file's path. A second call keeps the first file.
pub fn init(dir: &Path) -> std::io::Result<PathBuf> {
    crate::private_fs::create_dir_all(dir)?;
    let path = dir.join(LOG_FILE);
    let file = crate::private_fs::options().create(true).append(true).open(&path)?;
    crate::private_fs::tighten(&path, crate::private_fs::FILE_MODE)?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // Already set (a test, or a second front end in one process): keep it.
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(path)
}
