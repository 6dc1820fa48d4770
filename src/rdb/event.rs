//! The typed events the RDB parser yields.
//!
//! A key arrives as `Event::KeyStart`, then zero or more `Event::Chunk`s that
//! each hold a bounded piece of its value, then `Event::KeyEnd`. So a 10 GB
//! list flows through in constant memory: no event ever holds more than one
//! chunk of one value.

use bytes::Bytes;

/// A stream ID (`<ms>-<seq>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A module type ID as stored in the RDB: 54 bits of name, 10 bits of encoding version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleId(pub u64);

/// The logical type of a key, whatever its on-disk encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    String,
    List,
    Set,
    Zset,
    Hash,
    Stream,
    Module,
}

impl ValueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::List => "list",
            ValueKind::Set => "set",
            ValueKind::Zset => "zset",
            ValueKind::Hash => "hash",
            ValueKind::Stream => "stream",
            ValueKind::Module => "module",
        }
    }
}

/// The start of a key: everything known before its value is read.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStart {
    pub db: u64,
    pub key: Bytes,
    pub kind: ValueKind,
    /// The value is not decoded: no chunk follows, and the key's `KeyEnd`
    /// payload is the whole value (see `ParserOptions::restore_versions`).
    pub undecoded: bool,
    /// The on-disk type byte (`RDB_TYPE_*`), needed to build a DUMP payload.
    pub rdb_type: u8,
    /// Absolute expiry in unix milliseconds, as stored (seconds are converted).
    pub expire_at_ms: Option<i64>,
    /// LRU idle seconds (`RDB_OPCODE_IDLE`), when the source used an LRU policy.
    pub idle_secs: Option<u64>,
    /// LFU frequency (`RDB_OPCODE_FREQ`), when the source used an LFU policy.
    pub lfu_freq: Option<u8>,
}

/// One hash field; `expire_at_ms` is set for Redis 7.4 per-field TTLs.
#[derive(Debug, Clone, PartialEq)]
pub struct HashField {
    pub field: Bytes,
    pub value: Bytes,
    pub expire_at_ms: Option<i64>,
}

/// One stream entry (tombstoned entries are never yielded).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: StreamId,
    /// Field, value, field, value, …
    pub fields: Vec<Bytes>,
}

/// The stream's own metadata; the optional fields exist from RDB type 19
/// (`STREAM_LISTPACKS_2`, Redis 7.0) on.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMeta {
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
}

/// A consumer group header; its PEL and consumers follow as their own chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamGroup {
    pub name: Bytes,
    pub last_id: StreamId,
    /// From RDB type 19 on.
    pub entries_read: Option<u64>,
}

/// One pending (delivered, unacknowledged) entry of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
}

/// A consumer of the current group; its pending IDs follow.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConsumer {
    pub name: Bytes,
    pub seen_time_ms: i64,
    /// From RDB type 21 (`STREAM_LISTPACKS_3`, Redis 7.2) on.
    pub active_time_ms: Option<i64>,
}

/// A bounded piece of the current key's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Part of a string; a string is one chunk unless it is larger than the
    /// parser's chunk size.
    String(Bytes),
    ListItems(Vec<Bytes>),
    SetMembers(Vec<Bytes>),
    HashFields(Vec<HashField>),
    ZsetMembers(Vec<(Bytes, f64)>),
    StreamEntries(Vec<StreamEntry>),
    StreamMeta(Box<StreamMeta>),
    StreamGroup(Box<StreamGroup>),
    /// A piece of the current group's PEL.
    StreamGroupPending(Vec<PendingEntry>),
    StreamConsumer(Box<StreamConsumer>),
    /// A piece of the current consumer's PEL (IDs into the group's PEL).
    StreamConsumerPending(Vec<StreamId>),
    /// A module value the parser cannot interpret.
    Module(Box<ModuleValue>),
}

impl Chunk {
    /// Roughly the memory the chunk holds (element handles included), for
    /// budgets of what is in flight.
    pub fn mem_bytes(&self) -> usize {
        use std::mem::size_of;
        let handle = size_of::<Bytes>();
        match self {
            Chunk::String(b) => b.len(),
            Chunk::ListItems(v) | Chunk::SetMembers(v) => v.iter().map(|b| b.len() + handle).sum(),
            Chunk::HashFields(v) => v.iter().map(|f| f.field.len() + f.value.len() + size_of::<HashField>()).sum(),
            Chunk::ZsetMembers(v) => v.iter().map(|(m, _)| m.len() + size_of::<(Bytes, f64)>()).sum(),
            Chunk::StreamEntries(v) => v
                .iter()
                .map(|e| e.fields.iter().map(|f| f.len() + handle).sum::<usize>() + size_of::<StreamEntry>())
                .sum(),
            Chunk::StreamGroupPending(v) => v.len() * size_of::<PendingEntry>(),
            Chunk::StreamConsumerPending(v) => v.len() * size_of::<StreamId>(),
            _ => 256,
        }
    }
}

/// A module value: its type ID and the name packed in it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleValue {
    pub id: ModuleId,
    pub name: String,
}

/// A function library from a Redis 7.0 release candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionPreGa {
    pub name: Bytes,
    pub engine: Bytes,
    pub description: Option<Bytes>,
    pub code: Bytes,
}

/// Module auxiliary data (skipped; its bytes are not interpreted).
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleAux {
    pub id: ModuleId,
    pub name: String,
    pub when: u64,
}

/// Something skipped or partly read, at a byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub offset: u64,
    pub message: String,
}

/// What the parser yields, in file order. Rare or large variants are boxed:
/// events move through several layers per key, and keeping this enum small
/// was worth a quarter of the parse time.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The file header: `REDIS` and the format version.
    Header {
        version: u32,
    },
    /// An aux field: (name, value).
    Aux(Box<(Bytes, Bytes)>),
    SelectDb {
        db: u64,
    },
    ResizeDb {
        db_size: u64,
        expires_size: u64,
    },
    SlotInfo {
        slot: u64,
        size: u64,
        expires_size: u64,
    },
    ModuleAux(Box<ModuleAux>),
    /// A function library (`RDB_OPCODE_FUNCTION2`, Redis 7.0 GA on): the code
    /// as given to `FUNCTION LOAD`.
    Function {
        code: Bytes,
    },
    /// A function from a Redis 7.0 release candidate (`RDB_OPCODE_FUNCTION_PRE_GA`).
    FunctionPreGa(Box<FunctionPreGa>),
    KeyStart(Box<KeyStart>),
    Chunk(Chunk),
    /// The end of the current key. `payload` is the DUMP payload (type byte,
    /// value bytes, RDB version, CRC64) when the reader was asked to capture
    /// payloads and the value was not larger than the capture limit. Its
    /// CRC64 is zero when the reader was told to leave it to the sender
    /// (`ParserOptions::seal_payloads`).
    KeyEnd {
        payload: Option<Bytes>,
    },
    /// Something the parser skipped or could only partly read; the data after
    /// it is still parsed. Front ends must show these.
    Warning(Box<Warning>),
    /// The end of the file; the reader checked the trailer's CRC64 (`None`:
    /// the file has no trailer or its checksum is disabled).
    Eof {
        checksum: Option<u64>,
    },
}
