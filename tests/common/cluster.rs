//! A real Redis Cluster on loopback for the tests: `redis-server
//! --cluster-enabled yes` nodes in temporary directories, joined with
//! `redis-cli --cluster create … --cluster-yes`, stopped with their guards.
//! And the logical comparison of sources with a cluster (each key read
//! from the master serving its slot).

use std::collections::BTreeMap;
use std::io;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shardsync::dest::cluster::slot::slot_of;
use shardsync::dest::cluster::topology::SlotMap;
use shardsync::resp::Connection;

use super::compare::{connect, content, same_hyperloglog, scan_all, shorten};
use super::{RedisOptions, RedisServer};

/// What makes a server a cluster node here.
const NODE_CONFIG: [&str; 3] = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 3000"];

pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    /// `masters` masters with `replicas` replicas each, every slot served.
    pub fn start(masters: usize, replicas: usize) -> io::Result<Cluster> {
        Self::start_with(&RedisOptions::new(), masters, replicas)
    }

    /// As [`Cluster::start`], with the server binary (and settings) of `opts`.
    pub fn start_with(opts: &RedisOptions, masters: usize, replicas: usize) -> io::Result<Cluster> {
        let node = || RedisServer::start(NODE_CONFIG.iter().fold(opts.clone(), |o, line| o.config(*line)));
        let nodes = (0..masters * (1 + replicas)).map(|_| node()).collect::<io::Result<Vec<_>>>()?;
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(n.addr());
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(cli_failed("create", &out));
        }
        let cluster = Cluster { nodes };
        let start = Instant::now();
        while !cluster.is_ok() {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(io::Error::other("the cluster did not reach cluster_state:ok in 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// Starts one more node (the system's server) and joins it as a master
    /// without slots (`redis-cli --cluster add-node`); returns its address
    /// once every node knows it.
    pub fn add_master(&mut self) -> io::Result<String> {
        let node = RedisServer::start(NODE_CONFIG.iter().fold(RedisOptions::new(), |o, line| o.config(*line)))?;
        let out = Command::new("redis-cli")
            .args(["--cluster", "add-node", &node.addr(), &self.seed()])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(cli_failed("add-node", &out));
        }
        let id = node.redis_cli(&["CLUSTER", "MYID"])?;
        let addr = node.addr();
        self.nodes.push(node);
        let start = Instant::now();
        let knows = |n: &RedisServer| {
            n.redis_cli(&["CLUSTER", "NODES"])
                .is_ok_and(|nodes| nodes.lines().any(|l| l.starts_with(&id) && !l.contains("handshake")))
        };
        while !(self.nodes.iter().all(knows) && self.is_ok()) {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(io::Error::other(format!("not every node knew {addr} within 30 s")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(addr)
    }

    /// Every node says `cluster_state:ok`.
    pub fn is_ok(&self) -> bool {
        self.nodes.iter().all(|n| n.redis_cli(&["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok")))
    }

    /// The address the task names.
    pub fn seed(&self) -> String {
        self.nodes[0].addr()
    }

    /// The node at `addr`.
    pub fn node(&self, addr: &str) -> &RedisServer {
        self.nodes.iter().find(|n| n.addr() == addr).expect("a node of this cluster")
    }

    /// The masters' addresses (`CLUSTER SLOTS`), in the map's order.
    pub fn masters(&self) -> Vec<String> {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(slot_map(&self.seed())).masters
    }

    /// How many slots each master serves (`CLUSTER SLOTS`), by address.
    pub fn slot_counts(&self) -> BTreeMap<String, usize> {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let map = rt.block_on(slot_map(&self.seed()));
        map.masters.iter().cloned().zip(map.slot_counts()).collect()
    }

    /// SIGKILLs the node at `addr` for good (a crash).
    pub fn kill(&mut self, addr: &str) {
        self.nodes.iter_mut().find(|n| n.addr() == addr).expect("a node of this cluster").kill();
    }

    /// The master serving `key`'s slot.
    pub fn owner_of(&self, key: &str) -> String {
        self.owner_of_slot(slot_of(key.as_bytes()))
    }

    /// The master serving `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> String {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let map = rt.block_on(slot_map(&self.seed()));
        map.addr_of(slot).expect("slot served").to_owned()
    }

    /// The lowest slot the master at `addr` serves.
    pub fn first_slot_of(&self, addr: &str) -> u16 {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let map = rt.block_on(slot_map(&self.seed()));
        let i = map.masters.iter().position(|m| m == addr).expect("a master");
        map.first_slot_of_each()[i].expect("it serves a slot")
    }

    /// A replica of the master at `addr`.
    pub fn replica_of(&self, addr: &str) -> &RedisServer {
        let port = addr.rsplit(':').next().unwrap_or_default();
        self.nodes
            .iter()
            .find(|n| {
                n.redis_cli(&["INFO", "replication"])
                    .is_ok_and(|i| i.contains("role:slave") && i.contains(&format!("master_port:{port}")))
            })
            .expect("a replica of that master")
    }

    /// `redis-cli -c` (follows redirections) against the seed.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let out = Command::new("redis-cli")
            .args(["-c", "-h", "127.0.0.1", "-p", &self.nodes[0].port().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }
}

/// A `redis-cli --cluster <what>` that failed, with what it printed.
fn cli_failed(what: &str, out: &std::process::Output) -> io::Error {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    io::Error::other(format!("redis-cli --cluster {what} failed: {stdout}{stderr}"))
}

async fn slot_map(seed: &str) -> SlotMap {
    let mut c = connect(seed).await;
    SlotMap::read(&mut c, seed).await.expect("CLUSTER SLOTS")
}

/// Compares every key of the sources' DB 0 with the cluster (type, value,
/// TTL ±1.5 s), and the cluster's key count with the sources' (keys
/// starting with `own` — the tool's — aside). Returns the differences.
pub async fn diff(sources: &[String], seed: &str, own: &[u8]) -> Vec<String> {
    let map = slot_map(seed).await;
    let mut masters: BTreeMap<String, Connection> = BTreeMap::new();
    for m in &map.masters {
        masters.insert(m.clone(), connect(m).await);
    }
    let mut out = Vec::new();
    let mut expected = 0u64;
    for src in sources {
        let mut s = connect(src).await;
        for key in scan_all(&mut s).await {
            if key.starts_with(own) {
                continue;
            }
            expected += 1;
            let addr = map.addr_of(slot_of(&key)).expect("slot served").to_owned();
            let d = masters.get_mut(&addr).expect("master");
            let (st, sv, sttl) = content(&mut s, &key).await;
            let (dt, dv, dttl) = content(d, &key).await;
            let k = String::from_utf8_lossy(&key);
            if st != dt {
                out.push(format!("{src} {k}: type {st} vs {dt} (on {addr})"));
            } else if sv != dv && !same_hyperloglog(&mut s, d, &key, &sv, &dv).await {
                out.push(format!("{src} {k}: value {} vs {}", shorten(&sv), shorten(&dv)));
            } else if (sttl < 0) != (dttl < 0) || (sttl - dttl).abs() > 1500 {
                out.push(format!("{src} {k}: pttl {sttl} vs {dttl}"));
            }
        }
    }
    let mut got = 0u64;
    for c in masters.values_mut() {
        got += scan_all(c).await.into_iter().filter(|k| !k.starts_with(own)).count() as u64;
    }
    if got != expected {
        out.push(format!("the cluster holds {got} keys, the sources {expected}"));
    }
    out
}
