//! One side of a comparison and the shapes of its replies, shared by the
//! batch reader (`read`) and the big-key reader (`big`), so neither needs
//! the other for them.
//!
//! An [`Endpoint`] is one connection with its DB selected and the server's
//! version known (on a Redis Cluster: one connection per master, each
//! command sent to the master serving its key's slot, and redirections
//! followed: a slot moved since the map was read answers `MOVED`, one
//! being moved `ASK` for the keys that already went, which are read on the
//! importing master after `ASKING`); `key_cmd` builds a command without copying the key; the
//! `parse_*` functions read a `TYPE` or `PTTL` reply, and `into_bulks`,
//! `scan_reply`, `pairs` the array shapes the readers expect, returning the
//! offending value when a reply has another shape.

use bytes::Bytes;

use super::content::KeyType;
use super::ttl::{from_pttl, PttlReading};
use super::VerifyError;
use crate::dest::cluster::topology::{cluster_enabled, Redirect, SlotMap};
use crate::dest::RedisVersion;
use crate::resp::{Cmd, Connection, Value};

/// One side of a comparison: a connection with its DB selected.
pub(crate) struct Endpoint {
    conns: Conns,
    /// `source server1 (127.0.0.1:7001) db 0`, for messages.
    pub side: String,
    pub version: RedisVersion,
}

enum Conns {
    One(Connection),
    /// A Redis Cluster: a connection per master of `map`, in its order.
    Cluster {
        map: SlotMap,
        conns: Vec<Connection>,
        /// Nodes a redirection named that `map` does not (a master being
        /// filled by a resharding), connected on first use.
        others: Vec<(String, Connection)>,
        secret: crate::config::Secret,
        /// `CLIENT NO-TOUCH ON` on each new connection too.
        no_touch: bool,
    },
}

/// Rounds of redirections followed for one pipeline (a slot moving again
/// while it is read).
const REDIRECT_ROUNDS: usize = 3;

/// `SMISMEMBER`, `ZMSCORE`: Redis 6.2.
const V6_2: RedisVersion = RedisVersion::new(6, 2, 0);
/// `CLIENT NO-TOUCH`: Redis 7.2.
const NO_TOUCH: RedisVersion = RedisVersion::new(7, 2, 0);

impl Endpoint {
    /// Connects, learns the version, selects `db`.
    pub(crate) async fn open(
        side: &str,
        addr: &str,
        secret: &crate::config::Secret,
        db: u32,
    ) -> Result<Endpoint, VerifyError> {
        let mut conn = super::counts::connect(side, addr, secret).await?;
        let side = format!("{side} db {db}");
        let caps = crate::dest::dest_info(&mut conn).await.map_err(|source| VerifyError::Query {
            side: side.clone(),
            during: "reading the server version (INFO server)".into(),
            source: Box::new(source),
        })?;
        let no_touch = caps.version >= NO_TOUCH;
        if no_touch {
            untouching(&mut conn).await;
        }
        if let Some(map) = cluster_map(&side, addr, &mut conn).await? {
            let mut conns = Vec::with_capacity(map.masters.len());
            for master in &map.masters {
                conns.push(node_connect(&format!("{side} master {master}"), master, secret, no_touch).await?);
            }
            let conns = Conns::Cluster { map, conns, others: Vec::new(), secret: secret.clone(), no_touch };
            return Ok(Endpoint { conns, side, version: caps.version });
        }
        if db != 0 {
            conn.query(&Cmd::new("SELECT").arg(db.to_string())).await.map_err(|source| VerifyError::Query {
                side: side.clone(),
                during: format!("selecting db {db}"),
                source: Box::new(source),
            })?;
        }
        Ok(Endpoint { conns: Conns::One(conn), side, version: caps.version })
    }

    /// Whether `SMISMEMBER` and `ZMSCORE` exist.
    pub(crate) fn has_multi_member(&self) -> bool {
        self.version >= V6_2
    }

