//! `DestWriter`: applies [`ApplyBatch`]es to the destination over one
//! connection, pipelined, checking every reply in order.
//!
//! **Windows.** A batch goes out in windows of at most `window_cmds`
//! commands or `window_bytes` bytes (a `MULTI` unit is never split): the
//! connection writes a window while it reads its replies, so the server
//! never waits for us within a window; between windows the pipe drains once
//! (one round trip). A `SELECT` is sent alone and confirmed before anything
//! that depends on it, so a failed `SELECT` can never send writes to the
//! wrong DB; after a reconnect the writer selects the DB of the next command
//! itself.
//!
//! **Replies.** Each command's [`ReplyRule`] says what success is. A
//! `MULTI` unit succeeds as a whole when `EXEC`'s array holds no error; the
//! errors of the commands inside are judged one by one so the message names
//! the one that failed. "The key already existed" replies (`BUSYKEY`, nil,
//! `:0`) become a [`Collision`] (intercept) or a kept key (skip), and the
//! temporary key a refused `RENAMENX` leaves is deleted.
//!
//! **Retries: what is re-sent.** Confirmed commands leave the batch at once.
//! After a failure the batch holds exactly the commands not confirmed, in
//! order: on an error reply, the failed ones (and the unsent rest); after a
//! connection loss or timeout, everything from the first unconfirmed
//! command, marked *uncertain* (the server may have applied a prefix of
//! them). Re-sending is safe because:
//!
//! * idempotent by construction: `RESTORE ... REPLACE`, `SET`, `SETRANGE` at
//!   an offset, `SADD`, `HSET`, `ZADD`, `PEXPIREAT`, `XSETID`, `XCLAIM` with
//!   explicit `TIME`/`RETRYCOUNT`, `DEL`, and whole `MULTI` units (they
//!   start by deleting their target);
//! * made safe by the rule: `XADD` with an explicit ID ("equal or smaller"
//!   on a re-send means applied), `XGROUP CREATE` (`BUSYGROUP` on a re-send);
//! * made safe by a [`Guard`] checked on the new connection before
//!   re-sending: a big list's `RPUSH` (skipped if `LLEN` shows it applied),
//!   a build's final rename (skipped if the temporary key is gone: the
//!   rename always goes in a window of its own once every piece is
//!   confirmed, so the temporary key existed when it was sent);
//! * **not** idempotent, and reported as *uncertain* instead: a re-sent
//!   `RESTORE` without `REPLACE`, `SET NX` or `RENAMENX` that finds the key
//!   existing may be finding our own first attempt (intercept, skip).
//!
//! A retryable error can hit some commands of a window while later ones
//! succeed (a script ends mid-window). Independent keys do not care. If a
//! later piece of the same big-key build succeeded after an earlier one
//! failed, and the two do not commute, the build's order is broken: that is
//! reported as a pausing `ORDER` error rather than repaired silently.

use std::collections::HashMap;

use bytes::Bytes;

use super::batch::{wire_len, ApplyBatch, BuildStep, Conflict, Guard, Meta, Origin, ReplyRule};
use super::checkpoint::{CheckpointRecord, CHECKPOINT_DB};
use super::error::{error_code, ApplyError, Ask, ErrorClass, ROLLBACK, ROLLBACK_RESTART};
use crate::resp::{Cmd, ConnectOptions, Connection, Value};

/// The longest a master that keeps timing out on probes waits between them.
const PROBE_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// How the writer connects and pipelines.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub conflict: Conflict,
    /// Most commands per window.
    pub window_cmds: usize,
    /// Most bytes per window (a single larger command or unit still goes).
    pub window_bytes: usize,
    pub connect: ConnectOptions,
}

impl WriterOptions {
    /// Defaults: 4096 commands or 8 MiB per window. Measured with 200k
    /// RESTOREs on loopback (`window_sizes` in tests/dest_writer.rs): 16 →
    /// 1.5× the time of `redis-cli --pipe`, 128 and 1024 → 1.2×, 8192 →
    /// 1.1×; beyond a few thousand the per-window round trip no longer shows.
    pub fn new(conflict: Conflict) -> Self {
        WriterOptions { conflict, window_cmds: 4096, window_bytes: 8 << 20, connect: ConnectOptions::default() }
    }
}

/// A key that already existed on the destination when the copy wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    pub db: u32,
    pub key: Bytes,
    /// Source offset of the key.
    pub offset: u64,
    /// Found by a re-send after a lost reply: the existing key may be our
    /// own first attempt.
    pub uncertain: bool,
}

/// What applying produced besides confirmed writes; the caller drains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Commands confirmed.
    pub applied: u64,
    /// Snapshot keys written: their last command ([`ApplyCmd::ends_key`])
    /// confirmed as applied, or shown applied by a guard after a lost reply.
    /// A key that existed is a collision or a kept key instead, never both.
    ///
    /// [`ApplyCmd::ends_key`]: super::batch::ApplyCmd::ends_key
    pub keys_written: u64,
    /// Intercept mode: keys that existed (never overwritten).
    pub collisions: Vec<Collision>,
    /// Skip mode: keys that existed and were kept.
    pub kept: u64,
    /// Of `kept`, those found by a re-send (possibly our own write).
    pub kept_uncertain: u64,
}

/// Running totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub commands: u64,
    pub windows: u64,
    pub bytes: u64,
    pub reconnects: u64,
    /// Commands sent again after a failure.
    pub resent: u64,
    /// Uncertain commands a guard showed were already applied.
    pub guard_skips: u64,
}

/// Applies batches to one destination; see the module docs.
#[derive(Debug)]
pub struct DestWriter {
    addr: String,
    opts: WriterOptions,
    conn: Option<Connection>,
    /// The connection's DB, when known.
    db: Option<u32>,
    /// Set by a connection loss: guards run before the next send.
    check_guards: bool,
    /// What the checkpoint key must still say after a connection loss (see
    /// [`DestWriter::expect_after_loss`]).
    expect: Option<(Bytes, CheckpointRecord)>,
    /// The server's `run_id` (`INFO server`): it changes when the server
    /// restarts (or another one answers at the address).
    run_id: Option<String>,
    /// A new connection to a restarted server fails (see
    /// [`DestWriter::guard_restarts`]).
    guard_restarts: bool,
    /// A restart seen on a new connection while not guarding: (old, new).
    restart: Option<(String, String)>,
    /// A cluster master's: the checkpoint keys its confirmed units moved,
    /// with the offset each reached, read again when it restarts (see
    /// [`DestWriter::track_checkpoints`]). `None`: not tracked.
    held: Option<HashMap<Bytes, u64>>,
    /// Set when a restart lost tracked checkpoints: every send fails with
    /// it until a new full copy starts ([`DestWriter::forget_checkpoints`]).
    wiped: Option<ApplyError>,
    /// `ASK` redirections met since the last [`DestWriter::take_asks`].
    asks: Vec<Ask>,
    /// The last time a send or a probe reached the server (or tried to).
    last_contact: std::time::Instant,
    /// Set by a probe that timed out: how idle the master must be before
    /// the next probe.
    probe_every: Option<std::time::Duration>,
    stats: WriterStats,
}

