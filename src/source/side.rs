//! Every conversation with a source master besides its replication link:
//! the heartbeat key, the offset and key-count polls, the "is its snapshot
//! child gone" check, and whether it holds given keys (collision surveys).
//!
//! A [`SideConn`] connects lazily and drops a connection that failed, so
//! the engine's loops (which decide when to ask, and what an answer means
//! for the shard) just ask again on their next round.

use std::time::Duration;

use crate::resp::info::{info_field, parse_keyspace};
use crate::resp::{Cmd, ConnectOptions, Connection, RespError, Value};

/// A side connection to one source; see the module docs.
pub struct SideConn {
    addr: String,
    opts: ConnectOptions,
    conn: Option<Connection>,
}

/// What writing the heartbeat gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    Written,
    /// The source refused it (an ACL without write rights, a read-only
    /// replica): its reply.
    Refused(String),
    /// No connection, or it broke: tried again next time.
    Unreachable,
}

impl SideConn {
    pub fn new(addr: String, opts: ConnectOptions) -> Self {
        SideConn { addr, opts, conn: None }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The open connection, connecting first when there is none.
    async fn conn(&mut self) -> Option<&mut Connection> {
        if self.conn.is_none() {
            self.conn = Connection::connect(&self.addr, &self.opts).await.ok();
        }
        self.conn.as_mut()
    }

    /// Sends `cmds` as one pipeline; a transport failure drops it.
    async fn ask(&mut self, cmds: &[Cmd]) -> Option<Vec<Value>> {
        let conn = self.conn().await?;
        match conn.pipeline(cmds).await {
            Ok(replies) => Some(replies),
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }

    /// `SET <key> <ms>`.
    pub async fn beat(&mut self, key: &str, ms: i64) -> Beat {
        match self.ask(&[Cmd::new("SET").arg(key).arg(ms.to_string())]).await.and_then(|mut r| r.pop()) {
            Some(Value::Error(e)) => Beat::Refused(e.to_string()),
            Some(_) => Beat::Written,
            None => Beat::Unreachable,
        }
    }

    /// Deletes `key`, giving up after `within` (connecting included); the
    /// error says why it is still there.
    pub async fn delete_within(&mut self, key: &str, within: Duration) -> Result<(), String> {
        if self.conn.is_none() {
            match tokio::time::timeout(within, Connection::connect(&self.addr, &self.opts)).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err(format!("no connection within {} s", within.as_secs())),
            }
        }
        let Some(conn) = self.conn.as_mut() else { return Err("no connection".to_owned()) };
        match tokio::time::timeout(within, conn.send(&Cmd::new("DEL").arg(key))).await {
            Ok(Ok(Value::Error(e))) => Err(e.to_string()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", within.as_secs())),
        }
    }

    /// Whether a snapshot child is running (`rdb_bgsave_in_progress`);
    /// `None` when the source did not say.
    pub async fn bgsave_in_progress(&mut self) -> Option<bool> {
        let replies = self.ask(&[Cmd::new("INFO").arg("persistence")]).await?;
        let info = replies.first()?.as_bytes()?;
        info_field(info, "rdb_bgsave_in_progress").map(|v| v != "0")
    }

    /// The master's `master_repl_offset`.
    pub async fn master_offset(&mut self) -> Option<u64> {
        let replies = self.ask(&[Cmd::new("INFO").arg("replication")]).await?;
        info_field(replies.first()?.as_bytes()?, "master_repl_offset").and_then(|s| s.parse().ok())
    }

    /// Keys in the DBs `dbs` (`None`: all), without `heartbeat_key`
    /// (which lives in DB 0 while the task runs).
    pub async fn live_keys(&mut self, dbs: Option<&[u32]>, heartbeat_key: &str) -> Option<u64> {
        let cmds = [Cmd::new("INFO").arg("keyspace"), Cmd::new("EXISTS").arg(heartbeat_key)];
        let replies = self.ask(&cmds).await?;
        Some(count_keys(&replies, dbs))
    }
}

fn count_keys(replies: &[Value], dbs: Option<&[u32]>) -> u64 {
    let keyspace = replies.first().and_then(|v| v.as_bytes()).map(parse_keyspace).unwrap_or_default();
    let copied = |db: &u32| dbs.is_none_or(|dbs| dbs.contains(db));
    let keys: u64 = keyspace.iter().filter(|(db, _)| copied(db)).map(|(_, k)| k.keys).sum();
    let heartbeat = u64::from(replies.get(1).and_then(Value::as_int) == Some(1) && copied(&0));
    keys.saturating_sub(heartbeat)
}

/// Whether the source at `addr` holds each key, in any of the DBs listed
/// for it (one list per key): one connection, one pipeline.
pub async fn holds(
    addr: &str,
    opts: &ConnectOptions,
    keys: &[&[u8]],
    dbs: &[Vec<u32>],
) -> Result<Vec<bool>, RespError> {
    if dbs.iter().all(Vec::is_empty) {
        return Ok(vec![false; keys.len()]);
    }
    let mut conn = Connection::connect(addr, opts).await?;
    let mut cmds = Vec::new();
    for (key, dbs) in keys.iter().zip(dbs) {
        for db in dbs {
            cmds.push(Cmd::new("SELECT").arg(db.to_string()));
            cmds.push(Cmd::new("EXISTS").arg(key));
        }
    }
    let replies = conn.pipeline(&cmds).await?;
    Ok(held(&replies, dbs))
}

/// Reads the (`SELECT`, `EXISTS`) pairs of [`holds`]. A DB the source does
/// not have (`SELECT` refused) cannot hold the key, and the `EXISTS` after
/// it ran in the previous DB: the pair is skipped. `count`, not `any`:
/// every pair of a key is consumed, so the next key reads its own.
fn held(replies: &[Value], dbs: &[Vec<u32>]) -> Vec<bool> {
    let mut pairs = replies.chunks(2);
    dbs.iter()
        .map(|dbs| {
            pairs
                .by_ref()
                .take(dbs.len())
                .filter(|pair| matches!(pair, [sel, exists] if !sel.is_error() && exists.as_int() == Some(1)))
                .count()
                > 0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyspace(text: &'static str) -> Value {
        Value::Bulk(Some(bytes::Bytes::from_static(text.as_bytes())))
    }

    #[test]
    fn live_keys_count_the_copied_dbs_without_the_heartbeat() {
        let replies = [keyspace("# Keyspace\r\ndb0:keys=10,expires=0\r\ndb2:keys=5,expires=0\r\n"), Value::Integer(1)];
        assert_eq!(count_keys(&replies, None), 14);
        assert_eq!(count_keys(&replies, Some(&[2])), 5);
        assert_eq!(count_keys(&replies, Some(&[0])), 9);
        assert_eq!(count_keys(&[replies[0].clone(), Value::Integer(0)], None), 15);
    }

    #[test]
    fn a_refused_select_does_not_count_and_each_key_reads_its_own_pairs() {
        let ok = Value::Simple("OK".into());
        let no = Value::Error("ERR DB index is out of range".into());
        // key 1 in dbs [0, 5] (5 refused; its EXISTS ran in db 0), key 2 in [0].
        let replies = [ok.clone(), Value::Integer(0), no, Value::Integer(1), ok, Value::Integer(1)];
        assert_eq!(held(&replies, &[vec![0, 5], vec![0]]), [false, true]);
    }
}
