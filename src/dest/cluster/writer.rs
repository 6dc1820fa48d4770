//! One writer per cluster master, all writing at once.
//!
//! A batch is split by slot (each unit whole, see [`ApplyBatch::split`]);
//! every master applies its part in parallel on its own pipelined
//! [`DestWriter`], each on a task of its own (encoding, sends and replies
//! then use every core the runtime has, not the shard's one task); what any
//! master did not confirm is put back together, in order within every
//! slot, and the batch holds exactly that.
//!
//! Redirections: a `MOVED` reply means the slot map changed (a
//! resharding, a failover), so it is read again at once and what is left
//! is routed by the new one. An `ASK` reply means the key's slot is being
//! moved and the key is no longer on its owner: the unit goes to the
//! importing master with `ASKING` first, and so does every later write of
//! that key until the map changes (a moved key never moves back during a
//! migration; keys still on the owner keep going there, as the protocol
//! requires). A unit whose keys are split between the two masters gets
//! `TRYAGAIN` from both until the slot's move is done. After a few rounds
//! in a row that still meet redirections the error goes to the caller,
//! which retries with backoff (`CLUSTERDOWN` too); after `TRYAGAIN` the
//! wait stays at 50 ms for the first 2 s, since a slot's move usually ends
//! within milliseconds and every slot's writes wait behind it. A unit that
//! got a redirection was not applied (the transaction was discarded), so
//! re-sending it elsewhere never applies it twice; a unit whose reply was
//! lost is judged by its guard (its slot's checkpoint key, which moves
//! with the slot) on whichever master serves the slot next, and while it
//! waits no unit of its slot is sent with `ASKING`, so a slot's units keep
//! their order.
//!
//! Replicas: Redis Cluster replicates asynchronously, so a master that
//! crashes may fail over to a replica without its last writes. What a
//! master with replicas applied counts as done only once `WAIT` shows its
//! replicas have it; until then a copy of its part is kept, and when the
//! replicas do not answer in time (or the master dies) that copy goes back
//! into the batch marked uncertain: its guards, read wherever the slot is
//! served next, tell what made it.
//!
//! Restarts: a master that restarts at its address (a new `run_id`) may
//! have come back without writes it confirmed (no persistence, or a save
//! older than them), and then its replicas resync from it. Each master's
//! writer remembers the checkpoint keys its confirmed units moved, and on
//! its first connection after such a restart reads them all before
//! anything is sent; one missing or behind is a `ROLLBACK`, and the shard
//! copies again in full (see [`DestWriter::track_checkpoints`]). The end of
//! a full copy writes a slot checkpoint to every master (see
//! `Batcher::snapshot_applied`), so no master is without one to check. A
//! master the stream sends nothing to is probed once it has been idle a
//! second (the shard's own checkpoint moves at every heartbeat, so batches
//! keep coming): its restart is caught within about a second, not at the
//! next write to its slots, which may come after the cut-over.
//!
//! Reshardings the stream never meets: the map is read again every 10 s
//! whether or not a redirection said so, so a master that joined and took
//! slots gets a writer (and its probes). When the map changes, every
//! tracked checkpoint goes to the writer of the master serving its slot
//! now (`MIGRATE` moved the key with the slot), and a master left tracking
//! none gets one: see [`ClusterWriter::unmarked_slots`].

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::slot::slot_of;
use super::topology::SlotMap;
use crate::dest::batch::{Target, Unit};
use crate::dest::error::{Ask, ErrorClass};
use crate::dest::{ApplyBatch, ApplyError, ApplyReport, CheckpointRecord, DestWriter, WriterOptions};
use crate::resp::{Cmd, Connection, Value};

/// Rounds of re-routing after redirections within one `apply`.
const REDIRECT_ROUNDS: usize = 4;

/// How long a master's replicas have to acknowledge a round's writes.
const REPLICA_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the replicas of each master are counted again.
const REPLICA_RECOUNT: std::time::Duration = std::time::Duration::from_secs(10);

