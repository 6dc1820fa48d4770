//! Streaming RDB parser.
//!
//! Bytes flow `RdbReader` (I/O, buffering) → `Parser` (an I/O-free state
//! machine) → `Event`s: header, aux fields, DB selection, then per key a
//! `KeyStart`, bounded chunks of its value and a `KeyEnd`, then `Eof` once
//! the CRC64 trailer is verified. `json` renders events in the canonical
//! NDJSON format of `shardsync rdb --json`.
//!
//! Reads RDB versions 1 to 12 and every encoding Redis has written: strings
//! (raw, int, LZF), lists (linked list, ziplist, quicklist 1 and 2), sets
//! (hashtable, intset, listpack), zsets (text and binary scores, ziplist,
//! listpack), hashes (hashtable, zipmap, ziplist, listpack, 7.4 field TTLs),
//! streams (listpacks 1 to 3 with groups, PEL and consumers), modules
//! (skipped with a warning), functions and Lua aux fields.

pub mod consts;
mod cursor;
pub mod encodings;
pub mod error;
pub mod event;
pub mod json;
pub mod lzf;
pub mod parser;
pub mod reader;

pub use error::RdbError;
pub use event::*;
pub use parser::{KeyTally, Parser, ParserOptions, Step};
pub use reader::{RdbReader, RdbSource};
