//! The counts phase, which every mode starts with: each source's and the
//! destination's key counts per DB (`INFO keyspace`), the tool's own keys
//! left out, grouped per destination DB; and from them the plan of which
//! source DBs the key comparison walks.
//!
//! The heartbeat key lives in DB 0 of every source while a task runs, the
//! checkpoint keys in DB 0 of the destination (`docs/task-file.md`): an `EXISTS` on
//! each tells whether to subtract it. The sources are read concurrently,
//! then the destination, so that a live sync has had the least time to
//! move between the two readings.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::try_join_all;

use super::{DbCount, VerifyError};
use crate::config::{Secret, TaskConfig};
use crate::dest::CHECKPOINT_DB;
use crate::resp::{Cmd, ConnectOptions, Connection};

/// What to compare, from the counts.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub counts: Vec<DbCount>,
    /// Per source (in task order): its source DBs to walk, with their keys.
    pub shards: Vec<Vec<(u32, u64)>>,
}

/// `source server1 (127.0.0.1:7001)`, for messages.
pub(crate) fn source_side(task: &TaskConfig, shard: usize) -> String {
    task.sources.get(shard).map_or_else(|| format!("source #{shard}"), |s| format!("source {} ({})", s.name, s.addr))
}

/// `destination (127.0.0.1:6379)`.
pub(crate) fn dest_side(task: &TaskConfig) -> String {
    format!("destination ({})", task.destination.addr)
}

/// Connects and authenticates with `secret`; `side` names the server in errors.
pub(crate) async fn connect(side: &str, addr: &str, secret: &Secret) -> Result<Connection, VerifyError> {
    let opts = ConnectOptions { credentials: secret.credentials(), ..ConnectOptions::default() };
    Connection::connect(addr, &opts)
        .await
        .map_err(|source| VerifyError::Connect { side: side.to_owned(), source: Box::new(source) })
}

/// Keys per DB from an `INFO keyspace` reply (`db0:keys=12,expires=0,...`).
pub(crate) fn parse_keyspace(info: &str) -> BTreeMap<u32, u64> {
    crate::resp::info::parse_keyspace(info.as_bytes()).into_iter().map(|(db, k)| (db, k.keys)).collect()
}

/// Keys per DB of one server, less the `own` keys that exist in DB `own_db`.
async fn keyspace(
    side: &str,
    addr: &str,
    secret: &Secret,
    own_db: u32,
    own: &[String],
) -> Result<BTreeMap<u32, u64>, VerifyError> {
    let mut conn = connect(side, addr, secret).await?;
    let query = |during: &str| {
        let (side, during) = (side.to_owned(), during.to_owned());
        move |source| VerifyError::Query { side, during, source: Box::new(source) }
    };
    if let Some(map) = super::endpoint::cluster_map(side, addr, &mut conn).await? {
        return cluster_keyspace(side, secret, &map, own).await;
    }
    let info = conn.query(&Cmd::new("INFO").arg("keyspace")).await.map_err(query("reading INFO keyspace"))?;
    let Some(text) = info.as_str() else {
        return Err(VerifyError::Reply {
            side: side.to_owned(),
            command: "INFO keyspace".into(),
            during: "counting keys".into(),
            got: info.kind().to_owned(),
        });
    };
    let mut dbs = parse_keyspace(text);
    if !own.is_empty() && dbs.get(&own_db).is_some_and(|&n| n > 0) {
        conn.query(&Cmd::new("SELECT").arg(own_db.to_string()))
            .await
            .map_err(query("selecting the DB of the tool's own keys"))?;
        let mut exists = Cmd::new("EXISTS");
        for key in own {
            exists.push_arg(key);
        }
        let found = conn.query(&exists).await.map_err(query("looking for the tool's own keys"))?;
        let found = found.as_int().unwrap_or(0).max(0) as u64;
        if let Some(n) = dbs.get_mut(&own_db) {
            *n = n.saturating_sub(found);
        }
    }
    Ok(dbs)
}

/// A Redis Cluster's keys (DB 0 only), summed over its masters, less the
/// tool's checkpoint keys `own` and every slot's checkpoint key of each.
async fn cluster_keyspace(
    side: &str,
    secret: &Secret,
    map: &crate::dest::cluster::topology::SlotMap,
    own: &[String],
) -> Result<BTreeMap<u32, u64>, VerifyError> {
    let all: Vec<bytes::Bytes> = own
        .iter()
        .flat_map(|k| crate::dest::Layout::cluster(bytes::Bytes::from(k.clone()), true).all_keys().collect::<Vec<_>>())
        .collect();
    let mut total = 0u64;
    for (master, idx) in map.masters.iter().zip(map.by_master(all.iter().map(|k| k.as_ref()))) {
        let own: Vec<&bytes::Bytes> = idx.into_iter().map(|i| &all[i]).collect();
        let side = format!("{side} master {master}");
        let mut conn = connect(&side, master, secret).await?;
        let query = |during: &'static str| {
            let side = side.clone();
            move |source| VerifyError::Query { side, during: during.to_owned(), source: Box::new(source) }
        };
        let info = conn.query(&Cmd::new("INFO").arg("keyspace")).await.map_err(query("reading INFO keyspace"))?;
        let keys = info.as_str().map(parse_keyspace).unwrap_or_default().get(&0).copied().unwrap_or(0);
        let exists: Vec<Cmd> = own.iter().map(|k| Cmd::new("EXISTS").arg(k)).collect();
        let found: u64 = if keys == 0 || exists.is_empty() {
            0
        } else {
            let replies = conn.pipeline(&exists).await.map_err(query("looking for the tool's own keys"))?;
            replies.iter().filter(|v| v.as_int() == Some(1)).count() as u64
        };
        total += keys.saturating_sub(found);
    }
    Ok(BTreeMap::from([(0, total)]))
}

