//! Keys holding a module's value (RedisBloom on Redis 7.4), against real
//! servers, under each `sync.modules` policy: `fail` stops the shard naming
//! the key and the module, `skip` leaves them out (counted as
//! `keys_skipped.module`, each named), `restore` copies them to a
//! destination that loads the module; and the precheck's line on them.
//!
//! Its own harness (`harness = false`): without Redis 7.4 and RedisBloom
//! (`.deps/redis-7.4/`, fetched by `scripts/deps.sh`) every case is
//! reported as skipped, never as passed.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::compare;
use common::harness::Report;
use common::task::task_file;
use common::{RedisOptions, RedisServer};
use shardsync::config::TaskConfig;
use shardsync::engine::{self, snapshot::TaskSnapshot};
use shardsync::precheck::CheckStatus;
use shardsync::resp::Cmd;
use tokio_util::sync::CancellationToken;

struct Bins {
    redis74: PathBuf,
    bloom: PathBuf,
}

fn bins() -> Result<Bins, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".deps/redis-7.4");
    let (redis74, bloom) = (dir.join("redis-server"), dir.join("modules/redisbloom.so"));
    if redis74.is_file() && bloom.is_file() {
        Ok(Bins { redis74, bloom })
    } else {
        Err(format!("{} or its RedisBloom not found (run scripts/deps.sh)", redis74.display()))
    }
}

fn server(b: &Bins, with_bloom: bool) -> Result<RedisServer, String> {
    let mut opts = RedisOptions::new().bin(&b.redis74).config("repl-diskless-sync-delay 0");
    if with_bloom {
        opts = opts.config(format!("loadmodule {}", b.bloom.display()));
    }
    RedisServer::start(opts).map_err(|e| e.to_string())
}

/// A source with a Bloom filter `bf` and a few plain keys.
async fn source(b: &Bins) -> Result<RedisServer, String> {
    let s = server(b, true)?;
    let mut c = compare::connect(&s.addr()).await;
    for args in [&["BF.ADD", "bf", "hello"][..], &["SET", "plain", "1"], &["RPUSH", "list", "a", "b"]] {
        let v = c.send(&Cmd::from_args(args.iter().copied())).await.map_err(|e| e.to_string())?;
        if v.is_error() {
            return Err(format!("{args:?}: {v}"));
        }
    }
    Ok(s)
}

/// Runs a task until every shard is synced, or one fails (its error).
async fn run(path: &std::path::Path) -> Result<TaskSnapshot, String> {
    let handle = engine::spawn(TaskConfig::load(path).map_err(|e| e.to_string())?, CancellationToken::new());
    let mut status = handle.status.clone();
    let start = Instant::now();
    let end = loop {
        let snap = status.borrow_and_update().clone();
        if snap.failed().is_some() || snap.all_synced() {
            break snap;
        }
        if start.elapsed() > Duration::from_secs(30) {
            handle.stop().await;
            return Err(format!("neither synced nor failed in 30 s: {snap:#?}"));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    };
    handle.stop().await;
    Ok(end)
}

async fn fail_stops_naming_key_and_module(b: &Bins) -> Result<(), String> {
    let (src, dest) = (source(b).await?, server(b, false)?);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "");
    let snap = run(&path).await?;
    let f = snap.failed().ok_or("the shard did not fail")?;
    let e = f.last_error.clone().unwrap_or_default();
    if !(e.contains("key \"bf\"") && e.contains("module `MBbloom--`") && e.contains("modules = \"skip\"")) {
        return Err(format!("unexpected error: {e}"));
    }
    Ok(())
}

async fn skip_leaves_them_out_counted(b: &Bins) -> Result<(), String> {
    let (src, dest) = (source(b).await?, server(b, false)?);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "modules = \"skip\"\n");
    let snap = run(&path).await?;
    let s = &snap.shards[0];
    if s.keys_skipped.module != 1 || s.keys_applied != 2 {
        return Err(format!("expected 2 written and 1 module value skipped: {s:#?}"));
    }
    if !s.alerts.iter().any(|a| a.message.contains("key \"bf\"") && a.message.contains("left out")) {
        return Err(format!("no alert names the key: {:#?}", s.alerts));
    }
    let diffs: Vec<String> = compare::diff(&[src.addr()], &dest.addr(), &[b"SHARDSYNC_HEARTBEAT"])
        .await
        .into_iter()
        .filter(|d| !d.contains(" bf:") && !d.contains(" holds "))
        .collect();
    if !diffs.is_empty() {
        return Err(format!("differences: {diffs:?}"));
    }
    Ok(())
}

async fn restore_copies_them_where_the_module_is(b: &Bins) -> Result<(), String> {
    let (src, dest) = (source(b).await?, server(b, true)?);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = task_file(dir.path(), &[("server1", src.addr())], &dest.addr(), "modules = \"restore\"\n");
    let report = shardsync::precheck::run(&TaskConfig::load(&path).map_err(|e| e.to_string())?, None).await;
    let line = report.checks.iter().find(|c| c.id == "destination.modules").ok_or("no modules line")?;
    if line.status != CheckStatus::Pass || !line.reason.contains("server1 loads bf") {
        return Err(format!("precheck: {line:?}"));
    }
    let snap = run(&path).await?;
    if snap.failed().is_some() || snap.shards[0].keys_applied != 3 {
        return Err(format!("not copied: {:#?}", snap.shards[0]));
    }
    let mut d = compare::connect(&dest.addr()).await;
    let exists = d.send(&Cmd::from_args(["BF.EXISTS", "bf", "hello"])).await.map_err(|e| e.to_string())?;
    if exists.as_int() != Some(1) {
        return Err(format!("BF.EXISTS bf hello on the destination: {exists}"));
    }
    // Where the destination lacks the module, restore cannot start.
    let bare = server(b, false)?;
    let path = task_file(dir.path(), &[("server1", src.addr())], &bare.addr(), "modules = \"restore\"\n");
    let report = shardsync::precheck::run(&TaskConfig::load(&path).map_err(|e| e.to_string())?, None).await;
    let line = report.checks.iter().find(|c| c.id == "destination.modules").ok_or("no modules line")?;
    if line.status != CheckStatus::Fail || !line.fix.as_deref().unwrap_or_default().contains("load bf") {
        return Err(format!("precheck without the module: {line:?}"));
    }
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let bins = bins();
    let mut report = Report::new();
    type Case = fn(&Bins) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + '_>>;
    let cases: [(&str, Case); 3] = [
        ("modules = fail stops naming key and module", |b| Box::pin(fail_stops_naming_key_and_module(b))),
        ("modules = skip leaves them out, counted", |b| Box::pin(skip_leaves_them_out_counted(b))),
        ("modules = restore copies them where the module is", |b| Box::pin(restore_copies_them_where_the_module_is(b))),
    ];
    for (name, case) in cases {
        if !report.wants(name) {
            continue;
        }
        match &bins {
            Err(e) => report.skipped(name, e),
            Ok(b) => report.outcome(name, rt.block_on(case(b)).map(|()| String::new())),
        }
    }
    report.finish();
}
