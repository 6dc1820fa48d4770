//! shardsync: migrate the Redis-Servers behind a Twemproxy cluster into one
//! destination Redis with no downtime.
//!
//! The library holds the engine parts; `main.rs` only parses the command line
//! and picks a front end. `rdb` reads the RDB format as a stream of events,
//! `resp` talks RESP2 to a Redis server, `source` reads a master's
//! replication stream into a disk spool and back out as RDB bytes and
//! commands, `dest` turns keys and commands into destination writes and
//! applies them, `config` is the task file, `probe` says what one server
//! is, `engine` runs the sync, `headless` renders its progress, `precheck`
//! judges a task before it starts, `verify` compares the sources with the
//! destination, `ui` is the terminal front end and `sandbox` the demo's
//! local deployment; `private_fs` makes the state directory's files
//! readable by their owner only.
//!
//! # Layers
//!
//! A module uses only modules on rows below its own (any row below, not
//! just the next), never one on its own row or above, so there are no
//! import cycles between them:
//!
//! ```text
//! main.rs, cli/ (the binary)      one module a command
//!        ↓
//! ui                              the wizard and the dashboard
//!        ↓
//! headless  precheck  verify      progress lines, checks before, comparison after
//!        ↓
//! engine                          one shard engine per source master
//!        ↓
//! source  probe  sandbox          replication + spool, what a server is, the demo
//!        ↓
//! dest  config                    destination writes, the task file
//!        ↓
//! rdb  resp                       the RDB format, the RESP2 protocol
//!        ↓
//! clock  crc64  display  human  private_fs   leaves: any row may use them
//! ```
//!
//! Where the shared helpers live, each in one place:
//!
//! * the wall clock, `now_ms`: [`clock`];
//! * the CRC-64 that seals a DUMP payload: [`crc64`];
//! * the `INFO` reply (fields, `dbN:keys=..` keyspace lines, command stats):
//!   [`resp::info`], used by the probe, the engine's pollers, the
//!   destination's version check, the precheck and verify;
//! * keys and bytes in messages (`show_key`, `quoted_key`, `escape_preview`):
//!   [`display`]; numbers and sizes for people: [`human`];
//! * the host of a `host:port`, `host_of`: [`config`] (with [`config::Addr`]);
//! * the exit codes `EXIT_OK`, `EXIT_FAILED`, `EXIT_BAD_CONFIG`: `cli/exit.rs`
//!   in the binary (see `docs/exit-codes.md`);
//! * what several UI screens and the UI's messages share (`TaskInfo`,
//!   `Notice`, `is_ctrl`): [`ui::common`];
//! * inside the engine, what a shard's loop and its destination side both
//!   use: [`engine::settings`] (the DB map, the conflict mode) and
//!   `engine::status` (the shard's status owner: typed events, one fold); inside verify, `endpoint` and
//!   `outcome` for the batch and the big-key readers.

pub mod clock;
pub mod config;
pub mod crc64;
pub mod dest;
pub mod display;
pub mod engine;
pub mod headless;
pub mod human;
pub mod precheck;
pub mod private_fs;
pub mod probe;
pub mod rdb;
pub mod resp;
pub mod sandbox;
pub mod source;
pub mod ui;
pub mod verify;
