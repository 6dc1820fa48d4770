//! shardsync: migrate the Redis-Servers behind a Twemproxy cluster into one
//! destination Redis with no downtime.
//!
//! The library holds the engine parts; `main.rs` only parses the command line
//! and picks a front end. `rdb` reads the RDB format as a stream of events,
//! `resp` talks RESP2 to a Redis server, `source` reads a master's
//! replication stream into a disk spool and back out as RDB bytes and
//! commands, `dest` turns keys and commands into destination writes and
//! applies them, `config` is the task file, `engine` runs the sync,
//! `headless` renders its progress, `verify` compares the sources with
//! the destination, `ui` is the terminal front end and `sandbox` the
//! demo's local deployment; `private_fs` makes the state directory's files
//! readable by their owner only.

pub mod config;
pub mod dest;
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
