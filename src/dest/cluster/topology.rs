//! The cluster's slot map: which master serves each slot, read with
//! `CLUSTER SLOTS` (every version with cluster support; Redis 7 and Valkey
//! still answer it). Read again after a `MOVED` reply.

use super::slot::SLOTS;
use crate::resp::{Cmd, Connection, RespError, Value};

/// Which master serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Masters as `host:port`, in the order the reply named them.
    pub masters: Vec<String>,
    /// Per master (same order), its replicas the cluster counts as healthy
    /// (`CLUSTER SLOTS` leaves failed ones out): what a write must reach
    /// before a failover cannot lose it.
    pub replicas: Vec<usize>,
    /// Per slot, the index of its master in `masters`; `None`: no master
    /// serves it (the cluster is not whole).
    owner: Vec<Option<u16>>,
}

/// Why a slot map could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Resp(#[from] RespError),
    #[error("CLUSTER SLOTS was refused: {0}")]
    Refused(String),
    #[error("CLUSTER SLOTS answered something that is not a slot map: {0}")]
    Malformed(String),
}

/// A redirection reply: `-MOVED <slot> <host:port>` (the slot is served
/// there now) or `-ASK <slot> <host:port>` (the slot is being moved there,
/// and this key already went: ask again there, after `ASKING`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    Moved { slot: u16, to: String },
    Ask { slot: u16, to: String },
}

impl Redirect {
    /// Reads an error reply's message; `None` when it is no redirection.
    pub fn parse(message: &str) -> Option<Redirect> {
        let mut words = message.split_ascii_whitespace();
        let code = words.next()?;
        let slot = words.next()?.parse().ok()?;
        let to = words.next()?.to_owned();
        match code {
            "MOVED" => Some(Redirect::Moved { slot, to }),
            "ASK" => Some(Redirect::Ask { slot, to }),
            _ => None,
        }
    }

    /// Where to ask again.
    pub fn to(&self) -> &str {
        match self {
            Redirect::Moved { to, .. } | Redirect::Ask { to, .. } => to,
        }
    }

    pub fn is_ask(&self) -> bool {
        matches!(self, Redirect::Ask { .. })
    }
}

/// Whether the server behind `conn` runs in cluster mode (`INFO cluster`,
/// `cluster_enabled:1`).
pub async fn cluster_enabled(conn: &mut Connection) -> Result<bool, RespError> {
    let reply = conn.query(&Cmd::new("INFO").arg("cluster")).await?;
    Ok(reply.as_bytes().and_then(|b| crate::resp::info::info_field(b, "cluster_enabled")) == Some("1"))
}

