//! The version matrix: every server binary this machine has — Redis 3.2,
//! 4.0 and 5.0 (`../shared/redis-bin/`, when present), 6.0.9, 6.2, 7.4 and
//! Valkey 9.1 (`.deps/`, fetched by `scripts/deps.sh`), 7.0 (the system's) —
//! as source and as destination of each other: a small dataset of the
//! types both have, a full copy, one pass of a writer of the seed's
//! commands and of the newer forms the source has (`SET … EX/PX/EXAT/PXAT/
//! KEEPTTL/GET`, `GETEX`, `GETDEL`, `LMOVE`, `COPY`, `ZADD GT`, multi-field
//! `HSET`, `LPOP` with a count, `RESTORE` of a `DUMP`…), then every key
//! compared. A form the
//! destination cannot express (a stream before 5.0, a hash field TTL
//! before 7.4) must pause the shard naming it; after the resume the rest is
//! equal.
//!
//! Its own harness (`harness = false`): a pairing whose binary is missing
//! is reported as skipped — on its line and in the totals — never as
//! passed. `VERSION_MATRIX=redis-7.0,valkey-9.1` limits the servers.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::compare;
use common::harness::Report;
use common::task::task_file;
use common::{RedisOptions, RedisServer};
use shardsync::config::TaskConfig;
use shardsync::dest::{Engine, RedisVersion};
use shardsync::engine::{self, snapshot::TaskSnapshot, task::Command};
use shardsync::resp::{Cmd, Connection};
use tokio_util::sync::CancellationToken;

const HEARTBEAT: &[u8] = b"SHARDSYNC_HEARTBEAT";

/// A server binary of the matrix.
#[derive(Clone)]
struct Server {
    name: &'static str,
    engine: Engine,
    /// Its Redis-compatible version (what its commands match).
    version: RedisVersion,
    bin: Result<PathBuf, String>,
}

impl Server {
    fn at_least(&self, major: u16, minor: u16) -> bool {
        self.version >= RedisVersion::new(major, minor, 0)
    }

