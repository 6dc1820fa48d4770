//! `RespError`: everything that can go wrong talking to a server, worded for
//! the operator who has to fix it. Every variant names the address; the ones
//! that happen around a command name the command (never its arguments, which
//! may be keys or secrets).

use std::{io, time::Duration};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RespError {
    #[error(
        "connection refused by {addr}: is redis-server (or twemproxy) running and listening on that address and port?"
    )]
    ConnectRefused { addr: String },

    #[error("connecting to {addr} timed out after {timeout:?}: the host is down, unreachable, or a firewall drops the packets")]
    ConnectTimeout { addr: String, timeout: Duration },

    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },

    #[error("{addr} requires a password (NOAUTH) but none was given: set `password` (or the variable `password_env` names) to \"<password>\" or \"<user>:<password>\"")]
    AuthRequired { addr: String },

    #[error(
        "wrong password for {addr} (server said: {server}): check `password` (or the variable `password_env` names)"
    )]
    WrongPassword { addr: String, server: String },

    #[error("{addr} rejected user `{user}`: unknown or disabled user, or wrong password for it; Redis does not say which (server said: {server}): check both parts of \"{user}:<password>\"")]
    WrongUserOrPassword { addr: String, user: String, server: String },

    #[error("a password was given but {addr} has no password set (server said: {server}): leave `password` empty, or set requirepass on the server")]
    NoPasswordSet { addr: String, server: String },

    #[error("{addr} has no ACL users (Redis before 6.0), so user `{user}` cannot log in: give the password alone")]
    AclUnsupported { addr: String, user: String },

    #[error("AUTH to {addr} failed: {server}")]
    AuthFailed { addr: String, server: String },

    #[error("peer at {addr} does not speak RESP: got \"{got}\"; is this the port of a Redis server?")]
    NotResp { addr: String, got: String },

    #[error("invalid RESP from {addr} in the reply to {command}: {detail}")]
    Protocol { addr: String, command: String, detail: String },

    #[error("no reply from {addr} to {command} within {timeout:?}")]
    Timeout { addr: String, command: String, timeout: Duration },

    #[error("connection closed by {addr} while waiting for the reply to {command}")]
    Closed { addr: String, command: String },

    #[error("I/O error with {addr} during {command}: {source}")]
    Io {
        addr: String,
        command: String,
        #[source]
        source: io::Error,
    },

    #[error("{addr} answered {command} with an error: {message}")]
    Server { addr: String, command: String, message: String },

    #[error("refusing to send an empty command to {addr}: Redis never answers one")]
    EmptyCommand { addr: String },

    /// A pipeline failed half-way: replies may still be in flight, so the
    /// next reply read would belong to an old command.
    #[error("connection to {addr} is unusable after an earlier error ({reason}); reconnect")]
    Unusable { addr: String, reason: String },
}

impl RespError {
    /// The server refused the credentials (or wanted some): the operator
    /// must change the password, no retry alone helps.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            RespError::AuthRequired { .. }
                | RespError::WrongPassword { .. }
                | RespError::WrongUserOrPassword { .. }
                | RespError::NoPasswordSet { .. }
                | RespError::AclUnsupported { .. }
                | RespError::AuthFailed { .. }
        )
    }
}
