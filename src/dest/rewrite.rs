//! From the RDB events of each key to destination commands. Pure: no I/O,
//! no clock (the caller passes `now_ms`), so every path has golden tests.
//!
//! A [`Rewriter`] takes the parser's events in order. For each key
//! (`KeyStart`, chunks, `KeyEnd`) it picks one of three forms:
//!
//! * **RESTORE**: the key ended with a DUMP payload, the payload's RDB
//!   version is one the destination reads, and it is at most
//!   `big_key_bytes`: `RESTORE key ttl payload [ABSTTL] [REPLACE]`.
//! * **Unit**: otherwise, when the whole value fitted in `buffer_bytes`:
//!   native commands (`RPUSH`, `SADD`, `HSET`, `ZADD`, `XADD`...) in one
//!   `MULTI`/`EXEC`, so no reader ever sees half a key and a re-send after a
//!   lost reply rebuilds it from scratch. A string is a single `SET`.
//! * **Build** (a big key): as soon as the buffered value passes
//!   `buffer_bytes`, commands stream out as the chunks arrive, written to a
//!   temporary key that a final `RENAME` (or `RENAMENX`) puts in place
//!   atomically. Memory stays bounded whatever the key's size.
//!
//! Chunks are held (not copied: they are moved in) until the key ends,
//! because the DUMP payload that decides the form only comes with
//! `KeyEnd`; `buffer_bytes` bounds what is held. Values are not copied into
//! commands either: arguments share the reader's buffers, which stay alive
//! while a command waits in a batch, so the memory they pin is bounded by
//! what the caller queues (batches, bounded channels) plus one read buffer.
//! Key names are copied once per key, since reports keep them longer.
//!
//! **Conflict modes.** `Overwrite`: `RESTORE ... REPLACE`, or `DEL key` then
//! the commands inside the unit, or `RENAME temp key`. `Intercept` and
//! `Skip`: `RESTORE` without `REPLACE`, `SET ... NX`, or the commands on a
//! temporary key then `RENAMENX temp key`, so an existing key is never
//! overwritten; the writer sees `BUSYKEY`, nil or `:0` and reports a
//! collision (intercept) or counts a kept key (skip).
//!
//! **Temporary names** are `{<key>}:<tag>` (the braces keep a cluster
//! destination's hash slot: the slot of `{k}...` is the slot of `k`), or
//! `<key>:<tag>` when the key already has a hash tag (appending keeps it).
//! A key holding `}` but no valid hash tag gets `<key>:<tag>`, which on a
//! cluster may hash elsewhere; standalone destinations do not care. `tag`
//! (braces removed) names the task and shard, so temporary keys are
//! recognisable and two shards never share one.
//!
//! **The TTL gap.** A key whose expiry has passed, or is less than
//! `ttl_grace_ms` away, gets now + `ttl_grace_ms`, instead of being dropped
//! by `RESTORE` (an `ABSTTL` in the past deletes) or vanishing before its
//! rename: the source's command stream (its expiry `DEL`, or a `PERSIST`)
//! then decides. Both cases are counted. Hash field TTLs (7.4) get the same.
//!
//! **Streams** on the command path: `XADD` per entry with its ID, then
//! `XSETID` (with `ENTRIESADDED`/`MAXDELETEDID` on 7.0+), `XGROUP CREATE`
//! (with `ENTRIESREAD` on 7.0+), `XCLAIM ... TIME t RETRYCOUNT n FORCE
//! JUSTID` for each consumer's pending entries (delivery time and count
//! from the group's PEL, which is held in memory per group), and
//! `XGROUP CREATECONSUMER` (or, before 6.2, a non-blocking `XREADGROUP` of
//! the consumer's own history) for consumers without pending entries. An
//! empty stream is created with `XGROUP CREATE ... MKSTREAM` and a throwaway
//! group. What cannot be carried: consumers' seen/active times (the
//! destination sets them to now), and pending entries whose stream entry
//! was deleted (`XCLAIM` ignores them).

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::batch::{ApplyCmd, Build, BuildStep, Conflict, Guard, Origin, ReplyRule};
use super::caps::DestCaps;
use crate::display::show_key;
use crate::rdb::{Chunk, Event, HashField, KeyStart, PendingEntry, StreamId, StreamMeta, ValueKind};
use crate::resp::Cmd;

/// How keys are turned into commands.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    pub conflict: Conflict,
    pub caps: DestCaps,
    /// Largest DUMP payload restored with `RESTORE`; larger keys use
    /// commands. 0: always commands.
    pub big_key_bytes: usize,
    /// Value bytes held while waiting for a key's end; a bigger key is
    /// built under a temporary name as it streams.
    pub buffer_bytes: usize,
    /// Most elements in one command.
    pub chunk_items: usize,
    /// Most value bytes in one command (a bigger string is split).
    pub chunk_bytes: usize,
    /// The shortest TTL a key is written with (see the TTL gap above).
    pub ttl_grace_ms: i64,
    /// Names temporary keys (see above); braces are replaced by `_`.
    pub temp_tag: String,
    /// Source DB → destination DB; `None` copies every DB to the same
    /// number; a DB missing from the map is not copied.
    pub db_map: Option<BTreeMap<u32, u32>>,
    /// Keys holding a module's value.
    pub modules: ModuleKeys,
}

