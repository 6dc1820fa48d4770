//! The soak's writer: every command on the seed's list (and the transaction,
//! script, database and pub/sub forms around them), as clients would send
//! them, for as long as it is told, as fast as the servers answer or paced.
//!
//! Each round sends one pipeline through the proxy (single-key commands on
//! the writer's own keys `W:…`, plus changes to loaded keys of the right
//! type, so the stream overlaps the snapshot), and one pipeline to each
//! master directly (what twemproxy does not proxy: multi-key commands on
//! hash-tagged keys, MULTI/EXEC, EVAL/EVALSHA, SELECT, MOVE, RENAME,
//! RESTORE, blocking pops, PUBLISH). Rounds are paced to `rounds_per_sec`.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardsync::resp::{Cmd, ConnectOptions, Connection, Value};
use tokio_util::sync::CancellationToken;

use super::dataset::Kind;

/// What the writer did.
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub rounds: u64,
    pub commands: u64,
    /// Error replies (a few are expected: a pop from a list another
    /// command emptied); shown, never hidden.
    pub errors: u64,
    pub first_error: Option<String>,
}

fn c(args: &[&str]) -> Cmd {
    Cmd::from_args(args.iter().copied())
}

/// Keys the writer owns cycle through this many names per kind.
const SPREAD: u64 = 5000;

fn proxy_round(i: u64, rng: &mut StdRng, loaded: u64) -> Vec<Cmd> {
    let k = |p: &str| format!("W:{p}:{}", i % SPREAD);
    let iv = i.to_string();
    let mut v = vec![
        c(&["SET", &k("s"), &format!("v{i}")]),
        c(&["APPEND", &k("s"), "+"]),
        c(&["INCR", &k("n")]),
        c(&["INCRBY", &k("n"), "3"]),
        c(&["DECR", &k("n")]),
        c(&["DECRBY", &k("n"), "2"]),
        c(&["INCRBYFLOAT", &k("f"), "1.5"]),
        c(&["GETSET", &k("g"), &iv]),
        c(&["SETEX", &k("ex"), "100000", "x"]),
        c(&["PSETEX", &k("px"), "90000000", "y"]),
        c(&["SETNX", &k("nx"), "first"]),
        c(&["SETRANGE", &k("s"), "1", "R"]),
        c(&["SETBIT", &k("bits"), &(i % 64).to_string(), "1"]),
        c(&["LPUSH", &k("l"), &format!("a{i}")]),
        c(&["RPUSH", &k("l"), &format!("b{i}"), "c"]),
        c(&["LPUSHX", &k("l"), "lx"]),
        c(&["RPUSHX", &k("l"), "rx"]),
        c(&["LINSERT", &k("l"), "BEFORE", "c", "ins"]),
        c(&["LSET", &k("l"), "0", "set0"]),
        c(&["LREM", &k("l"), "1", "c"]),
        c(&["LTRIM", &k("l"), "0", "20"]),
        c(&["RPOP", &k("l")]),
        c(&["LPOP", &k("l")]),
        c(&["HSET", &k("h"), "f1", &iv, "f2", "x"]),
        c(&["HMSET", &k("h"), "f3", "y"]),
        c(&["HSETNX", &k("h"), "f4", "z"]),
        c(&["HINCRBY", &k("h"), "cnt", "2"]),
        c(&["HINCRBYFLOAT", &k("h"), "fl", "0.25"]),
        c(&["HDEL", &k("h"), "f2"]),
        c(&["SADD", &k("set"), &format!("m{i}"), "common"]),
        c(&["SREM", &k("set"), &format!("m{}", i.saturating_sub(3))]),
        c(&["ZADD", &k("z"), &iv, &format!("m{i}"), "1.5", "half"]),
        c(&["ZINCRBY", &k("z"), "2", "half"]),
        c(&["ZREM", &k("z"), &format!("m{}", i.saturating_sub(5))]),
        c(&["ZREMRANGEBYSCORE", &k("z"), "-inf", &format!("({}", i.saturating_sub(20))]),
        c(&["ZREMRANGEBYRANK", &k("z"), "0", "-30"]),
        c(&["ZADD", &k("zl"), "0", "a", "0", "b", "0", "c"]),
        c(&["ZREMRANGEBYLEX", &k("zl"), "-", "[b"]),
        c(&["PFADD", &k("hll"), &format!("e{i}")]),
        c(&["GEOADD", &k("geo"), "13.36", "38.11", &format!("p{}", i % 100)]),
        c(&["EXPIRE", &k("l"), "500000"]),
        c(&["PEXPIRE", &k("set"), "600000000"]),
        c(&["EXPIREAT", &k("h"), "4102444800"]),
        c(&["PEXPIREAT", &k("z"), "4102444800000"]),
        c(&["PERSIST", &k("set")]),
        c(&["DEL", &k("nx")]),
    ];
    // Loaded keys change while the snapshot of them is copied.
    let near = rng.gen_range(0..loaded.max(1));
    let loaded_key = |kind: Kind| kind.pick(near, loaded).map(|n| format!("L:{}:{n}", kind.name()));
    if let Some(key) = loaded_key(Kind::Int) {
        v.push(c(&["INCRBY", &key, "7"]));
    }
    if let Some(key) = loaded_key(Kind::Raw) {
        v.push(c(&["APPEND", &key, "-w"]));
    }
    if let Some(key) = loaded_key(Kind::Emb) {
        v.push(c(&["DEL", &key]));
    }
    if let Some(key) = loaded_key(Kind::List) {
        v.push(c(&["LPUSH", &key, &format!("w{i}")]));
    }
    if let Some(key) = loaded_key(Kind::Hash) {
        v.push(c(&["HSET", &key, "w", &iv]));
    }
    if let Some(key) = loaded_key(Kind::Set) {
        v.push(c(&["SADD", &key, &format!("w{i}")]));
    }
    if let Some(key) = loaded_key(Kind::Zset) {
        v.push(c(&["ZINCRBY", &key, "1", "w"]));
    }
    if let Some(key) = loaded_key(Kind::BigList) {
        v.push(c(&["EXPIRE", &key, "864000"]));
    }
    v
}