/// How one command or unit turned out.
enum Verdict {
    Done(Effect),
    Failed { command: String, message: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Applied,
    /// The key existed; the temporary key (if any) must go.
    Existed,
}

impl DestWriter {
    /// Connects to `addr` now.
    pub async fn connect(addr: &str, opts: WriterOptions) -> Result<DestWriter, ApplyError> {
        let conn =
            Connection::connect(addr, &opts.connect).await.map_err(|e| ApplyError::from_resp(addr, &e, None, None))?;
        Ok(Self::with_connection(conn, opts))
    }

    /// Uses an open connection (in DB 0); reconnects go to its address.
    pub fn with_connection(conn: Connection, opts: WriterOptions) -> DestWriter {
        DestWriter {
            addr: conn.addr().to_owned(),
            opts,
            conn: Some(conn),
            db: Some(0),
            check_guards: false,
            expect: None,
            run_id: None,
            guard_restarts: false,
            restart: None,
            held: None,
            wiped: None,
            asks: Vec::new(),
            last_contact: std::time::Instant::now(),
            probe_every: None,
            stats: WriterStats::default(),
        }
    }

    /// Reads the server's `run_id`, so that a restart is recognised on a
    /// later connection. Best effort: a server that hides `INFO` is only
    /// checked through its checkpoint.
    pub async fn identify(&mut self) {
        self.run_id = match self.conn.as_mut() {
            Some(conn) => run_id(conn).await,
            None => None,
        };
    }

    /// While set, a new connection that finds the server restarted fails
    /// with [`ROLLBACK`]: during a full copy the checkpoint only says
    /// "copying", so a server that came back from a save made part-way
    /// through holds the mark but not the keys confirmed after it, and only
    /// its new `run_id` shows it. Unset, a restart is only noted (see
    /// [`DestWriter::take_restart`]); the stream's checkpoint shows a loss.
    pub fn guard_restarts(&mut self, on: bool) {
        self.guard_restarts = on;
    }

    /// For a cluster master: remembers the checkpoint key and offset of
    /// every checkpointed unit it confirms (a slot's checkpoint lives on
    /// the master serving the slot), and when a new connection finds it
    /// restarted outside a full copy, reads them all before anything is
    /// sent: a master that came back without writes it had confirmed (no
    /// persistence, or a save older than them) fails with [`ROLLBACK`]
    /// instead of the stream carrying on over the hole. Keys of slots it no
    /// longer serves (`MOVED`) stay tracked: the cluster writer gives them
    /// to the master serving them once it reads the new map (see
    /// [`DestWriter::take_tracked`]).
    pub fn track_checkpoints(&mut self) {
        self.held.get_or_insert_with(HashMap::new);
    }

    /// Tracks checkpoint `key` at `offset`, read from this master (a resumed
    /// task's checkpoints, written by the run before it), as if a unit of
    /// this run had moved it there.
    pub fn track_checkpoint(&mut self, key: Bytes, offset: u64) {
        if let Some(held) = self.held.as_mut() {
            let at = held.entry(key).or_insert(offset);
            *at = (*at).max(offset);
        }
    }

    /// The tracked checkpoints, taken out (tracking goes on, from none):
    /// after the slot map changed, each goes to the writer of the master
    /// serving its slot now, since a slot's keys move with it.
    pub fn take_tracked(&mut self) -> Vec<(Bytes, u64)> {
        self.held.as_mut().map(|held| held.drain().collect()).unwrap_or_default()
    }

    /// Whether a restart of this master would be checked against at least
    /// one checkpoint it confirmed.
    pub fn tracks_any(&self) -> bool {
        self.held.as_ref().is_some_and(|held| !held.is_empty())
    }

    /// Forgets the tracked checkpoints, and a loss they showed (a new full
    /// copy starts).
    pub fn forget_checkpoints(&mut self) {
        if let Some(held) = self.held.as_mut() {
            held.clear();
        }
        self.wiped = None;
    }

