//! [`VerifyError`]: why a verification could not finish. A difference
//! between source and destination is never an error (it is the report's
//! content); these are the failures that leave nothing proven: a server that
//! cannot be reached or answers something unexpected, or a cancelled run.
//!
//! Every message names the server (its role, shard and address), the DB and,
//! where one is involved, the key, and says what to do.

use crate::resp::RespError;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Connecting or authenticating failed.
    #[error("cannot connect to {side}: {source}; check that it runs and the task file's address and password")]
    Connect {
        /// e.g. `source server1 (127.0.0.1:7001)`.
        side: String,
        #[source]
        source: Box<RespError>,
    },

    /// A command failed at the connection level (I/O, timeout, protocol) or
    /// was refused by the server.
    #[error("{side}: {source} (while {during}); verify stopped: nothing is proven, fix the server or the network and run it again")]
    Query {
        /// e.g. `destination (127.0.0.1:6379) db 0`.
        side: String,
        /// e.g. `reading INFO keyspace`, `comparing key "k:1"`.
        during: String,
        #[source]
        source: Box<RespError>,
    },

    /// A reply that no Redis server sends for this command: the address
    /// points at something else (a proxy that rewrites replies), or the
    /// command is renamed to another one.
    #[error("{side} answered {command} with {got} (while {during}); is this address a Redis server (not twemproxy), with {command} not renamed?")]
    Reply { side: String, command: String, during: String, got: String },

    /// The run was cancelled (Ctrl-C, or the caller's token).
    #[error("verify was cancelled before it finished: nothing is proven")]
    Cancelled,
}