fn master_round(m: usize, i: u64, sha: &str) -> Vec<Cmd> {
    // Hash-tagged, as multi-key commands must be on a real twemproxy shard.
    let t = |p: &str| format!("wd{m}:{{tag{}}}:{p}", i % 7);
    let iv = i.to_string();
    let tx = |p: &str| format!("wd{m}:{{tx}}:{p}:{}", i % 20);
    vec![
        c(&["MSET", &t("a"), "1", &t("b"), "2"]),
        c(&["MSETNX", &t(&format!("nx{}", i % 20_000)), "1", &t(&format!("nx2{}", i % 20_000)), "2"]),
        c(&["SADD", &t("s1"), "x", "y", &iv]),
        c(&["SADD", &t("s2"), "y", "z"]),
        c(&["SUNIONSTORE", &t("su"), &t("s1"), &t("s2")]),
        c(&["SINTERSTORE", &t("si"), &t("s1"), &t("s2")]),
        c(&["SDIFFSTORE", &t("sd"), &t("s1"), &t("s2")]),
        c(&["SMOVE", &t("s1"), &t("s2"), "x"]),
        c(&["SPOP", &t("sd")]),
        c(&["ZADD", &t("z1"), "1", "a", "2", "b"]),
        c(&["ZUNIONSTORE", &t("zu"), "2", &t("z1"), &t("zu")]),
        c(&["ZINTERSTORE", &t("zi"), "1", &t("z1")]),
        c(&["RPUSH", &t("src"), &iv, "more", "again"]),
        c(&["RPOPLPUSH", &t("src"), &t("dst")]),
        c(&["BRPOPLPUSH", &t("src"), &t("dst"), "1"]),
        c(&["BLPOP", &t("dst"), "1"]),
        c(&["BRPOP", &t("src"), &t("dst"), "1"]),
        c(&["PFADD", &t("hll"), &iv]),
        c(&["PFMERGE", &t("hllm"), &t("hll")]),
        c(&["BITOP", "OR", &t("bo"), &t("a"), &t("b")]),
        c(&["SET", &t("ren"), "r"]),
        c(&["RENAME", &t("ren"), &t(&format!("renamed{}", i % 3))]),
        c(&["MULTI"]),
        c(&["INCR", &tx("txn")]),
        c(&["LPUSH", &tx("txl"), &iv]),
        c(&["EXEC"]),
        c(&[
            "EVAL",
            "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])",
            "2",
            &t("ev"),
            &t("evc"),
            &iv,
        ]),
        c(&["EVALSHA", sha, "1", &t("evl"), &iv]),
        c(&["SELECT", "1"]),
        c(&["SET", &format!("wd{m}:db1:{}", i % SPREAD), &iv]),
        c(&["INCR", &format!("wd{m}:db1:n:{}", i % 50)]),
        c(&["SELECT", "0"]),
        c(&["SET", &format!("wd{m}:mv:{}", i % SPREAD), "moving"]),
        c(&["MOVE", &format!("wd{m}:mv:{}", i % SPREAD), if i % 2 == 0 { "1" } else { "4" }]),
        c(&["PUBLISH", "soak", &iv]),
    ]
}

