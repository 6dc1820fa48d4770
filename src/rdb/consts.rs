//! Wire constants of the RDB format, in one place, with the Redis version
//! that introduced each (the source of truth is Redis's `rdb.h`).

/// Newest Redis RDB format version whose types this parser knows (Redis
/// 7.4 and 8.0 write 12). A newer `REDIS` file is read too: what it holds
/// of the known types parses, anything new fails at its offset, naming it.
pub const MAX_VERSION: u32 = 12;
/// The highest version a `REDIS` header may carry: Valkey reserves 12–79
/// for Redis ("foreign" versions) and writes 80 from 9.0 on.
pub const MAX_FOREIGN_VERSION: u32 = 79;
/// Valkey 9.0's RDB version, under the 9-byte magic `VALKEY080`.
pub const VALKEY_VERSION: u32 = 80;
/// The CRC64 trailer exists from RDB version 5 (Redis 2.6) on.
pub const FIRST_VERSION_WITH_CHECKSUM: u32 = 5;

// Value types (the byte before a key).
pub const TYPE_STRING: u8 = 0;
pub const TYPE_LIST: u8 = 1;
pub const TYPE_SET: u8 = 2;
pub const TYPE_ZSET: u8 = 3;
pub const TYPE_HASH: u8 = 4;
/// Binary double scores (Redis 4.0, RDB 8).
pub const TYPE_ZSET_2: u8 = 5;
/// Redis 4.0 release candidates; the value cannot be skipped without the module.
pub const TYPE_MODULE_PRE_GA: u8 = 6;
/// Self-describing module values (Redis 4.0).
pub const TYPE_MODULE_2: u8 = 7;
pub const TYPE_HASH_ZIPMAP: u8 = 9;
pub const TYPE_LIST_ZIPLIST: u8 = 10;
pub const TYPE_SET_INTSET: u8 = 11;
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
pub const TYPE_HASH_ZIPLIST: u8 = 13;
/// Redis 3.2 (RDB 7).
pub const TYPE_LIST_QUICKLIST: u8 = 14;
/// Redis 5.0 (RDB 9).
pub const TYPE_STREAM_LISTPACKS: u8 = 15;
/// Redis 7.0 (RDB 10).
pub const TYPE_HASH_LISTPACK: u8 = 16;
pub const TYPE_ZSET_LISTPACK: u8 = 17;
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
pub const TYPE_STREAM_LISTPACKS_2: u8 = 19;
/// Redis 7.2 (RDB 11).
pub const TYPE_SET_LISTPACK: u8 = 20;
pub const TYPE_STREAM_LISTPACKS_3: u8 = 21;
/// Redis 7.4 release candidates (RDB 12): field TTLs as absolute times.
pub const TYPE_HASH_METADATA_PRE_GA: u8 = 22;
pub const TYPE_HASH_LISTPACK_EX_PRE_GA: u8 = 23;
/// Redis 7.4 GA (RDB 12): field TTLs relative to a leading minimum expiry.
pub const TYPE_HASH_METADATA: u8 = 24;
pub const TYPE_HASH_LISTPACK_EX: u8 = 25;
/// Valkey 9.0 (RDB 80, `VALKEY` files only; 22 means `TYPE_HASH_METADATA_PRE_GA`
/// in a `REDIS` file): a hash with field TTLs, as (field, value, expiry in
/// unix ms as 8 bytes LE, -1 for none) triples.
pub const TYPE_VALKEY_HASH_2: u8 = 22;

// Opcodes.
/// Redis 7.4 cluster mode.
pub const OP_SLOT_INFO: u8 = 244;
/// Redis 7.0 GA.
pub const OP_FUNCTION2: u8 = 245;
/// Redis 7.0 release candidates.
pub const OP_FUNCTION_PRE_GA: u8 = 246;
/// Redis 4.0.
pub const OP_MODULE_AUX: u8 = 247;
pub const OP_IDLE: u8 = 248;
pub const OP_FREQ: u8 = 249;
pub const OP_AUX: u8 = 250;
pub const OP_RESIZEDB: u8 = 251;
pub const OP_EXPIRETIME_MS: u8 = 252;
pub const OP_EXPIRETIME: u8 = 253;
pub const OP_SELECTDB: u8 = 254;
pub const OP_EOF: u8 = 255;

