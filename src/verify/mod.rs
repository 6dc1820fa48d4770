//! Verify: prove that the destination holds what the sources hold, or list
//! what differs. `shardsync verify` and the TUI both call [`run`].
//!
//! Three depths, each including the one before:
//!
//! * [`VerifyMode::Counts`]: per destination DB, the sum of the sources' key
//!   counts (`INFO keyspace`, the heartbeat key left out) against the
//!   destination's (the checkpoint keys left out), with each shard's share.
//! * [`VerifyMode::Keys`]: every source key exists on the destination with
//!   the same type.
//! * [`VerifyMode::Full`]: every value and TTL is equal, compared logically
//!   (never `DUMP` bytes, whose encoding depends on the version).
//!
//! Data flow: `counts` reads the key counts and decides which source DBs to
//! walk; `pass` walks each source DB with workers taking turns at one
//! `SCAN` cursor, each comparing its batch on both sides at once, deeply
//! pipelined (`read`: `TYPE` and `PTTL` on the source, then the whole
//! value of small keys on both sides and `PTTL` on the destination; `big`:
//! keys too big to hold, compared chunk by chunk; both read through
//! `endpoint`, one side's connection and its reply shapes, and judge into an
//! `outcome`). Keys that differ become suspects (`suspects`) and are read
//! again in later rounds, so a key caught mid-write while the sync runs is
//! not reported: only differences stable on both sides are, and keys
//! written during every round are *unsettled*.
//! `content` and `ttl` hold the pure comparisons; `error` the failures.
//!
//! Memory is bounded whatever the dataset: a batch of keys per worker, at
//! most `small_string_bytes` or `small_elements` per small key, one chunk at
//! a time of a big one, and at most `max_suspects` suspects. (The size of
//! one element is not checked: a small collection of huge elements is read
//! whole.)

mod big;
mod content;
mod counts;
mod endpoint;
mod error;
mod outcome;
mod pass;
mod read;
mod suspects;
mod ttl;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Serialize, Serializer};
use tokio_util::sync::CancellationToken;

pub use error::VerifyError;

use crate::config::TaskConfig;

/// How deep to compare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VerifyMode {
    /// Key counts per DB.
    #[default]
    Counts,
    /// Every source key exists on the destination with the same type.
    Keys,
    /// Every value and TTL is equal.
    Full,
}

impl VerifyMode {
    pub const ALL: [VerifyMode; 3] = [VerifyMode::Counts, VerifyMode::Keys, VerifyMode::Full];

    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Counts => "counts",
            VerifyMode::Keys => "keys",
            VerifyMode::Full => "full",
        }
    }
}

impl fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode word that is not one of `counts`, `keys`, `full`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a verify mode: use counts, keys or full")]
pub struct UnknownMode(pub String);

impl FromStr for VerifyMode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<VerifyMode, UnknownMode> {
        VerifyMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

impl Serialize for VerifyMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How to verify. `Default` is what `shardsync verify` uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    pub mode: VerifyMode,
    /// Two expiries closer than this are equal: source and destination are
    /// read at slightly different moments, and the sync applies an `EXPIRE`
    /// a little after the source did.
    pub ttl_tolerance: Duration,
    /// Waits before each re-check round of the keys found different. Their
    /// sum bounds how long a key may stay in flight in the sync.
    pub recheck_waits: Vec<Duration>,
    /// A difference is confirmed once both sides were seen unchanged (and
    /// still different) this long apart.
    pub stable_for: Duration,
    /// Differences (and unsettled keys) listed in the report; more are
    /// counted only.
    pub max_listed: usize,
    /// Keys kept for re-checking; more differences are counted after one
    /// reading, without a re-check.
    pub max_suspects: usize,
    /// `SCAN ... COUNT`: keys per batch a worker reads at once.
    pub scan_batch: usize,
    /// Keys per pipelined value read: bounds the replies held at once.
    pub pipeline_keys: usize,
    /// Workers per shard, each with its own source and destination
    /// connection, so that the servers always have a batch to answer while
    /// others are scanned or compared. Each holds one batch.
    pub workers_per_shard: usize,
    /// Shards compared at the same time.
    pub parallel_shards: usize,
    /// Strings up to this size are read whole; longer ones in chunks.
    pub small_string_bytes: usize,
    /// Collections of fewer elements are read whole; bigger ones in chunks.
    pub small_elements: usize,
    /// Elements per chunk of a big collection.
    pub chunk_elements: usize,
    /// Bytes per chunk of a big string.
    pub chunk_bytes: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            mode: VerifyMode::Counts,
            ttl_tolerance: Duration::from_millis(2000),
            recheck_waits: [500, 1000, 2000, 4000].into_iter().map(Duration::from_millis).collect(),
            stable_for: Duration::from_secs(1),
            max_listed: 1000,
            max_suspects: 100_000,
            scan_batch: 1000,
            pipeline_keys: 1000,
            workers_per_shard: 6,
            parallel_shards: 4,
            small_string_bytes: 8 * 1024,
            small_elements: 128,
            chunk_elements: 1000,
            chunk_bytes: 1 << 20,
        }
    }
}

