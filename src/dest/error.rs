//! What can go wrong applying commands to the destination, and what the
//! engine does about it.
//!
//! Every failure is an [`ApplyError`] with an [`ErrorClass`]:
//!
//! * [`ErrorClass::Retry`]: the destination is briefly unable to serve
//!   (`-LOADING` after a restart, `-BUSY` while a script runs, `-TRYAGAIN`
//!   during a cluster slot move) or the connection broke (timeout, reset,
//!   refused). Nothing is lost: the batch keeps what was not confirmed, and
//!   the engine backs off and applies it again (shown as `reconnecting`).
//! * [`ErrorClass::Pause`]: retrying cannot help until someone changes the
//!   destination (`-OOM`, `-READONLY`, `-NOREPLICAS`, `-NOPERM`,
//!   `-WRONGTYPE`, `-NOSCRIPT`, `-MISCONF`, anything unknown). The shard
//!   pauses; the message names the command, the key, its DB and source
//!   offset, and what to fix. Resuming applies the batch again.
//!
//! `BUSYKEY` and its relatives are not errors here: they are conflicts,
//! handled per conflict mode by the writer.

use std::fmt;

use super::batch::Origin;
use crate::display::show_key;
use crate::resp::RespError;

/// The code of the error that says the destination lost writes it had
/// confirmed (see [`super::Guard::Checkpoint`]).
pub const ROLLBACK: &str = "ROLLBACK";

/// The code of a [`ROLLBACK`] from a cluster master that restarted without
/// writes it had confirmed: what the full copy put there may be gone too,
/// so the shard cannot resume its stream and copies again in full.
pub const ROLLBACK_RESTART: &str = "ROLLBACK_RESTART";

/// The code of a cluster's `TRYAGAIN`: a unit's keys are on both sides of
/// a slot's move (the applier retries it sooner than other failures).
pub const TRYAGAIN: &str = "TRYAGAIN";

/// What the engine does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Back off, reconnect if needed, apply the same batch again.
    Retry,
    /// Pause the shard until the operator fixes the destination and resumes.
    Pause,
}

/// Error reply codes (the first word of `-CODE message`) that mean "try
/// again later", with why.
const RETRY_CODES: &[(&str, &str)] = &[
    ("LOADING", "the destination is loading its dataset into memory (it just restarted)"),
    ("BUSY", "the destination is running a slow script or function"),
    ("TRYAGAIN", "the destination is moving the key's slot (cluster resharding)"),
    (
        "MOVED",
        "the key's slot is served by another cluster master now (resharding or a failover): the slot map is read again",
    ),
    ("ASK", "the key's slot is being moved to another cluster master: applied once the move is done"),
    ("CLUSTERDOWN", "the destination cluster cannot serve this slot now (a master is down or failing over)"),
    (
        "WAIT",
        "writes to a cluster master count as done only once its replicas have them, so that a failover cannot \
         lose them; they are checked and sent again. A replica that stays behind: see its INFO replication",
    ),
    ("CLUSTER", "check that the cluster's nodes are up and answer CLUSTER SLOTS with the task's credentials; retried"),
];

/// Error reply codes that pause the shard, with what the operator can do.
const PAUSE_CODES: &[(&str, &str)] = &[
    ("OOM", "the destination reached maxmemory: raise maxmemory (or free memory) on the destination, then resume"),
    (
        "READONLY",
        "the destination refuses writes because it is a read-only replica: point the task at the master, then resume",
    ),
    (
        "NOREPLICAS",
        "the destination refuses writes for lack of replicas (min-replicas-to-write): bring its replicas back or lower the setting, then resume",
    ),
    ("NOPERM", "the destination user lacks a permission (ACL) for this command or key: grant it, then resume"),
    ("NOAUTH", "the destination requires authentication: set the destination password, then resume"),
    ("WRONGTYPE", "the destination already holds this key with another type: remove or rename it, then resume"),
    ("NOSCRIPT", "the destination does not have this script loaded: load it (SCRIPT LOAD), then resume"),
    (
        "MISCONF",
        "the destination cannot persist to disk (stop-writes-on-bgsave-error): fix its disk or persistence, then resume",
    ),
    (
        "BUSYKEY",
        "the destination already holds this key and the command does not replace it: remove the key, then resume",
    ),
    ("EXECABORT", "the destination refused a transaction: see the error of the command inside it"),
];