/// What to do with a key holding a module's value (the task file's
/// `sync.modules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModuleKeys {
    /// The copy stops at the first one, naming it and its module.
    #[default]
    Fail,
    /// Left out, counted ([`RewriteStats::module_skipped`]) and named.
    Skip,
    /// `RESTORE`d: the destination must have the module.
    Restore,
}

impl RewriteOptions {
    /// The RDB versions (bit `v` for version `v`) whose DUMP payloads of at
    /// most `big_key_bytes` this rewriter restores as they are, whatever
    /// the value: what the parser may leave undecoded
    /// (`ParserOptions::restore_versions`). Module values aside, which
    /// the parser never leaves undecoded.
    pub fn restore_versions(&self) -> u128 {
        if self.big_key_bytes == 0 {
            return 0;
        }
        self.caps.payload_versions()
    }

    /// Defaults: 16 MiB big-key limit and buffer, 512 elements or 1 MiB
    /// per command, 5 s grace.
    pub fn new(caps: DestCaps, conflict: Conflict) -> Self {
        RewriteOptions {
            conflict,
            caps,
            big_key_bytes: 16 << 20,
            buffer_bytes: 16 << 20,
            chunk_items: 512,
            chunk_bytes: 1 << 20,
            ttl_grace_ms: 5_000,
            temp_tag: "shardsync-tmp".to_owned(),
            db_map: None,
            modules: ModuleKeys::default(),
        }
    }
}

/// Counters of what the rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteStats {
    /// Keys written, in any form.
    pub keys: u64,
    pub restored: u64,
    /// Keys written as native commands (units and builds).
    pub rewritten: u64,
    /// Of those, keys built under a temporary name.
    pub built: u64,
    /// Keys of DBs the task does not copy.
    pub filtered: u64,
    /// Keys holding a module's value, left out (`ModuleKeys::Skip`).
    pub module_skipped: u64,
    /// Keys already expired when written: given the grace TTL.
    pub ttl_expired: u64,
    /// Keys expiring within the grace: raised to it.
    pub ttl_raised: u64,
    /// Hash field TTLs the destination cannot store (before 7.4).
    pub field_ttls_dropped: u64,
    /// Hash fields already expired when written: given the grace TTL.
    pub field_ttls_expired: u64,
}

/// Something the operator should see; the copy goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteWarning {
    pub db: u64,
    pub key: Bytes,
    pub message: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error(
        "key \"{key}\" in db {db} holds a value of module `{module}`, which can only be copied with RESTORE, and {why}: \
         load the module on a destination that restores this RDB version, or exclude the key's DB"
    )]
    Module { db: u64, key: String, module: String, why: String },
    #[error(
        "key \"{key}\" in db {db} holds a value of module `{module}`, and sync.modules = \"fail\" stops the copy at \
         such keys: load the module on the destination and set modules = \"restore\", or set modules = \"skip\" to \
         leave them out (each counted and named)"
    )]
    ModulePolicy { db: u64, key: String, module: String },
    #[error("key \"{key}\" in db {db} is a stream, and the destination (Redis {version}) has no streams (5.0+)")]
    NoStreams { db: u64, key: String, version: String },
    #[error("RDB event out of order at byte {offset}: {what}")]
    Sequence { offset: u64, what: String },
    /// The parser was told this destination restores the snapshot's
    /// payloads, and it does not: a fault of the tool, never data to drop.
    #[error(
        "key \"{key}\" in db {db} (snapshot byte {offset}) came as a payload only, and the destination does not \
         take it with RESTORE: the tool's parser and writer disagree about the destination (report this); the \
         shard stops rather than write the key empty"
    )]
    Undecoded { db: u64, key: String, offset: u64 },
}

/// Converts RDB events to destination commands; see the module docs.
#[derive(Debug)]
pub struct Rewriter {
    opts: RewriteOptions,
    temp_tag: Bytes,
    /// The DB the emitted commands leave the connection in.
    current_db: Option<u32>,
    key: Option<KeyState>,
    next_build: u64,
    stats: RewriteStats,
    warnings: Vec<RewriteWarning>,
    /// The snapshot's RDB version, from its header: what every captured
    /// payload's trailer says, known without reading the trailer (a read
    /// that misses the cache, the payload having been built on another
    /// thread). `None` before a header: the trailer is read.
    rdb_version: Option<u16>,
}

#[derive(Debug)]
struct KeyState {
    start: KeyStart,
    /// Destination DB; `None`: the key's DB is not copied.
    db: Option<u32>,
    offset: u64,
    phase: Phase,
    module: Option<String>,
}

#[derive(Debug)]
enum Phase {
    Buffer { chunks: Vec<Chunk>, bytes: usize },
    Build { id: u64, temp: Bytes, emit: Box<Emitter> },
}

impl Rewriter {
    pub fn new(opts: RewriteOptions) -> Self {
        let tag: Vec<u8> = opts.temp_tag.bytes().map(|b| if b == b'{' || b == b'}' { b'_' } else { b }).collect();
        Rewriter {
            opts,
            temp_tag: Bytes::from(tag),
            current_db: None,
            key: None,
            next_build: 0,
            stats: RewriteStats::default(),
            warnings: Vec::new(),
            rdb_version: None,
        }
    }

    pub fn options(&self) -> &RewriteOptions {
        &self.opts
    }

    pub fn stats(&self) -> &RewriteStats {
        &self.stats
    }

    /// Warnings since the last call.
    pub fn take_warnings(&mut self) -> Vec<RewriteWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// Whether a key is open (started, not ended).
    pub fn in_key(&self) -> bool {
        self.key.is_some()
    }