/// A master nothing was sent to for this long is probed (see
/// [`DestWriter::probe`]) at the next batch, which comes at least once per
/// heartbeat while the shard streams.
const PROBE_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest a probe may hold the batch it rides with (a `PING` takes a
/// round trip; a restart check a few more).
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How often the slot map is read again when no redirection asked for it
/// (a resharding of slots the stream does not write).
const MAP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest that reading holds the batch it comes with (it tries the
/// masters and the seed in turn on new connections; the next try is
/// `MAP_EVERY` later).
const MAP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Keys remembered from `ASK` replies; beyond this (a long migration of a
/// busy slot) the memory starts again, which costs one more `ASK` each.
const ASKED_KEYS: usize = 100_000;

/// See the module docs.
pub struct ClusterWriter {
    /// The address the task names (any node), asked for the map first.
    seed: String,
    opts: WriterOptions,
    map: SlotMap,
    /// One per master of `map`, in its order; then one per master that an
    /// `ASK` named and `map` does not (a new master being filled).
    nodes: Vec<DestWriter>,
    /// Per writer in `nodes`, the replicas its writes must reach before
    /// they count (see the module docs), and when they were counted.
    replicas: Vec<usize>,
    replicas_counted: std::time::Instant,
    /// Keys an `ASK` reply showed moved, with the index in `nodes` of the
    /// master importing them. Forgotten when a new map is adopted.
    asked: HashMap<Bytes, usize>,
    /// When `map` was last read.
    map_read: std::time::Instant,
    guard_restarts: bool,
    restart: Option<(String, String)>,
}

impl ClusterWriter {
    /// Reads the slot map from `conn` (the seed node) and connects to
    /// every master.
    pub async fn open(conn: &mut Connection, seed: &str, opts: WriterOptions) -> Result<ClusterWriter, ApplyError> {
        let map = SlotMap::read(conn, seed).await.map_err(|e| topology_error(seed, &e.to_string()))?;
        let none = SlotMap::parse(&Value::Array(Some(Vec::new())), seed).map_err(|e| topology_error(seed, &e))?;
        let mut w = ClusterWriter {
            seed: seed.to_owned(),
            opts,
            map: none,
            nodes: Vec::new(),
            replicas: Vec::new(),
            replicas_counted: std::time::Instant::now(),
            asked: HashMap::new(),
            map_read: std::time::Instant::now(),
            guard_restarts: false,
            restart: None,
        };
        w.adopt(map).await?;
        Ok(w)
    }

    pub fn map(&self) -> &SlotMap {
        &self.map
    }

    /// Makes `map` the slot map, with a writer for each of its masters
    /// (keeping those it has), and gives every tracked checkpoint to the
    /// writer of its slot's master. When a new master cannot be reached,
    /// the old map and writers stay, so writers and map always agree.
    async fn adopt(&mut self, map: SlotMap) -> Result<(), ApplyError> {
        self.map_read = std::time::Instant::now();
        let mut fresh = Vec::new();
        for addr in &map.masters {
            if !self.nodes.iter().any(|w| w.addr() == addr) {
                let mut w = DestWriter::connect(addr, self.opts.clone()).await?;
                w.identify().await;
                w.guard_restarts(self.guard_restarts);
                w.track_checkpoints();
                fresh.push(w);
            }
        }
        let mut pool = std::mem::take(&mut self.nodes);
        pool.extend(fresh);
        for addr in &map.masters {
            if let Some(i) = pool.iter().position(|w| w.addr() == addr) {
                self.nodes.push(pool.swap_remove(i));
            }
        }
        self.map = map;
        self.asked.clear();
        self.rehome(pool);
        self.count_replicas().await;
        Ok(())
    }

    /// Gives each tracked checkpoint (of the writers kept, and of `gone`:
    /// masters the map no longer has, such as one that failed over) to the
    /// writer of the master serving its slot in the map now: `MIGRATE`
    /// moves a slot's keys before the map names its new owner, and a
    /// promoted replica holds what its master confirmed (see the module
    /// docs). A key of a slot no master serves stays where it was.
    fn rehome(&mut self, gone: Vec<DestWriter>) {
        let mut moving = Vec::new();
        for (i, w) in self.nodes.iter_mut().enumerate() {
            moving.extend(w.take_tracked().into_iter().map(|(key, at)| (key, at, Some(i))));
        }
        for mut w in gone {
            moving.extend(w.take_tracked().into_iter().map(|(key, at)| (key, at, None)));
        }
        for (key, at, had) in moving {
            let to = self.map.owner(slot_of(&key)).or(had);
            if let Some(w) = to.and_then(|i| self.nodes.get_mut(i)) {
                w.track_checkpoint(key, at);
            }
        }
    }

    /// The first slot of each master whose writer tracks no checkpoint
    /// (one that took slots by a resharding, or whose tracked ones all
    /// moved away): the stream moves these slots' checkpoints at its next
    /// batch, so that a restart of every master is checked against a
    /// checkpoint it confirmed (see `Batcher::mark_slots`).
    pub fn unmarked_slots(&self) -> Vec<u16> {
        let bare = |i: usize| !self.nodes.get(i).is_some_and(DestWriter::tracks_any);
        // Called at every batch: the map is walked only when one is bare.
        if !(0..self.map.masters.len()).any(bare) {
            return Vec::new();
        }
        let firsts = self.map.first_slot_of_each().into_iter().enumerate();
        firsts.filter_map(|(i, first)| first.filter(|_| bare(i))).collect()
    }

    /// Counts each master's replicas: those `CLUSTER SLOTS` lists (it
    /// leaves out failed ones, and ones that never received a write) or
    /// those the master says are connected, whichever is more.
    async fn count_replicas(&mut self) {
        let mut counts = Vec::with_capacity(self.nodes.len());
        for (i, w) in self.nodes.iter_mut().enumerate() {
            let listed = self.map.replicas.get(i).copied().unwrap_or(0);
            counts.push(listed.max(w.connected_replicas().await.unwrap_or(0)));
        }
        self.replicas = counts;
        self.replicas_counted = std::time::Instant::now();
    }

    /// The index in `nodes` of the master at `addr`, connecting to it when
    /// it has no writer yet.
    async fn writer_for(&mut self, addr: &str) -> Result<usize, ApplyError> {
        if let Some(i) = self.nodes.iter().position(|w| w.addr() == addr) {
            return Ok(i);
        }
        let mut w = DestWriter::connect(addr, self.opts.clone()).await?;
        w.identify().await;
        w.guard_restarts(self.guard_restarts);
        w.track_checkpoints();
        self.nodes.push(w);
        // Not waited on: it serves no slot yet, and only keys on the move.
        self.replicas.push(0);
        Ok(self.nodes.len() - 1)
    }

    /// Remembers where `ask`'s key went; true when that is news.
    async fn learn(&mut self, ask: Ask) -> Result<bool, ApplyError> {
        let i = self.writer_for(&ask.to).await.map_err(|mut e| {
            e.detail = format!("it imports slot {} (an ASK reply sent a key there), and {}", ask.slot, e.detail);
            e
        })?;
        if self.asked.len() >= ASKED_KEYS {
            self.asked.clear();
        }
        Ok(self.asked.insert(ask.key, i) != Some(i))
    }

    /// Reads the slot map again, from any master that answers.
    pub async fn refresh(&mut self) -> Result<(), ApplyError> {
        let map = self.read_map().await?;
        self.adopt(map).await
    }

    /// The slot map from the first master (or the seed) that answers, each
    /// asked on a new connection (so that giving up on it harms nothing).
    async fn read_map(&self) -> Result<SlotMap, ApplyError> {
        let mut asked: Vec<&str> = self.map.masters.iter().map(String::as_str).collect();
        asked.push(&self.seed);
        let mut last = None;
        for addr in asked {
            let mut conn = match Connection::connect(addr, &self.opts.connect).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(ApplyError::from_resp(addr, &e, None, None));
                    continue;
                }
            };
            match SlotMap::read(&mut conn, addr).await {
                Ok(map) => return Ok(map),
                Err(e) => last = Some(topology_error(addr, &e.to_string())),
            }
        }
        Err(last.unwrap_or_else(|| topology_error(&self.seed, "no node answered")))
    }

    /// Reads the map again when `MAP_EVERY` has passed since the last
    /// read, within `MAP_WAIT`, and adopts it if it changed. A failure is
    /// left to the next period: a move the writes meet says `MOVED`, which
    /// reads it at once.
    async fn reread_map_when_due(&mut self) {
        if self.map_read.elapsed() < MAP_EVERY {
            return;
        }
        self.map_read = std::time::Instant::now();
        if let Ok(Ok(map)) = tokio::time::timeout(MAP_WAIT, self.read_map()).await {
            if map != self.map {
                let _ = self.adopt(map).await;
            }
        }
    }

    /// Applies the batch across the masters; see the module docs.
    pub async fn apply(&mut self, batch: &mut ApplyBatch, report: &mut ApplyReport) -> Result<(), ApplyError> {
        if self.nodes.is_empty() {
            self.refresh().await?;
            if self.nodes.is_empty() {
                return Err(topology_error(&self.seed, "no master serves any slot"));
            }
        }
        self.reread_map_when_due().await;
        if self.replicas_counted.elapsed() >= REPLICA_RECOUNT {
            // Replicas added or gone since.
            self.count_replicas().await;
        }
        let mut round = 0;
        loop {
            let n = self.nodes.len();
            // Slots with a unit whose reply was lost: its guard is read on
            // the slot's owner, and the slot's later units wait behind it.
            let held: HashSet<u16> = if self.asked.is_empty() {
                HashSet::new()
            } else {
                batch
                    .meta
                    .iter()
                    .filter(|m| m.uncertain && !m.origin.key.is_empty())
                    .map(|m| slot_of(&m.origin.key))
                    .collect()
            };
            let (map, asked) = (&self.map, &self.asked);
            // Parts `0..n` go to each master as they are, parts `n..2n` with
            // `ASKING`.
            let mut parts = std::mem::take(batch).split(2 * n, n, |unit: &Unit<'_>| {
                let key = unit.key();
                if key.is_empty() {
                    return Target::All;
                }
                let slot = slot_of(key);
                // Looked up only when there is anything to find: this runs
                // per key, and a lookup hashes the key even in an empty map.
                if !asked.is_empty() && (held.is_empty() || !held.contains(&slot)) {
                    if let Some(&i) = unit.keys().find_map(|k| asked.get(k)) {
                        return Target::Part(n + i);
                    }
                }
                // An uncovered slot goes to the first master, whose
                // `CLUSTERDOWN` or `MOVED` then says what to do.
                Target::Part(map.owner(slot).unwrap_or(0))
            });
            let asking = parts.split_off(n);
            let writers = std::mem::take(&mut self.nodes);
            let mut lanes = Lanes(Vec::with_capacity(n));
            for (i, (w, (part, ask))) in writers.into_iter().zip(parts.into_iter().zip(asking)).enumerate() {
                let replicas = self.replicas.get(i).copied().unwrap_or(0);
                lanes.0.push(if part.is_empty() && ask.is_empty() && !w.probe_due(PROBE_IDLE) {
                    Lane::Done(Box::new(LaneEnd::idle(w)))
                } else {
                    Lane::Busy(tokio::spawn(run_lane(w, part, ask, replicas)))
                });
            }
            let results = lanes.finish().await;
            let mut failure: Option<ApplyError> = None;
            let mut moved = false;
            let mut asks = Vec::new();
            for end in results {
                let LaneEnd { mut writer, left, report: rep, failure: e, asks: ask } = end;
                merge(report, rep);
                batch.append(left);
                asks.extend(ask);
                if let Some(restart) = writer.take_restart() {
                    self.restart = Some(restart);
                }
                self.nodes.push(writer);
                if let Some(e) = e {
                    moved |= e.code == "MOVED";
                    keep_worst(&mut failure, e);
                }
            }
            if failure.is_none() {
                return Ok(());
            }
            let mut learned = false;
            for ask in asks {
                match self.learn(ask).await {
                    Ok(news) => learned |= news,
                    // The importing master does not answer: retried later.
                    Err(e) => keep_worst(&mut failure, e),
                }
            }
            let Some(e) = failure else { return Ok(()) };
            if (moved || learned) && e.class == ErrorClass::Retry && round < REDIRECT_ROUNDS {
                round += 1;
                if moved {
                    self.refresh().await?;
                }
                continue;
            }
            if moved || e.class == ErrorClass::Retry {
                // Read the map again before the caller's next attempt: a
                // master that does not answer may have failed over.
                let _ = self.refresh().await;
            }
            return Err(e);
        }
    }

    /// Reads a checkpoint record from the master serving its key.
    pub async fn read_checkpoint(&mut self, key: &[u8]) -> Result<Option<CheckpointRecord>, ApplyError> {
        let i = self.map.owner(slot_of(key)).unwrap_or(0);
        match self.nodes.get_mut(i) {
            Some(w) => w.read_checkpoint(key).await,
            None => Err(topology_error(&self.seed, "the cluster has no master")),
        }
    }

    /// `GET`s every key in `keys` from the master serving it: one pipeline
    /// per master. Replies in the order of `keys`.
    pub async fn get_all(&mut self, keys: &[bytes::Bytes]) -> Result<Vec<Value>, ApplyError> {
        if self.nodes.is_empty() {
            return Err(topology_error(&self.seed, "no master serves any slot"));
        }
        let per_node = self.map.by_master(keys.iter().map(|k| k.as_ref()));
        let mut out = vec![Value::Bulk(None); keys.len()];
        for (node, idx) in per_node.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let w = &mut self.nodes[node];
            let addr = w.addr().to_owned();
            let cmds: Vec<Cmd> = idx.iter().map(|&i| Cmd::new("GET").arg(&keys[i])).collect();
            let Some(conn) = w.connection() else {
                return Err(topology_error(&addr, "no connection to this master"));
            };
            let replies = conn.pipeline(&cmds).await.map_err(|e| ApplyError::from_resp(&addr, &e, None, None))?;
            for (i, v) in idx.into_iter().zip(replies) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Tracks checkpoints read from the cluster (`key`, its slot, its
    /// offset) on the writer of the master serving each, so that a task
    /// resumed on a stream the run before it copied checks them all after
    /// a restart, as it checks those its own units move.
    pub fn track_read(&mut self, found: impl IntoIterator<Item = (Bytes, u16, u64)>) {
        for (key, slot, offset) in found {
            let Some(addr) = self.map.addr_of(slot) else { continue };
            if let Some(w) = self.nodes.iter_mut().find(|w| w.addr() == addr) {
                w.track_checkpoint(key, offset);
            }
        }
    }

    /// On during a full copy (a restarted master fails the copy); set at
    /// its start, which also forgets the checkpoints each master confirmed
    /// (see [`DestWriter::track_checkpoints`]).
    pub fn guard_restarts(&mut self, on: bool) {
        self.guard_restarts = on;
        for w in &mut self.nodes {
            w.guard_restarts(on);
            if on {
                w.forget_checkpoints();
            }
        }
    }

    pub fn take_restart(&mut self) -> Option<(String, String)> {
        self.restart.take()
    }
}

/// What one master's run of a round gives back: its writer, what it did
/// not confirm, what it did, the error that decides, and the `ASK`s met.
struct LaneEnd {
    writer: DestWriter,
    left: ApplyBatch,
    report: ApplyReport,
    failure: Option<ApplyError>,
    asks: Vec<Ask>,
}

impl LaneEnd {
    /// A master with nothing to send and no probe due: no task.
    fn idle(mut writer: DestWriter) -> LaneEnd {
        let asks = writer.take_asks();
        LaneEnd { writer, left: ApplyBatch::default(), report: ApplyReport::default(), failure: None, asks }
    }
}

/// One master's part of a round (`ask`: what goes with `ASKING`), on its
/// own task so that the masters' encoding, sends and replies run on every
/// core the runtime has; see the module docs for the replicas.
async fn run_lane(mut w: DestWriter, mut part: ApplyBatch, mut ask: ApplyBatch, replicas: usize) -> LaneEnd {
    // Kept until the master's replicas have it: a master that crashes
    // before then may fail over to a replica without it.
    let sent = (replicas > 0 && !(part.is_empty() && ask.is_empty())).then(|| {
        let mut all = part.clone();
        all.append(ask.clone());
        all
    });
    // Commands sent to another master whose reply was lost (the slot moved
    // since): their guards tell whether they ran.
    if part.meta.iter().any(|m| m.uncertain) {
        w.check_guards_next();
    }
    let mut report = ApplyReport::default();
    let mut failure = None;
    if part.is_empty() && ask.is_empty() && w.probe_due(PROBE_IDLE) {
        if let Err(e) = w.probe(PROBE_WAIT).await {
            keep_worst(&mut failure, e);
        }
    }
    if !part.is_empty() {
        if let Err(e) = w.apply(&mut part, &mut report).await {
            keep_worst(&mut failure, e);
        }
    }
    if !ask.is_empty() {
        if let Err(e) = w.apply_asking(&mut ask, &mut report).await {
            keep_worst(&mut failure, e);
        }
        part.append(ask);
    }
    if let Some(mut sent) = sent {
        if let Err(e) = w.replicate(replicas, REPLICA_WAIT).await {
            // Not confirmed after all: everything goes back, to be judged by
            // its guards where its slot is served next, and counted when it is.
            sent.mark_uncertain();
            part = sent;
            report = ApplyReport::default();
            keep_worst(&mut failure, e);
        }
    }
    let asks = w.take_asks();
    LaneEnd { writer: w, left: part, report, failure, asks }
}

/// The masters' runs of one round, in the order of the writers.
enum Lane<T> {
    Done(Box<T>),
    Busy(tokio::task::JoinHandle<T>),
    Taken,
}

/// The round's lanes. Dropped before they are all taken (the round's
/// future dropped), it aborts the tasks still running, as dropping the
/// round did when its lanes were futures inside it: no task outlives it.
struct Lanes<T>(Vec<Lane<T>>);

impl<T> Lanes<T> {
    /// Waits for every lane, in order. A lane that panicked is resumed
    /// here once all are done (the shard then fails with its message).
    async fn finish(mut self) -> Vec<T> {
        let mut ends = Vec::with_capacity(self.0.len());
        let mut lost = None;
        for lane in &mut self.0 {
            // Awaited in place: dropped during the wait, `Drop` still sees it.
            let end = match lane {
                Lane::Busy(task) => task.await,
                _ => match std::mem::replace(lane, Lane::Taken) {
                    Lane::Done(end) => Ok(*end),
                    _ => continue,
                },
            };
            *lane = Lane::Taken;
            match end {
                Ok(end) => ends.push(end),
                Err(e) => {
                    lost.get_or_insert(e);
                }
            }
        }
        match lost.map(tokio::task::JoinError::try_into_panic) {
            None => ends,
            Some(Ok(panic)) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a task it did not abort.
            Some(Err(e)) => panic!("a cluster master's writer was lost: {e}"),
        }
    }
}

impl<T> Drop for Lanes<T> {
    fn drop(&mut self) {
        for lane in &self.0 {
            if let Lane::Busy(task) = lane {
                task.abort();
            }
        }
    }
}

fn topology_error(addr: &str, detail: &str) -> ApplyError {
    ApplyError {
        class: ErrorClass::Retry,
        code: "CLUSTER".to_owned(),
        addr: addr.to_owned(),
        command: Some("CLUSTER SLOTS".to_owned()),
        origin: None,
        detail: format!("the cluster's slot map could not be read: {detail}"),
    }
}

/// Keeps the error that decides most: a lost write (the shard resumes
/// or copies again), then a pause, then a retry; the first of a rank.
fn keep_worst(failure: &mut Option<ApplyError>, e: ApplyError) {
    let rank = |e: &ApplyError| match e.class {
        _ if e.is_rollback() => 2,
        ErrorClass::Pause => 1,
        ErrorClass::Retry => 0,
    };
    if failure.as_ref().is_none_or(|f| rank(&e) > rank(f)) {
        *failure = Some(e);
    }
}

fn merge(into: &mut ApplyReport, from: ApplyReport) {
    into.applied += from.applied;
    into.keys_written += from.keys_written;
    into.collisions.extend(from.collisions);
    into.kept += from.kept;
    into.kept_uncertain += from.kept_uncertain;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::error::{ROLLBACK, ROLLBACK_RESTART, TRYAGAIN};

    fn error(class: ErrorClass, code: &str) -> ApplyError {
        ApplyError {
            class,
            code: code.to_owned(),
            addr: "127.0.0.1:7000".to_owned(),
            command: None,
            origin: None,
            detail: String::new(),
        }
    }

    /// Sets its flag when dropped (a task's future is dropped when the
    /// task is aborted).
    struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn lanes_end_in_order_and_a_dropped_round_aborts_what_still_runs() {
        let slow = tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            1
        });
        let lanes = Lanes(vec![Lane::Busy(slow), Lane::Done(Box::new(2)), Lane::Busy(tokio::spawn(async { 3 }))]);
        assert_eq!(lanes.finish().await, [1, 2, 3]);

        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = Dropped(flag.clone());
        let hung = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<u32>().await
        });
        let round = Lanes(vec![Lane::Done(Box::new(0)), Lane::Busy(hung)]).finish();
        let cut = tokio::time::timeout(std::time::Duration::from_millis(20), round).await;
        assert!(cut.is_err(), "the hung lane never ends");
        for _ in 0..100 {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the hung lane's task was not aborted with its round");
    }

    #[tokio::test]
    async fn a_lane_that_panics_fails_the_round_after_the_others_ended() {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let after = done.clone();
        let late = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            after.store(true, std::sync::atomic::Ordering::SeqCst);
            1
        });
        let broken = tokio::spawn(async { panic!("lane broke") });
        let round = tokio::spawn(Lanes(vec![Lane::Busy(broken), Lane::Busy(late)]).finish());
        let e = round.await.expect_err("the panic reaches the round");
        assert!(e.is_panic());
        let message = e.into_panic();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"lane broke"));
        assert!(done.load(std::sync::atomic::Ordering::SeqCst), "the other lane ran to its end first");
    }

    #[test]
    fn a_lost_write_outranks_a_pause_which_outranks_a_retry() {
        let mut failure = None;
        keep_worst(&mut failure, error(ErrorClass::Retry, TRYAGAIN));
        keep_worst(&mut failure, error(ErrorClass::Pause, "OOM"));
        keep_worst(&mut failure, error(ErrorClass::Retry, "CLUSTERDOWN"));
        assert_eq!(failure.as_ref().map(|e| e.code.as_str()), Some("OOM"));
        keep_worst(&mut failure, error(ErrorClass::Pause, ROLLBACK_RESTART));
        keep_worst(&mut failure, error(ErrorClass::Pause, "NOPERM"));
        assert_eq!(failure.as_ref().map(|e| e.code.as_str()), Some(ROLLBACK_RESTART), "whatever comes after");
        keep_worst(&mut failure, error(ErrorClass::Pause, ROLLBACK));
        assert_eq!(failure.map(|e| e.code), Some(ROLLBACK_RESTART.to_owned()), "the first of a rank stays");
    }
}