impl VerifyOptions {
    pub fn with_mode(mode: VerifyMode) -> VerifyOptions {
        VerifyOptions { mode, ..VerifyOptions::default() }
    }
}

/// Where a run is, published on the `watch` channel given to [`run`] a few
/// times a second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyProgress {
    /// `counting`, `comparing server1 db0`, `re-checking 12 keys (round 2 of 4)`…
    pub phase: String,
    /// Keys compared so far (keys and full modes).
    pub compared: u64,
    /// Keys to compare: the sources' key counts when the run started.
    pub total: u64,
    /// Keys found different so far (suspects included, some of which the
    /// re-checks will clear).
    pub differences: u64,
}

/// Key counts of one destination DB and the source DBs mapped into it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DbCount {
    /// The destination DB.
    pub db: u32,
    /// Per source: shard name, source DB, keys (the heartbeat key left out).
    #[serde(serialize_with = "serialize_sources")]
    pub sources: Vec<(String, u32, u64)>,
    pub source_total: u64,
    /// The destination's keys (this task's checkpoint keys left out).
    pub destination: u64,
}

impl DbCount {
    pub fn is_equal(&self) -> bool {
        self.source_total == self.destination
    }
}

/// What kind of difference a key has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiffKind {
    /// On the source, not on the destination.
    Missing,
    /// Another type on the destination.
    Type,
    /// Same type, another value.
    Value,
    /// Same value, TTLs further apart than the tolerance (or on one side only).
    Ttl,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Type => "type",
            DiffKind::Value => "value",
            DiffKind::Ttl => "ttl",
        }
    }
}

impl fmt::Display for DiffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DiffKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One key that differs (or, in [`VerifyReport::unsettled`], that was
/// written during every re-check).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub shard: String,
    /// The source DB.
    pub db: u32,
    /// In JSON: the key as text when it is UTF-8, else escaped (`\xff`).
    #[serde(serialize_with = "serialize_key")]
    pub key: Bytes,
    pub kind: DiffKind,
    /// Starts with the kind: `type: source hash, destination string`,
    /// `ttl: source 120000 ms, destination none`.
    pub detail: String,
}

impl Difference {
    /// The key quoted and escaped for a terminal, as a person reads it:
    /// UTF-8 text as text (bytes that are not UTF-8 as `�`), control
    /// characters escaped, cut at 200 characters. Messages and logs show
    /// keys byte-exact instead ([`crate::display`]), and so does the JSON
    /// report ([`key_text`]).
    pub fn key_shown(&self) -> String {
        let mut out = format!("{:?}", String::from_utf8_lossy(&self.key));
        if out.len() > 200 {
            let mut cut = 200;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("…\"");
        }
        out
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyReport {
    pub mode: VerifyMode,
    /// Always filled: every mode starts with the counts.
    pub counts: Vec<DbCount>,
    /// Keys compared (keys and full modes; re-checks not counted again).
    pub compared: u64,
    /// Confirmed differences, the first `max_listed`, sorted by shard, DB, key.
    pub differences: Vec<Difference>,
    /// All confirmed differences, plus those beyond the suspect limit
    /// (`not_rechecked`).
    pub differences_total: u64,
    /// Keys written during every re-check round: not proven equal, not
    /// proven different. The first `max_listed`.
    pub unsettled: Vec<Difference>,
    pub unsettled_total: u64,
    /// Differences seen once but not re-checked because the suspect set was
    /// full (counted in `differences_total`, not listed).
    pub not_rechecked: u64,
    #[serde(rename = "elapsed_ms", serialize_with = "serialize_ms")]
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Counts mode: every DB's counts are equal. Keys and full modes: no
    /// difference and nothing unsettled (the counts are shown, not judged:
    /// a live sync moves them, and extra destination keys are its business).
    pub fn is_equal(&self) -> bool {
        match self.mode {
            VerifyMode::Counts => self.counts.iter().all(DbCount::is_equal),
            VerifyMode::Keys | VerifyMode::Full => self.differences_total == 0 && self.unsettled_total == 0,
        }
    }

    /// Keys compared per second of the whole run.
    pub fn keys_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.compared as f64 / secs
        } else {
            0.0
        }
    }
}