    /// A restart noticed while not guarding: the old and new `run_id`.
    pub fn take_restart(&mut self) -> Option<(String, String)> {
        self.restart.take()
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// On every new connection, before anything is sent again, checks that
    /// checkpoint `key` still holds `record` (its replication ID and
    /// offset: a full copy's "copying" mark, or the stream offset last
    /// confirmed), or what a unit in flight moved it to. A destination that
    /// restarted without the writes it confirmed is caught (`ROLLBACK`)
    /// instead of the copy carrying on over a hole. `None` stops checking.
    pub fn expect_after_loss(&mut self, expect: Option<(Bytes, CheckpointRecord)>) {
        self.expect = expect;
    }

    /// Runs the guards before the next send, as after a connection loss:
    /// for a batch whose uncertain commands were sent on another
    /// connection (a cluster slot that moved to another master).
    pub(crate) fn check_guards_next(&mut self) {
        self.check_guards = true;
    }

    /// The replicas connected to this master now (`INFO replication`),
    /// when it says.
    pub(crate) async fn connected_replicas(&mut self) -> Option<usize> {
        let conn = self.conn.as_mut().filter(|c| c.is_usable())?;
        let reply = conn.query(&Cmd::new("INFO").arg("replication")).await.ok()?;
        crate::resp::info::info_field(reply.as_bytes()?, "connected_slaves")?.parse().ok()
    }

    /// Waits until `replicas` replicas of this master acknowledge every
    /// write made on this connection (`WAIT`, at most `timeout`). Never on
    /// a new connection: `WAIT` there would vouch for nothing.
    pub(crate) async fn replicate(&mut self, replicas: usize, timeout: std::time::Duration) -> Result<(), ApplyError> {
        let wait = Cmd::new("WAIT").arg(replicas.to_string()).arg(timeout.as_millis().to_string());
        let unconfirmed = |addr: &str, detail: String| ApplyError {
            class: ErrorClass::Retry,
            code: "WAIT".to_owned(),
            addr: addr.to_owned(),
            command: Some("WAIT".to_owned()),
            origin: None,
            detail,
        };
        let Some(conn) = self.conn.as_mut().filter(|c| c.is_usable()) else {
            return Err(unconfirmed(&self.addr, "the connection was lost before its replicas acknowledged".into()));
        };
        let reply = match conn.send(&wait).await {
            Ok(v) => v,
            Err(e) => {
                self.lost();
                return Err(ApplyError::from_resp(&self.addr, &e, Some(wait.name()), None));
            }
        };
        match reply.as_int() {
            Some(got) if got >= replicas as i64 => Ok(()),
            Some(got) => Err(unconfirmed(
                &self.addr,
                format!("{got} of its {replicas} replicas acknowledged within {} ms", timeout.as_millis()),
            )),
            None => Err(unconfirmed(&self.addr, format!("WAIT answered {reply}"))),
        }
    }

    /// The `ASK` redirections replied since the last call.
    pub(crate) fn take_asks(&mut self) -> Vec<Ask> {
        std::mem::take(&mut self.asks)
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The connection, for the caller's own queries between batches.
    pub fn connection(&mut self) -> Option<&mut Connection> {
        self.conn.as_mut().filter(|c| c.is_usable())
    }

    /// Applies the batch. On success it is empty. On failure it holds
    /// exactly what is still to apply, and the error says whether to retry
    /// (after a backoff: call `apply` again with the same batch) or pause.
    /// Collisions and kept keys are added to `report` as they are found,
    /// also when a later window fails.
    pub async fn apply(&mut self, batch: &mut ApplyBatch, report: &mut ApplyReport) -> Result<(), ApplyError> {
        self.send(batch, report, false).await
    }

    /// Like [`DestWriter::apply`], with `ASKING` before every unit and every
    /// command outside one: for the slots this master is importing (see
    /// [`Ask`]). A slot's units whose reply was lost must not come here:
    /// their guards read the slot's checkpoint where the slot's owner
    /// keeps it.
    pub(crate) async fn apply_asking(
        &mut self,
        batch: &mut ApplyBatch,
        report: &mut ApplyReport,
    ) -> Result<(), ApplyError> {
        self.send(batch, report, true).await
    }

    async fn send(&mut self, batch: &mut ApplyBatch, report: &mut ApplyReport, asking: bool) -> Result<(), ApplyError> {
        check_units(batch).map_err(|detail| self.internal("PROTOCOL", detail))?;
        if let Some(e) = &self.wiped {
            return Err(e.clone());
        }
        self.last_contact = std::time::Instant::now();
        while !batch.is_empty() {
            self.ensure_connected().await?;
            if self.check_guards {
                if let Some((key, record)) = self.expect.clone() {
                    self.check_mark(&key, &record, batch).await?;
                }
                self.run_guards(batch, report).await?;
                self.check_guards = false;
                if batch.is_empty() {
                    break;
                }
            }
            self.ensure_db(&batch.meta[0].origin).await?;
            let Window { end, bytes, resent } = window(batch, self.opts.window_cmds, self.opts.window_bytes);
            self.stats.resent += resent as u64;
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.internal("CONNECTION", "no connection after connecting".to_owned()));
            };
            let sent = if asking {
                let (cmds, flagged) = with_asking(&batch.cmds[..end], &batch.meta[..end]);
                // `ASKING` only answers `+OK`; what follows it tells whether
                // it took (a `MOVED` if this master does not import the slot).
                conn.pipeline(&cmds)
                    .await
                    .map(|replies| replies.into_iter().zip(flagged).filter(|(_, a)| !a).map(|(v, _)| v).collect())
            } else {
                conn.pipeline(&batch.cmds[..end]).await
            };
            match sent {
                Err(e) => {
                    for m in &mut batch.meta[..end] {
                        m.uncertain = true;
                    }
                    self.lost();
                    let first = &batch.meta[0].origin;
                    return Err(ApplyError::from_resp(&self.addr, &e, Some(batch.cmds[0].name()), Some(first.clone())));
                }
                Ok(replies) => {
                    self.stats.windows += 1;
                    self.stats.commands += end as u64;
                    self.stats.bytes += bytes as u64;
                    self.settle(batch, end, &replies, report)?;
                }
            }
        }
        Ok(())
    }

    fn internal(&self, code: &str, detail: String) -> ApplyError {
        ApplyError {
            class: ErrorClass::Pause,
            code: code.to_owned(),
            addr: self.addr.clone(),
            command: None,
            origin: None,
            detail,
        }
    }

    /// How long since a send or a probe last went to the server.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_contact.elapsed()
    }

    /// For a master nothing was sent to for a while: checks that it is
    /// still the server that confirmed its tracked checkpoints. A `PING`
    /// on the connection (a restarted server broke it); when that fails, a
    /// new connection and the restart check that runs before any send
    /// (see [`DestWriter::track_checkpoints`], [`DestWriter::guard_restarts`]).
    /// So a master that came back empty is caught even while the stream
    /// writes nothing to its slots. Only a loss is an error: a master that
    /// cannot be reached now is left to the next probe or send, which meet
    /// it with the usual retries.
    ///
    /// A probe takes at most `wait`: one that takes longer (a master that
    /// hangs) is dropped with its connection, so the next contact connects
    /// and checks afresh, and the next probe of this master waits twice as
    /// long as the last (up to [`PROBE_BACKOFF_MAX`]), so a hung master the
    /// stream does not need costs the others little.
    pub async fn probe(&mut self, wait: std::time::Duration) -> Result<(), ApplyError> {
        if let Some(e) = &self.wiped {
            return Err(e.clone());
        }
        self.last_contact = std::time::Instant::now();
        match tokio::time::timeout(wait, self.probe_now()).await {
            Ok(result) => {
                self.probe_every = None;
                result
            }
            Err(_) => {
                self.conn = None;
                self.db = None;
                self.check_guards = true;
                let last = self.probe_every.unwrap_or(wait);
                self.probe_every = Some((last * 2).min(PROBE_BACKOFF_MAX));
                Ok(())
            }
        }
    }

    /// Whether this master has been idle `idle` (or longer, after probes
    /// that timed out): time for a [`DestWriter::probe`].
    pub fn probe_due(&self, idle: std::time::Duration) -> bool {
        self.idle_for() >= self.probe_every.unwrap_or(idle).max(idle)
    }

    async fn probe_now(&mut self) -> Result<(), ApplyError> {
        if let Some(conn) = self.conn.as_mut().filter(|c| c.is_usable()) {
            match conn.query(&Cmd::new("PING")).await {
                Ok(_) => return Ok(()),
                Err(_) => self.lost(),
            }
        }
        match self.ensure_connected().await {
            Err(e) if e.code == ROLLBACK || e.code == ROLLBACK_RESTART => Err(e),
            _ => Ok(()),
        }
    }