    /// Gives up the open key (its snapshot was cut off): a big key being
    /// built under a temporary name has that name deleted, so a copy that
    /// never finishes leaves nothing behind.
    pub fn abandon(&mut self, out: &mut Vec<ApplyCmd>) {
        if let Some(KeyState { db: Some(db), offset, phase: Phase::Build { temp, .. }, start, .. }) = self.key.take() {
            let origin = Origin { db, key: start.key.clone(), offset };
            out.push(ApplyCmd::new(Cmd::new("DEL").arg(&temp), origin));
        }
    }

    /// Forget the connection's DB, so the next key starts with `SELECT`
    /// (for a caller that sends the output somewhere new).
    pub fn forget_db(&mut self) {
        self.current_db = None;
    }

    /// Takes one event; commands it completes are appended to `out`.
    /// `offset`: the source offset of the event (RDB bytes read), kept in
    /// each command's [`Origin`]; `now_ms`: the current unix time, for TTLs.
    pub fn feed(
        &mut self,
        event: Event,
        offset: u64,
        now_ms: i64,
        out: &mut Vec<ApplyCmd>,
    ) -> Result<(), RewriteError> {
        match event {
            Event::KeyStart(start) => self.key_start(*start, offset, out),
            Event::Chunk(chunk) => self.chunk(chunk, offset, now_ms, out),
            Event::KeyEnd { payload } => self.key_end(payload, offset, now_ms, out),
            Event::Header { version } => {
                self.rdb_version = u16::try_from(version).ok();
                Ok(())
            }
            // Aux fields, functions, DB and resize hints: the engine's
            // business (scripts and functions are loaded separately).
            _ => Ok(()),
        }
    }

    fn key_start(&mut self, start: KeyStart, offset: u64, out: &mut Vec<ApplyCmd>) -> Result<(), RewriteError> {
        if let Some(open) = &self.key {
            return Err(RewriteError::Sequence {
                offset,
                what: format!("a key starts while key \"{}\" is still open", show_key(&open.start.key)),
            });
        }
        let db = u32::try_from(start.db).ok().and_then(|db| match &self.opts.db_map {
            None => Some(db),
            Some(map) => map.get(&db).copied(),
        });
        match db {
            None => self.stats.filtered += 1,
            Some(db) => {
                if start.kind == ValueKind::Stream && !self.opts.caps.streams() {
                    return Err(RewriteError::NoStreams {
                        db: start.db,
                        key: show_key(&start.key),
                        version: self.opts.caps.version.to_string(),
                    });
                }
                if self.current_db != Some(db) {
                    let origin = Origin { db, key: Bytes::new(), offset };
                    out.push(ApplyCmd::new(Cmd::new("SELECT").arg(db.to_string()), origin).rule(ReplyRule::Select));
                    self.current_db = Some(db);
                }
            }
        }
        // The key name is the parser's own small copy (its arena, since the
        // engine asks for payloads), not a slice of the reader's buffer, so
        // it is kept as it is.
        self.key =
            Some(KeyState { start, db, offset, phase: Phase::Buffer { chunks: Vec::new(), bytes: 0 }, module: None });
        Ok(())
    }

    fn chunk(&mut self, chunk: Chunk, offset: u64, now_ms: i64, out: &mut Vec<ApplyCmd>) -> Result<(), RewriteError> {
        let Some(state) = self.key.as_mut() else {
            return Err(RewriteError::Sequence { offset, what: "a value chunk outside any key".to_owned() });
        };
        let Some(db) = state.db else { return Ok(()) };
        if let Chunk::Module(m) = &chunk {
            state.module = Some(m.name.clone());
        }
        match &mut state.phase {
            Phase::Build { emit, .. } => {
                emit.now_ms = now_ms;
                emit.chunk(chunk, out);
            }
            Phase::Buffer { chunks, bytes } => {
                *bytes += chunk_bytes(&chunk);
                chunks.push(chunk);
                if *bytes > self.opts.buffer_bytes && state.module.is_none() {
                    // Too big to hold: build it under a temporary name from here on.
                    let chunks = std::mem::take(chunks);
                    let id = self.next_build;
                    self.next_build += 1;
                    let temp = temp_name(&state.start.key, &self.temp_tag);
                    let origin = Origin { db, key: state.start.key.clone(), offset: state.offset };
                    let mut start_cmd = ApplyCmd::new(Cmd::new("DEL").arg(&temp), origin.clone());
                    start_cmd.build = Some(Build { id, step: BuildStep::Start });
                    out.push(start_cmd);
                    let mut emit = Box::new(Emitter::new(&self.opts, temp.clone(), origin, Some(id), now_ms));
                    for c in chunks {
                        emit.chunk(c, out);
                    }
                    state.phase = Phase::Build { id, temp, emit };
                }
            }
        }
        Ok(())
    }