    fn field_ttls(&self) -> bool {
        match self.engine {
            Engine::Redis => self.at_least(7, 4),
            Engine::Valkey => true,
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn file(path: PathBuf, how: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} not found ({how})", path.display()))
    }
}

fn servers() -> Vec<Server> {
    let shared = |v: &str| file(root().join("../shared/redis-bin").join(format!("redis-server-{v}")), "../shared");
    let deps = |d: &str, b: &str| file(root().join(".deps").join(d).join(b), "run scripts/deps.sh");
    let system = shardsync::sandbox::find("redis-server").ok_or_else(|| "redis-server not on PATH".to_owned());
    let r = |major, minor, patch| RedisVersion::new(major, minor, patch);
    let all = vec![
        Server { name: "redis-3.2", engine: Engine::Redis, version: r(3, 2, 13), bin: shared("3.2.13") },
        Server { name: "redis-4.0", engine: Engine::Redis, version: r(4, 0, 14), bin: shared("4.0.14") },
        Server { name: "redis-5.0", engine: Engine::Redis, version: r(5, 0, 14), bin: shared("5.0.14") },
        Server {
            name: "redis-6.0",
            engine: Engine::Redis,
            version: r(6, 0, 9),
            bin: deps("redis-6.0.9", "redis-server"),
        },
        Server {
            name: "redis-6.2",
            engine: Engine::Redis,
            version: r(6, 2, 14),
            bin: deps("redis-6.2", "redis-server"),
        },
        Server { name: "redis-7.0", engine: Engine::Redis, version: r(7, 0, 0), bin: system },
        Server {
            name: "redis-7.4",
            engine: Engine::Redis,
            version: r(7, 4, 1),
            bin: deps("redis-7.4", "redis-server"),
        },
        Server {
            name: "valkey-9.1",
            engine: Engine::Valkey,
            version: r(7, 2, 4),
            bin: deps("valkey-9.1", "valkey-server"),
        },
    ];
    match std::env::var("VERSION_MATRIX") {
        Ok(only) => all.into_iter().filter(|s| only.split(',').any(|o| o.trim() == s.name)).collect(),
        Err(_) => all,
    }
}

fn start(server: &Server, bin: &Path) -> Result<RedisServer, String> {
    // Diskless without delay where it exists (2.8.18+): quick full copies.
    let opts = RedisOptions::new().bin(bin).config("repl-diskless-sync-delay 0");
    RedisServer::start(opts).map_err(|e| format!("{}: {e}", server.name))
}

async fn cmd(c: &mut Connection, args: &[&str]) -> Result<(), String> {
    match c.send(&Cmd::from_args(args.iter().copied())).await {
        Ok(v) if v.is_error() => Err(format!("{args:?} -> {v}")),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{args:?}: {e}")),
    }
}

/// Keys of every type both servers have, in DBs 0 and 2.
async fn dataset(c: &mut Connection, src: &Server, dst: &Server) -> Result<(), String> {
    for db in ["0", "2"] {
        cmd(c, &["SELECT", db]).await?;
        for i in 0..40 {
            let k = |p: &str| format!("d{db}:{p}:{i}");
            cmd(c, &["SET", &k("s"), &format!("value {i}")]).await?;
            cmd(c, &["SET", &k("n"), &i.to_string()]).await?;
            cmd(c, &["RPUSH", &k("l"), "a", "b", &i.to_string()]).await?;
            cmd(c, &["HMSET", &k("h"), "f", "v", "g", &i.to_string()]).await?;
            cmd(c, &["SADD", &k("set"), "x", &i.to_string()]).await?;
            cmd(c, &["ZADD", &k("z"), "1.5", "m", &i.to_string(), "n"]).await?;
            cmd(c, &["SETEX", &k("ttl"), "3600", "t"]).await?;
            cmd(c, &["PFADD", &k("hll"), "a", "b"]).await?;
            if src.at_least(5, 0) && dst.at_least(5, 0) {
                cmd(c, &["XADD", &k("x"), "*", "f", "v"]).await?;
            }
        }
    }
    cmd(c, &["SELECT", "0"]).await
}

/// One pass of the seed's commands and of the newer forms `src` has; the
/// keys written with a form `dst` cannot express start `nx:` and are
/// returned as the forms expected to pause the shard.
async fn writer(c: &mut Connection, src: &Server, dst: &Server) -> Result<Vec<&'static str>, String> {
    let mut seed: Vec<Vec<String>> = Vec::new();
    let mut a = |args: &[&str]| seed.push(args.iter().map(|s| s.to_string()).collect());
    a(&["SET", "w:s", "v"]);
    a(&["APPEND", "w:s", "+"]);
    a(&["INCR", "w:n"]);
    a(&["INCRBY", "w:n", "3"]);
    a(&["DECR", "w:n"]);
    a(&["DECRBY", "w:n", "2"]);
    a(&["INCRBYFLOAT", "w:f", "1.5"]);
    a(&["GETSET", "w:g", "1"]);
    a(&["SETEX", "w:ex", "1000", "x"]);
    a(&["PSETEX", "w:px", "900000", "y"]);
    a(&["SETNX", "w:nx", "first"]);
    a(&["SETRANGE", "w:s", "1", "R"]);
    a(&["SETBIT", "w:bits", "7", "1"]);
    a(&["LPUSH", "w:l", "a"]);
    a(&["RPUSH", "w:l", "b", "c"]);
    a(&["LPUSHX", "w:l", "lx"]);
    a(&["RPUSHX", "w:l", "rx"]);
    a(&["LINSERT", "w:l", "BEFORE", "c", "ins"]);
    a(&["LSET", "w:l", "0", "set0"]);
    a(&["LREM", "w:l", "1", "c"]);
    a(&["LTRIM", "w:l", "0", "20"]);
    a(&["RPOP", "w:l"]);
    a(&["LPOP", "w:l"]);
    a(&["HMSET", "w:h", "f3", "y"]);
    a(&["HSETNX", "w:h", "f4", "z"]);
    a(&["HINCRBY", "w:h", "cnt", "2"]);
    a(&["HINCRBYFLOAT", "w:h", "fl", "0.25"]);
    a(&["HDEL", "w:h", "f3"]);
    a(&["SADD", "w:set", "m1", "m2", "m3"]);
    a(&["SREM", "w:set", "m2"]);
    a(&["SMOVE", "w:set", "w:set2", "m3"]);
    a(&["SPOP", "w:set"]);
    a(&["SUNIONSTORE", "w:su", "w:set", "w:set2"]);
    a(&["SINTERSTORE", "w:si", "w:set", "w:set2"]);
    a(&["SDIFFSTORE", "w:sd", "w:set", "w:set2"]);
    a(&["ZADD", "w:z", "1", "a", "2", "b", "3", "c"]);
    a(&["ZINCRBY", "w:z", "2", "a"]);
    a(&["ZREM", "w:z", "b"]);
    a(&["ZREMRANGEBYSCORE", "w:z", "10", "20"]);
    a(&["ZREMRANGEBYRANK", "w:z", "5", "6"]);
    a(&["ZADD", "w:zl", "0", "a", "0", "b", "0", "c"]);
    a(&["ZREMRANGEBYLEX", "w:zl", "-", "[a"]);
    a(&["ZUNIONSTORE", "w:zu", "2", "w:z", "w:zl"]);
    a(&["ZINTERSTORE", "w:zi", "1", "w:z"]);
    a(&["PFADD", "w:hll", "e1", "e2"]);
    a(&["PFMERGE", "w:hllm", "w:hll"]);
    a(&["GEOADD", "w:geo", "13.36", "38.11", "p1"]);
    a(&["BITOP", "OR", "w:bo", "w:bits", "w:bits"]);
    a(&["RPOPLPUSH", "w:l", "w:l2"]);
    a(&["MSET", "w:m1", "1", "w:m2", "2"]);
    a(&["MSETNX", "w:m3", "3", "w:m4", "4"]);
    a(&["SET", "w:ren", "r"]);
    a(&["RENAME", "w:ren", "w:renamed"]);
    a(&["EXPIRE", "w:l", "5000"]);
    a(&["PEXPIRE", "w:set", "6000000"]);
    a(&["EXPIREAT", "w:h", "4102444800"]);
    a(&["PEXPIREAT", "w:z", "4102444800000"]);
    a(&["PERSIST", "w:set"]);
    a(&["DEL", "w:nx"]);
    a(&["EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])", "2", "w:ev", "w:evc", "7"]);
    a(&["SELECT", "2"]);
    a(&["SET", "w:db2", "x"]);
    a(&["SELECT", "0"]);
    a(&["PUBLISH", "chan", "m"]);
    // Newer forms, where the source has them.
    if src.at_least(4, 0) {
        a(&["HSET", "w:h2", "a", "1", "b", "2"]);
        a(&["SET", "w:unl", "x"]);
        a(&["UNLINK", "w:unl"]);
    }
    if src.at_least(5, 0) {
        a(&["ZADD", "w:zp", "1", "a", "2", "b", "3", "c"]);
        a(&["ZPOPMIN", "w:zp"]);
        a(&["ZPOPMAX", "w:zp", "1"]);
    }
    if src.at_least(6, 0) {
        a(&["SET", "w:kt", "1", "EX", "5000"]);
        a(&["SET", "w:kt", "2", "KEEPTTL"]);
    }
    if src.at_least(6, 2) {
        a(&["SET", "w:ex2", "1", "EX", "1000"]);
        a(&["SET", "w:px2", "1", "PX", "900000", "GET"]);
        a(&["SET", "w:exat", "1", "EXAT", "4102444800"]);
        a(&["SET", "w:pxat", "1", "PXAT", "4102444800000"]);
        a(&["GETEX", "w:ex2", "EX", "2000"]);
        a(&["SET", "w:gd", "1"]);
        a(&["GETDEL", "w:gd"]);
        a(&["RPUSH", "w:lm", "a", "b", "c", "d", "e"]);
        a(&["LMOVE", "w:lm", "w:lm2", "LEFT", "RIGHT"]);
        a(&["LMOVE", "w:lm", "w:lm2", "RIGHT", "LEFT"]);
        a(&["LPOP", "w:lm", "2"]);
        a(&["COPY", "w:lm2", "w:lmc"]);
        a(&["ZADD", "w:zg", "1", "m"]);
        a(&["ZADD", "w:zg", "GT", "5", "m", "2", "new"]);
        a(&["ZADD", "w:zg", "GT", "3", "m"]);
    }
    for args in &seed {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cmd(c, &a).await?;
    }
    // RESTORE of a DUMP: the payload carries the source's RDB version,
    // which an older destination does not read (then native commands).
    for (name, key) in [("w:rl", "w:l2"), ("w:rh", "w:h"), ("w:rz", "w:z"), ("w:rs", "w:s")] {
        let dump = c.send(&Cmd::from_args(["DUMP", key])).await.map_err(|e| e.to_string())?;
        let Some(payload) = dump.into_bytes() else { return Err(format!("DUMP {key} gave nothing")) };
        let mut restore = Cmd::new("RESTORE").arg(name);
        restore = if src.at_least(5, 0) {
            restore.arg("4102444800000").arg_bytes(payload).arg("ABSTTL")
        } else {
            restore.arg("3600000").arg_bytes(payload)
        };
        let reply = c.send(&restore).await.map_err(|e| e.to_string())?;
        if reply.is_error() {
            return Err(format!("RESTORE {name}: {reply}"));
        }
    }
    // Forms the destination cannot express: each must pause the shard.
    let mut pauses = Vec::new();
    if src.at_least(5, 0) && !dst.at_least(5, 0) {
        cmd(c, &["XADD", "nx:stream", "*", "f", "v"]).await?;
        pauses.push("streams");
    }
    if src.field_ttls() && !dst.field_ttls() {
        cmd(c, &["HSET", "nx:fields", "f", "v"]).await?;
        cmd(c, &["HEXPIRE", "nx:fields", "3600", "FIELDS", "1", "f"]).await?;
        pauses.push("hash field TTLs");
    }
    // The marker a drain waits for.
    cmd(c, &["SET", "w:done", "1"]).await?;
    Ok(pauses)
}

