//! The RDB parser proper: a state machine that does no I/O.
//!
//! `Parser::step` is given the bytes not yet consumed and answers with one
//! of: an event and how many bytes it consumed, bytes consumed without an
//! event, "I need N bytes from the start of what you gave me", or done. The
//! same code therefore reads a file, a socket or a spool, and can be fuzzed
//! from byte slices.
//!
//! Each step reads one bounded unit (an opcode, a key name, a run of
//! collection elements, one ziplist/listpack blob, one piece of a big string)
//! so a value of any size flows through as `KeyStart`, chunks, `KeyEnd`.
//! The parser can capture the serialized value bytes of each key as a DUMP
//! payload for `RESTORE`; told which RDB versions the caller restores as
//! they are, it then leaves compact values (listpacks, ziplists, intsets,
//! one-node quicklists) undecoded, which is most of a copy's parsing work
//! for such keys (`ParserOptions::restore_versions`), and plain strings too.
//! When payloads are asked for, key names and payloads are copied into an
//! arena, many to one allocation, so no event of a key holds the reader's
//! buffer (which it can then reuse) and a payload costs no allocation of
//! its own. The file's CRC64 is
//! the driver's job (it hashes large spans at once, which is several times
//! faster than per unit): the trailer is reported in `Event::Eof`, and
//! `in_trailer` says when every byte the checksum covers has been consumed.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::consts::*;
use super::cursor::{bad, Cur, RStr, Res, Stop, StrHeader};
use super::encodings::{self, Item};
use super::error::RdbError;
use super::event::*;
use super::lzf::LzfStream;
use crate::crc64::crc64;
use crate::display::quoted_key;

/// Tuning and capture options.
#[derive(Debug, Clone)]
pub struct ParserOptions {
    /// Most elements in one collection chunk.
    pub chunk_items: usize,
    /// A string or chunk larger than this is split into several chunks.
    pub chunk_bytes: usize,
    /// Capture each key's DUMP payload when its value is at most this many
    /// bytes. `Some` (even `Some(0)`) also gives every key name its own
    /// copy rather than a slice of the input.
    pub capture_payload: Option<usize>,
    /// The RDB versions (bit `v` for version `v`) whose DUMP payloads the
    /// caller restores as they are. In a file of such a version, a
    /// compact-encoded value (a listpack, ziplist or intset; a list of one
    /// quicklist node) whose payload is captured is not decoded into
    /// elements: its `KeyStart` says `undecoded` and no chunk follows, only
    /// the payload. Its header is still checked (size, element count, end
    /// marker), and an empty one is still skipped. 0: decode everything.
    pub restore_versions: u128,
    /// Whether the parser computes each captured payload's CRC-64. `false`
    /// leaves its last 8 bytes zero for the sender, which computes them as
    /// it writes the payload out (`Cmd::arg_dump_payload`): that CRC is the
    /// largest single cost of parsing a snapshot for a copy, and the
    /// writers run beside the parser, one per destination master.
    pub seal_payloads: bool,
}

impl Default for ParserOptions {
    fn default() -> Self {
        ParserOptions {
            chunk_items: 1024,
            chunk_bytes: 1 << 20,
            capture_payload: None,
            restore_versions: 0,
            seal_payloads: true,
        }
    }
}

/// The answer to one `Parser::step`.
#[derive(Debug)]
pub enum Step {
    /// An event; the given number of input bytes were consumed.
    Event(Event, usize),
    /// Bytes consumed with nothing to report yet.
    Skip(usize),
    /// The next unit needs at least this many bytes of input (counted from
    /// the start of the slice given to `step`).
    More(usize),
    /// The EOF opcode (and trailer) has been read.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SeqKind {
    List,
    Set,
    ZsetText,
    ZsetBinary,
    Hash,
    /// 7.4 hash with field TTLs: `None` for pre-GA absolute times, else the
    /// minimum expiry the relative TTLs are based on.
    HashTtl(Option<i64>),
    /// Valkey 9 hash with field TTLs: field, value, expiry (8 bytes LE).
    HashValkey,
}

#[derive(Debug, Clone, Copy)]
enum Val {
    StringStart,
    StringRaw {
        left: u64,
    },
    /// A streamed LZF string; its decoder (with its 8 KiB window) lives in
    /// `Parser::lzf`, so the state stays a plain copyable value.
    StringLzf {
        left_in: u64,
    },
    SeqStart(SeqKind),
    HashTtlStart {
        ga: bool,
    },
    Seq {
        kind: SeqKind,
        left: u64,
    },
    Blob,
    QuicklistStart,
    Quicklist {
        left: u64,
    },
    ModuleStart,
    ModuleBody,
    StreamStart,
    StreamNodes {
        left: u64,
    },
    StreamMeta,
    StreamGroup {
        groups: u64,
    },
    StreamGroupPel {
        groups: u64,
        left: u64,
    },
    StreamConsumers {
        groups: u64,
    },
    StreamConsumer {
        groups: u64,
        consumers: u64,
    },
    StreamConsumerPel {
        groups: u64,
        consumers: u64,
        left: u64,
    },
}

#[derive(Debug)]
enum State {
    Magic,
    Top,
    Value(Val),
    KeyEnd,
    Checksum,
    Done,
}

/// Streaming RDB parser; see the module documentation.
pub struct Parser {
    opts: ParserOptions,
    state: State,
    offset: u64,
    version: u32,
    /// A `VALKEY` file: some type numbers mean something else.
    valkey: bool,
    db: u64,
    expire_at_ms: Option<i64>,
    idle_secs: Option<u64>,
    lfu_freq: Option<u8>,
    /// Type byte and name of the key being read.
    cur_type: u8,
    cur_key: KeyName,
    /// A collection's `KeyStart` waits for its first element, because Redis
    /// drops empty collections on load and so do we.
    deferred_key: Option<Box<KeyStart>>,
    queue: VecDeque<Event>,
    /// The decoder of a streamed LZF string (see `Val::StringLzf`).
    lzf: Option<LzfStream>,
    /// Whether the current key's DUMP payload is being captured: it is
    /// then the whole of `arena`'s unsplit part.
    capturing: bool,
    /// Key names, then the payload being captured, split off as they end.
    arena: BytesMut,
    tally: KeyTally,
}

/// The arena's allocation unit: small keys and payloads share one; a
/// payload that outgrows it doubles its own.
const ARENA_CHUNK: usize = 64 * 1024;

/// Appends `bytes` to `arena`, which grows by at least a chunk, or doubles.
fn arena_put(arena: &mut BytesMut, bytes: &[u8]) {
    if arena.capacity() - arena.len() < bytes.len() {
        arena.reserve(bytes.len().max(ARENA_CHUNK).max(arena.len()));
    }
    arena.extend_from_slice(bytes);
}

/// How many keys the parser has read, per DB, next to how many the
/// snapshot says its DBs held: the first count of the engine's key
/// accounting (every key read must end up written or skipped for a reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTally {
    /// Keys read whole. Each key ends exactly once: with `KeyEnd`, or, as an
    /// empty collection, with a warning instead.
    pub keys: u64,
    /// Of those, empty collections (Redis drops them on load; so do we).
    pub empty: u64,
    /// Keys read, per DB.
    pub per_db: std::collections::BTreeMap<u64, u64>,
    /// `RESIZEDB`'s key count per DB (RDB 7+, Redis 3.2): the DB's size
    /// when the snapshot was taken.
    pub declared: std::collections::BTreeMap<u64, u64>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(ParserOptions::default())
    }
}

impl Parser {
    pub fn new(mut opts: ParserOptions) -> Self {
        // Every step must make progress: at least one element per chunk, and
        // room for a whole LZF token (at most 33 bytes) in a string piece.
        opts.chunk_items = opts.chunk_items.max(1);
        opts.chunk_bytes = opts.chunk_bytes.max(64);
        Parser {
            opts,
            state: State::Magic,
            offset: 0,
            version: 0,
            valkey: false,
            db: 0,
            expire_at_ms: None,
            idle_secs: None,
            lfu_freq: None,
            cur_type: 0,
            cur_key: KeyName::default(),
            deferred_key: None,
            queue: VecDeque::new(),
            lzf: None,
            capturing: false,
            arena: BytesMut::new(),
            tally: KeyTally::default(),
        }
    }

