//! Files only their owner reads: the state directory holds every byte of
//! the sources' data (the spool), the checkpoints and the log, so its
//! directories are made `0700` and its files `0600`, whatever the umask —
//! and tightened when they already exist with wider modes.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Directories: owner only.
pub const DIR_MODE: u32 = 0o700;
/// Files: owner read and write.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode `0700`, and sets `dir`
/// itself to `0700` if it existed.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    tighten(dir, DIR_MODE)
}

/// Options that create a file with mode `0600`.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Writes `path` whole (created `0600`, or tightened to it).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = options().write(true).create(true).truncate(true).open(path)?;
    f.write_all(bytes)?;
    tighten(path, FILE_MODE)
}

/// Sets `path`'s mode to `mode` when it allows more.
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        fs::set_permissions(path, Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_existing_paths_end_up_private() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!((mode(&t.path().join("a")), mode(&dir)), (0o700, 0o700));
        let file = dir.join("f");
        write(&file, b"x").unwrap();
        assert_eq!(mode(&file), 0o600);
        // Made wide by someone else: tightened on the next use.
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        create_dir_all(&dir).unwrap();
        write(&file, b"y").unwrap();
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
    }
}