/// A DUMP of one key restored under another name: RESTORE in the stream.
async fn dump_restore(conn: &mut Connection, m: usize, i: u64) -> Result<u64, String> {
    let from = format!("wd{m}:{{tag{}}}:s1", i % 7);
    let payload = conn.send(&c(&["DUMP", &from])).await.map_err(|e| e.to_string())?;
    let Value::Bulk(Some(payload)) = payload else { return Ok(1) };
    let to = format!("wd{m}:restored:{}", i % 100);
    let cmd = Cmd::new("RESTORE").arg(to).arg("0").arg_bytes(payload).arg("REPLACE");
    conn.send(&cmd).await.map_err(|e| e.to_string())?;
    Ok(2)
}

/// Writes until `cancel` fires; `loaded`: keys of the dataset, whose names
/// the writer changes.
pub async fn run(
    proxy: String,
    masters: Vec<String>,
    loaded: u64,
    rounds_per_sec: u64,
    seed: u64,
    cancel: CancellationToken,
) -> Result<Written, String> {
    let opts = ConnectOptions::default();
    let mut p = Connection::connect(&proxy, &opts).await.map_err(|e| e.to_string())?;
    let mut ms = Vec::new();
    let mut shas = Vec::new();
    for addr in &masters {
        let mut m = Connection::connect(addr, &opts).await.map_err(|e| e.to_string())?;
        let sha = m
            .query(&c(&["SCRIPT", "LOAD", "return redis.call('RPUSH', KEYS[1], ARGV[1])"]))
            .await
            .map_err(|e| e.to_string())?;
        shas.push(sha.as_str().unwrap_or_default().to_owned());
        ms.push(m);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = Written::default();
    let started = Instant::now();
    let mut i = 0u64;
    while !cancel.is_cancelled() {
        let note = |replies: &[Value], w: &mut Written| {
            w.commands += replies.len() as u64;
            for r in replies.iter().filter_map(Value::as_error) {
                w.errors += 1;
                w.first_error.get_or_insert_with(|| r.to_owned());
            }
        };
        let replies = p.pipeline(&proxy_round(i, &mut rng, loaded)).await.map_err(|e| format!("proxy: {e}"))?;
        note(&replies, &mut w);
        for (m, conn) in ms.iter_mut().enumerate() {
            let replies = conn.pipeline(&master_round(m, i, &shas[m])).await.map_err(|e| format!("master {m}: {e}"))?;
            note(&replies, &mut w);
            if i % 10 == 0 {
                w.commands += dump_restore(conn, m, i).await?;
            }
        }
        i += 1;
        w.rounds = i;
        if rounds_per_sec == 0 {
            continue;
        }
        // Paced: round i is due at i / rate seconds.
        let due = started + Duration::from_secs_f64(i as f64 / rounds_per_sec as f64);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(due.into()) => {}
        }
    }
    Ok(w)
}
