//! The consumer thread of a shard: reads the spool back (the RDB through
//! the parser, then the command stream through the filter) and hands the
//! applier [`Item`]s in small batches over a bounded channel, which is where
//! a slow destination pushes back (the reader keeps spooling to disk).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::error::EngineError;
use super::filter::{Action, StreamFilter};
use crate::rdb::{Event, KeyTally, ParserOptions, RdbReader};
use crate::source::{PsyncEvent, ReplicationStream, SourceError};

/// Why the consumer stopped before the link's end; the applier names the
/// shard ([`Failure::into_error`]).
#[derive(Debug)]
pub enum Failure {
    /// The spooled replication stream could not be read.
    Stream(SourceError),
    /// The master answered the sync with an error reply.
    MasterRefused(String),
    /// The snapshot could not be parsed.
    Snapshot(crate::rdb::RdbError),
}

impl Failure {
    pub(super) fn into_error(self, shard: &str) -> EngineError {
        let shard = shard.to_owned();
        match self {
            Failure::Stream(source) => EngineError::Source { shard, source: Box::new(source) },
            Failure::MasterRefused(message) => EngineError::MasterRefused { shard, message },
            Failure::Snapshot(source) => EngineError::Snapshot { shard, source: Box::new(source) },
        }
    }
}

/// Items from the consumer thread to the applier.
pub enum Item {
    /// A full resynchronization begins: the command stream after the
    /// snapshot starts at `offset`.
    FullResync {
        replid: String,
        offset: u64,
    },
    /// The master continues a previous session.
    Continue {
        replid: Option<String>,
    },
    /// An RDB event, with the RDB bytes read so far.
    Rdb {
        event: Event,
        rdb_offset: u64,
    },
    /// Lua scripts (`lua` aux fields) and function libraries from the RDB,
    /// loaded on the destination so `EVALSHA`/`FCALL` never miss.
    Script(Bytes),
    Function(Bytes),
    /// The snapshot is complete: what it held, for the key accounting.
    RdbDone(Box<SnapshotTally>),
    /// A filtered stream command, at replication offset `offset` (after it),
    /// `position` in the spool; `source_db`: the source DB the stream is in
    /// after it (what a resume from `offset` must start in).
    Stream {
        action: Action,
        offset: u64,
        position: u64,
        source_db: u32,
    },
    /// Something skipped while reading the snapshot (an empty collection,
    /// a module value): shown as an alert.
    Warning(String),
    /// The consumer stopped on an error.
    Failed(Failure),
}

impl Item {
    /// Roughly the memory the item holds, for [`AHEAD_LIMIT`].
    pub fn mem_bytes(&self) -> u64 {
        let n = match self {
            Item::Rdb { event: Event::Chunk(c), .. } => c.mem_bytes(),
            Item::Rdb { event: Event::KeyEnd { payload: Some(p) }, .. } => p.len(),
            Item::Rdb { event: Event::KeyStart(k), .. } => k.key.len() + 128,
            Item::Script(b) | Item::Function(b) => b.len(),
            Item::Stream { action: Action::Apply { cmd, .. }, .. } => {
                cmd.payload_len() + cmd.arg_count() * std::mem::size_of::<Bytes>()
            }
            _ => 128,
        };
        n as u64
    }
}

/// The tool's own keys (`docs/task-file.md`): the heartbeat key and the checkpoint
/// keys `<heartbeat>:ckpt:<shard>`. A snapshot can hold them (the heartbeat
/// is written before the fork; a source may itself be a former destination),
/// and they are never copied.
#[derive(Clone)]
pub struct OwnKeys {
    heartbeat: Bytes,
    ckpt_prefix: Bytes,
}

impl OwnKeys {
    pub fn new(heartbeat_key: &str) -> Self {
        OwnKeys {
            heartbeat: Bytes::copy_from_slice(heartbeat_key.as_bytes()),
            ckpt_prefix: Bytes::from(format!("{heartbeat_key}:ckpt:")),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key == self.heartbeat.as_ref() || key.starts_with(&self.ckpt_prefix)
    }
}

/// What the consumer read of a snapshot: the parser's count of keys (per
/// DB, and what the snapshot's `RESIZEDB` declared), and the tool's own keys
/// it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotTally {
    pub read: KeyTally,
    pub own: u64,
    /// The snapshot's RDB version.
    pub version: u32,
}

