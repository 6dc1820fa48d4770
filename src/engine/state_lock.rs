//! One process per task: the state dir holds a lock file that a running
//! task keeps locked (`flock`, released by the kernel however the process
//! ends, SIGKILL included). Two processes applying the same source stream
//! to one destination would apply every write twice.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Held while the task runs; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "task state {path} is in use by another shardsync process ({holder}): a task must run once at a time, or \
         every write would be applied twice; stop the other process first"
    )]
    Busy { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}; check the state directory's permissions")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The lock file of a task's state dir.
pub fn lock_path(state: &Path) -> PathBuf {
    state.join("task.lock")
}

/// Locks `state` (creating it) for this process.
pub fn acquire(state: &Path) -> Result<StateLock, LockError> {
    let path = lock_path(state);
    let io = |source| LockError::Io { path: path.clone(), source };
    crate::private_fs::create_dir_all(state).map_err(io)?;
    let file =
        crate::private_fs::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    crate::private_fs::tighten(&path, crate::private_fs::FILE_MODE).map_err(io)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // Who holds it, for the message another process would show.
            lock.set_len(0).map_err(io)?;
            lock.rewind().map_err(io)?;
            write!(lock, "pid {}", std::process::id()).map_err(io)?;
            Ok(StateLock { _lock: lock })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = if holder.trim().is_empty() { "pid unknown".to_owned() } else { holder.trim().to_owned() };
            Err(LockError::Busy { path: path.clone(), holder })
        }
        Err((_, errno)) => Err(io(std::io::Error::from(errno))),
    }
}

/// Whether another process holds the task's lock now.
pub fn is_held(state: &Path) -> Option<String> {
    match acquire(state) {
        Err(LockError::Busy { holder, .. }) => Some(holder),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let e = acquire(dir.path()).unwrap_err();
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(is_held(dir.path()).is_some());
        drop(first);
        assert!(is_held(dir.path()).is_none());
        acquire(dir.path()).unwrap();
    }
}
