//! F6 of issue 13, against a real full disk: the state directory on an
//! 8 MB tmpfs while the source sends 20 MB. The shard whose spool cannot
//! grow pauses, naming the directory, the room it needs and the room free;
//! its partial spool is removed; when the filesystem grows it goes on by
//! itself, and the copy ends equal.
//!
//! Its own harness (`harness = false`): mounting a tmpfs needs root (or
//! CAP_SYS_ADMIN); where that is refused the test says it is skipped,
//! never passed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::compare;
use common::harness::Report;
use common::task::task_file;
use common::wait::until;
use common::RedisServer;
use rand::{RngCore, SeedableRng};
use shardsync::config::TaskConfig;
use shardsync::engine::{self, snapshot::TaskSnapshot};
use shardsync::resp::Cmd;
use tokio_util::sync::CancellationToken;

/// A tmpfs mounted for the test; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs { dir: dir.to_owned() })
    }

    fn grow(&self, size: &str) -> Result<(), String> {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .map_err(|e| e.to_string())?
            .success();
        ok.then_some(()).ok_or_else(|| "remount failed".to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

async fn a_full_spool_disk_pauses_the_shard_until_there_is_room(fs: &Tmpfs) -> Result<(), String> {
    let src = RedisServer::with_config(&["repl-diskless-sync-delay 0"]).map_err(|e| e.to_string())?;
    let dest = RedisServer::with_config(&[]).map_err(|e| e.to_string())?;
    // 20 MB that LZF cannot shrink.
    let mut c = compare::connect(&src.addr()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..200 {
        let mut v = vec![0u8; 100_000];
        rng.fill_bytes(&mut v);
        c.query(&Cmd::new("SET").arg(format!("k:{i}")).arg(v)).await.map_err(|e| e.to_string())?;
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let state = fs.dir.join("state");
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "");
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let text = text.replace(&dir.path().join("state").display().to_string(), &state.display().to_string());
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let handle = engine::spawn(TaskConfig::load(&path).map_err(|e| e.to_string())?, CancellationToken::new());
    let full = |s: &TaskSnapshot| s.shards.first().is_some_and(|s| s.paused_on_error);
    until(&handle, "paused on the full disk", Duration::from_secs(30), full).await?;
    let why = handle.status.borrow().shards[0].last_error.clone().unwrap_or_default();
    let spool = state.join("t/spool/server1");
    if !(why.contains(&spool.display().to_string()) && why.contains("is full") && why.contains("64.0 MB free")) {
        return Err(format!("the pause does not say where and how much: {why}"));
    }
    let left: u64 = std::fs::read_dir(&spool).map(|d| d.flatten().count() as u64).unwrap_or(0);
    if left > 0 {
        return Err(format!("{left} spool files left behind in {}", spool.display()));
    }
    fs.grow("256m")?;
    until(&handle, "synced", Duration::from_secs(60), TaskSnapshot::all_synced).await?;
    handle.stop().await;
    let diffs = compare::diff(&[src.addr()], &dest.addr(), &[b"SHARDSYNC_HEARTBEAT"]).await;
    if !diffs.is_empty() {
        return Err(format!("{} differences: {:?}", diffs.len(), diffs.iter().take(5).collect::<Vec<_>>()));
    }
    Ok(())
}

fn main() {
    let name = "a full spool disk pauses the shard until there is room";
    let mut report = Report::new();
    let base = tempfile::tempdir().expect("tmp");
    match Tmpfs::mount(&base.path().join("fs"), "8m") {
        Err(e) => report.skipped(name, &format!("cannot mount a small tmpfs here ({e})")),
        Ok(fs) => {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            let result = rt.block_on(a_full_spool_disk_pauses_the_shard_until_there_is_room(&fs));
            drop(fs);
            report.outcome(name, result.map(|()| String::new()));
        }
    }
    report.finish();
}