/// Items per channel message.
const OUTBOX_ITEMS: usize = 256;

/// The consumer's side of the channel: items are handed over in batches, at
/// once when nothing more is at hand (so a lone command is not delayed).
pub(super) struct Outbox {
    tx: mpsc::Sender<Vec<Item>>,
    items: Vec<Item>,
    marks: Arc<Marks>,
    /// [`Item::mem_bytes`] of every item sent.
    sent: u64,
}

/// What the applier tells the consumer; it wakes the consumer only when
/// the consumer is waiting for room (see [`Marks::took`]).
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// Spool position up to which everything is applied: segments before
    /// it can be deleted.
    pub release: AtomicU64,
    /// [`Item::mem_bytes`] of every item the applier took.
    consumed: AtomicU64,
    /// Set by a consumer about to wait for room, under `room`'s lock.
    waiting: AtomicBool,
    room: Mutex<()>,
    taken: Condvar,
}

/// How long a consumer waiting for room sleeps at most before it looks
/// again whether the applier is gone (its channel closed): a bound on how
/// late a stop is heard, not a polling interval (the applier wakes it).
const ROOM_RECHECK: Duration = Duration::from_millis(100);

impl Marks {
    /// The applier took an item of `bytes`: a consumer waiting for room is
    /// woken. A lock and a wake-up only while one waits, so the common case
    /// costs one atomic add and one load.
    pub(super) fn took(&self, bytes: u64) {
        self.consumed.fetch_add(bytes, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) {
            let _room = self.room.lock();
            self.taken.notify_one();
        }
    }

    pub(super) fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::SeqCst)
    }

    /// Blocks until `full` is false or `gone` is true. The flag is raised
    /// before `full` is looked at again under the lock, so an item taken in
    /// between either shows in that look or wakes the wait.
    fn wait_for_room(&self, full: impl Fn(u64) -> bool, gone: impl Fn() -> bool) {
        let Ok(mut guard) = self.room.lock() else { return };
        loop {
            self.waiting.store(true, Ordering::SeqCst);
            if !full(self.consumed()) || gone() {
                break;
            }
            guard = match self.taken.wait_timeout(guard, ROOM_RECHECK) {
                Ok((g, _)) => g,
                Err(_) => break,
            };
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

/// How much (by [`Item::mem_bytes`]) the consumer may hand over ahead of
/// the applier. An item count alone bounds nothing when one item can be a
/// megabyte piece of a big key, or a thousand list elements decoded from a
/// few kilobytes of compressed RDB.
pub(super) const AHEAD_LIMIT: u64 = 4 << 20;

impl Outbox {
    /// False once the applier is gone.
    fn push(&mut self, item: Item, more_at_hand: bool) -> bool {
        self.items.push(item);
        if self.items.len() >= OUTBOX_ITEMS || !more_at_hand {
            return self.flush();
        }
        true
    }

    /// Hands `item` over (see [`Outbox::push`]) once what is in flight
    /// leaves room for it (see [`AHEAD_LIMIT`]); false once the applier is gone.
    fn send(&mut self, item: Item, more_at_hand: bool) -> bool {
        let weight = item.mem_bytes();
        if self.sent + weight > self.marks.consumed() + AHEAD_LIMIT {
            // What is held here must reach the applier for it to catch up.
            if !self.flush() {
                return false;
            }
            // A single item bigger than the limit goes once all else is taken.
            let sent = self.sent;
            let full = |consumed: u64| sent + weight > consumed + AHEAD_LIMIT && sent > consumed;
            self.marks.wait_for_room(full, || self.tx.is_closed());
            if self.tx.is_closed() {
                return false;
            }
        }
        self.sent += weight;
        self.push(item, more_at_hand)
    }

    fn flush(&mut self) -> bool {
        if self.items.is_empty() {
            return true;
        }
        let items = std::mem::replace(&mut self.items, Vec::with_capacity(OUTBOX_ITEMS));
        self.tx.blocking_send(items).is_ok()
    }
}

/// The consumer thread: spool → items. Blocking.
pub(super) fn consume(
    stream: &mut ReplicationStream,
    mut filter: StreamFilter,
    own_keys: OwnKeys,
    parse: ParserOptions,
    marks: Arc<Marks>,
    tx: mpsc::Sender<Vec<Item>>,
) {
    let mut out = Outbox { tx, items: Vec::with_capacity(OUTBOX_ITEMS), marks: marks.clone(), sent: 0 };
    let mut released = 0u64;
    loop {
        let ev = match stream.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                out.flush();
                return;
            }
            Err(e) => {
                out.push(Item::Failed(Failure::Stream(e)), false);
                return;
            }
        };
        let more = stream.has_buffered();
        let ok = match ev {
            PsyncEvent::FullResync { replid, offset } => out.push(Item::FullResync { replid, offset }, more),
            PsyncEvent::Continue { new_replid } => out.push(Item::Continue { replid: new_replid }, more),
            PsyncEvent::MasterError { message } => {
                out.push(Item::Failed(Failure::MasterRefused(message)), false);
                return;
            }
            PsyncEvent::RdbBegin { .. } => {
                let Some(tally) = consume_rdb(stream, &own_keys, parse.clone(), &mut out) else {
                    return;
                };
                out.push(Item::RdbDone(Box::new(tally)), false)
            }
            PsyncEvent::RdbData(_) | PsyncEvent::RdbEnd | PsyncEvent::KeepAlive => true,
            PsyncEvent::Command(c) => {
                let position = stream.position();
                let action = filter.filter(c.cmd);
                let source_db = filter.source_db();
                out.send(Item::Stream { action, offset: c.offset, position, source_db }, more)
            }
        };
        if !ok {
            return;
        }
        // Release spool segments in steps, not per command.
        let r = marks.release.load(Ordering::Relaxed);
        if r > released + (1 << 20) && stream.release_upto(r).is_ok() {
            released = r;
        }
    }
}