    /// After a connection-level failure: whatever it was, the commands in
    /// flight may have been applied.
    fn lost(&mut self) {
        if !self.conn.as_ref().is_some_and(Connection::is_usable) {
            self.conn = None;
            self.db = None;
        }
        self.check_guards = true;
    }

    async fn ensure_connected(&mut self) -> Result<(), ApplyError> {
        if self.conn.as_ref().is_some_and(Connection::is_usable) {
            return Ok(());
        }
        let mut conn = Connection::connect(&self.addr, &self.opts.connect)
            .await
            .map_err(|e| ApplyError::from_resp(&self.addr, &e, None, None))?;
        let id = run_id(&mut conn).await;
        self.conn = Some(conn);
        self.db = Some(0);
        self.stats.reconnects += 1;
        // Any new connection may be to a restarted server, even when no
        // command was in flight when the old one broke.
        self.check_guards = true;
        if let (Some(old), Some(new)) = (&self.run_id, &id) {
            if old != new {
                let seen = (old.clone(), new.clone());
                if !self.guard_restarts {
                    // The old `run_id` stays until the check decides, so a
                    // check that could not finish runs again on the next
                    // connection.
                    self.verify_held(&seen).await?;
                }
                self.run_id = id;
                if self.guard_restarts {
                    return Err(ApplyError {
                        class: ErrorClass::Pause,
                        code: ROLLBACK.to_owned(),
                        addr: self.addr.clone(),
                        command: None,
                        origin: None,
                        detail: format!(
                            "it restarted during a full copy (run_id {} is now {}): it may have lost confirmed \
                             writes (the keys confirmed after its last save)",
                            seen.0, seen.1
                        ),
                    });
                }
                self.restart = Some(seen);
                return Ok(());
            }
        }
        if id.is_some() {
            self.run_id = id;
        }
        Ok(())
    }

    /// After a restart (`seen`: old and new `run_id`), checks that every
    /// tracked checkpoint is still there, at its offset or later. A check
    /// that cannot finish (`LOADING`, a lost connection) drops the
    /// connection with the keys still tracked, so the next one checks
    /// again.
    async fn verify_held(&mut self, seen: &(String, String)) -> Result<(), ApplyError> {
        // Read, not taken: a check cut short (a probe's time limit) leaves
        // them all tracked, and an empty set stays a tracked one.
        let keys: Vec<(Bytes, u64)> = match self.held.as_ref() {
            Some(held) if !held.is_empty() => held.iter().map(|(k, at)| (k.clone(), *at)).collect(),
            _ => return Ok(()),
        };
        let replies = match self.read_held(&keys).await {
            Ok(replies) => replies,
            Err(e) => {
                // Dropped even when usable: only a new connection checks.
                self.conn = None;
                self.db = None;
                self.check_guards = true;
                return Err(e);
            }
        };
        let mut kept = HashMap::with_capacity(keys.len());
        for ((key, offset), reply) in keys.into_iter().zip(replies) {
            let found = match reply {
                // The slot is served elsewhere now, its checkpoint with it:
                // kept, for the master that serves it (see `take_tracked`).
                Value::Error(_) => {
                    kept.insert(key, offset);
                    continue;
                }
                Value::Bulk(Some(raw)) => CheckpointRecord::decode(&raw),
                _ => None,
            };
            match found.as_ref().and_then(|r| r.offset) {
                Some(at) if at >= offset => {
                    kept.insert(key, at);
                }
                _ => {
                    self.held = Some(HashMap::new());
                    // Decided: the server it is now is the one to follow.
                    self.run_id = Some(seen.1.clone());
                    let origin = Origin { db: CHECKPOINT_DB, key, offset: 0 };
                    let expected = format!(
                        "it restarted (run_id {} is now {}) after confirming offset {offset} there (a cluster \
                         master with replicas and persistence keeps what it confirmed)",
                        seen.0, seen.1
                    );
                    let mut e = self.rollback(found.as_ref(), &expected, &origin);
                    e.code = ROLLBACK_RESTART.to_owned();
                    // Nothing more goes to it until a new full copy starts.
                    self.wiped = Some(e.clone());
                    return Err(e);
                }
            }
        }
        self.held = Some(kept);
        Ok(())
    }