    pub(crate) async fn pipeline(
        &mut self,
        cmds: &[Cmd],
        during: impl FnOnce() -> String,
    ) -> Result<Vec<Value>, VerifyError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let side = &self.side;
        let failed =
            |during: String| move |source| VerifyError::Query { side: side.clone(), during, source: Box::new(source) };
        match &mut self.conns {
            Conns::One(conn) => conn.pipeline(cmds).await.map_err(failed(during())),
            Conns::Cluster { map, conns, others, secret, no_touch } => {
                let keys = cmds.iter().map(routing_key);
                let per_master = map.by_master(keys);
                let mut out = vec![Value::Bulk(None); cmds.len()];
                let during = during();
                for (conn, idx) in conns.iter_mut().zip(per_master) {
                    if idx.is_empty() {
                        continue;
                    }
                    let part: Vec<Cmd> = idx.iter().map(|&i| cmds[i].clone()).collect();
                    let replies = conn.pipeline(&part).await.map_err(failed(during.clone()))?;
                    for (i, v) in idx.into_iter().zip(replies) {
                        out[i] = v;
                    }
                }
                for _ in 0..REDIRECT_ROUNDS {
                    // (node, with ASKING, the commands' indexes)
                    let mut redirected: Vec<(String, bool, Vec<usize>)> = Vec::new();
                    for (i, reply) in out.iter().enumerate() {
                        let Value::Error(message) = reply else { continue };
                        let Some(to) = Redirect::parse(message) else { continue };
                        match redirected.iter_mut().find(|(node, asking, _)| node == to.to() && *asking == to.is_ask())
                        {
                            Some((_, _, idx)) => idx.push(i),
                            None => redirected.push((to.to().to_owned(), to.is_ask(), vec![i])),
                        }
                    }
                    if redirected.is_empty() {
                        break;
                    }
                    for (node, asking, idx) in redirected {
                        let conn = node_conn(map, conns, others, secret, *no_touch, side, &node).await?;
                        let mut part = Vec::with_capacity(idx.len() * 2);
                        for &i in &idx {
                            if asking {
                                part.push(Cmd::new("ASKING"));
                            }
                            part.push(cmds[i].clone());
                        }
                        let replies = conn.pipeline(&part).await.map_err(failed(during.clone()))?;
                        // After `ASKING`, every second reply is the command's.
                        let step = if asking { 2 } else { 1 };
                        for (i, v) in idx.into_iter().zip(replies.into_iter().skip(step - 1).step_by(step)) {
                            out[i] = v;
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// A reply no Redis sends for `command`.
    pub(crate) fn unexpected(&self, command: &str, key: &[u8], got: &Value) -> VerifyError {
        VerifyError::Reply {
            side: self.side.clone(),
            command: command.to_owned(),
            during: format!("comparing key {}", crate::display::quoted_key(key)),
            got: match got {
                Value::Error(e) => format!("the error \"{e}\""),
                other => format!("{} {other}", other.kind()),
            },
        }
    }
}

/// The connection to the cluster node at `addr`: a master of `map`, or one
/// a redirection named, connected now if it is new.
async fn node_conn<'a>(
    map: &SlotMap,
    conns: &'a mut [Connection],
    others: &'a mut Vec<(String, Connection)>,
    secret: &crate::config::Secret,
    no_touch: bool,
    side: &str,
    addr: &str,
) -> Result<&'a mut Connection, VerifyError> {
    if let Some(i) = map.masters.iter().position(|m| m == addr) {
        return Ok(&mut conns[i]);
    }
    let i = match others.iter().position(|(a, _)| a == addr) {
        Some(i) => i,
        None => {
            let side = format!("{side} node {addr} (a redirection named it)");
            others.push((addr.to_owned(), node_connect(&side, addr, secret, no_touch).await?));
            others.len() - 1
        }
    };
    Ok(&mut others[i].1)
}

/// A connection to one node of a cluster, reading without touching keys
/// when the server can (see [`untouching`]).
async fn node_connect(
    side: &str,
    addr: &str,
    secret: &crate::config::Secret,
    no_touch: bool,
) -> Result<Connection, VerifyError> {
    let mut conn = super::counts::connect(side, addr, secret).await?;
    if no_touch {
        untouching(&mut conn).await;
    }
    Ok(conn)
}

/// `CLIENT NO-TOUCH ON` (Redis 7.2): reading every value would make every
/// key look recently used to an LRU/LFU eviction policy. Best effort: an
/// ACL may forbid `CLIENT`, which changes nothing else.
async fn untouching(conn: &mut Connection) {
    let _ = conn.send(&Cmd::new("CLIENT").arg("NO-TOUCH").arg("ON")).await;
}

/// The key a reading command names (every command here names one): after
/// the subcommand for `XINFO` (read as the key, a stream's `XINFO STREAM`
/// went to the wrong master and got `MOVED`).
fn routing_key(cmd: &Cmd) -> &[u8] {
    crate::dest::cluster::keys::key_in(cmd).unwrap_or_default()
}

/// The slot map when the server behind `conn` is a Redis Cluster node.
pub(crate) async fn cluster_map(side: &str, addr: &str, conn: &mut Connection) -> Result<Option<SlotMap>, VerifyError> {
    let query = |during: &str| {
        let (side, during) = (side.to_owned(), during.to_owned());
        move |source| VerifyError::Query { side, during, source: Box::new(source) }
    };
    if !cluster_enabled(conn).await.map_err(query("reading INFO cluster"))? {
        return Ok(None);
    }
    match SlotMap::read(conn, addr).await {
        Ok(map) => Ok(Some(map)),
        Err(e) => Err(VerifyError::Reply {
            side: side.to_owned(),
            command: "CLUSTER SLOTS".into(),
            during: "reading the cluster's slot map".into(),
            got: e.to_string(),
        }),
    }
}

/// A command of a name and one key, without copying the key.
pub(crate) fn key_cmd(name: &'static [u8], key: &Bytes) -> Cmd {
    Cmd::from_bytes(vec![Bytes::from_static(name), key.clone()])
}

/// A key command with more arguments after the key.
pub(crate) fn key_cmd_args(name: &'static [u8], key: &Bytes, args: &[&[u8]]) -> Cmd {
    let mut v = Vec::with_capacity(args.len() + 2);
    v.push(Bytes::from_static(name));
    v.push(key.clone());
    v.extend(args.iter().map(|a| Bytes::copy_from_slice(a)));
    Cmd::from_bytes(v)
}

/// Reads a `TYPE` reply.
pub(crate) fn parse_type(ep: &Endpoint, key: &[u8], reply: &Value) -> Result<Option<KeyType>, VerifyError> {
    match reply.as_str() {
        Some(name) => Ok(KeyType::parse(name)),
        None => Err(ep.unexpected("TYPE", key, reply)),
    }
}

/// Reads a `PTTL` reply taken at `now`.
pub(crate) fn parse_pttl(ep: &Endpoint, key: &[u8], reply: &Value, now: i64) -> Result<PttlReading, VerifyError> {
    match reply {
        Value::Integer(p) => Ok(from_pttl(*p, now)),
        other => Err(ep.unexpected("PTTL", key, other)),
    }
}

/// What to show for a reply of pairs with an odd number of items.
pub(crate) fn odd_items(n: usize) -> Value {
    Value::Simple(format!("an array of {n} items where pairs were expected").into())
}

/// The bulk strings of an array reply; on anything else, the offending value.
pub(crate) fn into_bulks(reply: Value) -> Result<Vec<Bytes>, Value> {
    let Value::Array(Some(items)) = reply else { return Err(reply) };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Bulk(Some(b)) => out.push(b),
            other => return Err(other),
        }
    }
    Ok(out)
}

/// A `SCAN`-family reply: the next cursor and the items.
pub(crate) fn scan_reply(reply: Value) -> Result<(Bytes, Vec<Bytes>), Value> {
    let Value::Array(Some(mut parts)) = reply else { return Err(reply) };
    if parts.len() != 2 {
        return Err(Value::Array(Some(parts)));
    }
    let items = parts.pop().unwrap_or(Value::Array(None));
    let cursor = parts.pop().unwrap_or(Value::Array(None));
    let Value::Bulk(Some(cursor)) = cursor else { return Err(cursor) };
    Ok((cursor, into_bulks(items)?))
}

/// `[a, 1, b, 2]` → `[(a, 1), (b, 2)]`; `None` for an odd count.
pub(crate) fn pairs(items: Vec<Bytes>) -> Option<Vec<(Bytes, Bytes)>> {
    if items.len() % 2 != 0 {
        return None;
    }
    let mut it = items.into_iter();
    let mut out = Vec::with_capacity(it.len() / 2);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_routed_by_the_key_they_name() {
        assert_eq!(routing_key(&Cmd::from_args(["TYPE", "k1"])), b"k1");
        assert_eq!(routing_key(&Cmd::from_args(["XRANGE", "s", "-", "+", "COUNT", "10"])), b"s");
        assert_eq!(routing_key(&Cmd::from_args(["XINFO", "STREAM", "s"])), b"s");
        assert_eq!(routing_key(&Cmd::from_args(["xinfo", "GROUPS", "s"])), b"s");
        assert_eq!(routing_key(&Cmd::from_args(["PING"])), b"");
    }

    #[test]
    fn scan_replies_and_pairs() {
        let b = |s: &str| Value::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())));
        let reply = Value::Array(Some(vec![b("0"), Value::Array(Some(vec![b("f"), b("1"), b("g"), b("2")]))]));
        let (cursor, items) = scan_reply(reply).unwrap();
        assert_eq!(&cursor[..], b"0");
        let p = pairs(items).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(&p[1].1[..], b"2");
        assert!(pairs(vec![Bytes::new()]).is_none());
        assert_eq!(scan_reply(b("x")), Err(b("x")));
        assert_eq!(into_bulks(Value::Array(Some(vec![b("a"), Value::Integer(1)]))), Err(Value::Integer(1)));
    }
}