/// Reads the counts and plans the comparison.
pub(crate) async fn count(task: &TaskConfig) -> Result<Plan, VerifyError> {
    let heartbeat = [task.sync.heartbeat_key.clone()];
    let sources = try_join_all(task.sources.iter().enumerate().map(|(i, s)| {
        let side = source_side(task, i);
        let addr = s.addr.to_string();
        let heartbeat = &heartbeat;
        async move { keyspace(&side, &addr, &s.password, 0, heartbeat).await }
    }))
    .await?;
    let checkpoints: Vec<String> = task.sources.iter().map(|s| task.checkpoint_key(&s.name)).collect();
    let dest = keyspace(
        &dest_side(task),
        &task.destination.addr.to_string(),
        &task.destination.password,
        CHECKPOINT_DB,
        &checkpoints,
    )
    .await?;
    Ok(plan(task, &sources, &dest))
}

/// Groups per destination DB. Selected DBs are `[sync] databases`, or every
/// DB that holds keys on some source.
fn plan(task: &TaskConfig, sources: &[BTreeMap<u32, u64>], dest: &BTreeMap<u32, u64>) -> Plan {
    let selected: BTreeSet<u32> = match &task.sync.databases {
        Some(dbs) => dbs.iter().copied().collect(),
        None => sources.iter().flat_map(|s| s.iter().filter(|(_, &n)| n > 0).map(|(&db, _)| db)).collect(),
    };
    let mut by_target: BTreeMap<u32, DbCount> = BTreeMap::new();
    let mut shards = Vec::with_capacity(sources.len());
    for (source, keys) in task.sources.iter().zip(sources) {
        let mut walk = Vec::new();
        for &db in &selected {
            let n = keys.get(&db).copied().unwrap_or(0);
            let target = task.sync.target_db(db);
            let count = by_target.entry(target).or_insert_with(|| DbCount {
                db: target,
                sources: Vec::new(),
                source_total: 0,
                destination: dest.get(&target).copied().unwrap_or(0),
            });
            count.sources.push((source.name.clone(), db, n));
            count.source_total += n;
            // A DB empty when counted is still walked when selected by
            // name: a live sync may have filled it since.
            if n > 0 || task.sync.databases.is_some() {
                walk.push((db, n));
            }
        }
        shards.push(walk);
    }
    Plan { counts: by_target.into_values().collect(), shards }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DestConfig, SourceConfig, SyncConfig};

    #[test]
    fn keyspace_lines() {
        let info = "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb15:keys=3,expires=0,avg_ttl=0\r\nnoise\r\n";
        assert_eq!(parse_keyspace(info), BTreeMap::from([(0, 12), (15, 3)]));
        assert!(parse_keyspace("# Keyspace\r\n").is_empty());
    }

    fn task(databases: Option<Vec<u32>>, db_map: &[(u32, u32)]) -> TaskConfig {
        let source = |name: &str, port: u16| SourceConfig {
            name: name.into(),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            password: Secret::none(),
        };
        TaskConfig {
            name: "t".into(),
            state_dir: "/tmp".into(),
            sources: vec![source("s1", 7001), source("s2", 7002)],
            destination: DestConfig {
                addr: "127.0.0.1:6379".parse().unwrap(),
                password: Secret::none(),
                kind: Default::default(),
            },
            sync: SyncConfig { databases, db_map: db_map.iter().copied().collect(), ..SyncConfig::default() },
        }
    }

    #[test]
    fn shards_merge_per_destination_db() {
        let sources = [BTreeMap::from([(0, 10), (1, 4)]), BTreeMap::from([(0, 5), (2, 1)])];
        let dest = BTreeMap::from([(0, 15), (1, 3), (2, 1)]);
        let p = plan(&task(None, &[]), &sources, &dest);
        let shape: Vec<(u32, u64, u64, usize)> =
            p.counts.iter().map(|c| (c.db, c.source_total, c.destination, c.sources.len())).collect();
        assert_eq!(shape, vec![(0, 15, 15, 2), (1, 4, 3, 2), (2, 1, 1, 2)]);
        assert_eq!(p.counts[1].sources, vec![("s1".to_string(), 1, 4), ("s2".to_string(), 1, 0)]);
        // Only DBs with keys are walked when none are selected by name.
        assert_eq!(p.shards, vec![vec![(0, 10), (1, 4)], vec![(0, 5), (2, 1)]]);
    }

    #[test]
    fn selected_dbs_and_mapping() {
        let sources = [BTreeMap::from([(0, 10), (1, 4)]), BTreeMap::from([(3, 5)])];
        let dest = BTreeMap::from([(5, 9)]);
        let p = plan(&task(Some(vec![1, 3]), &[(1, 5), (3, 5)]), &sources, &dest);
        assert_eq!(p.counts.len(), 1);
        let c = &p.counts[0];
        assert_eq!((c.db, c.source_total, c.destination), (5, 9, 9));
        assert_eq!(
            c.sources,
            vec![("s1".to_string(), 1, 4), ("s1".into(), 3, 0), ("s2".into(), 1, 0), ("s2".into(), 3, 5)]
        );
        assert_eq!(p.shards, vec![vec![(1, 4), (3, 0)], vec![(1, 0), (3, 5)]]);
    }
}