/// Every pause of the shard (one per form the destination cannot express)
/// is acknowledged by a resume; returns their messages.
async fn drain(handle: &engine::EngineHandle, dest: &str, pauses: usize) -> Result<Vec<String>, String> {
    let mut d = compare::connect(dest).await;
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut status = handle.status.clone();
    loop {
        let snap = status.borrow_and_update().clone();
        if let Some(f) = snap.failed() {
            return Err(format!("the shard failed: {:?}", f.last_error));
        }
        let s = &snap.shards[0];
        if s.paused_on_error {
            let message = s.last_error.clone().unwrap_or_default();
            if seen.last() != Some(&message) {
                seen.push(message);
                handle.commands.send(Command::ResumeAll).await.map_err(|e| e.to_string())?;
            }
        }
        let done = d.send(&Cmd::from_args(["EXISTS", "w:done"])).await.map_err(|e| e.to_string())?;
        if done.as_int() == Some(1) && snap.all_synced() && seen.len() >= pauses {
            return Ok(seen);
        }
        if start.elapsed() > Duration::from_secs(40) {
            return Err(format!("not drained in 40 s (pauses seen: {seen:?}): {s:#?}"));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
}

async fn pairing(src: &Server, dst: &Server, src_bin: &Path, dst_bin: &Path) -> Result<String, String> {
    let s = start(src, src_bin)?;
    let d = start(dst, dst_bin)?;
    let mut c = compare::connect(&s.addr()).await;
    dataset(&mut c, src, dst).await?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = task_file(dir.path(), &[("server1", s.addr())], &d.addr(), "");
    let task = TaskConfig::load(&path).map_err(|e| e.to_string())?;
    let handle = engine::spawn(task, CancellationToken::new());
    let synced = async {
        let mut status = handle.status.clone();
        let start = Instant::now();
        loop {
            let snap: TaskSnapshot = status.borrow_and_update().clone();
            if let Some(f) = snap.failed() {
                return Err(format!("the full copy failed: {:?}", f.last_error));
            }
            if snap.all_synced() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("no full copy in 30 s: {snap:#?}"));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
        }
    };
    synced.await?;
    // What a source sends a replica that does not announce its version:
    // Valkey 9 writes RDB 80 to its files but 11 to such replicas.
    let sent = handle.status.borrow().shards[0].rdb_version;
    let want = shardsync::dest::ServerVersion { engine: src.engine, version: src.version, redis: src.version };
    let want = if src.engine == Engine::Valkey { 11 } else { u32::from(want.rdb_version()) };
    if sent != Some(want) {
        handle.stop().await;
        return Err(format!("the snapshot came as RDB {sent:?}, expected {want}"));
    }
    let expected = writer(&mut c, src, dst).await?;
    let pauses = drain(&handle, &d.addr(), expected.len()).await;
    handle.stop().await;
    let pauses = pauses?;
    for form in &expected {
        if !pauses.iter().any(|p| p.contains(form) && p.contains("or newer")) {
            return Err(format!("expected a pause naming {form} and the version that takes it, saw {pauses:?}"));
        }
    }
    if pauses.len() != expected.len() {
        return Err(format!("expected pauses for {expected:?}, saw {pauses:?}"));
    }
    // The keys of the forms that were skipped are the only differences.
    let diffs: Vec<String> =
        compare::diff(&[s.addr()], &d.addr(), &[HEARTBEAT]).await.into_iter().filter(|d| !d.contains(" nx:")).collect();
    // With a form skipped, the key counts differ by its keys too.
    let diffs: Vec<String> = diffs.into_iter().filter(|d| expected.is_empty() || !d.contains(" holds ")).collect();
    if !diffs.is_empty() {
        return Err(format!("{} differences:\n  {}", diffs.len(), diffs.join("\n  ")));
    }
    Ok(if expected.is_empty() { "equal".into() } else { format!("equal, paused on {}", expected.join(", ")) })
}

/// Valkey 9 writes `VALKEY080` files, with hashes whose fields have TTLs
/// as type 22: every key is read, each field TTL as the server has it.
async fn valkey_file(bin: &Path) -> Result<String, String> {
    let v = RedisServer::start(RedisOptions::new().bin(bin)).map_err(|e| e.to_string())?;
    let mut c = compare::connect(&v.addr()).await;
    cmd(&mut c, &["SET", "s", "v"]).await?;
    cmd(&mut c, &["HSET", "small", "f1", "v1", "f2", "v2"]).await?;
    cmd(&mut c, &["HEXPIRE", "small", "3600", "FIELDS", "1", "f1"]).await?;
    let mut big = vec!["HSET".to_owned(), "big".to_owned()];
    for i in 0..300 {
        big.push(format!("f{i}"));
        big.push(format!("v{i}"));
    }
    cmd(&mut c, &big.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    cmd(&mut c, &["HEXPIRE", "big", "7200", "FIELDS", "2", "f7", "f8"]).await?;
    cmd(&mut c, &["HSETEX", "hx", "EX", "900", "FIELDS", "1", "a", "1"]).await?;
    cmd(&mut c, &["RPUSH", "l", "a", "b"]).await?;
    cmd(&mut c, &["XADD", "x", "*", "f", "v"]).await?;
    cmd(&mut c, &["SAVE"]).await?;
    let mut live = std::collections::BTreeMap::new();
    for (key, field) in [("small", "f1"), ("big", "f7"), ("big", "f8"), ("hx", "a")] {
        let at =
            c.send(&Cmd::from_args(["HPEXPIRETIME", key, "FIELDS", "1", field])).await.map_err(|e| e.to_string())?;
        let at = at.as_array().and_then(|a| a.first()).and_then(|x| x.as_int()).ok_or("HPEXPIRETIME")?;
        live.insert((key.to_owned(), field.to_owned()), at);
    }
    let file = std::fs::File::open(v.dir().join("dump.rdb")).map_err(|e| e.to_string())?;
    let mut reader = shardsync::rdb::RdbReader::new(file);
    let (mut version, mut keys, mut key) = (0, 0, String::new());
    let mut read = std::collections::BTreeMap::new();
    while let Some(ev) = reader.next_event().map_err(|e| format!("the file: {e}"))? {
        match ev {
            shardsync::rdb::Event::Header { version: v } => version = v,
            shardsync::rdb::Event::KeyStart(k) => {
                keys += 1;
                key = String::from_utf8_lossy(&k.key).into_owned();
            }
            shardsync::rdb::Event::Chunk(shardsync::rdb::Chunk::HashFields(fields)) => {
                for f in fields {
                    if let Some(at) = f.expire_at_ms {
                        read.insert((key.clone(), String::from_utf8_lossy(&f.field).into_owned()), at);
                    }
                }
            }
            _ => {}
        }
    }
    if version != 80 || keys != 6 || read != live {
        return Err(format!("version {version}, {keys} keys, field TTLs {read:?} (the server says {live:?})"));
    }
    Ok("VALKEY080 file read whole, field TTLs as the server has them".into())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let servers = servers();
    let mut report = Report::new();
    if let Some(vk) = servers.iter().find(|s| s.name == "valkey-9.1") {
        let name = "valkey-9.1 RDB file";
        match &vk.bin {
            Err(e) => report.skipped(name, e),
            Ok(bin) if report.wants(name) => report.outcome(name, rt.block_on(valkey_file(bin))),
            Ok(_) => {}
        }
    }
    for src in &servers {
        for dst in &servers {
            if src.name == dst.name {
                continue;
            }
            let name = format!("{} -> {}", src.name, dst.name);
            if !report.wants(&name) {
                continue;
            }
            match (&src.bin, &dst.bin) {
                (Ok(a), Ok(b)) => {
                    let t = Instant::now();
                    let r = rt.block_on(pairing(src, dst, a, b));
                    report.outcome(&name, r.map(|what| format!("{what}, {:.1} s", t.elapsed().as_secs_f64())));
                }
                (Err(e), _) | (_, Err(e)) => report.skipped(&name, e),
            }
        }
    }
    report.finish();
}
