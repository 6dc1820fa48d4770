//! The soak's dataset: production-shaped data loaded as clients would.
//!
//! * `keys` keys through the twemproxy pool (so nutcracker's hashing spreads
//!   them), of every type and of every encoding Redis 7 picks: strings
//!   (int, embstr, raw, bitmaps, HyperLogLogs), lists (short and long
//!   quicklists), hashes (listpack; hashtable by size and by value length),
//!   sets (intset, listpack/hashtable, big hashtable), sorted sets
//!   (listpack, skiplist, geo); one key in ten with a TTL of 1–10 days.
//! * `big` strings of 1 MiB through the proxy.
//! * Per master, directly (twemproxy proxies neither): streams with a
//!   consumer group and pending entries in DB 0, and `db1_keys` keys of the
//!   same mix in DB 1.
//!
//! Everything is drawn from a seeded generator: the same seed loads the same
//! bytes. Key names say the kind (`L:<kind>:<n>`), which the writer uses to
//! pick keys of the right type to change.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use shardsync::resp::{Cmd, ConnectOptions, Connection};

/// The kinds of loaded keys: name, share in 100, and how it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Raw,
    Emb,
    Int,
    List,
    BigList,
    Hash,
    BigHash,
    WideHash,
    IntSet,
    Set,
    BigSet,
    Zset,
    BigZset,
    Geo,
    Hll,
    Bits,
}

/// Buckets of `i % 100`: the kind of key `i`.
const BUCKETS: &[(Kind, u64)] = &[
    (Kind::Raw, 28),
    (Kind::Emb, 15),
    (Kind::Int, 10),
    (Kind::List, 8),
    (Kind::BigList, 1),
    (Kind::Hash, 8),
    (Kind::BigHash, 1),
    (Kind::WideHash, 3),
    (Kind::IntSet, 4),
    (Kind::Set, 4),
    (Kind::BigSet, 1),
    (Kind::Zset, 6),
    (Kind::BigZset, 1),
    (Kind::Geo, 4),
    (Kind::Hll, 3),
    (Kind::Bits, 3),
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Raw => "str",
            Kind::Emb => "emb",
            Kind::Int => "int",
            Kind::List => "list",
            Kind::BigList => "biglist",
            Kind::Hash => "hash",
            Kind::BigHash => "bighash",
            Kind::WideHash => "widehash",
            Kind::IntSet => "iset",
            Kind::Set => "set",
            Kind::BigSet => "bigset",
            Kind::Zset => "zset",
            Kind::BigZset => "bigzset",
            Kind::Geo => "geo",
            Kind::Hll => "hll",
            Kind::Bits => "bits",
        }
    }

    /// The kind of key number `i`.
    pub fn of(i: u64) -> Kind {
        let mut b = i % 100;
        for &(kind, share) in BUCKETS {
            if b < share {
                return kind;
            }
            b -= share;
        }
        Kind::Raw
    }

    /// A key number below `keys` of this kind, near `near`.
    pub fn pick(self, near: u64, keys: u64) -> Option<u64> {
        let start: u64 = BUCKETS.iter().take_while(|(k, _)| *k != self).map(|(_, s)| s).sum();
        let base = near - near % 100 + start;
        (base < keys).then_some(base)
    }
}

fn bytes(rng: &mut StdRng, min: usize, max: usize) -> Vec<u8> {
    let mut v = vec![0u8; rng.gen_range(min..=max)];
    rng.fill_bytes(&mut v);
    v
}

/// Collection elements: random bytes, 8–44 of them.
fn element(rng: &mut StdRng) -> Vec<u8> {
    bytes(rng, 8, 44)
}

/// The commands that create key `key` of `kind`.
pub fn build(kind: Kind, key: &str, rng: &mut StdRng) -> Vec<Cmd> {
    let coll = |name: &'static str, n: usize, rng: &mut StdRng, per: &mut dyn FnMut(&mut StdRng, Cmd, usize) -> Cmd| {
        let mut c = Cmd::with_capacity(name, n * 2 + 1).arg(key);
        for j in 0..n {
            c = per(rng, c, j);
        }
        c
    };
    let mut cmds = match kind {
        Kind::Raw => vec![Cmd::new("SET").arg(key).arg(bytes(rng, 45, 512))],
        Kind::Emb => vec![Cmd::new("SET").arg(key).arg(bytes(rng, 1, 40))],
        Kind::Int => vec![Cmd::new("SET").arg(key).arg(rng.gen_range(-1_000_000_000i64..1_000_000_000).to_string())],
        Kind::List => vec![coll("RPUSH", 10, rng, &mut |r, c, _| c.arg(element(r)))],
        Kind::BigList => vec![coll("RPUSH", 300, rng, &mut |r, c, _| c.arg(element(r)))],
        Kind::Hash => vec![coll("HSET", 10, rng, &mut |r, c, j| c.arg(format!("f{j}")).arg(element(r)))],
        Kind::BigHash => vec![coll("HSET", 200, rng, &mut |r, c, j| c.arg(format!("f{j}")).arg(element(r)))],
        // A value over 64 bytes makes a hashtable of a small hash.
        Kind::WideHash => vec![coll("HSET", 5, rng, &mut |r, c, j| c.arg(format!("f{j}")).arg(bytes(r, 65, 200)))],
        Kind::IntSet => vec![coll("SADD", 10, rng, &mut |r, c, _| c.arg(r.gen_range(0u32..1_000_000).to_string()))],
        Kind::Set => vec![coll("SADD", 10, rng, &mut |r, c, _| c.arg(element(r)))],
        Kind::BigSet => vec![coll("SADD", 200, rng, &mut |r, c, _| c.arg(element(r)))],
        Kind::Zset => {
            vec![coll("ZADD", 10, rng, &mut |r, c, _| c.arg(format!("{}", r.gen_range(-1e6..1e6f64))).arg(element(r)))]
        }
        Kind::BigZset => {
            vec![coll("ZADD", 200, rng, &mut |r, c, _| c.arg(format!("{}", r.gen_range(-1e6..1e6f64))).arg(element(r)))]
        }
        Kind::Geo => vec![coll("GEOADD", 5, rng, &mut |r, c, j| {
            c.arg(format!("{:.6}", r.gen_range(-179.0..179.0f64)))
                .arg(format!("{:.6}", r.gen_range(-84.0..84.0f64)))
                .arg(format!("p{j}"))
        })],
        Kind::Hll => vec![coll("PFADD", 20, rng, &mut |r, c, _| c.arg(element(r)))],
        Kind::Bits => {
            (0..5).map(|_| Cmd::new("SETBIT").arg(key).arg(rng.gen_range(0u32..4096).to_string()).arg("1")).collect()
        }
    };
    // One key in ten expires, in 1–10 days: nothing expires during a run.
    if rng.gen_ratio(1, 10) {
        cmds.push(Cmd::new("PEXPIRE").arg(key).arg(rng.gen_range(86_400_000u64..864_000_000).to_string()));
    }
    cmds
}