/// The class of an error reply (`message` without the leading `-`).
pub fn classify_reply(message: &str) -> ErrorClass {
    let code = error_code(message);
    if RETRY_CODES.iter().any(|(c, _)| *c == code) {
        ErrorClass::Retry
    } else {
        ErrorClass::Pause
    }
}

/// The class of a connection-level failure.
pub fn classify_resp(e: &RespError) -> ErrorClass {
    match e {
        RespError::ConnectRefused { .. }
        | RespError::ConnectTimeout { .. }
        | RespError::Connect { .. }
        | RespError::Timeout { .. }
        | RespError::Closed { .. }
        | RespError::Io { .. }
        | RespError::Unusable { .. } => ErrorClass::Retry,
        RespError::Server { message, .. } => classify_reply(message),
        // Wrong credentials, a peer that is not Redis, or a reply we cannot
        // decode: repeating the same thing gives the same answer.
        _ => ErrorClass::Pause,
    }
}

/// The first word of an error reply.
pub fn error_code(message: &str) -> &str {
    message.split_once(' ').map_or(message, |(code, _)| code)
}

fn hint_for(code: &str) -> Option<&'static str> {
    RETRY_CODES.iter().chain(PAUSE_CODES).find(|(c, _)| *c == code).map(|(_, hint)| *hint)
}

/// An `-ASK` reply: `slot` is being moved to the master at `to`, which
/// serves the keys already moved (`key` is one: the source master no longer
/// has it) when a command comes after `ASKING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ask {
    pub slot: u16,
    pub to: String,
    pub key: bytes::Bytes,
}

/// A failure applying a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    pub class: ErrorClass,
    /// The error reply's code (`OOM`, `READONLY`, `ERR`...), or `CONNECTION`,
    /// `TIMEOUT`, `PROTOCOL`, `ORDER` for failures that are not replies.
    pub code: String,
    /// The destination's address.
    pub addr: String,
    /// The failed command's name (never its arguments).
    pub command: Option<String>,
    /// Boxed: errors travel in `Result`s on the hot path and should be small.
    pub origin: Option<Box<Origin>>,
    /// The server's message, or what happened.
    pub detail: String,
}

impl ApplyError {
    /// A failure from an error reply to `command`.
    pub fn from_reply(addr: &str, command: String, origin: Origin, message: &str) -> Self {
        ApplyError {
            class: classify_reply(message),
            code: error_code(message).to_owned(),
            addr: addr.to_owned(),
            command: Some(command),
            origin: Some(Box::new(origin)),
            detail: message.to_owned(),
        }
    }

    /// A connection-level failure while `origin`'s command was outstanding.
    pub fn from_resp(addr: &str, e: &RespError, command: Option<String>, origin: Option<Origin>) -> Self {
        let code = match e {
            RespError::Timeout { .. } | RespError::ConnectTimeout { .. } => "TIMEOUT".to_owned(),
            RespError::Server { message, .. } => error_code(message).to_owned(),
            RespError::Protocol { .. } | RespError::NotResp { .. } => "PROTOCOL".to_owned(),
            RespError::AuthRequired { .. }
            | RespError::WrongPassword { .. }
            | RespError::WrongUserOrPassword { .. }
            | RespError::NoPasswordSet { .. }
            | RespError::AclUnsupported { .. }
            | RespError::AuthFailed { .. } => "AUTH".to_owned(),
            _ => "CONNECTION".to_owned(),
        };
        ApplyError {
            class: classify_resp(e),
            code,
            addr: addr.to_owned(),
            command,
            origin: origin.map(Box::new),
            detail: e.to_string(),
        }
    }

    /// The key concerned, escaped for display.
    pub fn key(&self) -> Option<String> {
        self.origin.as_ref().filter(|o| !o.key.is_empty()).map(|o| show_key(&o.key))
    }

