//! Free space where the spool goes: the state dir, or the nearest parent
//! that exists (the task creates the rest when it starts).

use std::io;
use std::path::{Path, PathBuf};

/// Bytes available to this user on the file system holding `path`, and the
/// directory actually measured.
pub(crate) fn free_bytes(path: &Path) -> io::Result<(u64, PathBuf)> {
    let mut dir = path.to_path_buf();
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => {
                dir = PathBuf::from(".");
                break;
            }
        }
    }
    let stat = nix::sys::statvfs::statvfs(&dir).map_err(io::Error::from)?;
    Ok((stat.blocks_available() as u64 * stat.fragment_size() as u64, dir))
}

/// Whether this user can create files in the state dir (creating it).
pub(super) fn writable(path: &Path) -> io::Result<()> {
    crate::private_fs::create_dir_all(path)?;
    let probe = path.join(".shardsync-precheck");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_nearest_existing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let (free, measured) = free_bytes(&dir.path().join("not/yet/there")).unwrap();
        assert!(free > 0);
        assert_eq!(measured, dir.path());
        writable(&dir.path().join("state")).unwrap();
    }
}