    fn key_end(
        &mut self,
        payload: Option<Bytes>,
        offset: u64,
        now_ms: i64,
        out: &mut Vec<ApplyCmd>,
    ) -> Result<(), RewriteError> {
        let Some(state) = self.key.take() else {
            return Err(RewriteError::Sequence { offset, what: "a key end outside any key".to_owned() });
        };
        let Some(db) = state.db else { return Ok(()) };
        let start = &state.start;
        let origin = Origin { db, key: start.key.clone(), offset: state.offset };
        let expire = start.expire_at_ms.map(|at| self.grace(at, now_ms));
        let caps = &self.opts.caps;
        if let Some(module) = state.module.as_ref().filter(|_| self.opts.modules != ModuleKeys::Restore) {
            if self.opts.modules == ModuleKeys::Fail {
                return Err(RewriteError::ModulePolicy {
                    db: start.db,
                    key: show_key(&start.key),
                    module: module.clone(),
                });
            }
            self.stats.module_skipped += 1;
            self.warnings.push(RewriteWarning {
                db: u64::from(db),
                key: start.key.clone(),
                message: format!("holds a value of module `{module}`: left out (sync.modules = \"skip\")"),
            });
            return Ok(());
        }
        match state.phase {
            Phase::Buffer { chunks, .. } => {
                let restorable = payload
                    .filter(|p| p.len() <= self.opts.big_key_bytes && self.opts.big_key_bytes > 0)
                    .filter(|p| match self.rdb_version {
                        Some(version) => caps.accepts_version(version),
                        None => caps.accepts_payload(p),
                    });
                if let Some(payload) = restorable {
                    self.restore(origin, payload, expire, now_ms, out);
                    self.stats.restored += 1;
                } else if state.start.undecoded {
                    return Err(RewriteError::Undecoded {
                        db: start.db,
                        key: show_key(&start.key),
                        offset: state.offset,
                    });
                } else if let Some(module) = state.module {
                    let why = if !caps.restore() {
                        format!("the destination (Redis {}) has no RESTORE", caps.version)
                    } else if self.opts.big_key_bytes == 0 {
                        "the big-key limit is 0 (commands only)".to_owned()
                    } else {
                        format!(
                            "its payload is missing, larger than the big-key limit, or newer than the destination's RDB version {}",
                            caps.rdb_version
                        )
                    };
                    return Err(RewriteError::Module { db: start.db, key: show_key(&start.key), module, why });
                } else {
                    self.unit(&state.start, origin, chunks, expire, now_ms, out);
                    self.stats.rewritten += 1;
                }
            }
            Phase::Build { id, temp, mut emit } => {
                emit.finish(out);
                self.collect(&mut emit);
                self.finish_build(id, temp, origin, expire, out);
                self.stats.rewritten += 1;
                self.stats.built += 1;
            }
        }
        self.stats.keys += 1;
        Ok(())
    }

    /// The expiry to write: at least now + grace (counted).
    fn grace(&mut self, at: i64, now_ms: i64) -> i64 {
        let floor = now_ms.saturating_add(self.opts.ttl_grace_ms);
        if at <= now_ms {
            self.stats.ttl_expired += 1;
            floor
        } else if at < floor {
            self.stats.ttl_raised += 1;
            floor
        } else {
            at
        }
    }

    fn restore(&mut self, origin: Origin, payload: Bytes, expire: Option<i64>, now_ms: i64, out: &mut Vec<ApplyCmd>) {
        let caps = self.opts.caps;
        let ttl = match expire {
            None => 0,
            Some(at) if caps.abs_ttl() => at,
            Some(at) => (at - now_ms).max(1),
        };
        let replace = self.opts.conflict == Conflict::Overwrite && caps.restore_replace();
        // Most keys have no TTL: their RESTORE is built without an argument
        // vector (`Cmd::restore`).
        let cmd = if expire.is_none() {
            Cmd::restore(origin.key.clone(), payload, replace)
        } else {
            let ttl = if ttl == 0 { word("0") } else { num(ttl) };
            let cmd =
                Cmd::with_capacity("RESTORE", 5).arg_bytes(origin.key.clone()).arg_bytes(ttl).arg_dump_payload(payload);
            let cmd = if caps.abs_ttl() { cmd.arg_bytes(word("ABSTTL")) } else { cmd };
            if replace {
                cmd.arg_bytes(word("REPLACE"))
            } else {
                cmd
            }
        };
        match self.opts.conflict {
            Conflict::Overwrite if replace => {
                out.push(ApplyCmd::new(cmd, origin).ends_key());
            }
            Conflict::Overwrite => {
                let del = Cmd::new("DEL").arg(&origin.key);
                push_unit(out, &origin, vec![ApplyCmd::new(del, origin.clone()), ApplyCmd::new(cmd, origin.clone())]);
            }
            Conflict::Intercept | Conflict::Skip => {
                out.push(ApplyCmd::new(cmd, origin).rule(ReplyRule::IfAbsent { temp: None }).ends_key());
            }
        }
    }