    /// The slot and importing master of an `-ASK <slot> <host:port>` reply.
    pub(crate) fn ask(&self) -> Option<Ask> {
        if self.code != "ASK" {
            return None;
        }
        let Some(super::cluster::topology::Redirect::Ask { slot, to }) =
            super::cluster::topology::Redirect::parse(&self.detail)
        else {
            return None;
        };
        let key = self.origin.as_ref().map(|o| o.key.clone()).unwrap_or_default();
        Some(Ask { slot, to, key })
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retry
    }

    /// The destination lost writes it had confirmed ([`ROLLBACK`] or
    /// [`ROLLBACK_RESTART`]): not a pause, the shard resumes or copies again.
    pub fn is_rollback(&self) -> bool {
        self.code == ROLLBACK || self.code == ROLLBACK_RESTART
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.class {
            // Not a pause: the shard resumes from what the destination holds.
            _ if self.is_rollback() => "the destination lost writes it had confirmed",
            ErrorClass::Retry => "destination temporarily unavailable (will retry)",
            ErrorClass::Pause => "destination write failed (shard paused)",
        };
        write!(f, "{what}: {}", self.addr)?;
        if let Some(command) = &self.command {
            write!(f, ", {command}")?;
        }
        if let Some(origin) = &self.origin {
            if !origin.key.is_empty() {
                write!(f, " of key \"{}\"", show_key(&origin.key))?;
            }
            write!(f, " (db {}, source offset {})", origin.db, origin.offset)?;
        }
        write!(f, ": {}", self.detail)?;
        if let Some(hint) = hint_for(&self.code) {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApplyError {}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn an_ask_reply_names_the_slot_the_importing_master_and_the_key() {
        let origin = Origin { db: 0, key: Bytes::from_static(b"{mv}:k"), offset: 9 };
        let e = ApplyError::from_reply("a:1", "SET".into(), origin.clone(), "ASK 7220 127.0.0.1:7002");
        assert_eq!(e.ask(), Some(Ask { slot: 7220, to: "127.0.0.1:7002".into(), key: origin.key.clone() }));
        let moved = ApplyError::from_reply("a:1", "SET".into(), origin, "MOVED 7220 127.0.0.1:7002");
        assert_eq!(moved.ask(), None);
    }

    #[test]
    fn replies_are_classified_by_their_code() {
        for retry in
            ["LOADING Redis is loading the dataset in memory", "BUSY Redis is busy running a script", "TRYAGAIN x"]
        {
            assert_eq!(classify_reply(retry), ErrorClass::Retry, "{retry}");
        }
        for pause in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "READONLY You can't write against a read only replica.",
            "NOREPLICAS Not enough good replicas to write.",
            "NOPERM this user has no permissions to run the 'restore' command",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "NOSCRIPT No matching script. Please use EVAL.",
            "ERR unknown command 'XSETID'",
            "BUSYGROUP Consumer Group name already exists",
            "SOMETHINGNEW",
        ] {
            assert_eq!(classify_reply(pause), ErrorClass::Pause, "{pause}");
        }
    }

    #[test]
    fn connection_failures_are_retried_but_bad_credentials_are_not() {
        let closed = RespError::Closed { addr: "a".into(), command: "RESTORE".into() };
        assert_eq!(classify_resp(&closed), ErrorClass::Retry);
        let timeout = RespError::Timeout {
            addr: "a".into(),
            command: "RESTORE".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(classify_resp(&timeout), ErrorClass::Retry);
        assert_eq!(ApplyError::from_resp("a", &timeout, None, None).code, "TIMEOUT");
        let auth = RespError::WrongPassword { addr: "a".into(), server: "WRONGPASS".into() };
        assert_eq!(classify_resp(&auth), ErrorClass::Pause);
    }

    #[test]
    fn messages_name_command_key_db_offset_and_the_fix() {
        let origin = Origin { db: 2, key: Bytes::from_static(b"user:\x00:1"), offset: 4096 };
        let e = ApplyError::from_reply(
            "127.0.0.1:6379",
            "RESTORE".into(),
            origin,
            "OOM command not allowed when used memory > 'maxmemory'.",
        );
        assert_eq!(e.class, ErrorClass::Pause);
        let text = e.to_string();
        for part in ["shard paused", "RESTORE", "user:\\x00:1", "db 2", "source offset 4096", "raise maxmemory"] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
    }
}