    /// `GET`s the tracked checkpoint keys; an error reply other than a
    /// redirection (`CLUSTERDOWN`, `LOADING`) fails the read.
    async fn read_held(&mut self, keys: &[(Bytes, u64)]) -> Result<Vec<Value>, ApplyError> {
        let origin = Origin { db: CHECKPOINT_DB, key: Bytes::new(), offset: 0 };
        self.ensure_db(&origin).await?;
        let cmds: Vec<Cmd> = keys.iter().map(|(key, _)| Cmd::new("GET").arg_bytes(key.clone())).collect();
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.internal("CONNECTION", "not connected".to_owned()));
        };
        let replies = conn
            .pipeline(&cmds)
            .await
            .map_err(|e| ApplyError::from_resp(&self.addr, &e, Some(cmds[0].name()), None))?;
        match replies.iter().find(|r| matches!(r, Value::Error(m) if !matches!(error_code(m), "MOVED" | "ASK"))) {
            Some(Value::Error(message)) => Err(ApplyError::from_reply(&self.addr, cmds[0].name(), origin, message)),
            _ => Ok(replies),
        }
    }

    /// Selects `origin.db` unless the connection is there already.
    async fn ensure_db(&mut self, origin: &Origin) -> Result<(), ApplyError> {
        if self.db == Some(origin.db) {
            return Ok(());
        }
        let cmd = Cmd::new("SELECT").arg(origin.db.to_string());
        let reply = self.query(&cmd, origin).await?;
        if let Value::Error(message) = reply {
            return Err(ApplyError::from_reply(&self.addr, cmd.name(), origin.clone(), &message));
        }
        self.db = Some(origin.db);
        Ok(())
    }

    async fn query(&mut self, cmd: &Cmd, origin: &Origin) -> Result<Value, ApplyError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.internal("CONNECTION", "not connected".to_owned()));
        };
        match conn.send(cmd).await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.lost();
                Err(ApplyError::from_resp(&self.addr, &e, Some(cmd.name()), Some(origin.clone())))
            }
        }
    }

    async fn query_int(&mut self, cmd: &Cmd, origin: &Origin) -> Result<i64, ApplyError> {
        match self.query(cmd, origin).await? {
            Value::Error(message) => Err(ApplyError::from_reply(&self.addr, cmd.name(), origin.clone(), &message)),
            v => v.as_int().ok_or_else(|| ApplyError {
                class: ErrorClass::Pause,
                code: "PROTOCOL".to_owned(),
                addr: self.addr.clone(),
                command: Some(cmd.name()),
                origin: Some(Box::new(origin.clone())),
                detail: format!("expected an integer, got {}", v.kind()),
            }),
        }
    }

    /// After a connection loss: drops the uncertain commands that guards
    /// show were applied (see the module docs).
    async fn run_guards(&mut self, batch: &mut ApplyBatch, report: &mut ApplyReport) -> Result<(), ApplyError> {
        let mut keep = vec![true; batch.len()];
        // Builds whose start (`DEL temp`) is still queued are re-sent whole.
        let unstarted: Vec<u64> =
            batch.meta.iter().filter_map(|m| m.build.filter(|b| b.step == BuildStep::Start).map(|b| b.id)).collect();
        let mut renamed: HashMap<u64, bool> = HashMap::new();
        let mut lengths: HashMap<Bytes, i64> = HashMap::new();
        for i in 0..batch.len() {
            let m = &batch.meta[i];
            let (true, Some(guard)) = (m.uncertain, m.guard.as_deref().cloned()) else { continue };
            let origin = m.origin.clone();
            if let Guard::Checkpoint { key, replid, before, after } = guard {
                if self.checkpoint_moved(&key, &replid, before, after, &origin).await? {
                    let exec = (i + 1..batch.len()).find(|&j| batch.meta[j].rule == ReplyRule::Exec).unwrap_or(i);
                    keep[i..=exec].iter_mut().for_each(|k| *k = false);
                }
                continue;
            }
            let Some(build) = m.build else { continue };
            if unstarted.contains(&build.id) {
                continue;
            }
            match guard {
                Guard::Renamed { temp } => {
                    let exists = self.query_int(&Cmd::new("EXISTS").arg(&temp), &origin).await?;
                    renamed.insert(build.id, exists == 0);
                }
                Guard::ListLen { temp, after } => {
                    let len = match lengths.get(&temp) {
                        Some(len) => *len,
                        None => {
                            let len = self.query_int(&Cmd::new("LLEN").arg(&temp), &origin).await?;
                            lengths.insert(temp, len);
                            len
                        }
                    };
                    if len >= after as i64 {
                        keep[i] = false;
                    }
                }
                Guard::Checkpoint { .. } => {}
            }
        }
        // A completed rename means every piece of that build was applied.
        for (i, m) in batch.meta.iter().enumerate() {
            if m.build.is_some_and(|b| renamed.get(&b.id) == Some(&true)) {
                keep[i] = false;
            }
        }
        let skipped = keep.iter().filter(|k| !**k).count();
        if skipped > 0 {
            self.stats.guard_skips += skipped as u64;
            // A key whose last command was shown applied is written.
            report.keys_written +=
                batch.meta.iter().zip(&keep).filter(|(m, keep)| m.ends_key && !**keep).count() as u64;
            batch.retain_mask(&keep);
        }
        Ok(())
    }

    /// Reads a shard's checkpoint record (see [`CheckpointRecord`]).
    pub async fn read_checkpoint(&mut self, key: &[u8]) -> Result<Option<CheckpointRecord>, ApplyError> {
        self.ensure_connected().await?;
        let origin = Origin { db: CHECKPOINT_DB, key: Bytes::copy_from_slice(key), offset: 0 };
        self.ensure_db(&origin).await?;
        let cmd = Cmd::new("GET").arg(key);
        match self.query(&cmd, &origin).await? {
            Value::Error(message) => Err(ApplyError::from_reply(&self.addr, cmd.name(), origin, &message)),
            Value::Bulk(Some(raw)) => match CheckpointRecord::decode(&raw) {
                Some(record) => Ok(Some(record)),
                None => Err(ApplyError {
                    class: ErrorClass::Pause,
                    code: "CHECKPOINT".to_owned(),
                    addr: self.addr.clone(),
                    command: Some(cmd.name()),
                    origin: Some(Box::new(origin)),
                    detail: "the checkpoint key holds a value shardsync did not write; \
                             another program uses this key name: change sync.heartbeat_key or remove the key"
                        .to_owned(),
                }),
            },
            _ => Ok(None),
        }
    }

    async fn check_mark(
        &mut self,
        key: &[u8],
        expected: &CheckpointRecord,
        batch: &ApplyBatch,
    ) -> Result<(), ApplyError> {
        let found = self.read_checkpoint(key).await?;
        let at = |r: &CheckpointRecord| r.replid == expected.replid && r.offset == expected.offset;
        // Or a unit in flight got applied: its guard drops it next.
        let moved_by_unit = |r: &CheckpointRecord| {
            batch.meta.iter().any(|m| {
                m.uncertain
                    && matches!(m.guard.as_deref(), Some(Guard::Checkpoint { replid, after, .. }) if r.is_at(replid, *after))
            })
        };
        if found.as_ref().is_some_and(|r| at(r) || moved_by_unit(r)) {
            return Ok(());
        }
        let origin = Origin { db: CHECKPOINT_DB, key: Bytes::copy_from_slice(key), offset: 0 };
        let expected = match expected.offset {
            None => format!("it was receiving a full copy of {}", expected.replid),
            Some(o) => format!("it had confirmed offset {o} of {}", expected.replid),
        };
        Err(self.rollback(found.as_ref(), &expected, &origin))
    }

    fn rollback(&self, found: Option<&CheckpointRecord>, expected: &str, origin: &Origin) -> ApplyError {
        let found = match found {
            Some(CheckpointRecord { replid: r, offset: Some(o), .. }) => format!("at offset {o} of {r}"),
            Some(CheckpointRecord { replid: r, offset: None, .. }) => format!("in a full copy of {r}"),
            None => "missing".to_owned(),
        };
        ApplyError {
            class: ErrorClass::Pause,
            code: ROLLBACK.to_owned(),
            addr: self.addr.clone(),
            command: None,
            origin: Some(Box::new(origin.clone())),
            detail: format!(
                "the destination's checkpoint is {found}, but {expected}: \
                 it lost confirmed writes (restarted without persisting them?)"
            ),
        }
    }

    /// After a lost reply: whether a checkpointed unit was applied (the
    /// checkpoint moved to `after`) or not (still at `before`). Anything
    /// else is a `ROLLBACK`: the destination no longer holds writes it
    /// confirmed, and re-sending this unit would leave a gap.
    async fn checkpoint_moved(
        &mut self,
        key: &[u8],
        replid: &str,
        before: Option<u64>,
        after: u64,
        origin: &Origin,
    ) -> Result<bool, ApplyError> {
        let record = self.read_checkpoint(key).await?;
        match (&record, before) {
            (Some(r), _) if r.is_at(replid, after) => Ok(true),
            (Some(r), Some(before)) if r.is_at(replid, before) => Ok(false),
            (None, None) => Ok(false),
            (_, Some(before)) => {
                Err(self.rollback(record.as_ref(), &format!("it had confirmed offset {before} of {replid}"), origin))
            }
            (_, None) => Err(self.rollback(record.as_ref(), &format!("it had no checkpoint for {replid}"), origin)),
        }
    }

    /// Judges the replies of the first `end` commands and removes the
    /// confirmed ones from the batch.
    fn settle(
        &mut self,
        batch: &mut ApplyBatch,
        end: usize,
        replies: &[Value],
        report: &mut ApplyReport,
    ) -> Result<(), ApplyError> {
        let mut done = vec![false; end];
        let mut failures: Vec<(usize, ApplyError)> = Vec::new();
        let mut followups: Vec<(Cmd, Meta)> = Vec::new();
        let mut i = 0;
        while i < end {
            if batch.meta[i].rule == ReplyRule::MultiOnce {
                let exec = (i + 1..end).find(|&j| batch.meta[j].rule == ReplyRule::Exec).unwrap_or(end - 1);
                self.judge_once(batch, i, exec, replies, &mut done, &mut failures);
                i = exec + 1;
                continue;
            }
            let (last, verdict) = if batch.meta[i].rule == ReplyRule::Multi {
                let exec = (i + 1..end).find(|&j| batch.meta[j].rule == ReplyRule::Exec).unwrap_or(end - 1);
                let verdict = self.judge_unit(batch, i, exec, replies);
                // A unit may select DBs inside; its EXEC is tagged with the
                // DB it leaves the connection in.
                self.db = match verdict {
                    Verdict::Done(_) => Some(batch.meta[exec].origin.db),
                    Verdict::Failed { .. } => None,
                };
                (exec, verdict)
            } else {
                (i, self.judge(&batch.cmds[i], &batch.meta[i], &replies[i]))
            };
            match verdict {
                Verdict::Done(effect) => {
                    done[i..=last].iter_mut().for_each(|d| *d = true);
                    if effect == Effect::Existed {
                        self.existed(batch, i, last, report, &mut followups);
                    } else if batch.meta[i..=last].iter().any(|m| m.ends_key) {
                        report.keys_written += 1;
                    }
                    if batch.meta[i].rule == ReplyRule::Select {
                        self.db = Some(batch.meta[i].origin.db);
                    }
                }
                Verdict::Failed { command, message } => {
                    let origin = batch.meta[i].origin.clone();
                    failures.push((i, ApplyError::from_reply(&self.addr, command, origin, &message)));
                }
            }
            i = last + 1;
        }
        report.applied += done.iter().filter(|d| **d).count() as u64;
        self.asks.extend(failures.iter().filter_map(|(_, e)| e.ask()));
        if let Some(e) = order_broken(batch, &done, &failures, &self.addr) {
            failures.insert(0, (0, e));
        }
        if failures.is_empty() {
            batch.drop_front(end);
        } else {
            let mut keep: Vec<bool> = done.iter().map(|d| !d).collect();
            keep.resize(batch.len(), true);
            batch.retain_mask(&keep);
        }
        batch.push_front(followups);
        // A pause outranks a retry: retrying cannot fix it.
        let worst = failures.iter().position(|(_, e)| e.class == ErrorClass::Pause).unwrap_or(0);
        match failures.into_iter().nth(worst) {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// One command outside a unit.
    fn judge(&self, cmd: &Cmd, meta: &Meta, reply: &Value) -> Verdict {
        match reply {
            Value::Error(message) => {
                let code = error_code(message);
                match &meta.rule {
                    ReplyRule::IfAbsent { .. } if code == "BUSYKEY" => Verdict::Done(Effect::Existed),
                    ReplyRule::StreamAdd if meta.uncertain && message.contains("equal or smaller") => {
                        Verdict::Done(Effect::Applied)
                    }
                    ReplyRule::GroupCreate if meta.uncertain && code == "BUSYGROUP" => Verdict::Done(Effect::Applied),
                    _ => Verdict::Failed { command: cmd.name(), message: message.clone() },
                }
            }
            Value::Bulk(None) | Value::Integer(0) if matches!(meta.rule, ReplyRule::IfAbsent { .. }) => {
                Verdict::Done(Effect::Existed)
            }
            _ => Verdict::Done(Effect::Applied),
        }
    }

    /// A [`ReplyRule::MultiOnce`] unit at `first..=exec`: once `EXEC` has
    /// run, every inner command counts on its own (confirmed ones leave the
    /// batch, failed ones stay to be sent again alone); the unit is re-sent
    /// whole only when nothing of it ran (`EXECABORT`, a lost `EXEC`).
    fn judge_once(
        &mut self,
        batch: &ApplyBatch,
        first: usize,
        exec: usize,
        replies: &[Value],
        done: &mut [bool],
        failures: &mut Vec<(usize, ApplyError)>,
    ) {
        let inner = first + 1..exec;
        let fail = |i: usize, message: &str, failures: &mut Vec<(usize, ApplyError)>| {
            let origin = batch.meta[i].origin.clone();
            failures.push((i, ApplyError::from_reply(&self.addr, batch.cmds[i].name(), origin, message)));
        };
        let ran_alone = replies[first].is_error();
        let results: Vec<&Value> = if ran_alone {
            // MULTI refused: the inner commands ran (or failed) one by one.
            inner.clone().map(|i| &replies[i]).collect()
        } else if let Some(i) = inner.clone().find(|&i| replies[i].is_error()) {
            // Refused while queuing: the transaction was discarded.
            fail(i, replies[i].as_error().unwrap_or_default(), failures);
            self.db = None;
            return;
        } else {
            match &replies[exec] {
                Value::Array(Some(items)) if items.len() == inner.len() => items.iter().collect(),
                Value::Error(message) => {
                    fail(exec, message, failures);
                    self.db = None;
                    return;
                }
                other => {
                    fail(exec, &format!("unexpected EXEC reply: {other}"), failures);
                    self.db = None;
                    return;
                }
            }
        };
        done[first] = true;
        done[exec] = true;
        if let (Some(held), Some(Guard::Checkpoint { key, after, .. })) =
            (self.held.as_mut(), batch.meta[first].guard.as_deref())
        {
            let at = held.entry(key.clone()).or_insert(*after);
            *at = (*at).max(*after);
        }
        for (i, result) in inner.zip(results) {
            match self.judge(&batch.cmds[i], &batch.meta[i], result) {
                Verdict::Done(_) => done[i] = true,
                Verdict::Failed { message, .. } => fail(i, &message, failures),
            }
        }
        self.db = if ran_alone { None } else { Some(batch.meta[exec].origin.db) };
    }

    /// A `MULTI` ... `EXEC` unit at `first..=exec`.
    fn judge_unit(&self, batch: &ApplyBatch, first: usize, exec: usize, replies: &[Value]) -> Verdict {
        let inner = first + 1..exec;
        let fail =
            |i: usize, message: &str| Verdict::Failed { command: batch.cmds[i].name(), message: message.to_owned() };
        // MULTI refused (a busy server): the inner commands ran on their
        // own, or failed; their replies are direct.
        if let Value::Error(message) = &replies[first] {
            let mut effect = Effect::Applied;
            for i in inner {
                match self.judge(&batch.cmds[i], &batch.meta[i], &replies[i]) {
                    Verdict::Done(Effect::Existed) => effect = Effect::Existed,
                    Verdict::Done(Effect::Applied) => {}
                    // Report MULTI's own error when it says why (BUSY).
                    Verdict::Failed { .. } => return fail(first, message),
                }
            }
            return Verdict::Done(effect);
        }
        // An error while queuing aborts the transaction: that error says why.
        if let Some(i) = inner.clone().find(|&i| replies[i].is_error()) {
            return fail(i, replies[i].as_error().unwrap_or_default());
        }
        let results = match &replies[exec] {
            Value::Array(Some(items)) if items.len() == inner.len() => items,
            Value::Error(message) => return fail(exec, message),
            other => return fail(exec, &format!("unexpected EXEC reply: {other}")),
        };
        let mut effect = Effect::Applied;
        for (i, result) in inner.zip(results) {
            match self.judge(&batch.cmds[i], &batch.meta[i], result) {
                Verdict::Done(Effect::Existed) => effect = Effect::Existed,
                Verdict::Done(Effect::Applied) => {}
                failed @ Verdict::Failed { .. } => return failed,
            }
        }
        Verdict::Done(effect)
    }

    /// Records an existing key and queues the removal of what it left.
    fn existed(
        &self,
        batch: &ApplyBatch,
        first: usize,
        last: usize,
        report: &mut ApplyReport,
        followups: &mut Vec<(Cmd, Meta)>,
    ) {
        let meta = &batch.meta[first];
        let uncertain = batch.meta[first..=last].iter().any(|m| m.uncertain);
        match self.opts.conflict {
            Conflict::Skip => {
                report.kept += 1;
                if uncertain {
                    report.kept_uncertain += 1;
                }
            }
            Conflict::Intercept | Conflict::Overwrite => report.collisions.push(Collision {
                db: meta.origin.db,
                key: meta.origin.key.clone(),
                offset: meta.origin.offset,
                uncertain,
            }),
        }
        for m in &batch.meta[first..=last] {
            if let ReplyRule::IfAbsent { temp: Some(temp) } = &m.rule {
                let cmd = Cmd::new("DEL").arg(temp);
                let del = Meta {
                    origin: m.origin.clone(),
                    rule: ReplyRule::Ok,
                    build: None,
                    free: false,
                    guard: None,
                    ends_key: false,
                    uncertain: false,
                    len: wire_len(&cmd),
                };
                followups.push((cmd, del));
            }
        }
    }
}

/// The server's `run_id`, when `INFO server` tells it.
async fn run_id(conn: &mut Connection) -> Option<String> {
    let reply = conn.query(&Cmd::new("INFO").arg("server")).await.ok()?;
    crate::resp::info::info_field(reply.as_bytes()?, "run_id").map(str::to_owned)
}

/// The window starting at the batch's front, as [`window`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// Where it ends (exclusive).
    end: usize,
    /// The wire length of its commands.
    bytes: usize,
    /// How many of its commands were sent before without a confirming reply.
    resent: usize,
}