// Length encoding: the two top bits of the first byte.
pub const LEN_6BIT: u8 = 0;
pub const LEN_14BIT: u8 = 1;
pub const LEN_32BIT: u8 = 0x80;
pub const LEN_64BIT: u8 = 0x81;
pub const LEN_ENCVAL: u8 = 3;
// Special string encodings (after LEN_ENCVAL).
pub const ENC_INT8: u8 = 0;
pub const ENC_INT16: u8 = 1;
pub const ENC_INT32: u8 = 2;
pub const ENC_LZF: u8 = 3;

// Module value opcodes (RDB_MODULE_OPCODE_*).
pub const MODULE_OP_EOF: u64 = 0;
pub const MODULE_OP_SINT: u64 = 1;
pub const MODULE_OP_UINT: u64 = 2;
pub const MODULE_OP_FLOAT: u64 = 3;
pub const MODULE_OP_DOUBLE: u64 = 4;
pub const MODULE_OP_STRING: u64 = 5;

// Quicklist 2 node containers (Redis 7.0).
pub const QUICKLIST_NODE_PLAIN: u64 = 1;
pub const QUICKLIST_NODE_PACKED: u64 = 2;

// Stream listpack entry flags.
pub const STREAM_ITEM_FLAG_DELETED: i64 = 1;
pub const STREAM_ITEM_FLAG_SAMEFIELDS: i64 = 2;

/// The characters a module type name is made of (`ModuleTypeNameCharSet`).
pub const MODULE_NAME_CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A human name for a type byte, for messages.
pub fn type_name(t: u8) -> &'static str {
    match t {
        TYPE_STRING => "string",
        TYPE_LIST => "list (linked list)",
        TYPE_SET => "set (hashtable)",
        TYPE_ZSET => "zset (string scores)",
        TYPE_HASH => "hash (hashtable)",
        TYPE_ZSET_2 => "zset (binary scores)",
        TYPE_MODULE_PRE_GA => "module (pre-GA)",
        TYPE_MODULE_2 => "module",
        TYPE_HASH_ZIPMAP => "hash (zipmap)",
        TYPE_LIST_ZIPLIST => "list (ziplist)",
        TYPE_SET_INTSET => "set (intset)",
        TYPE_ZSET_ZIPLIST => "zset (ziplist)",
        TYPE_HASH_ZIPLIST => "hash (ziplist)",
        TYPE_LIST_QUICKLIST => "list (quicklist)",
        TYPE_STREAM_LISTPACKS => "stream (v1)",
        TYPE_HASH_LISTPACK => "hash (listpack)",
        TYPE_ZSET_LISTPACK => "zset (listpack)",
        TYPE_LIST_QUICKLIST_2 => "list (quicklist 2)",
        TYPE_STREAM_LISTPACKS_2 => "stream (v2)",
        TYPE_SET_LISTPACK => "set (listpack)",
        TYPE_STREAM_LISTPACKS_3 => "stream (v3)",
        TYPE_HASH_METADATA_PRE_GA => "hash with field TTLs (pre-GA)",
        TYPE_HASH_LISTPACK_EX_PRE_GA => "hash listpack with field TTLs (pre-GA)",
        TYPE_HASH_METADATA => "hash with field TTLs",
        TYPE_HASH_LISTPACK_EX => "hash listpack with field TTLs",
        _ => "unknown type",
    }
}

/// The 9-character name and encoding version packed in a module type ID.
pub fn module_name(id: u64) -> String {
    let mut name = [0u8; 9];
    let mut rest = id >> 10;
    for slot in name.iter_mut().rev() {
        *slot = MODULE_NAME_CHARSET[(rest & 63) as usize];
        rest >>= 6;
    }
    String::from_utf8_lossy(&name).into_owned()
}

pub fn module_encver(id: u64) -> u64 {
    id & 1023
}