    /// The keys read so far (see [`KeyTally`]).
    pub fn tally(&self) -> &KeyTally {
        &self.tally
    }

    /// Bytes consumed so far (the absolute offset of the next byte).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's RDB version, once the header has been read.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// True once the EOF opcode is consumed and only the 8-byte checksum
    /// trailer remains: everything the file's CRC64 covers has been consumed.
    pub fn in_trailer(&self) -> bool {
        matches!(self.state, State::Checksum)
    }

    /// What the parser is reading, for messages about truncated input.
    pub fn context(&self) -> String {
        match &self.state {
            State::Magic => "the file header (REDIS and a 4-digit version) was expected".into(),
            State::Top => "an opcode or the next key was expected".into(),
            State::Value(_) | State::KeyEnd => format!(
                "the rest of the value of key {} ({}, db {}) was expected",
                self.cur_key.show(),
                type_name(self.cur_type),
                self.db
            ),
            State::Checksum => "the 8-byte CRC64 trailer was expected".into(),
            State::Done => "nothing more was expected".into(),
        }
    }

    /// Parse the next units of `input` (the bytes not yet consumed). Strings
    /// in events are slices of `input` (no copy): a consumer that keeps one
    /// long keeps that buffer alive, so it should copy what it stores.
    ///
    /// One call reads as many units as are complete, up to the end of the
    /// current key (a few events at most): a small key's start, value and
    /// end usually arrive together, and a round trip through the driver per
    /// unit cost as much as parsing the key.
    pub fn step(&mut self, input: &Bytes) -> Result<Step, RdbError> {
        if let Some(ev) = self.queue.pop_front() {
            return Ok(Step::Event(ev, 0));
        }
        let mut used = 0usize;
        let mut out: Option<Event> = None;
        for _ in 0..8 {
            let in_value = matches!(self.state, State::Value(_));
            let at_top = matches!(self.state, State::Top);
            let queued = self.queue.len();
            let (ev, n) = match self.step_inner(input, used)? {
                Step::Event(ev, n) => (Some(ev), n),
                Step::Skip(n) => (None, n),
                Step::More(need) if used == 0 && out.is_none() => return Ok(Step::More(need)),
                Step::Done if used == 0 && out.is_none() => return Ok(Step::Done),
                Step::More(_) | Step::Done => break,
            };
            if n > 0 {
                if in_value && self.capturing {
                    self.capture(&input[used..used + n]);
                }
                self.offset += n as u64;
                used += n;
            }
            let had_event = ev.is_some();
            if let Some(ev) = ev {
                // Events the inner step queued come after the one it returned.
                match out {
                    None => out = Some(ev),
                    Some(_) => self.queue.insert(queued, ev),
                }
            }
            if matches!(self.state, State::KeyEnd) {
                self.state = State::Top;
                let end = self.key_end();
                match out {
                    None => out = Some(end),
                    Some(_) => self.queue.push_back(end),
                }
                break;
            }
            // Go on inside a key, or past an opcode that only prepares one
            // (an expiry, LRU/LFU data); stop at anything else.
            let preparing = at_top && !had_event && matches!(self.state, State::Top);
            if !(matches!(self.state, State::Value(_)) || preparing) || self.queue.len() > 4 {
                break;
            }
        }
        Ok(match out {
            Some(ev) => Step::Event(ev, used),
            None => Step::Skip(used),
        })
    }

    fn capture(&mut self, bytes: &[u8]) {
        let limit = self.opts.capture_payload.unwrap_or(0);
        if self.arena.len() + bytes.len() > limit {
            self.capturing = false;
            self.arena.clear();
            self.arena_trim();
        } else {
            arena_put(&mut self.arena, bytes);
        }
    }

    /// `start`: where in the input this step began (`self.offset` is there).
    fn corrupt(&self, stop: Stop, start: usize) -> Result<Step, RdbError> {
        match stop {
            Stop::More(n) => Ok(Step::More(n)),
            Stop::Bad(pos, what) => {
                let what = match &self.state {
                    State::Value(_) | State::KeyEnd => {
                        format!(
                            "{what} (in key {} of type {}, db {})",
                            self.cur_key.show(),
                            type_name(self.cur_type),
                            self.db
                        )
                    }
                    _ => what,
                };
                Err(RdbError::Corrupt { offset: self.offset + pos.saturating_sub(start) as u64, what })
            }
        }
    }

    /// One unit, read from `input[start..]`; the consumed count is relative
    /// to `start`, a `More` need to the start of `input`.
    fn step_inner(&mut self, input: &Bytes, start: usize) -> Result<Step, RdbError> {
        let mut cur = Cur::new(input, start);
        let res = match std::mem::replace(&mut self.state, State::Done) {
            State::Magic => self.magic(&mut cur),
            State::Top => self.top(&mut cur),
            State::Value(v) => self.value(v, &mut cur),
            State::KeyEnd => {
                self.state = State::Top;
                Ok(Some(self.key_end()))
            }
            State::Checksum => return self.checksum(&mut cur, start),
            State::Done => return Ok(Step::Done),
        };
        match res {
            Ok(Some(ev)) => Ok(Step::Event(ev, cur.pos - start)),
            Ok(None) => Ok(Step::Skip(cur.pos - start)),
            Err(stop) => self.corrupt(stop, start),
        }
    }

    /// Put a state back after a read that needs more input. Every handler
    /// takes its state by value; on `Stop::More` the state must be restored
    /// unchanged so the same unit is retried.
    fn retry<T>(&mut self, state: State, r: Res<T>) -> Res<T> {
        if r.is_err() {
            self.state = state;
        }
        r
    }