/// The window starting at the batch's front: what it counts is counted in
/// the one pass that finds its end (a stream batch's metadata is megabytes,
/// and each pass over it read them all again).
fn window(batch: &ApplyBatch, max_cmds: usize, max_bytes: usize) -> Window {
    if batch.meta[0].rule == ReplyRule::Select {
        let m = &batch.meta[0];
        return Window { end: 1, bytes: m.len, resent: usize::from(m.uncertain) };
    }
    let db = batch.meta[0].origin.db;
    let (mut i, mut bytes, mut in_unit, mut resent) = (0, 0, false, 0);
    while i < batch.len() {
        let m = &batch.meta[i];
        // A SELECT or a DB change waits for its own window (see ensure_db).
        if i > 0 && !in_unit && (m.rule == ReplyRule::Select || m.origin.db != db) {
            break;
        }
        if i > 0 && !in_unit && (i >= max_cmds || bytes >= max_bytes) {
            break;
        }
        // A build's finish (its rename) opens a window of its own, so it is
        // sent only once every piece before it is confirmed: after a lost
        // reply, a temporary key that is gone can then only mean the rename
        // ran (see `run_guards`); sent with its pieces, it could also mean
        // that none of them arrived.
        if i > 0 && !in_unit && m.build.is_some_and(|b| b.step == BuildStep::Finish) {
            break;
        }
        match m.rule {
            ReplyRule::Multi | ReplyRule::MultiOnce => in_unit = true,
            ReplyRule::Exec => in_unit = false,
            _ => {}
        }
        bytes += m.len;
        resent += usize::from(m.uncertain);
        i += 1;
    }
    Window { end: i, bytes, resent }
}