    /// A key that fitted in the buffer, as one atomic unit.
    fn unit(
        &mut self,
        start: &KeyStart,
        origin: Origin,
        chunks: Vec<Chunk>,
        expire: Option<i64>,
        now_ms: i64,
        out: &mut Vec<ApplyCmd>,
    ) {
        let caps = self.opts.caps;
        let overwrite = self.opts.conflict == Conflict::Overwrite;
        // A string in one piece is a single SET, atomic by itself.
        let single = match chunks.as_slice() {
            [] => Some(Bytes::new()),
            [Chunk::String(b)] if b.len() <= self.opts.chunk_bytes => Some(b.clone()),
            _ => None,
        };
        if let Some(value) = single.filter(|_| start.kind == ValueKind::String && caps.set_nx_px()) {
            let mut cmd = Cmd::new("SET").arg_bytes(origin.key.clone()).arg_bytes(value);
            match expire {
                Some(at) if caps.set_pxat() => cmd = cmd.arg_bytes(word("PXAT")).arg_bytes(num(at)),
                Some(at) => cmd = cmd.arg_bytes(word("PX")).arg_bytes(num((at - now_ms).max(1))),
                None => {}
            }
            let rule = if overwrite {
                ReplyRule::Ok
            } else {
                cmd = cmd.arg_bytes(word("NX"));
                ReplyRule::IfAbsent { temp: None }
            };
            out.push(ApplyCmd::new(cmd, origin).rule(rule).ends_key());
            return;
        }
        let target = if overwrite { origin.key.clone() } else { temp_name(&origin.key, &self.temp_tag) };
        let mut inner = vec![ApplyCmd::new(Cmd::new("DEL").arg(&target), origin.clone())];
        let mut emit = Emitter::new(&self.opts, target.clone(), origin.clone(), None, now_ms);
        for c in chunks {
            emit.chunk(c, &mut inner);
        }
        emit.finish(&mut inner);
        self.collect(&mut emit);
        if let Some(at) = expire {
            inner.push(ApplyCmd::new(Cmd::new("PEXPIREAT").arg(&target).arg(at.to_string()), origin.clone()));
        }
        if !overwrite {
            let rename = Cmd::new("RENAMENX").arg(&target).arg(&origin.key);
            inner.push(ApplyCmd::new(rename, origin.clone()).rule(ReplyRule::IfAbsent { temp: Some(target) }));
        }
        push_unit(out, &origin, inner);
    }

    fn finish_build(&mut self, id: u64, temp: Bytes, origin: Origin, expire: Option<i64>, out: &mut Vec<ApplyCmd>) {
        let (rename, rule) = match self.opts.conflict {
            Conflict::Overwrite => (Cmd::new("RENAME").arg(&temp).arg(&origin.key), ReplyRule::Ok),
            Conflict::Intercept | Conflict::Skip => {
                (Cmd::new("RENAMENX").arg(&temp).arg(&origin.key), ReplyRule::IfAbsent { temp: Some(temp.clone()) })
            }
        };
        let rename = ApplyCmd::new(rename, origin.clone()).rule(rule);
        let mut cmds = match expire {
            None => vec![rename],
            Some(at) => {
                let expire = ApplyCmd::new(Cmd::new("PEXPIREAT").arg(&temp).arg(at.to_string()), origin.clone());
                let mut unit = Vec::new();
                push_unit(&mut unit, &origin, vec![expire, rename]);
                unit
            }
        };
        for c in &mut cmds {
            c.build = Some(Build { id, step: BuildStep::Finish });
        }
        cmds[0].guard = Some(Box::new(Guard::Renamed { temp }));
        if let Some(last) = cmds.last_mut() {
            last.ends_key = true;
        }
        out.extend(cmds);
    }

    fn collect(&mut self, emit: &mut Emitter) {
        if emit.field_ttls_dropped > 0 {
            self.stats.field_ttls_dropped += emit.field_ttls_dropped;
            self.warnings.push(RewriteWarning {
                db: u64::from(emit.origin.db),
                key: emit.origin.key.clone(),
                message: format!(
                    "{} hash field TTL(s) dropped: the destination (Redis {}) has no field TTLs (7.4+)",
                    emit.field_ttls_dropped, self.opts.caps.version
                ),
            });
        }
        for message in emit.warnings.drain(..) {
            self.warnings.push(RewriteWarning { db: u64::from(emit.origin.db), key: emit.origin.key.clone(), message });
        }
        self.stats.field_ttls_expired += emit.field_ttls_expired;
    }
}

/// A `RESTORE` of the command stream whose payload's RDB version the
/// destination does not read, as native commands: the payload (a value in
/// the RDB format, then the version and a CRC64) is read by the RDB parser
/// as a one-key file, and written like a snapshot key that replaces the
/// destination's (the source's `RESTORE` applied, so the key is the
/// source's now). `args`: `RESTORE key ttl payload [REPLACE] [ABSTTL]
/// [IDLETIME s] [FREQ f]`; the commands go to destination DB `db`, without
/// a `SELECT` (the stream's layout adds it), their `MULTI`/`EXEC` markers
/// kept for a caller that sends them outside a checkpointed batch.
pub fn restore_as_commands(
    args: &[Bytes],
    caps: DestCaps,
    db: u32,
    offset: u64,
    now_ms: i64,
) -> Result<Vec<ApplyCmd>, String> {
    let (Some(key), Some(ttl), Some(payload)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("RESTORE without key, TTL and payload".to_owned());
    };
    if payload.len() < 11 {
        return Err(format!("a RESTORE payload of {} bytes is too short to be one", payload.len()));
    }
    let version = super::caps::payload_rdb_version(payload).unwrap_or(0);
    let body = &payload[..payload.len() - 10];
    let header = if version >= 80 { format!("VALKEY{version:03}") } else { format!("REDIS{version:04}") };
    let mut file = Vec::with_capacity(body.len() + key.len() + 32);
    file.extend_from_slice(header.as_bytes());
    // SELECTDB 0, then the value's type byte, the key (a plain RDB string),
    // the value, EOF and a zero (disabled) checksum.
    file.extend_from_slice(&[0xFE, 0]);
    file.push(body[0]);
    push_rdb_len(&mut file, key.len());
    file.extend_from_slice(key);
    file.extend_from_slice(&body[1..]);
    file.push(0xFF);
    file.extend_from_slice(&[0; 8]);
    let abs = args.iter().skip(4).any(|a| a.eq_ignore_ascii_case(b"ABSTTL"));
    let ttl: i64 = std::str::from_utf8(ttl).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
    let expire = match (ttl, abs) {
        (0, _) => None,
        (t, true) => Some(t),
        (t, false) => Some(now_ms + t),
    };
    let mut opts = RewriteOptions::new(caps, Conflict::Overwrite);
    // Commands only, one unit whatever the size: the value is in memory
    // already (it came as one command).
    opts.big_key_bytes = 0;
    opts.buffer_bytes = usize::MAX;
    let mut rw = Rewriter::new(opts);
    let mut out = Vec::new();
    let mut reader = crate::rdb::RdbReader::new(&file[..]);
    let mut cmds = Vec::new();
    loop {
        let event = match reader.next_event() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(format!("the RESTORE payload (RDB version {version}) is unreadable: {e}")),
        };
        let event = match event {
            Event::KeyStart(mut k) => {
                k.db = u64::from(db);
                k.expire_at_ms = expire;
                Event::KeyStart(k)
            }
            e => e,
        };
        rw.feed(event, offset, now_ms, &mut out).map_err(|e| e.to_string())?;
        cmds.append(&mut out);
    }
    Ok(cmds
        .into_iter()
        .filter(|c| c.rule != ReplyRule::Select)
        .map(|mut c| {
            // A stream command, not a snapshot key: not in the key accounting.
            c.ends_key = false;
            c.origin = Origin { db, key: key.clone(), offset };
            c
        })
        .collect())
}

