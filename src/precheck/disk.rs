//! Whether the state dir, where the spool goes, can be written. Its free
//! space is measured by [`crate::source::spool::free_bytes`], the helper the
//! engine also waits on when a spool's disk is full.

use std::io;
use std::path::Path;

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
    use crate::source::spool::free_bytes;

    #[test]
    fn measures_the_nearest_existing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let (free, measured) = free_bytes(&dir.path().join("not/yet/there")).unwrap();
        assert!(free > 0);
        assert_eq!(measured, dir.path());
        writable(&dir.path().join("state")).unwrap();
    }
}