/// `cmds` with `ASKING` before each unit and each command outside one, and
/// which of the result are those `ASKING`s.
fn with_asking(cmds: &[Cmd], meta: &[Meta]) -> (Vec<Cmd>, Vec<bool>) {
    let mut out = Vec::with_capacity(cmds.len() * 2);
    let mut flagged = Vec::with_capacity(cmds.len() * 2);
    let mut in_unit = false;
    for (cmd, m) in cmds.iter().zip(meta) {
        if !in_unit {
            out.push(Cmd::new("ASKING"));
            flagged.push(true);
        }
        match m.rule {
            ReplyRule::Multi | ReplyRule::MultiOnce => in_unit = true,
            ReplyRule::Exec => in_unit = false,
            _ => {}
        }
        out.push(cmd.clone());
        flagged.push(false);
    }
    (out, flagged)
}

/// Every `MULTI` has its `EXEC` in the batch, with no nesting.
fn check_units(batch: &ApplyBatch) -> Result<(), String> {
    let mut open = false;
    for m in &batch.meta {
        match (&m.rule, open) {
            (ReplyRule::Multi | ReplyRule::MultiOnce, false) => open = true,
            (ReplyRule::Exec, true) => open = false,
            (ReplyRule::Multi | ReplyRule::MultiOnce, true) => {
                return Err("a MULTI inside a MULTI unit in the batch".to_owned())
            }
            (ReplyRule::Exec, false) => return Err("an EXEC without MULTI in the batch".to_owned()),
            _ => {}
        }
    }
    if open {
        return Err("the batch ends inside a MULTI unit: give the writer whole units".to_owned());
    }
    Ok(())
}