/// Compares the task's sources with its destination. Progress goes to
/// `progress` a few times a second; `cancel` stops the run (with
/// [`VerifyError::Cancelled`]).
pub async fn run(
    task: &TaskConfig,
    opts: &VerifyOptions,
    progress: tokio::sync::watch::Sender<VerifyProgress>,
    cancel: CancellationToken,
) -> Result<VerifyReport, VerifyError> {
    let tracker = Arc::new(Tracker::default());
    tracker.set_phase("counting");
    let ticker_stop = cancel.child_token();
    let ticker = tokio::spawn(publish_progress(tracker.clone(), progress.clone(), ticker_stop.clone()));
    let work = async {
        let started = Instant::now();
        let plan = counts::count(task).await?;
        let mut report = VerifyReport {
            mode: opts.mode,
            counts: plan.counts.clone(),
            compared: 0,
            differences: Vec::new(),
            differences_total: 0,
            unsettled: Vec::new(),
            unsettled_total: 0,
            not_rechecked: 0,
            elapsed: Duration::ZERO,
        };
        if opts.mode != VerifyMode::Counts {
            tracker.set_phases(Vec::new());
            tracker.total.store(plan.counts.iter().map(|c| c.source_total).sum(), Ordering::Relaxed);
            pass::compare(task, opts, &plan, &tracker, &mut report).await?;
        }
        report.elapsed = started.elapsed();
        Ok(report)
    };
    let result = tokio::select! {
        _ = cancel.cancelled() => Err(VerifyError::Cancelled),
        r = work => r,
    };
    ticker_stop.cancel();
    let _ = ticker.await;
    // The last word is the final state, not a tick up to 250 ms old.
    if let Ok(report) = &result {
        tracker.set_phase("done");
        tracker.compared.store(report.compared, Ordering::Relaxed);
        tracker.differences.store(report.differences_total + report.unsettled_total, Ordering::Relaxed);
    }
    progress.send_replace(tracker.snapshot());
    result
}

/// Progress shared by the workers; the publisher copies it out.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub compared: AtomicU64,
    pub total: AtomicU64,
    pub differences: AtomicU64,
    phase: Mutex<Vec<String>>,
}

impl Tracker {
    pub(crate) fn set_phase(&self, phase: &str) {
        self.set_phases(vec![phase.to_owned()]);
    }

    pub(crate) fn set_phases(&self, phases: Vec<String>) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phases;
        }
    }

    /// Several shards run at once: each adds its own label while it runs.
    pub(crate) fn add_label(&self, label: String) {
        if let Ok(mut p) = self.phase.lock() {
            p.push(label);
        }
    }

    pub(crate) fn remove_label(&self, label: &str) {
        if let Ok(mut p) = self.phase.lock() {
            if let Some(i) = p.iter().position(|l| l == label) {
                p.remove(i);
            }
        }
    }

    fn snapshot(&self) -> VerifyProgress {
        let phase = self.phase.lock().map(|p| p.join(", ")).unwrap_or_default();
        VerifyProgress {
            phase,
            compared: self.compared.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            differences: self.differences.load(Ordering::Relaxed),
        }
    }
}

/// How often progress is published: smooth enough for a dashboard, cheap.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