    fn magic(&mut self, cur: &mut Cur) -> Res<Option<Event>> {
        let head = self.retry(State::Magic, cur.take(9))?;
        let (name, digits) = if &head[..5] == b"REDIS" {
            ("Redis", &head[5..9])
        } else if &head[..6] == b"VALKEY" {
            ("Valkey", &head[6..9])
        } else {
            self.state = State::Magic;
            return bad(
                0,
                format!("not an RDB file: it starts with {:?}, not \"REDIS\"", String::from_utf8_lossy(head)),
            );
        };
        let version: u32 = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).ok_or_else(|| {
            Stop::Bad(5, format!("the header's version {:?} is not a number", String::from_utf8_lossy(digits)))
        })?;
        let known = match name {
            "Redis" => (1..=MAX_FOREIGN_VERSION).contains(&version),
            _ => version >= VALKEY_VERSION,
        };
        if !known {
            self.state = State::Magic;
            return bad(0, format!("unsupported {name} RDB version {version}"));
        }
        self.valkey = name == "Valkey";
        self.version = version;
        self.state = State::Top;
        let newest = if self.valkey { VALKEY_VERSION } else { MAX_VERSION };
        if version > newest {
            // Read on: Redis and Valkey add types rather than change the
            // old ones, so a newer file parses until a type this build does
            // not know, which then fails naming it and its offset.
            self.queue.push_back(Event::Warning(Box::new(Warning {
                offset: 0,
                message: format!(
                    "{name} RDB version {version} is newer than the {newest} this build knows: keys of the types \
                     it knows are read, and a newer type stops the read at its offset"
                ),
            })));
        }
        Ok(Some(Event::Header { version }))
    }

    fn top(&mut self, cur: &mut Cur) -> Res<Option<Event>> {
        let r = self.top_inner(cur);
        if matches!(r, Err(Stop::More(_))) {
            self.state = State::Top;
        }
        r
    }

    fn top_inner(&mut self, cur: &mut Cur) -> Res<Option<Event>> {
        self.state = State::Top;
        let at = cur.pos;
        let op = cur.u8()?;
        Ok(Some(match op {
            OP_AUX => {
                let key = cur.bytes_string()?;
                let value = cur.bytes_string()?;
                Event::Aux(Box::new((key, value)))
            }
            OP_SELECTDB => {
                self.db = cur.length("DB number")?;
                Event::SelectDb { db: self.db }
            }
            OP_RESIZEDB => {
                let db_size = cur.length("DB size")?;
                let expires_size = cur.length("expires size")?;
                self.tally.declared.insert(self.db, db_size);
                Event::ResizeDb { db_size, expires_size }
            }
            OP_SLOT_INFO => {
                let slot = cur.length("slot id")?;
                let size = cur.length("slot size")?;
                let expires_size = cur.length("slot expires size")?;
                Event::SlotInfo { slot, size, expires_size }
            }
            OP_EXPIRETIME_MS => {
                self.expire_at_ms = Some(cur.millis()?);
                return Ok(None);
            }
            OP_EXPIRETIME => {
                let secs = cur.le_u32()? as i32;
                self.expire_at_ms = Some(i64::from(secs) * 1000);
                return Ok(None);
            }
            OP_IDLE => {
                self.idle_secs = Some(cur.length("LRU idle time")?);
                return Ok(None);
            }
            OP_FREQ => {
                self.lfu_freq = Some(cur.u8()?);
                return Ok(None);
            }
            OP_FUNCTION2 => Event::Function { code: cur.bytes_string()? },
            OP_FUNCTION_PRE_GA => {
                let name = cur.bytes_string()?;
                let engine = cur.bytes_string()?;
                let description = match cur.length("function description flag")? {
                    0 => None,
                    1 => Some(cur.bytes_string()?),
                    n => return bad(at, format!("function description flag is {n}, expected 0 or 1")),
                };
                let code = cur.bytes_string()?;
                Event::FunctionPreGa(Box::new(FunctionPreGa { name, engine, description, code }))
            }
            OP_MODULE_AUX => {
                let id = cur.length("module id")?;
                let when_op = cur.length("module aux 'when' opcode")?;
                if when_op != MODULE_OP_UINT {
                    return bad(at, format!("module aux 'when' opcode is {when_op}, expected {MODULE_OP_UINT}"));
                }
                let when = cur.length("module aux 'when'")?;
                skip_module_body(cur)?;
                let name = module_name(id);
                Event::ModuleAux(Box::new(ModuleAux { id: ModuleId(id), name, when }))
            }
            OP_EOF => {
                self.state = if self.version >= FIRST_VERSION_WITH_CHECKSUM { State::Checksum } else { State::Done };
                if matches!(self.state, State::Done) {
                    return Ok(Some(Event::Eof { checksum: None }));
                }
                return Ok(None);
            }
            t => return self.key_start(t, at, cur),
        }))
    }

    fn key_start(&mut self, t: u8, at: usize, cur: &mut Cur) -> Res<Option<Event>> {
        let (kind, val) = match t {
            TYPE_STRING => (ValueKind::String, Val::StringStart),
            TYPE_LIST => (ValueKind::List, Val::SeqStart(SeqKind::List)),
            TYPE_SET => (ValueKind::Set, Val::SeqStart(SeqKind::Set)),
            TYPE_ZSET => (ValueKind::Zset, Val::SeqStart(SeqKind::ZsetText)),
            TYPE_ZSET_2 => (ValueKind::Zset, Val::SeqStart(SeqKind::ZsetBinary)),
            TYPE_HASH => (ValueKind::Hash, Val::SeqStart(SeqKind::Hash)),
            TYPE_VALKEY_HASH_2 if self.valkey => (ValueKind::Hash, Val::SeqStart(SeqKind::HashValkey)),
            TYPE_HASH_METADATA_PRE_GA => (ValueKind::Hash, Val::HashTtlStart { ga: false }),
            TYPE_HASH_METADATA => (ValueKind::Hash, Val::HashTtlStart { ga: true }),
            TYPE_LIST_ZIPLIST => (ValueKind::List, Val::Blob),
            TYPE_SET_INTSET | TYPE_SET_LISTPACK => (ValueKind::Set, Val::Blob),
            TYPE_ZSET_ZIPLIST | TYPE_ZSET_LISTPACK => (ValueKind::Zset, Val::Blob),
            TYPE_HASH_ZIPMAP
            | TYPE_HASH_ZIPLIST
            | TYPE_HASH_LISTPACK
            | TYPE_HASH_LISTPACK_EX_PRE_GA
            | TYPE_HASH_LISTPACK_EX => (ValueKind::Hash, Val::Blob),
            TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => (ValueKind::List, Val::QuicklistStart),
            TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => {
                (ValueKind::Stream, Val::StreamStart)
            }
            TYPE_MODULE_2 => (ValueKind::Module, Val::ModuleStart),
            TYPE_MODULE_PRE_GA => {
                let key = cur.bytes_string()?;
                let id = cur.length("module id")?;
                return bad(
                    at,
                    format!(
                        "key {} holds a value of module {:?} in the Redis 4.0 release-candidate format, which cannot be read or skipped without that module",
                        quoted_key(&key),
                        module_name(id)
                    ),
                );
            }
            _ => return bad(at, format!("unknown opcode or value type {t}")),
        };
        let key = cur.bytes_string()?;
        self.cur_key = KeyName::new(&key);
        // Nothing of an earlier key is still being built.
        self.arena.clear();
        // For a writer (payloads asked for), the name goes to the arena: it
        // lives as long as the key's commands, and must not hold the
        // reader's buffer meanwhile. A reader that only looks keeps a slice.
        let key = if self.opts.capture_payload.is_some() {
            arena_put(&mut self.arena, &key);
            self.arena.split().freeze()
        } else {
            key
        };
        let start = KeyStart {
            db: self.db,
            key,
            kind,
            undecoded: false,
            rdb_type: t,
            expire_at_ms: self.expire_at_ms.take(),
            idle_secs: self.idle_secs.take(),
            lfu_freq: self.lfu_freq.take(),
        };
        self.cur_type = t;
        self.capturing = self.opts.capture_payload.is_some_and(|limit| limit > 0);
        if self.capturing {
            arena_put(&mut self.arena, &[t]);
        }
        self.state = State::Value(val);
        // A string's start waits too when it may be left undecoded, to
        // learn whether it is.
        let deferred = matches!(kind, ValueKind::List | ValueKind::Set | ValueKind::Zset | ValueKind::Hash)
            || (kind == ValueKind::String && self.capturing && self.restores_version());
        if deferred {
            self.deferred_key = Some(Box::new(start));
            Ok(None)
        } else {
            Ok(Some(Event::KeyStart(Box::new(start))))
        }
    }

    /// The whole value is `blob` (of `unit` bytes on the wire), in `layout`:
    /// when its payload is captured for a caller that restores this file's
    /// version (see [`ParserOptions::restore_versions`]), and its header is
    /// sound, the key's start (`undecoded`), or nothing for an empty value
    /// (the key end then reports it); `None` to decode it as usual.
    fn undecoded(&mut self, layout: Packed, blob: RStr, unit: usize) -> Option<Option<Event>> {
        if !self.restores_whole(unit) {
            return None;
        }
        let count = match blob {
            RStr::Raw(b) => layout.count(b)?,
            // Only the header is needed, but LZF streams have no index:
            // the whole blob is expanded (and dropped), still far cheaper
            // than decoding every element.
            RStr::Lzf { .. } => layout.count(&blob.bytes().ok()?)?,
            RStr::Int(_) => return None,
        };
        let mut start = self.deferred_key.take()?;
        if count == 0 {
            // Counted and reported as empty by the key end.
            self.deferred_key = Some(start);
            return Some(None);
        }
        start.undecoded = true;
        Some(Some(Event::KeyStart(start)))
    }

    /// After a big payload: its buffer's spare room is not used for the
    /// next small keys, which would keep the whole buffer alive with them.
    fn arena_trim(&mut self) {
        if self.arena.is_empty() && self.arena.capacity() > 4 * ARENA_CHUNK {
            self.arena = BytesMut::new();
        }
    }

    /// Whether the current value, ending `unit` bytes further on, is
    /// captured whole, with its trailer (RDB version, CRC64: the size the
    /// writer compares with its limit), for a caller that restores this
    /// file's version as it is.
    fn restores_whole(&self, unit: usize) -> bool {
        let limit = self.opts.capture_payload.unwrap_or(0);
        self.restores_version() && self.capturing && self.arena.len() + unit + DUMP_TRAILER <= limit
    }

    /// The caller restores this file's payloads as they are.
    fn restores_version(&self) -> bool {
        self.version < 128 && self.opts.restore_versions & (1u128 << self.version) != 0
    }

    /// A chunk of the current value, preceded by the key's start if it was
    /// waiting for its first element.
    fn chunk(&mut self, c: Chunk) -> Option<Event> {
        match self.deferred_key.take() {
            Some(k) => {
                self.queue.push_back(Event::Chunk(c));
                Some(Event::KeyStart(k))
            }
            None => Some(Event::Chunk(c)),
        }
    }

    fn key_end(&mut self) -> Event {
        let capturing = std::mem::take(&mut self.capturing);
        self.tally.keys += 1;
        *self.tally.per_db.entry(self.db).or_default() += 1;
        if let Some(k) = self.deferred_key.take() {
            self.tally.empty += 1;
            return Event::Warning(Box::new(Warning {
                offset: self.offset,
                message: format!(
                    "key {} in db {} is an empty {} and was skipped (Redis also drops empty collections when loading)",
                    quoted_key(&k.key),
                    k.db,
                    k.kind.as_str()
                ),
            }));
        }
        let payload = capturing.then(|| {
            // DUMP payload trailer: RDB version (2 bytes LE), then CRC64 of
            // all before it (or zeros for the sender to fill, see
            // `ParserOptions::seal_payloads`).
            arena_put(&mut self.arena, &(self.version as u16).to_le_bytes());
            let crc = if self.opts.seal_payloads { crc64(&self.arena) } else { 0 };
            arena_put(&mut self.arena, &crc.to_le_bytes());
            let payload = self.arena.split().freeze();
            self.arena_trim();
            payload
        });
        Event::KeyEnd { payload }
    }

    fn checksum(&mut self, cur: &mut Cur, start: usize) -> Result<Step, RdbError> {
        let stored = match cur.le_i64() {
            Ok(v) => v as u64,
            Err(Stop::More(n)) => {
                self.state = State::Checksum;
                return Ok(Step::More(n));
            }
            Err(stop) => return self.corrupt(stop, start),
        };
        self.state = State::Done;
        // A zero trailer means the writer had `rdbchecksum no`.
        let checksum = (stored != 0).then_some(stored);
        Ok(Step::Event(Event::Eof { checksum }, cur.pos - start))
    }

    fn value(&mut self, v: Val, cur: &mut Cur) -> Res<Option<Event>> {
        // Handlers set `self.state` themselves; on `More` the original state
        // is put back so the unit is retried from its start.
        let r = self.value_inner(v, cur);
        if let Err(Stop::More(_)) = &r {
            self.state = State::Value(v);
        }
        r
    }

    fn value_inner(&mut self, v: Val, cur: &mut Cur) -> Res<Option<Event>> {
        match v {
            Val::StringStart => self.string_start(cur),
            Val::StringRaw { left } => {
                let want = left.min(self.opts.chunk_bytes as u64) as usize;
                let data = cur.take(want)?;
                let left = left - want as u64;
                self.state = if left == 0 { State::KeyEnd } else { State::Value(Val::StringRaw { left }) };
                let data = cur.to_bytes(RStr::Raw(data))?;
                Ok(self.chunk(Chunk::String(data)))
            }
            Val::StringLzf { left_in } => {
                let want = left_in.min(self.opts.chunk_bytes as u64) as usize;
                let at = cur.pos;
                if cur.buf.len() - at < want {
                    return Err(Stop::More(at + want));
                }
                let last = want as u64 == left_in;
                let Some(dec) = self.lzf.as_mut() else {
                    return bad(at, "internal error: LZF string without a decoder");
                };
                let (used, out) = match dec.feed(&cur.buf[at..at + want], last) {
                    Ok(r) => r,
                    Err(e) => return bad(at, format!("LZF-compressed string: {e}")),
                };
                cur.pos = at + used;
                let left_in = left_in - used as u64;
                if left_in == 0 {
                    self.lzf = None;
                    self.state = State::KeyEnd;
                } else {
                    self.state = State::Value(Val::StringLzf { left_in });
                }
                Ok(if out.is_empty() { None } else { self.chunk(Chunk::String(Bytes::from(out))) })
            }
            Val::SeqStart(kind) => {
                let left = cur.length("element count")?;
                self.state = if left == 0 { State::KeyEnd } else { State::Value(Val::Seq { kind, left }) };
                Ok(None)
            }
            Val::HashTtlStart { ga } => {
                let min = if ga { Some(cur.millis()?) } else { None };
                let left = cur.length("hash field count")?;
                self.state = if left == 0 {
                    State::KeyEnd
                } else {
                    State::Value(Val::Seq { kind: SeqKind::HashTtl(min), left })
                };
                Ok(None)
            }
            Val::Seq { kind, left } => self.seq(kind, left, cur),
            Val::Blob => {
                let unit_start = cur.pos;
                if self.cur_type == TYPE_HASH_LISTPACK_EX {
                    // The minimum field expiry; the listpack holds every field's own.
                    cur.millis()?;
                }
                let blob = cur.string()?;
                let layout = match self.cur_type {
                    TYPE_LIST_ZIPLIST | TYPE_ZSET_ZIPLIST | TYPE_HASH_ZIPLIST => Some(Packed::Ziplist),
                    TYPE_SET_LISTPACK | TYPE_ZSET_LISTPACK | TYPE_HASH_LISTPACK => Some(Packed::Listpack),
                    TYPE_SET_INTSET => Some(Packed::Intset),
                    // Hash field TTLs: decoded, their expiries are read.
                    _ => None,
                };
                if let Some(undecoded) = layout.and_then(|l| self.undecoded(l, blob, cur.pos - unit_start)) {
                    self.state = State::KeyEnd;
                    return Ok(undecoded);
                }
                let blob = cur.to_bytes(blob)?;
                self.state = State::KeyEnd;
                let c = self.blob(blob)?;
                Ok(c.and_then(|c| self.chunk(c)))
            }
            Val::QuicklistStart => {
                let left = cur.length("quicklist node count")?;
                self.state = if left == 0 { State::KeyEnd } else { State::Value(Val::Quicklist { left }) };
                Ok(None)
            }
            Val::Quicklist { left } => self.quicklist_node(left, cur),
            Val::ModuleStart => {
                let id = cur.length("module id")?;
                let name = module_name(id);
                self.state = State::Value(Val::ModuleBody);
                self.queue.push_back(Event::Warning(Box::new(Warning {
                    offset: self.offset,
                    message: format!(
                        "key {} in db {} holds a value of module {name:?} (encoding version {}); its content is not interpreted (a RESTORE of its raw bytes needs the module on the destination)",
                        self.cur_key.show(),
                        self.db,
                        module_encver(id)
                    ),
                })));
                Ok(self.chunk(Chunk::Module(Box::new(ModuleValue { id: ModuleId(id), name }))))
            }
            Val::ModuleBody => {
                let done = skip_module_ops(cur)?;
                self.state = if done { State::KeyEnd } else { State::Value(Val::ModuleBody) };
                Ok(None)
            }
            Val::StreamStart => {
                let left = cur.length("stream listpack count")?;
                self.state = State::Value(if left == 0 { Val::StreamMeta } else { Val::StreamNodes { left } });
                Ok(None)
            }
            Val::StreamNodes { left } => {
                let at = cur.pos;
                let master = cur.string()?.bytes()?;
                let lp = cur.string()?;
                if master.len() != 16 {
                    return bad(at, format!("stream node key is {} bytes, expected a 16-byte ID", master.len()));
                }
                let base = StreamId {
                    ms: u64::from_be_bytes(master[..8].try_into().unwrap_or_default()),
                    seq: u64::from_be_bytes(master[8..].try_into().unwrap_or_default()),
                };
                let lp_bytes = lp.bytes()?;
                let entries = stream_listpack(&lp_bytes, base).or_else(|e| bad(at, format!("stream listpack: {e}")))?;
                let left = left - 1;
                self.state = State::Value(if left == 0 { Val::StreamMeta } else { Val::StreamNodes { left } });
                Ok(if entries.is_empty() { None } else { self.chunk(Chunk::StreamEntries(entries)) })
            }
            Val::StreamMeta => {
                let length = cur.length("stream length")?;
                let last_id = stream_id(cur)?;
                let v2 = self.cur_type >= TYPE_STREAM_LISTPACKS_2;
                let (first_id, max_deleted_id, entries_added) = if v2 {
                    (Some(stream_id(cur)?), Some(stream_id(cur)?), Some(cur.length("stream entries added")?))
                } else {
                    (None, None, None)
                };
                let groups = cur.length("consumer group count")?;
                self.state = if groups == 0 { State::KeyEnd } else { State::Value(Val::StreamGroup { groups }) };
                let meta = StreamMeta { length, last_id, first_id, max_deleted_id, entries_added };
                Ok(self.chunk(Chunk::StreamMeta(Box::new(meta))))
            }
            Val::StreamGroup { groups } => {
                let name = cur.bytes_string()?;
                let last_id = stream_id(cur)?;
                let entries_read = if self.cur_type >= TYPE_STREAM_LISTPACKS_2 {
                    Some(cur.length("group entries read")?)
                } else {
                    None
                };
                let left = cur.length("group PEL size")?;
                self.state = State::Value(if left == 0 {
                    Val::StreamConsumers { groups }
                } else {
                    Val::StreamGroupPel { groups, left }
                });
                Ok(self.chunk(Chunk::StreamGroup(Box::new(StreamGroup { name, last_id, entries_read }))))
            }
            Val::StreamGroupPel { groups, mut left } => {
                let mut pel = Vec::new();
                while left > 0 && pel.len() < self.opts.chunk_items {
                    let start = cur.pos;
                    let r = (|| {
                        let id = raw_stream_id(cur)?;
                        let delivery_time_ms = cur.millis()?;
                        let delivery_count = cur.length("delivery count")?;
                        Ok(PendingEntry { id, delivery_time_ms, delivery_count })
                    })();
                    match r {
                        Ok(p) => pel.push(p),
                        Err(Stop::More(n)) if pel.is_empty() => return Err(Stop::More(n)),
                        Err(Stop::More(_)) => {
                            cur.pos = start;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                    left -= 1;
                }
                self.state = State::Value(if left == 0 {
                    Val::StreamConsumers { groups }
                } else {
                    Val::StreamGroupPel { groups, left }
                });
                Ok(self.chunk(Chunk::StreamGroupPending(pel)))
            }
            Val::StreamConsumers { groups } => {
                let consumers = cur.length("consumer count")?;
                self.state = if consumers == 0 {
                    next_group(groups)
                } else {
                    State::Value(Val::StreamConsumer { groups, consumers })
                };
                Ok(None)
            }
            Val::StreamConsumer { groups, consumers } => {
                let name = cur.bytes_string()?;
                let seen_time_ms = cur.millis()?;
                let active_time_ms = if self.cur_type >= TYPE_STREAM_LISTPACKS_3 { Some(cur.millis()?) } else { None };
                let left = cur.length("consumer PEL size")?;
                self.state = if left == 0 {
                    next_consumer(groups, consumers)
                } else {
                    State::Value(Val::StreamConsumerPel { groups, consumers, left })
                };
                Ok(self.chunk(Chunk::StreamConsumer(Box::new(StreamConsumer { name, seen_time_ms, active_time_ms }))))
            }
            Val::StreamConsumerPel { groups, consumers, mut left } => {
                let mut ids = Vec::new();
                while left > 0 && ids.len() < self.opts.chunk_items {
                    let start = cur.pos;
                    match raw_stream_id(cur) {
                        Ok(id) => ids.push(id),
                        Err(Stop::More(n)) if ids.is_empty() => return Err(Stop::More(n)),
                        Err(Stop::More(_)) => {
                            // The ID's first half may have been read; it is read again whole.
                            cur.pos = start;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                    left -= 1;
                }
                self.state = if left == 0 {
                    next_consumer(groups, consumers)
                } else {
                    State::Value(Val::StreamConsumerPel { groups, consumers, left })
                };
                Ok(self.chunk(Chunk::StreamConsumerPending(ids)))
            }
        }
    }

    fn string_start(&mut self, cur: &mut Cur) -> Res<Option<Event>> {
        let big = self.opts.chunk_bytes as u64;
        let mut probe = cur.fork();
        match probe.string_header()? {
            StrHeader::Raw(n) if n > big => {
                cur.pos = probe.pos;
                self.state = State::Value(Val::StringRaw { left: n });
                Ok(None)
            }
            StrHeader::Lzf { clen, ulen } if clen > big => {
                if ulen > super::lzf::max_output_len(clen as usize) as u64 {
                    return bad(cur.pos, format!("LZF string claims {ulen} bytes from {clen} compressed bytes"));
                }
                cur.pos = probe.pos;
                self.lzf = Some(LzfStream::new(ulen));
                self.state = State::Value(Val::StringLzf { left_in: clen });
                Ok(None)
            }
            // Captured: it may be left undecoded.
            _ if self.capturing => {
                let at = cur.pos;
                let s = cur.string()?;
                self.state = State::KeyEnd;
                if self.restores_whole(cur.pos - at) {
                    if let Some(mut start) = self.deferred_key.take() {
                        start.undecoded = true;
                        return Ok(Some(Event::KeyStart(start)));
                    }
                }
                let s = cur.to_bytes(s)?;
                Ok(self.chunk(Chunk::String(s)))
            }
            _ => {
                let s = cur.bytes_string()?;
                self.state = State::KeyEnd;
                Ok(self.chunk(Chunk::String(s)))
            }
        }
    }

    /// A run of elements of a collection stored element by element.
    fn seq(&mut self, kind: SeqKind, mut left: u64, cur: &mut Cur) -> Res<Option<Event>> {
        let max = self.opts.chunk_items;
        let max_bytes = self.opts.chunk_bytes;
        let begin = cur.pos;
        let mut items: Vec<Bytes> = Vec::new();
        let mut zs: Vec<(Bytes, f64)> = Vec::new();
        let mut hs: Vec<HashField> = Vec::new();
        let mut n = 0usize;
        while left > 0 && n < max && cur.pos - begin < max_bytes {
            let start = cur.pos;
            let r: Res<()> = (|| {
                match kind {
                    SeqKind::List | SeqKind::Set => items.push(cur.bytes_string()?),
                    SeqKind::ZsetText => {
                        let m = cur.bytes_string()?;
                        zs.push((m, cur.text_double()?));
                    }
                    SeqKind::ZsetBinary => {
                        let m = cur.bytes_string()?;
                        zs.push((m, cur.le_f64()?));
                    }
                    SeqKind::Hash => {
                        let field = cur.bytes_string()?;
                        let value = cur.bytes_string()?;
                        hs.push(HashField { field, value, expire_at_ms: None });
                    }
                    SeqKind::HashTtl(min) => {
                        let ttl = cur.length("hash field TTL")?;
                        let field = cur.bytes_string()?;
                        let value = cur.bytes_string()?;
                        let expire_at_ms = match (ttl, min) {
                            (0, _) => None,
                            (t, Some(min)) => Some((t as i64).wrapping_add(min).wrapping_sub(1)),
                            (t, None) => Some(t as i64),
                        };
                        hs.push(HashField { field, value, expire_at_ms });
                    }
                    SeqKind::HashValkey => {
                        let field = cur.bytes_string()?;
                        let value = cur.bytes_string()?;
                        let at = cur.le_i64()?;
                        hs.push(HashField { field, value, expire_at_ms: (at != -1).then_some(at) });
                    }
                }
                Ok(())
            })();
            match r {
                Ok(()) => {}
                Err(Stop::More(need)) if n == 0 => return Err(Stop::More(need)),
                Err(Stop::More(_)) => {
                    // Keep what is complete; the partial element is re-read next step.
                    cur.pos = start;
                    items.truncate(n);
                    zs.truncate(n);
                    hs.truncate(n);
                    break;
                }
                Err(e) => return Err(e),
            }
            n += 1;
            left -= 1;
        }
        self.state = if left == 0 { State::KeyEnd } else { State::Value(Val::Seq { kind, left }) };
        let c = match kind {
            SeqKind::List => Chunk::ListItems(items),
            SeqKind::Set => Chunk::SetMembers(items),
            SeqKind::ZsetText | SeqKind::ZsetBinary => Chunk::ZsetMembers(zs),
            SeqKind::Hash | SeqKind::HashTtl(_) | SeqKind::HashValkey => Chunk::HashFields(hs),
        };
        Ok(self.chunk(c))
    }

    /// Decode a whole compact-encoded value.
    fn blob(&mut self, owned: Bytes) -> Res<Option<Chunk>> {
        let b = &owned[..];
        let t = self.cur_type;
        let item = |i: Item| -> Bytes {
            match i {
                Item::Str(s) => owned.slice_ref(s),
                Item::Int(v) => Bytes::from(v.to_string()),
            }
        };
        let fail = |e: String| Stop::Bad(0, format!("{} blob: {e}", type_name(t)));
        let chunk = match t {
            TYPE_LIST_ZIPLIST => {
                let mut v = Vec::with_capacity(Packed::Ziplist.capacity(b));
                encodings::ziplist(b, |i| {
                    v.push(item(i));
                    Ok(())
                })
                .map_err(fail)?;
                Chunk::ListItems(v)
            }
            TYPE_SET_INTSET => {
                let mut v = Vec::with_capacity(Packed::Intset.capacity(b));
                encodings::intset(b, |i| {
                    v.push(Bytes::from(i.to_string()));
                    Ok(())
                })
                .map_err(fail)?;
                Chunk::SetMembers(v)
            }
            TYPE_SET_LISTPACK => {
                let mut v = Vec::with_capacity(Packed::Listpack.capacity(b));
                encodings::listpack(b, |i| {
                    v.push(item(i));
                    Ok(())
                })
                .map_err(fail)?;
                Chunk::SetMembers(v)
            }
            TYPE_ZSET_ZIPLIST | TYPE_ZSET_LISTPACK => {
                let flat = items_of(b, t == TYPE_ZSET_LISTPACK).map_err(fail)?;
                if flat.len() % 2 != 0 {
                    return Err(fail(format!("{} elements, expected member/score pairs", flat.len())));
                }
                let mut v = Vec::with_capacity(flat.len() / 2);
                for pair in flat.chunks_exact(2) {
                    let score = match pair[1] {
                        Item::Int(i) => i as f64,
                        Item::Str(s) => super::cursor::parse_f64(s)
                            .ok_or_else(|| fail(format!("score {:?} is not a number", String::from_utf8_lossy(s))))?,
                    };
                    v.push((item(pair[0]), score));
                }
                Chunk::ZsetMembers(v)
            }
            TYPE_HASH_ZIPMAP => {
                let mut v = Vec::new();
                encodings::zipmap(b, |f, val| {
                    v.push(HashField { field: owned.slice_ref(f), value: owned.slice_ref(val), expire_at_ms: None });
                    Ok(())
                })
                .map_err(fail)?;
                Chunk::HashFields(v)
            }
            TYPE_HASH_ZIPLIST | TYPE_HASH_LISTPACK | TYPE_HASH_LISTPACK_EX | TYPE_HASH_LISTPACK_EX_PRE_GA => {
                let flat = items_of(b, t != TYPE_HASH_ZIPLIST).map_err(fail)?;
                let width = if t == TYPE_HASH_LISTPACK_EX || t == TYPE_HASH_LISTPACK_EX_PRE_GA { 3 } else { 2 };
                if flat.len() % width != 0 {
                    return Err(fail(format!("{} elements, expected groups of {width}", flat.len())));
                }
                let mut v = Vec::with_capacity(flat.len() / width);
                for g in flat.chunks_exact(width) {
                    let expire_at_ms = if width == 3 {
                        match g[2].as_int() {
                            Some(0) => None,
                            Some(ms) => Some(ms),
                            None => return Err(fail("field TTL is not an integer".into())),
                        }
                    } else {
                        None
                    };
                    v.push(HashField { field: item(g[0]), value: item(g[1]), expire_at_ms });
                }
                Chunk::HashFields(v)
            }
            _ => return Err(fail("not a blob-encoded type".into())),
        };
        let empty = match &chunk {
            Chunk::ListItems(v) | Chunk::SetMembers(v) => v.is_empty(),
            Chunk::ZsetMembers(v) => v.is_empty(),
            Chunk::HashFields(v) => v.is_empty(),
            _ => false,
        };
        Ok(if empty { None } else { Some(chunk) })
    }

    fn quicklist_node(&mut self, left: u64, cur: &mut Cur) -> Res<Option<Event>> {
        let v2 = self.cur_type == TYPE_LIST_QUICKLIST_2;
        let at = cur.pos;
        let container = if v2 { cur.length("quicklist node container")? } else { QUICKLIST_NODE_PACKED };
        let blob = cur.string()?;
        let left = left - 1;
        self.state = if left == 0 { State::KeyEnd } else { State::Value(Val::Quicklist { left }) };
        // The last node with nothing before it (a list of one node, the
        // common small list): the payload can carry it alone.
        if left == 0 && self.deferred_key.is_some() {
            let layout = match container {
                QUICKLIST_NODE_PACKED if v2 => Some(Packed::Listpack),
                QUICKLIST_NODE_PACKED => Some(Packed::Ziplist),
                QUICKLIST_NODE_PLAIN => Some(Packed::Plain),
                _ => None,
            };
            if let Some(undecoded) = layout.and_then(|l| self.undecoded(l, blob, cur.pos - at)) {
                return Ok(undecoded);
            }
        }
        let items = match container {
            QUICKLIST_NODE_PLAIN => vec![cur.to_bytes(blob)?],
            QUICKLIST_NODE_PACKED => {
                let owned = cur.to_bytes(blob)?;
                let layout = if v2 { Packed::Listpack } else { Packed::Ziplist };
                let mut items = Vec::with_capacity(layout.capacity(&owned));
                let push = |i| {
                    items.push(match i {
                        Item::Str(s) => owned.slice_ref(s),
                        Item::Int(n) => Bytes::from(n.to_string()),
                    });
                    Ok(())
                };
                if let Err(e) = walk(layout, &owned, push) {
                    return bad(at, format!("quicklist node: {e}"));
                }
                items
            }
            c => return bad(at, format!("quicklist node container {c}, expected 1 (plain) or 2 (packed)")),
        };
        Ok(if items.is_empty() { None } else { self.chunk(Chunk::ListItems(items)) })
    }
}

/// The bytes a DUMP payload ends with: the RDB version (2) and a CRC64 (8).
const DUMP_TRAILER: usize = 10;

/// How a compact value is laid out, for [`Parser::undecoded`].
#[derive(Debug, Clone, Copy)]
enum Packed {
    Ziplist,
    Listpack,
    Intset,
    /// A quicklist node holding one element as a plain string.
    Plain,
}

impl Packed {
    /// The element count its header declares, after the checks Redis makes
    /// on a restored payload before it trusts one (the declared size is the
    /// real size, the end marker is there); `None`: unknown (a count too
    /// large for the header field) or unsound, so decode it instead.
    fn count(self, b: &[u8]) -> Option<u64> {
        let u32_at = |i: usize| b.get(i..i + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize);
        let u16_at = |i: usize| b.get(i..i + 2).map(|w| u16::from_le_bytes([w[0], w[1]]));
        match self {
            Packed::Plain => Some(1),
            Packed::Ziplist => {
                // zlbytes, zltail, zllen (0xffff: count it), entries, 0xff.
                let n = u16_at(8)?;
                (u32_at(0)? == b.len() && b.len() >= 11 && b.last() == Some(&0xff) && n != u16::MAX).then_some(n.into())
            }
            Packed::Listpack => {
                // total bytes, element count (0xffff: count it), entries, 0xff.
                let n = u16_at(4)?;
                (u32_at(0)? == b.len() && b.len() >= 7 && b.last() == Some(&0xff) && n != u16::MAX).then_some(n.into())
            }
            Packed::Intset => {
                // encoding (2, 4 or 8 bytes a member), length, members.
                let (width, n) = (u32_at(0)?, u32_at(4)?);
                (matches!(width, 2 | 4 | 8) && b.len() == 8 + width * n).then_some(n as u64)
            }
        }
    }

    /// Room to reserve for the elements of `b`: the count its header
    /// declares once that is checked against the blob's size (so a corrupt
    /// header cannot ask for more than the blob could hold), else none.
    fn capacity(self, b: &[u8]) -> usize {
        self.count(b).map_or(0, |n| usize::try_from(n).unwrap_or(0).min(b.len()))
    }
}

/// Every element of a listpack (or ziplist) blob, in order.
fn items_of(b: &[u8], is_listpack: bool) -> Result<Vec<Item<'_>>, String> {
    let layout = if is_listpack { Packed::Listpack } else { Packed::Ziplist };
    let mut v = Vec::with_capacity(layout.capacity(b));
    walk(layout, b, |i| {
        v.push(i);
        Ok(())
    })?;
    Ok(v)
}

/// Hands every element of a listpack (or ziplist) blob to `f`, in order.
fn walk<'a>(layout: Packed, b: &'a [u8], f: impl FnMut(Item<'a>) -> Result<(), String>) -> Result<(), String> {
    match layout {
        Packed::Listpack => encodings::listpack(b, f),
        _ => encodings::ziplist(b, f),
    }
}

fn next_group(groups: u64) -> State {
    if groups <= 1 {
        State::KeyEnd
    } else {
        State::Value(Val::StreamGroup { groups: groups - 1 })
    }
}

fn next_consumer(groups: u64, consumers: u64) -> State {
    if consumers <= 1 {
        next_group(groups)
    } else {
        State::Value(Val::StreamConsumer { groups, consumers: consumers - 1 })
    }
}

fn stream_id(cur: &mut Cur) -> Res<StreamId> {
    let ms = cur.length("stream ID milliseconds")?;
    let seq = cur.length("stream ID sequence")?;
    Ok(StreamId { ms, seq })
}

/// A stream ID stored as 16 raw big-endian bytes (PEL entries).
fn raw_stream_id(cur: &mut Cur) -> Res<StreamId> {
    let ms = cur.be_u64()?;
    let seq = cur.be_u64()?;
    Ok(StreamId { ms, seq })
}

/// Skip module opcodes up to and including the EOF opcode; a whole module
/// aux record is one unit.
fn skip_module_body(cur: &mut Cur) -> Res<()> {
    loop {
        if skip_module_ops(cur)? {
            return Ok(());
        }
    }
}

/// Skip module opcodes while they are complete in the input. Returns true at
/// the EOF opcode; stops (with `More` if nothing was skipped) at a partial one.
fn skip_module_ops(cur: &mut Cur) -> Res<bool> {
    let first = cur.pos;
    loop {
        let start = cur.pos;
        let r: Res<bool> = (|| {
            let at = cur.pos;
            match cur.length("module opcode")? {
                MODULE_OP_EOF => return Ok(true),
                MODULE_OP_SINT | MODULE_OP_UINT => {
                    cur.length("module integer")?;
                }
                MODULE_OP_FLOAT => {
                    cur.le_f32()?;
                }
                MODULE_OP_DOUBLE => {
                    cur.le_f64()?;
                }
                MODULE_OP_STRING => {
                    cur.string()?;
                }
                op => return bad(at, format!("unknown module value opcode {op}")),
            }
            Ok(false)
        })();
        match r {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(Stop::More(n)) if start == first => return Err(Stop::More(n)),
            Err(Stop::More(_)) => {
                cur.pos = start;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Decode one stream node: a listpack of entries relative to `base`.
fn stream_listpack(lp: &[u8], base: StreamId) -> Result<Vec<StreamEntry>, String> {
    let items = items_of(lp, true)?;
    if items.is_empty() {
        return Err("empty listpack in a stream node".into());
    }
    let mut it = items.into_iter();
    fn next_int(it: &mut std::vec::IntoIter<Item>, what: &str) -> Result<i64, String> {
        it.next().and_then(|i| i.as_int()).ok_or_else(|| format!("expected {what} (an integer)"))
    }
    let to_bytes = |i: Item| -> Bytes {
        match i {
            Item::Str(s) => Bytes::copy_from_slice(s),
            Item::Int(v) => Bytes::from(v.to_string()),
        }
    };
    let _count = next_int(&mut it, "the node's entry count")?;
    let _deleted = next_int(&mut it, "the node's deleted count")?;
    let nfields = next_int(&mut it, "the master field count")?;
    let nfields = usize::try_from(nfields).map_err(|_| format!("master field count {nfields} is negative"))?;
    if nfields > lp.len() {
        return Err(format!("master field count {nfields} exceeds the listpack size"));
    }
    let mut master = Vec::with_capacity(nfields);
    for _ in 0..nfields {
        master.push(to_bytes(it.next().ok_or("master fields end early")?));
    }
    if next_int(&mut it, "the master entry terminator")? != 0 {
        return Err("master entry terminator is not 0".into());
    }
    let mut out = Vec::new();
    while it.len() > 0 {
        let flags = next_int(&mut it, "entry flags")?;
        let ms = next_int(&mut it, "entry ID milliseconds delta")?;
        let seq = next_int(&mut it, "entry ID sequence delta")?;
        let id = StreamId { ms: base.ms.wrapping_add(ms as u64), seq: base.seq.wrapping_add(seq as u64) };
        let mut fields = Vec::new();
        if flags & STREAM_ITEM_FLAG_SAMEFIELDS != 0 {
            for f in &master {
                fields.push(f.clone());
                fields.push(to_bytes(it.next().ok_or("entry values end early")?));
            }
        } else {
            let n = next_int(&mut it, "entry field count")?;
            let n = usize::try_from(n).map_err(|_| format!("entry field count {n} is negative"))?;
            if n > it.len() {
                return Err(format!("entry field count {n} exceeds the listpack"));
            }
            for _ in 0..n * 2 {
                fields.push(to_bytes(it.next().ok_or("entry fields end early")?));
            }
        }
        next_int(&mut it, "entry element count")?;
        if flags & STREAM_ITEM_FLAG_DELETED == 0 {
            out.push(StreamEntry { id, fields });
        }
    }
    Ok(out)
}

/// The current key's name (its first bytes) for error messages. Copied
/// inline rather than holding the key's `Bytes`: a refcount round trip per
/// key is measurable at millions of keys per second.
struct KeyName {
    head: [u8; 64],
    len: usize,
    full_len: usize,
}

impl Default for KeyName {
    fn default() -> Self {
        KeyName { head: [0; 64], len: 0, full_len: 0 }
    }
}

impl KeyName {
    fn new(k: &[u8]) -> Self {
        let mut head = [0u8; 64];
        let len = k.len().min(64);
        head[..len].copy_from_slice(&k[..len]);
        KeyName { head, len, full_len: k.len() }
    }

    fn show(&self) -> String {
        let mut s = quoted_key(&self.head[..self.len]);
        if self.full_len > self.len {
            s.push_str(&format!(" (first {} of {} bytes)", self.len, self.full_len));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-prefixed RDB string (6-bit length).
    fn rdb_str(out: &mut Vec<u8>, s: &[u8]) {
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }

    fn raw_id(out: &mut Vec<u8>, ms: u64, seq: u64) {
        out.extend_from_slice(&ms.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }

    /// An RDB 9 file with one stream: entry 1-0 {f: v}, group "g" whose PEL
    /// holds 1-0 and 2-5, both owned by consumer "c".
    fn stream_with_consumer_pel() -> Vec<u8> {
        // Listpack: count 1, deleted 0, 1 master field "f", terminator 0,
        // then the entry: flags SAMEFIELDS, ms delta 0, seq delta 0, "v", lp-count 3.
        let mut items: Vec<u8> = Vec::new();
        for (enc, backlen) in [(&[0x01][..], 1), (&[0x00], 1), (&[0x01], 1), (&[0x81, b'f'], 2), (&[0x00], 1)] {
            items.extend_from_slice(enc);
            items.push(backlen);
        }
        for (enc, backlen) in [(&[0x02][..], 1), (&[0x00], 1), (&[0x00], 1), (&[0x81, b'v'], 2), (&[0x03], 1)] {
            items.extend_from_slice(enc);
            items.push(backlen);
        }
        let mut lp = Vec::new();
        lp.extend_from_slice(&((6 + items.len() + 1) as u32).to_le_bytes());
        lp.extend_from_slice(&10u16.to_le_bytes());
        lp.extend_from_slice(&items);
        lp.push(0xff);

        let mut d = b"REDIS0009".to_vec();
        d.extend_from_slice(&[OP_SELECTDB, 0, TYPE_STREAM_LISTPACKS]);
        rdb_str(&mut d, b"s");
        d.push(1); // one listpack node
        let mut master = Vec::new();
        raw_id(&mut master, 1, 0);
        rdb_str(&mut d, &master);
        rdb_str(&mut d, &lp);
        d.extend_from_slice(&[1, 2, 5]); // length 1, last ID 2-5
        d.push(1); // one group
        rdb_str(&mut d, b"g");
        d.extend_from_slice(&[2, 5, 2]); // last delivered 2-5, PEL of 2
        for (ms, seq) in [(1, 0), (2, 5)] {
            raw_id(&mut d, ms, seq);
            d.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
            d.push(1); // delivery count
        }
        d.push(1); // one consumer
        rdb_str(&mut d, b"c");
        d.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        d.push(2); // its PEL of 2
        raw_id(&mut d, 1, 0);
        raw_id(&mut d, 2, 5);
        d.push(OP_EOF);
        d.extend_from_slice(&[0; 8]); // checksum disabled
        d
    }

    /// A captured payload is what Redis 7.0 `DUMP`s for the same value (these
    /// bytes are its answer for "abc"); told to leave the CRC-64 to the
    /// sender, the parser writes zeros there and nothing else changes.
    #[test]
    fn a_payload_is_sealed_unless_the_sender_seals_it() {
        let mut d = b"REDIS0010".to_vec();
        d.extend_from_slice(&[OP_SELECTDB, 0, TYPE_STRING]);
        rdb_str(&mut d, b"k");
        rdb_str(&mut d, b"abc");
        d.push(OP_EOF);
        d.extend_from_slice(&[0; 8]);
        let dump: &[u8] = b"\x00\x03abc\n\x00\xd9\xac0=Ar\xa2\xe2";
        for (seal, expected) in [(true, dump.to_vec()), (false, [&dump[..dump.len() - 8], &[0; 8]].concat())] {
            let opts =
                ParserOptions { capture_payload: Some(1 << 20), seal_payloads: seal, ..ParserOptions::default() };
            let payloads: Vec<Option<Bytes>> = super::super::RdbReader::with_options(&d[..], opts)
                .filter_map(|ev| match ev.expect("parses") {
                    Event::KeyEnd { payload } => Some(payload),
                    _ => None,
                })
                .collect();
            assert_eq!(payloads, vec![Some(Bytes::from(expected))], "seal_payloads {seal}");
        }
    }

    /// Drives the parser as a reader does whose reads return `read` bytes:
    /// the input visible to `step` ends wherever the last read ended, so a
    /// unit can be cut anywhere.
    fn parse_in_reads(data: &[u8], read: usize) -> Vec<Event> {
        let mut p = Parser::new(ParserOptions { chunk_items: 16, ..ParserOptions::default() });
        let (mut pos, mut end, mut events) = (0, 0, Vec::new());
        loop {
            match p.step(&Bytes::copy_from_slice(&data[pos..end])).expect("the file parses") {
                Step::Event(ev, n) => {
                    pos += n;
                    events.push(ev);
                }
                Step::Skip(n) => pos += n,
                Step::More(need) => {
                    assert!(need > end - pos && end < data.len(), "parser asked for {need} bytes at {pos}");
                    while end - pos < need && end < data.len() {
                        end = (end + read).min(data.len());
                    }
                }
                Step::Done => return events,
            }
        }
    }

    #[test]
    fn consumer_pel_cut_inside_an_id_is_read_again_whole() {
        let data = stream_with_consumer_pel();
        for read in 1..=data.len() {
            let ids: Vec<StreamId> = parse_in_reads(&data, read)
                .into_iter()
                .filter_map(|ev| match ev {
                    Event::Chunk(Chunk::StreamConsumerPending(ids)) => Some(ids),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(ids, [StreamId { ms: 1, seq: 0 }, StreamId { ms: 2, seq: 5 }], "reads of {read} bytes");
        }
    }

    /// `magic` + a hash `h` of type `t` holding `body`, then EOF with a zero
    /// (disabled) checksum.
    fn one_key(magic: &[u8], t: u8, body: &[u8]) -> Vec<u8> {
        let mut d = magic.to_vec();
        d.extend_from_slice(&[OP_SELECTDB, 0, t]);
        rdb_str(&mut d, b"h");
        d.extend_from_slice(body);
        d.push(OP_EOF);
        d.extend_from_slice(&[0; 8]);
        d
    }

    /// Events of a whole input, or the error.
    fn parse_all(data: &[u8]) -> Result<Vec<Event>, RdbError> {
        let mut p = Parser::default();
        let input = Bytes::copy_from_slice(data);
        let (mut pos, mut events) = (0, Vec::new());
        loop {
            match p.step(&input.slice(pos..))? {
                Step::Event(ev, n) => {
                    pos += n;
                    events.push(ev);
                }
                Step::Skip(n) => pos += n,
                Step::More(_) => {
                    return Err(RdbError::Truncated { offset: pos as u64, expected: "the rest".to_owned() })
                }
                Step::Done => return Ok(events),
            }
        }
    }

    #[test]
    fn valkey_9_files_and_their_hash_with_field_ttls() {
        // Two fields: "a" expiring at 1000 ms, "b" without a TTL (-1).
        let mut body = vec![2];
        for (f, v, at) in [(b"a", b"1", 1000i64), (b"b", b"2", -1)] {
            rdb_str(&mut body, f);
            rdb_str(&mut body, v);
            body.extend_from_slice(&at.to_le_bytes());
        }
        let events = parse_all(&one_key(b"VALKEY080", TYPE_VALKEY_HASH_2, &body)).expect("a Valkey 9 file parses");
        let fields: Vec<HashField> = events
            .iter()
            .filter_map(|e| match e {
                Event::Chunk(Chunk::HashFields(f)) => Some(f.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(fields.len(), 2);
        assert_eq!((fields[0].expire_at_ms, fields[1].expire_at_ms), (Some(1000), None));
        assert!(events.iter().any(|e| matches!(e, Event::Header { version: 80 })));
        // The same type number in a REDIS file is 7.4's pre-GA hash, another
        // layout entirely: it is not read as Valkey's.
        let as_redis = parse_all(&one_key(b"REDIS0012", TYPE_VALKEY_HASH_2, &body));
        assert!(as_redis
            .map_or(true, |ev| !ev.iter().any(|e| matches!(e, Event::Chunk(Chunk::HashFields(f)) if f.len() == 2))));
    }

    #[test]
    fn newer_versions_are_read_with_a_warning_and_unknown_types_fail_at_their_offset() {
        let mut body = Vec::new();
        rdb_str(&mut body, b"value");
        let events = parse_all(&one_key(b"REDIS0013", TYPE_STRING, &body)).expect("known types of RDB 13 parse");
        assert!(
            matches!(&events[1], Event::Warning(w) if w.message.contains("RDB version 13 is newer than the 12")),
            "{events:?}"
        );
        assert!(events.iter().any(|e| matches!(e, Event::KeyEnd { .. })));
        // A type this build does not know: an error naming it and where.
        let e = parse_all(&one_key(b"REDIS0013", 30, &body)).unwrap_err();
        assert!(e.to_string().contains("unknown opcode or value type 30"), "{e}");
        assert!(matches!(e, RdbError::Corrupt { offset: 11, .. }), "{e:?}");
        // Beyond the versions Redis may use, and a Valkey file before 80.
        assert!(parse_all(&one_key(b"REDIS0080", TYPE_STRING, &body)).is_err());
        assert!(parse_all(&one_key(b"VALKEY011", TYPE_STRING, &body)).is_err());
    }
}
