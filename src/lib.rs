//! shardsync: migrate the Redis-Servers behind a Twemproxy cluster into one
//! destination Redis with no downtime.
//!
//! The library holds the engine parts; `main.rs` only parses the command line
//! and picks a front end. `rdb` reads the RDB format as a stream of events,
//! `resp` talks RESP2 to a Redis server.

pub mod dest;
pub mod engine;
pub mod headless;
pub mod rdb;
pub mod resp;