async fn publish_progress(
    tracker: Arc<Tracker>,
    progress: tokio::sync::watch::Sender<VerifyProgress>,
    stop: CancellationToken,
) {
    loop {
        progress.send_if_modified(|p| {
            let now = tracker.snapshot();
            let changed = *p != now;
            *p = now;
            changed
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
    }
}

/// A key for JSON: the text itself when it is UTF-8 (JSON escapes what it
/// must), else escaped byte by byte like the terminal output.
pub fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => s.to_owned(),
        Err(_) => key.escape_ascii().to_string(),
    }
}

fn serialize_key<S: Serializer>(key: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&key_text(key))
}

fn serialize_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn serialize_sources<S: Serializer>(sources: &[(String, u32, u64)], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Share<'a> {
        shard: &'a str,
        db: u32,
        keys: u64,
    }
    s.collect_seq(sources.iter().map(|(shard, db, keys)| Share { shard, db: *db, keys: *keys }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TUI runs verify in a spawned task: the future must be `Send`.
    #[test]
    fn the_run_future_can_be_spawned() {
        fn spawnable<T: Send + 'static>(_: &T) {}
        let task = TaskConfig::from_toml(
            "name = \"t\"\n[[source]]\nname = \"s\"\naddr = \"127.0.0.1:1\"\n[destination]\naddr = \"127.0.0.1:2\"\n",
            std::path::Path::new("/tmp/t.toml"),
            &|_| None,
        )
        .unwrap();
        let (tx, _rx) = tokio::sync::watch::channel(VerifyProgress::default());
        let fut = async move { run(&task, &VerifyOptions::default(), tx, CancellationToken::new()).await };
        spawnable(&fut);
    }

    #[test]
    fn modes_parse_and_print() {
        for m in VerifyMode::ALL {
            assert_eq!(m.to_string().parse::<VerifyMode>(), Ok(m));
        }
        assert_eq!(VerifyMode::default(), VerifyMode::Counts);
        assert_eq!(
            "Full".parse::<VerifyMode>().unwrap_err().to_string(),
            "`Full` is not a verify mode: use counts, keys or full"
        );
        let kinds: Vec<String> =
            [DiffKind::Missing, DiffKind::Type, DiffKind::Value, DiffKind::Ttl].iter().map(|k| k.to_string()).collect();
        assert_eq!(kinds, ["missing", "type", "value", "ttl"]);
    }

    fn report(mode: VerifyMode) -> VerifyReport {
        VerifyReport {
            mode,
            counts: vec![DbCount {
                db: 0,
                sources: vec![("s1".into(), 0, 2), ("s2".into(), 3, 1)],
                source_total: 3,
                destination: 3,
            }],
            compared: 3,
            differences: vec![],
            differences_total: 0,
            unsettled: vec![],
            unsettled_total: 0,
            not_rechecked: 0,
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn equality_by_mode() {
        let mut r = report(VerifyMode::Counts);
        assert!(r.is_equal());
        r.counts[0].destination = 2;
        assert!(!r.is_equal());
        // Keys and full modes judge the keys, not the counts.
        r.mode = VerifyMode::Full;
        assert!(r.is_equal());
        r.unsettled_total = 1;
        assert!(!r.is_equal());
        r.unsettled_total = 0;
        r.differences_total = 1;
        assert!(!r.is_equal());
        assert_eq!(report(VerifyMode::Keys).keys_per_sec(), 2.0);
    }

    #[test]
    fn reports_serialize_with_readable_keys() {
        let mut r = report(VerifyMode::Keys);
        r.differences.push(Difference {
            shard: "s1".into(),
            db: 0,
            key: Bytes::from_static(b"k\xff\n"),
            kind: DiffKind::Type,
            detail: "type: source hash, destination string".into(),
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mode"], "keys");
        assert_eq!(json["elapsed_ms"], 1500);
        assert_eq!(json["counts"][0]["sources"][1], serde_json::json!({"shard": "s2", "db": 3, "keys": 1}));
        assert_eq!(json["differences"][0]["key"], "k\\xff\\n");
        assert_eq!(json["differences"][0]["kind"], "type");
        assert_eq!(key_text("clé\n".as_bytes()), "clé\n");
        assert_eq!(r.differences[0].key_shown(), "\"k�\\n\"");
    }
}