/// An RDB length: 6-bit, 14-bit or 32-bit big-endian form.
fn push_rdb_len(out: &mut Vec<u8>, len: usize) {
    if len < 64 {
        out.push(len as u8);
    } else if len < 16384 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// A command word without an allocation.
fn word(w: &'static str) -> Bytes {
    Bytes::from_static(w.as_bytes())
}

/// A number as an argument, with one allocation.
fn num(n: impl std::fmt::Display) -> Bytes {
    Bytes::from(n.to_string())
}

/// `MULTI`, the commands, `EXEC`: the whole of one key, so the `EXEC` ends it.
fn push_unit(out: &mut Vec<ApplyCmd>, origin: &Origin, inner: Vec<ApplyCmd>) {
    out.push(ApplyCmd::new(Cmd::new("MULTI"), origin.clone()).rule(ReplyRule::Multi));
    out.extend(inner);
    out.push(ApplyCmd::new(Cmd::new("EXEC"), origin.clone()).rule(ReplyRule::Exec).ends_key());
}

/// The temporary name for `key` (see the module docs).
pub fn temp_name(key: &[u8], tag: &[u8]) -> Bytes {
    let mut name = BytesMut::with_capacity(key.len() + tag.len() + 3);
    if has_hash_tag(key) || key.is_empty() || key.contains(&b'}') {
        name.put_slice(key);
    } else {
        name.put_u8(b'{');
        name.put_slice(key);
        name.put_u8(b'}');
    }
    name.put_u8(b':');
    name.put_slice(tag);
    name.freeze()
}

/// Redis Cluster's rule: a `{` followed, later, by a `}` with at least one
/// byte between them.
fn has_hash_tag(key: &[u8]) -> bool {
    key.iter()
        .position(|&b| b == b'{')
        .is_some_and(|open| key[open + 1..].iter().position(|&b| b == b'}').is_some_and(|close| close > 0))
}

/// A zset score as text that parses back to the same double: the shortest
/// round-trip form (Rust's `Debug` for `f64`), `inf`/`-inf` for infinities.
pub fn format_score(score: f64) -> String {
    if score.is_infinite() {
        if score > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{score:?}")
    }
}

/// Memory a chunk holds, for the buffer budget: element handles count, so
/// a million tiny fields are not mistaken for a few megabytes.
fn chunk_bytes(chunk: &Chunk) -> usize {
    chunk.mem_bytes()
}

/// Turns one key's chunks into commands on `target`: as parts of a build
/// (tagged, with guards) or as the inside of a unit (untagged).
#[derive(Debug)]
struct Emitter {
    target: Bytes,
    origin: Origin,
    build: Option<u64>,
    caps: DestCaps,
    chunk_items: usize,
    chunk_bytes: usize,
    /// Written so far: string bytes, list elements, stream entries.
    written: u64,
    stream: StreamState,
    field_ttls_dropped: u64,
    field_ttls_expired: u64,
    warnings: Vec<String>,
    grace_ms: i64,
    /// The time of the event being turned into commands.
    now_ms: i64,
}

#[derive(Debug, Default)]
struct StreamState {
    meta_done: bool,
    group: Option<Bytes>,
    /// The current group's PEL: delivery time and count per ID, needed when
    /// the consumers' PELs (IDs only) come.
    pel: HashMap<StreamId, (i64, u64)>,
    consumer: Option<Bytes>,
    /// The current consumer has pending entries (so `XCLAIM` created it).
    consumer_claimed: bool,
}

impl Emitter {
    fn new(opts: &RewriteOptions, target: Bytes, origin: Origin, build: Option<u64>, now_ms: i64) -> Self {
        Emitter {
            target,
            origin,
            build,
            caps: opts.caps,
            chunk_items: opts.chunk_items.max(1),
            chunk_bytes: opts.chunk_bytes.max(1),
            written: 0,
            stream: StreamState::default(),
            field_ttls_dropped: 0,
            field_ttls_expired: 0,
            warnings: Vec::new(),
            grace_ms: opts.ttl_grace_ms,
            now_ms,
        }
    }

    fn part(&self, cmd: Cmd, free: bool) -> ApplyCmd {
        let mut c = ApplyCmd::new(cmd, self.origin.clone());
        if let Some(id) = self.build {
            c.build = Some(Build { id, step: BuildStep::Part });
            c.free = free;
        }
        c
    }

    fn cmd(&self, name: &'static str) -> Cmd {
        Cmd::new(name).arg_bytes(self.target.clone())
    }

    /// A command on the target with room for `args` more arguments.
    fn cmd_for(&self, name: &'static str, args: usize) -> Cmd {
        Cmd::with_capacity(name, args + 1).arg_bytes(self.target.clone())
    }

    fn chunk(&mut self, chunk: Chunk, out: &mut Vec<ApplyCmd>) {
        match chunk {
            Chunk::String(b) => self.string(b, out),
            Chunk::ListItems(items) => {
                for group in split(&items, self.chunk_items, self.chunk_bytes, |b| b.len()) {
                    let mut cmd = self.cmd_for("RPUSH", group.len());
                    for item in group {
                        cmd = cmd.arg_bytes(item.clone());
                    }
                    self.written += group.len() as u64;
                    let mut c = self.part(cmd, false);
                    if self.build.is_some() {
                        c.guard = Some(Box::new(Guard::ListLen { temp: self.target.clone(), after: self.written }));
                    }
                    out.push(c);
                }
            }
            Chunk::SetMembers(members) => {
                for group in split(&members, self.chunk_items, self.chunk_bytes, |b| b.len()) {
                    let mut cmd = self.cmd_for("SADD", group.len());
                    for m in group {
                        cmd = cmd.arg_bytes(m.clone());
                    }
                    out.push(self.part(cmd, true));
                }
            }
            Chunk::ZsetMembers(members) => {
                for group in split(&members, self.chunk_items, self.chunk_bytes, |(m, _)| m.len() + 24) {
                    let mut cmd = self.cmd_for("ZADD", 2 * group.len());
                    for (m, score) in group {
                        cmd = cmd.arg_bytes(Bytes::from(format_score(*score))).arg_bytes(m.clone());
                    }
                    out.push(self.part(cmd, true));
                }
            }
            Chunk::HashFields(fields) => self.hash(&fields, out),
            Chunk::StreamEntries(entries) => {
                for e in entries {
                    if e.fields.is_empty() {
                        self.warnings.push(format!("stream entry {} has no fields and was skipped", e.id));
                        continue;
                    }
                    let mut cmd = self.cmd("XADD");
                    cmd = cmd.arg_bytes(num(e.id));
                    for f in e.fields {
                        cmd = cmd.arg_bytes(f);
                    }
                    self.written += 1;
                    out.push(self.part(cmd, false).rule(ReplyRule::StreamAdd));
                }
            }
            Chunk::StreamMeta(meta) => self.stream_meta(&meta, out),
            Chunk::StreamGroup(group) => {
                self.flush_consumer(out);
                let mut cmd = Cmd::new("XGROUP").arg("CREATE").arg(&self.target).arg(&group.name);
                cmd.push_arg(group.last_id.to_string());
                // The RDB stores "unknown" as -1 in an unsigned length.
                if let Some(read) = group.entries_read.filter(|&n| n <= i64::MAX as u64) {
                    if self.caps.stream_v2_meta() {
                        cmd.push_arg("ENTRIESREAD");
                        cmd.push_arg(read.to_string());
                    }
                }
                out.push(self.part(cmd, false).rule(ReplyRule::GroupCreate));
                self.stream.group = Some(group.name);
                self.stream.pel.clear();
            }
            Chunk::StreamGroupPending(pel) => {
                for PendingEntry { id, delivery_time_ms, delivery_count } in pel {
                    self.stream.pel.insert(id, (delivery_time_ms, delivery_count));
                }
            }
            Chunk::StreamConsumer(consumer) => {
                self.flush_consumer(out);
                self.stream.consumer = Some(consumer.name);
                self.stream.consumer_claimed = false;
            }
            Chunk::StreamConsumerPending(ids) => self.claim(&ids, out),
            Chunk::Module(_) => {}
        }
    }

    fn string(&mut self, value: Bytes, out: &mut Vec<ApplyCmd>) {
        if value.is_empty() && self.written == 0 {
            out.push(self.part(self.cmd("SET").arg(""), false));
            return;
        }
        // SETRANGE at the piece's own offset: pieces commute and a repeat
        // rewrites the same bytes, so strings need no guard.
        for piece in value.chunks(self.chunk_bytes) {
            let cmd = self.cmd("SETRANGE").arg_bytes(num(self.written)).arg_bytes(value.slice_ref(piece));
            self.written += piece.len() as u64;
            out.push(self.part(cmd, true));
        }
    }

    fn hash(&mut self, fields: &[HashField], out: &mut Vec<ApplyCmd>) {
        let name = if self.caps.hset_multi() { "HSET" } else { "HMSET" };
        for group in split(fields, self.chunk_items, self.chunk_bytes, |f| f.field.len() + f.value.len()) {
            let mut cmd = self.cmd_for(name, 2 * group.len());
            for f in group {
                cmd = cmd.arg_bytes(f.field.clone()).arg_bytes(f.value.clone());
            }
            out.push(self.part(cmd, true));
            // Field TTLs right after their fields, grouped by expiry time.
            let mut by_time: BTreeMap<i64, Vec<&Bytes>> = BTreeMap::new();
            for f in group {
                if let Some(at) = f.expire_at_ms {
                    by_time.entry(at).or_default().push(&f.field);
                }
            }
            if by_time.is_empty() {
                continue;
            }
            if !self.caps.hash_field_ttl() {
                self.field_ttls_dropped += by_time.values().map(|v| v.len() as u64).sum::<u64>();
                continue;
            }
            for (at, names) in by_time {
                // Field expiries get the grace, like keys.
                let floor = self.now_ms.saturating_add(self.grace_ms);
                if at <= self.now_ms {
                    self.field_ttls_expired += names.len() as u64;
                }
                let at = at.max(floor);
                let mut cmd = self.cmd("HPEXPIREAT").arg(at.to_string()).arg("FIELDS").arg(names.len().to_string());
                for n in names {
                    cmd.push_arg(n);
                }
                out.push(self.part(cmd, false));
            }
        }
    }

    fn stream_meta(&mut self, meta: &StreamMeta, out: &mut Vec<ApplyCmd>) {
        if self.written == 0 {
            // No entry created the stream: make an empty one.
            let probe = "shardsync-mkstream";
            let create = Cmd::new("XGROUP").arg("CREATE").arg(&self.target).arg(probe).arg("0").arg("MKSTREAM");
            out.push(self.part(create, false).rule(ReplyRule::GroupCreate));
            out.push(self.part(Cmd::new("XGROUP").arg("DESTROY").arg(&self.target).arg(probe), false));
        }
        let mut cmd = self.cmd("XSETID").arg(meta.last_id.to_string());
        if self.caps.stream_v2_meta() {
            if let (Some(added), Some(max_deleted)) = (meta.entries_added, meta.max_deleted_id) {
                cmd = cmd.arg("ENTRIESADDED").arg(added.to_string()).arg("MAXDELETEDID").arg(max_deleted.to_string());
            }
        }
        out.push(self.part(cmd, false));
        self.stream.meta_done = true;
    }

    fn claim(&mut self, ids: &[StreamId], out: &mut Vec<ApplyCmd>) {
        let (Some(group), Some(consumer)) = (self.stream.group.clone(), self.stream.consumer.clone()) else {
            self.warnings.push("consumer pending entries outside a consumer were skipped".to_owned());
            return;
        };
        self.stream.consumer_claimed = true;
        // One XCLAIM per run of IDs that share delivery time and count
        // (XCLAIM's TIME and RETRYCOUNT apply to all its IDs).
        let mut run: Vec<StreamId> = Vec::new();
        let mut run_key: Option<(i64, u64)> = None;
        for id in ids {
            let Some(&key) = self.stream.pel.get(id) else {
                self.warnings.push(format!("pending entry {id} of a consumer is missing from its group's PEL"));
                continue;
            };
            if run_key != Some(key) || run.len() >= self.chunk_items {
                if let Some(k) = run_key {
                    out.push(self.xclaim(&group, &consumer, &run, k));
                }
                run.clear();
                run_key = Some(key);
            }
            run.push(*id);
        }
        if let Some(k) = run_key.filter(|_| !run.is_empty()) {
            out.push(self.xclaim(&group, &consumer, &run, k));
        }
    }

    fn xclaim(&self, group: &Bytes, consumer: &Bytes, ids: &[StreamId], (time, count): (i64, u64)) -> ApplyCmd {
        let mut cmd = self.cmd("XCLAIM").arg(group).arg(consumer).arg("0");
        for id in ids {
            cmd.push_arg(id.to_string());
        }
        cmd = cmd.arg("TIME").arg(time.to_string()).arg("RETRYCOUNT").arg(count.to_string()).arg("FORCE").arg("JUSTID");
        self.part(cmd, false)
    }

    /// Creates the current consumer if no `XCLAIM` did.
    fn flush_consumer(&mut self, out: &mut Vec<ApplyCmd>) {
        let Some(consumer) = self.stream.consumer.take() else { return };
        if self.stream.consumer_claimed {
            return;
        }
        let Some(group) = self.stream.group.clone() else { return };
        let cmd = if self.caps.create_consumer() {
            Cmd::new("XGROUP").arg("CREATECONSUMER").arg(&self.target).arg(&group).arg(&consumer)
        } else {
            // Reading one's own history (ID 0, not `>`) delivers nothing
            // and does not block, but creates the consumer.
            Cmd::new("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(&consumer)
                .arg("COUNT")
                .arg("1")
                .arg("STREAMS")
                .arg(&self.target)
                .arg("0")
        };
        out.push(self.part(cmd, false));
    }

    fn finish(&mut self, out: &mut Vec<ApplyCmd>) {
        self.flush_consumer(out);
    }
}

/// Splits `items` into groups of at most `max_items` and about `max_bytes`
/// (a single item larger than `max_bytes` is a group of its own).
fn split<T>(items: &[T], max_items: usize, max_bytes: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && (i - start >= max_items || bytes + n > max_bytes) {
            groups.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += n;
    }
    if start < items.len() {
        groups.push(&items[start..]);
    }
    groups
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
