//! The key comparison of keys and full modes: a first pass over every
//! selected source DB, then re-check rounds of the suspects.
//!
//! First pass: shards run concurrently (at most `parallel_shards`), each
//! walking its DBs in turn. Per DB, `workers_per_shard` workers, each with
//! its own source and destination connection, take turns at a shared
//! `SCAN` cursor: a worker scans a batch, then compares it
//! (`read::compare_batch`) while the next worker scans. Memory is a batch
//! per worker. Keys that differ go into the shared suspect set.
//!
//! Re-checks: after each wait of `recheck_waits`, every suspect is read
//! again, grouped by shard and DB, and the suspect set decides: resolved,
//! confirmed, or still pending. Pending keys after the last round are
//! unsettled.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::counts::{dest_side, source_side, Plan};
use super::endpoint::Endpoint;
use super::outcome::Outcome;
use super::read::compare_batch;
use super::suspects::{KeyAt, SuspectSet, Verdict};
use super::{Difference, Tracker, VerifyError, VerifyOptions, VerifyReport};
use crate::config::TaskConfig;
use crate::resp::Cmd;

/// What every task of a run shares.
struct Shared {
    task: TaskConfig,
    opts: VerifyOptions,
    tracker: Arc<Tracker>,
    suspects: Mutex<SuspectSet>,
}

impl Shared {
    fn suspects(&self) -> std::sync::MutexGuard<'_, SuspectSet> {
        // A worker that panicked while holding the lock left the set as
        // it was between two whole operations: still usable.
        self.suspects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn source(&self, shard: usize, db: u32) -> Result<Endpoint, VerifyError> {
        let side = source_side(&self.task, shard);
        match self.task.sources.get(shard) {
            Some(s) => Endpoint::open(&side, &s.addr.to_string(), &s.password, db).await,
            None => Err(VerifyError::Reply {
                side,
                command: "(none)".into(),
                during: "looking up the shard".into(),
                got: "no such source in the task".into(),
            }),
        }
    }

    async fn destination(&self, db: u32) -> Result<Endpoint, VerifyError> {
        let d = &self.task.destination;
        Endpoint::open(&dest_side(&self.task), &d.addr.to_string(), &d.password, db).await
    }

    fn shard_name(&self, shard: usize) -> String {
        self.task.sources.get(shard).map_or_else(|| format!("#{shard}"), |s| s.name.clone())
    }