/// The snapshot: RDB events, minus the tool's own keys, plus its scripts
/// and functions; then what it held. `None` when the consumer must stop.
fn consume_rdb(
    stream: &mut ReplicationStream,
    own_keys: &OwnKeys,
    opts: ParserOptions,
    out: &mut Outbox,
) -> Option<SnapshotTally> {
    let mut rdb = RdbReader::with_options(stream.rdb(), opts);
    let mut skipping = false;
    let mut own = 0;
    loop {
        let item = match rdb.next_event() {
            Ok(Some(Event::Aux(kv))) if kv.0.as_ref() == b"lua" => Item::Script(kv.1),
            Ok(Some(Event::Function { code })) => Item::Function(code),
            Ok(Some(Event::KeyStart(k))) if own_keys.contains(&k.key) => {
                skipping = true;
                own += 1;
                continue;
            }
            Ok(Some(Event::Chunk(_))) if skipping => continue,
            Ok(Some(Event::KeyEnd { .. })) if skipping => {
                skipping = false;
                continue;
            }
            Ok(Some(event @ (Event::Header { .. } | Event::KeyStart(_) | Event::Chunk(_) | Event::KeyEnd { .. }))) => {
                Item::Rdb { event, rdb_offset: rdb.offset() }
            }
            Ok(Some(Event::Warning(w))) => Item::Warning(format!("snapshot byte {}: {}", w.offset, w.message)),
            Ok(Some(_)) => continue,
            Ok(None) => return Some(SnapshotTally { read: rdb.tally().clone(), own, version: rdb.version() }),
            Err(e) => {
                out.push(Item::Failed(Failure::Snapshot(e)), false);
                return None;
            }
        };
        if !out.send(item, true) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_waiting_for_room_wakes_when_the_applier_takes_an_item() {
        let marks = Arc::new(Marks::default());
        let m = marks.clone();
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            m.wait_for_room(|consumed| consumed < 10, || false);
            started.elapsed()
        });
        // Let it wait, then take items as the applier does.
        while !marks.waiting.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        marks.took(4);
        marks.took(6);
        let waited = waiter.join().expect("waiter");
        assert_eq!(marks.consumed(), 10);
        assert!(!marks.waiting.load(Ordering::SeqCst), "the flag is lowered after the wait");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    #[test]
    fn a_consumer_waiting_for_room_hears_that_the_applier_is_gone() {
        let marks = Marks::default();
        let gone = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                gone.store(true, Ordering::SeqCst);
            });
            // Never any room: only the closed channel ends the wait.
            marks.wait_for_room(|_| true, || gone.load(Ordering::SeqCst));
        });
        assert!(gone.load(Ordering::SeqCst));
    }
}