/// A failed piece of a build followed by a confirmed piece of the same
/// build that does not commute with it (see the module docs).
fn order_broken(batch: &ApplyBatch, done: &[bool], failures: &[(usize, ApplyError)], addr: &str) -> Option<ApplyError> {
    for (at, _) in failures {
        let failed = &batch.meta[*at];
        let Some(build) = failed.build else { continue };
        let later = (*at + 1..done.len()).find(|&j| {
            done[j] && batch.meta[j].build.is_some_and(|b| b.id == build.id) && !(failed.free && batch.meta[j].free)
        });
        if let Some(j) = later {
            return Some(ApplyError {
                class: ErrorClass::Pause,
                code: "ORDER".to_owned(),
                addr: addr.to_owned(),
                command: Some(batch.cmds[*at].name()),
                origin: Some(Box::new(failed.origin.clone())),
                detail: format!(
                    "a piece of this big key failed while a later piece ({}) succeeded, so its pieces are out of order; \
                     the key must be copied again (restart the shard's full copy)",
                    batch.cmds[j].name()
                ),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::batch::{ApplyCmd, Build};

    fn cmd(args: &str, db: u32) -> ApplyCmd {
        let cmd = Cmd::from_args(args.split(' '));
        let rule = match args.split(' ').next() {
            Some("SELECT") => ReplyRule::Select,
            Some("MULTI") => ReplyRule::Multi,
            Some("EXEC") => ReplyRule::Exec,
            _ => ReplyRule::Ok,
        };
        ApplyCmd::new(cmd, Origin { db, key: Bytes::from_static(b"k"), offset: 0 }).rule(rule)
    }

    fn batch(cmds: &[(&str, u32)]) -> ApplyBatch {
        let mut b = ApplyBatch::new();
        b.extend(cmds.iter().map(|(c, db)| cmd(c, *db)));
        b
    }

    #[test]
    fn asking_goes_before_every_unit_and_every_command_outside_one() {
        let b = batch(&[("SET a 1", 0), ("MULTI", 0), ("SET b 1", 0), ("INCR c", 0), ("EXEC", 0), ("DEL d", 0)]);
        let (cmds, flagged) = with_asking(&b.cmds, &b.meta);
        let shown: Vec<String> = cmds.iter().map(|c| c.name()).collect();
        assert_eq!(shown, ["ASKING", "SET", "ASKING", "MULTI", "SET", "INCR", "EXEC", "ASKING", "DEL"]);
        assert_eq!(flagged, [true, false, true, false, false, false, false, true, false]);
    }

    #[test]
    fn windows_stop_at_selects_and_db_changes_and_never_split_units() {
        let b = batch(&[("SET a 1", 0), ("SET b 1", 0), ("SELECT 1", 1), ("SET c 1", 1)]);
        assert_eq!(window(&b, 100, 1 << 20).end, 2);
        let b = batch(&[("SELECT 1", 1), ("SET c 1", 1)]);
        assert_eq!(window(&b, 100, 1 << 20).end, 1);
        let b = batch(&[("SET a 1", 0), ("SET b 1", 2)]);
        assert_eq!(window(&b, 100, 1 << 20).end, 1);
        let b = batch(&[("SET a 1", 0), ("MULTI", 0), ("DEL x", 0), ("RPUSH x 1", 0), ("EXEC", 0), ("SET b 1", 0)]);
        assert_eq!(window(&b, 2, 1 << 20).end, 5, "the unit goes whole");
        assert_eq!(window(&b, 1, 1 << 20).end, 1);
        assert_eq!(window(&b, 100, 1).end, 1, "byte budget");
    }

    #[test]
    fn a_window_counts_the_bytes_and_the_resent_commands_it_holds() {
        let mut b = batch(&[("SET a 1", 0), ("MULTI", 0), ("DEL x", 0), ("EXEC", 0), ("SET b 1", 0)]);
        b.meta[2].uncertain = true;
        b.meta[4].uncertain = true;
        let len = |range: std::ops::Range<usize>| b.meta[range].iter().map(|m| m.len).sum::<usize>();
        assert_eq!(window(&b, 2, 1 << 20), Window { end: 4, bytes: len(0..4), resent: 1 });
        assert_eq!(window(&b, 100, 1 << 20), Window { end: 5, bytes: len(0..5), resent: 2 });
        let b = batch(&[("SELECT 1", 1), ("SET c 1", 1)]);
        assert_eq!(window(&b, 100, 1 << 20), Window { end: 1, bytes: b.meta[0].len, resent: 0 });
    }

    #[test]
    fn batches_must_hold_whole_units() {
        assert!(check_units(&batch(&[("MULTI", 0), ("SET a 1", 0), ("EXEC", 0)])).is_ok());
        assert!(check_units(&batch(&[("MULTI", 0), ("SET a 1", 0)])).is_err());
        assert!(check_units(&batch(&[("EXEC", 0)])).is_err());
        assert!(check_units(&batch(&[("MULTI", 0), ("MULTI", 0), ("EXEC", 0)])).is_err());
    }

    fn build_cmd(args: &str, id: u64, free: bool) -> ApplyCmd {
        let mut c = cmd(args, 0);
        c.build = Some(Build { id, step: BuildStep::Part });
        c.free = free;
        c
    }

    #[test]
    fn a_later_piece_of_the_same_build_after_a_failure_breaks_the_order() {
        let err = |at| (at, ApplyError::from_reply("a", "RPUSH".into(), Origin::default(), "BUSY"));
        let mut b = ApplyBatch::new();
        b.extend([
            build_cmd("RPUSH t 1", 7, false),
            build_cmd("RPUSH t 2", 7, false),
            build_cmd("SADD s 1", 8, true),
            build_cmd("SADD s 2", 8, true),
            build_cmd("RPUSH u 1", 9, false),
        ]);
        // RPUSH t 1 failed, RPUSH t 2 succeeded: broken.
        let e = order_broken(&b, &[false, true, true, true, true], &[err(0)], "a").expect("order broken");
        assert_eq!((e.code.as_str(), e.class), ("ORDER", ErrorClass::Pause));
        // Commuting pieces (SADD) may be re-sent in any order.
        assert!(order_broken(&b, &[true, true, false, true, true], &[err(2)], "a").is_none());
        // Another build's success does not matter.
        assert!(order_broken(&b, &[true, true, true, true, false], &[err(4)], "a").is_none());
    }
}