    fn publish_differences(&self, confirmed: u64) {
        let s = self.suspects();
        let n = confirmed + s.len() as u64 + s.overflow();
        self.tracker.differences.store(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs the first pass and the re-checks, filling `report`.
pub(crate) async fn compare(
    task: &TaskConfig,
    opts: &VerifyOptions,
    plan: &Plan,
    tracker: &Arc<Tracker>,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let shared = Arc::new(Shared {
        task: task.clone(),
        opts: opts.clone(),
        tracker: tracker.clone(),
        suspects: Mutex::new(SuspectSet::new(opts.max_suspects)),
    });
    first_pass(&shared, plan).await?;
    let confirmed = recheck(&shared).await?;

    report.compared = tracker.compared.load(std::sync::atomic::Ordering::Relaxed);
    let set = std::mem::replace(&mut *shared.suspects(), SuspectSet::new(0));
    let overflow = set.overflow();
    let unsettled: Vec<Difference> = set
        .into_remaining()
        .into_iter()
        .map(|(at, s)| {
            let why = if s.changes > 0 {
                format!("written during the re-checks ({} changes seen)", s.changes)
            } else {
                "not yet stable when the re-checks ended".to_owned()
            };
            Difference {
                shard: shared.shard_name(at.shard),
                db: at.db,
                key: at.key,
                kind: s.seen.kind,
                detail: format!("{}; {why}", s.seen.detail),
            }
        })
        .collect();
    report.differences_total = confirmed.len() as u64 + overflow;
    report.not_rechecked = overflow;
    report.differences = confirmed;
    report.differences.truncate(opts.max_listed);
    report.unsettled_total = unsettled.len() as u64;
    report.unsettled = unsettled;
    report.unsettled.truncate(opts.max_listed);
    Ok(())
}

/// Waits for every task of `set`; the first error ends the wait (dropping
/// the set aborts the others).
async fn join_all(set: &mut JoinSet<Result<(), VerifyError>>) -> Result<(), VerifyError> {
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => r?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Aborted: only when the run itself is being dropped.
            Err(_) => return Err(VerifyError::Cancelled),
        }
    }
    Ok(())
}

async fn first_pass(shared: &Arc<Shared>, plan: &Plan) -> Result<(), VerifyError> {
    let slots = Arc::new(Semaphore::new(shared.opts.parallel_shards.max(1)));
    let mut shards = JoinSet::new();
    for (shard, dbs) in plan.shards.iter().enumerate() {
        let (shared, slots, dbs) = (shared.clone(), slots.clone(), dbs.clone());
        shards.spawn(async move {
            let _slot = slots.acquire_owned().await.map_err(|_| VerifyError::Cancelled)?;
            for (db, _) in dbs {
                let label = format!("comparing {} db{db}", shared.shard_name(shard));
                shared.tracker.add_label(label.clone());
                let r = compare_db(&shared, shard, db).await;
                shared.tracker.remove_label(&label);
                r?;
            }
            Ok(())
        });
    }
    join_all(&mut shards).await
}

/// One source DB: `workers_per_shard` workers, each with its own source
/// and destination connection, taking turns at the shared `SCAN` cursor.
async fn compare_db(shared: &Arc<Shared>, shard: usize, db: u32) -> Result<(), VerifyError> {
    let cursor = Arc::new(tokio::sync::Mutex::new(Some(Bytes::from_static(b"0"))));
    let mut set = JoinSet::new();
    for _ in 0..shared.opts.workers_per_shard.max(1) {
        set.spawn(worker(shared.clone(), shard, db, cursor.clone()));
    }
    join_all(&mut set).await
}

/// The next batch of keys of source DB `db` (the heartbeat key left out),
/// read on `src` from the shared cursor; `None` once the walk is over.
/// The cursor stays locked during the `SCAN` only, so one worker scans
/// while the others compare.
async fn next_batch(
    shared: &Shared,
    src: &mut Endpoint,
    db: u32,
    cursor: &tokio::sync::Mutex<Option<Bytes>>,
) -> Result<Option<Vec<Bytes>>, VerifyError> {
    let heartbeat = shared.task.sync.heartbeat_key.as_bytes();
    let count = Bytes::from(shared.opts.scan_batch.max(1).to_string());
    loop {
        let mut next = cursor.lock().await;
        // Taken: a failed SCAN leaves the walk over for everyone.
        let Some(at) = next.take() else { return Ok(None) };
        let cmd = Cmd::from_bytes(vec![Bytes::from_static(b"SCAN"), at, Bytes::from_static(b"COUNT"), count.clone()]);
        let mut replies = src.pipeline(std::slice::from_ref(&cmd), || "scanning the keys".to_owned()).await?;
        let reply = replies.pop().unwrap_or(crate::resp::Value::Array(None));
        let (after, mut keys) = super::endpoint::scan_reply(reply).map_err(|v| src.unexpected("SCAN", b"", &v))?;
        if &after[..] != b"0" {
            *next = Some(after);
        }
        drop(next);
        // The heartbeat key is the tool's own (`docs/task-file.md`): never compared.
        if db == 0 {
            keys.retain(|k| &k[..] != heartbeat);
        }
        if !keys.is_empty() {
            return Ok(Some(keys));
        }
    }
}

async fn worker(
    shared: Arc<Shared>,
    shard: usize,
    db: u32,
    cursor: Arc<tokio::sync::Mutex<Option<Bytes>>>,
) -> Result<(), VerifyError> {
    let mut src = shared.source(shard, db).await?;
    let mut dst = shared.destination(shared.task.sync.target_db(db)).await?;
    // The keys' first reads follow their SCAN on the same connection, while
    // the source still has them in its CPU cache.
    while let Some(keys) = next_batch(&shared, &mut src, db, &cursor).await? {
        let outcomes = compare_batch(&mut src, &mut dst, &keys, &shared.opts).await?;
        let now = Instant::now();
        let compared = keys.len() as u64;
        let mut found = 0;
        {
            let mut suspects = shared.suspects();
            for (key, outcome) in keys.into_iter().zip(outcomes) {
                if let Outcome::Differs(seen) = outcome {
                    suspects.add(KeyAt { shard, db, key }, seen, now);
                    found += 1;
                }
            }
        }
        shared.tracker.compared.fetch_add(compared, std::sync::atomic::Ordering::Relaxed);
        if found > 0 {
            shared.tracker.differences.fetch_add(found, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The re-check rounds; returns the confirmed differences, sorted.
async fn recheck(shared: &Arc<Shared>) -> Result<Vec<Difference>, VerifyError> {
    let rounds = shared.opts.recheck_waits.len();
    let mut confirmed: Vec<(KeyAt, Difference)> = Vec::new();
    for (round, wait) in shared.opts.recheck_waits.iter().enumerate() {
        if shared.suspects().is_empty() {
            break;
        }
        let pending = shared.suspects().len();
        let of = format!("round {} of {rounds}", round + 1);
        shared.tracker.set_phase(&format!("waiting {:.1} s to re-check {pending} keys ({of})", wait.as_secs_f64()));
        tokio::time::sleep(*wait).await;
        shared.tracker.set_phase(&format!("re-checking {pending} keys ({of})"));
        let groups = shared.suspects().keys_by_shard_db();
        for ((shard, db), keys) in groups {
            let mut src = shared.source(shard, db).await?;
            let mut dst = shared.destination(shared.task.sync.target_db(db)).await?;
            for chunk in keys.chunks(shared.opts.scan_batch.max(1)) {
                let outcomes = compare_batch(&mut src, &mut dst, chunk, &shared.opts).await?;
                let now = Instant::now();
                let mut suspects = shared.suspects();
                for (key, outcome) in chunk.iter().zip(outcomes) {
                    let at = KeyAt { shard, db, key: key.clone() };
                    let reading = match outcome {
                        Outcome::Equal | Outcome::Vanished => None,
                        Outcome::Differs(seen) => Some(seen),
                    };
                    if let Verdict::Confirmed(seen) = suspects.recheck(&at, reading, now, shared.opts.stable_for) {
                        let d = Difference {
                            shard: shared.shard_name(shard),
                            db,
                            key: key.clone(),
                            kind: seen.kind,
                            detail: seen.detail,
                        };
                        confirmed.push((at, d));
                    }
                }
            }
        }
        shared.publish_differences(confirmed.len() as u64);
    }
    confirmed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(confirmed.into_iter().map(|(_, d)| d).collect())
}
