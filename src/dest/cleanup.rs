//! After the cut-over (`shardsync finish`): the shards' checkpoint keys
//! removed from the destination, and on a Redis Cluster every slot's
//! checkpoint key too, from the master serving it.

use bytes::Bytes;

use super::cluster::topology::{cluster_enabled, SlotMap};
use super::Layout;
use crate::resp::{Cmd, ConnectOptions, Connection, Value};

/// What [`remove_checkpoints`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Keys that existed.
    pub keys: u64,
    /// A cluster: how many masters were cleaned.
    pub masters: Option<usize>,
}

/// Deletes the checkpoint keys `keys` (one per shard) and, on a cluster,
/// their per-slot keys.
pub async fn remove_checkpoints(addr: &str, opts: &ConnectOptions, keys: &[String]) -> Result<Removed, String> {
    let mut conn = Connection::connect(addr, opts).await.map_err(|e| e.to_string())?;
    if !cluster_enabled(&mut conn).await.map_err(|e| e.to_string())? {
        let removed = delete(&mut conn, keys.iter().map(|k| Bytes::from(k.clone())).collect()).await?;
        return Ok(Removed { keys: removed, masters: None });
    }
    let map = SlotMap::read(&mut conn, addr).await.map_err(|e| e.to_string())?;
    let all: Vec<Bytes> = keys
        .iter()
        .flat_map(|k| Layout::cluster(Bytes::from(k.clone()), true).all_keys().collect::<Vec<_>>())
        .collect();
    let mut removed = 0;
    for (master, idx) in map.masters.iter().zip(map.by_master(all.iter().map(|k| k.as_ref()))) {
        let mut c = Connection::connect(master, opts).await.map_err(|e| format!("{master}: {e}"))?;
        let keys = idx.into_iter().map(|i| all[i].clone()).collect();
        removed += delete(&mut c, keys).await.map_err(|e| format!("{master}: {e}"))?;
    }
    Ok(Removed { keys: removed, masters: Some(map.masters.len()) })
}

/// One `DEL` per key (in a cluster a `DEL` of several keys must stay in
/// one slot), pipelined.
async fn delete(conn: &mut Connection, keys: Vec<Bytes>) -> Result<u64, String> {
    let mut removed = 0;
    for chunk in keys.chunks(4096) {
        let cmds: Vec<Cmd> = chunk.iter().map(|k| Cmd::new("DEL").arg(k)).collect();
        for reply in conn.pipeline(&cmds).await.map_err(|e| e.to_string())? {
            match reply {
                Value::Integer(n) => removed += n.max(0) as u64,
                Value::Error(e) => return Err(e),
                other => return Err(format!("unexpected reply {}", other.kind())),
            }
        }
    }
    Ok(removed)
}