impl SlotMap {
    /// The indexes of `keys` grouped by the master serving each (one list
    /// per master, in the map's order), for one pipeline per master. A key
    /// in a slot nobody serves goes to the first master, whose reply
    /// (`CLUSTERDOWN`, `MOVED`) then says what is wrong.
    pub fn by_master<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.masters.len().max(1)];
        for (i, key) in keys.into_iter().enumerate() {
            let master = self.owner(super::slot::slot_of(key)).unwrap_or(0);
            out[master.min(self.masters.len().saturating_sub(1))].push(i);
        }
        out
    }

    /// The master index of `slot`.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        self.owner.get(usize::from(slot)).copied().flatten().map(usize::from)
    }

    /// The first slot each master serves, for the masters serving any.
    pub fn first_slots(&self) -> Vec<u16> {
        self.first_slot_of_each().into_iter().flatten().collect()
    }

    /// The first slot of each master, in the order of `masters`.
    pub fn first_slot_of_each(&self) -> Vec<Option<u16>> {
        let mut first: Vec<Option<u16>> = vec![None; self.masters.len()];
        for (slot, owner) in self.owner.iter().enumerate() {
            if let Some(first) = owner.and_then(|m| first.get_mut(usize::from(m))) {
                first.get_or_insert(slot as u16);
            }
        }
        first
    }

    /// The address of the master serving `slot`.
    pub fn addr_of(&self, slot: u16) -> Option<&str> {
        self.owner(slot).map(|i| self.masters[i].as_str())
    }

    /// Slots no master serves, as ranges `(first, last)`.
    pub fn uncovered(&self) -> Vec<(u16, u16)> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        for (slot, owner) in self.owner.iter().enumerate() {
            if owner.is_none() {
                let slot = slot as u16;
                match out.last_mut() {
                    Some((_, last)) if *last + 1 == slot => *last = slot,
                    _ => out.push((slot, slot)),
                }
            }
        }
        out
    }

    /// How many slots each master serves (by index).
    pub fn slot_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.masters.len()];
        for i in self.owner.iter().flatten() {
            counts[usize::from(*i)] += 1;
        }
        counts
    }

    /// Reads the map from the node behind `conn` (at `asked`, the address
    /// used for a node that does not know its own IP).
    pub async fn read(conn: &mut Connection, asked: &str) -> Result<SlotMap, TopologyError> {
        match conn.query(&Cmd::new("CLUSTER").arg("SLOTS")).await? {
            Value::Error(e) => Err(TopologyError::Refused(e)),
            reply => SlotMap::parse(&reply, asked).map_err(TopologyError::Malformed),
        }
    }

    /// Parses a `CLUSTER SLOTS` reply: per range `[first, last, [ip, port,
    /// id, …], replicas…]`.
    pub fn parse(reply: &Value, asked: &str) -> Result<SlotMap, String> {
        let Value::Array(Some(ranges)) = reply else { return Err(format!("{reply:?}")) };
        let asked_host = crate::config::host_of(asked);
        let mut masters: Vec<String> = Vec::new();
        let mut replicas: Vec<usize> = Vec::new();
        let mut owner = vec![None; SLOTS];
        for range in ranges {
            let Value::Array(Some(parts)) = range else { return Err(format!("a range {range:?}")) };
            let (Some(first), Some(last), Some(Value::Array(Some(node)))) =
                (parts.first().and_then(Value::as_int), parts.get(1).and_then(Value::as_int), parts.get(2))
            else {
                return Err(format!("a range {parts:?}"));
            };
            let host = node.first().and_then(Value::as_bytes).map(|b| String::from_utf8_lossy(b).into_owned());
            let port = node.get(1).and_then(Value::as_int);
            let (Some(host), Some(port)) = (host, port) else { return Err(format!("a node {node:?}")) };
            // An empty or `?` endpoint: the node does not know how it is reached.
            let host = if host.is_empty() || host == "?" { asked_host.to_owned() } else { host };
            let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
            let index = match masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    masters.push(addr);
                    replicas.push(0);
                    masters.len() - 1
                }
            };
            replicas[index] = replicas[index].max(parts.len().saturating_sub(3));
            if !(0..SLOTS as i64).contains(&first) || !(first..SLOTS as i64).contains(&last) {
                return Err(format!("the range {first}-{last}"));
            }
            for slot in first..=last {
                owner[slot as usize] = Some(index as u16);
            }
        }
        Ok(SlotMap { masters, replicas, owner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn redirections_are_read_and_other_errors_are_not() {
        let moved = Redirect::parse("MOVED 7220 127.0.0.1:7002").unwrap();
        assert_eq!(moved, Redirect::Moved { slot: 7220, to: "127.0.0.1:7002".into() });
        assert!(!moved.is_ask());
        let ask = Redirect::parse("ASK 5461 [::1]:7003").unwrap();
        assert_eq!((ask.to(), ask.is_ask()), ("[::1]:7003", true));
        for other in [
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "MOVED",
            "MOVED x h:1",
            "ERR MOVED 1 h:1",
        ] {
            assert_eq!(Redirect::parse(other), None, "{other}");
        }
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(Some(vec![
            Value::Bulk(Some(Bytes::copy_from_slice(host.as_bytes()))),
            Value::Integer(port),
            Value::Bulk(Some(Bytes::from_static(b"0123abcd"))),
        ]))
    }

    fn range(first: i64, last: i64, master: Value) -> Value {
        Value::Array(Some(vec![Value::Integer(first), Value::Integer(last), master, node("127.0.0.1", 7100)]))
    }

    #[test]
    fn ranges_map_to_their_masters_and_unknown_hosts_to_the_asked_one() {
        let reply = Value::Array(Some(vec![
            range(0, 5460, node("127.0.0.1", 7001)),
            range(5461, 10922, node("", 7002)),
            range(10923, 16383, node("127.0.0.1", 7001)),
        ]));
        let map = SlotMap::parse(&reply, "10.0.0.9:7002").unwrap();
        assert_eq!(map.masters, ["127.0.0.1:7001", "10.0.0.9:7002"]);
        assert_eq!(map.addr_of(0), Some("127.0.0.1:7001"));
        assert_eq!(map.addr_of(5461), Some("10.0.0.9:7002"));
        assert_eq!(map.addr_of(16383), Some("127.0.0.1:7001"));
        assert_eq!(map.slot_counts(), [5461 + 5461, 5462]);
        assert_eq!(map.replicas, [1, 1]);
        assert_eq!(map.first_slots(), [0, 5461], "one slot per master");
        let keys: [&[u8]; 3] = [b"foo", b"c", b"{c}2"];
        // foo: slot 12182 (first master), c: 7365 (second).
        assert_eq!(map.by_master(keys), [vec![0], vec![1, 2]]);
        assert!(map.uncovered().is_empty());
    }

    #[test]
    fn slots_nobody_serves_are_listed_as_ranges() {
        let reply = Value::Array(Some(vec![range(0, 99, node("h", 1)), range(200, 16383, node("h", 1))]));
        assert_eq!(SlotMap::parse(&reply, "h:1").unwrap().uncovered(), [(100, 199)]);
        assert_eq!(SlotMap::parse(&reply, "h:1").unwrap().first_slots(), [0]);
        assert!(SlotMap::parse(&Value::Integer(3), "h:1").is_err());
        let bad = Value::Array(Some(vec![range(5, 99999, node("h", 1))]));
        assert!(SlotMap::parse(&bad, "h:1").is_err());
    }
}