/// Sends `cmds` in pipelines of about `per` commands; any error reply fails.
pub async fn send_all(conn: &mut Connection, cmds: &mut Vec<Cmd>, what: &str) -> Result<(), String> {
    if cmds.is_empty() {
        return Ok(());
    }
    let replies = conn.pipeline(cmds).await.map_err(|e| format!("{what}: {e}"))?;
    if let Some(e) = replies.iter().find_map(|r| r.as_error()) {
        return Err(format!("{what}: {e}"));
    }
    cmds.clear();
    Ok(())
}

/// What to load.
#[derive(Debug, Clone)]
pub struct Shape {
    pub seed: u64,
    pub keys: u64,
    pub big: u64,
    pub streams_per_master: u64,
    pub db1_keys_per_master: u64,
}

/// Keys `from..to` through the proxy on one connection.
async fn load_range(proxy: String, shape: Shape, from: u64, to: u64) -> Result<(), String> {
    let mut conn = Connection::connect(&proxy, &ConnectOptions::default()).await.map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(shape.seed ^ from.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut cmds = Vec::with_capacity(1100);
    for i in from..to {
        let kind = Kind::of(i);
        cmds.extend(build(kind, &format!("L:{}:{i}", kind.name()), &mut rng));
        if cmds.len() >= 1000 {
            send_all(&mut conn, &mut cmds, "loading through the proxy").await?;
        }
    }
    send_all(&mut conn, &mut cmds, "loading through the proxy").await
}

/// Loads the whole shape; returns the keys written.
pub async fn load(proxy: &str, masters: &[String], shape: &Shape) -> Result<u64, String> {
    // Four connections: nutcracker and the masters each use a core.
    let parts = 4;
    let mut tasks = Vec::new();
    for p in 0..parts {
        let (from, to) = (shape.keys * p / parts, shape.keys * (p + 1) / parts);
        tasks.push(tokio::spawn(load_range(proxy.to_owned(), shape.clone(), from, to)));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let mut rng = StdRng::seed_from_u64(shape.seed ^ 0xB16);
    let mut conn = Connection::connect(proxy, &ConnectOptions::default()).await.map_err(|e| e.to_string())?;
    for i in 0..shape.big {
        let mut v = vec![0u8; 1 << 20];
        rng.fill_bytes(&mut v);
        send_all(&mut conn, &mut vec![Cmd::new("SET").arg(format!("L:big:{i}")).arg(v)], "a 1 MiB string").await?;
    }
    let mut total = shape.keys + shape.big;
    for (m, addr) in masters.iter().enumerate() {
        let mut c = Connection::connect(addr, &ConnectOptions::default()).await.map_err(|e| e.to_string())?;
        let mut cmds = Vec::new();
        for s in 0..shape.streams_per_master {
            let key = format!("M{m}:{{st}}:stream:{s}");
            for e in 0..20 {
                cmds.push(
                    Cmd::new("XADD").arg(&key).arg("*").arg("n").arg(e.to_string()).arg("v").arg(element(&mut rng)),
                );
            }
            cmds.push(Cmd::new("XGROUP").arg("CREATE").arg(&key).arg("g").arg("0"));
            cmds.push(
                Cmd::new("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg("c1")
                    .arg("COUNT")
                    .arg("5")
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(">"),
            );
            if cmds.len() >= 1000 {
                send_all(&mut c, &mut cmds, "streams").await?;
            }
        }
        send_all(&mut c, &mut cmds, "streams").await?;
        send_all(&mut c, &mut vec![Cmd::new("SELECT").arg("1")], "SELECT 1").await?;
        for i in 0..shape.db1_keys_per_master {
            let kind = Kind::of(i);
            cmds.extend(build(kind, &format!("D1:M{m}:{}:{i}", kind.name()), &mut rng));
            if cmds.len() >= 1000 {
                send_all(&mut c, &mut cmds, "db 1").await?;
            }
        }
        send_all(&mut c, &mut cmds, "db 1").await?;
        total += shape.streams_per_master + shape.db1_keys_per_master;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_a_hundred_and_pick_finds_the_kind() {
        assert_eq!(BUCKETS.iter().map(|(_, s)| s).sum::<u64>(), 100);
        for &(kind, _) in BUCKETS {
            let i = kind.pick(12_345, 1_000_000).unwrap();
            assert_eq!(Kind::of(i), kind);
        }
    }
}
