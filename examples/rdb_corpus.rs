//! Makes the project's own RDB corpus, `tests/fixtures/rdb/` (`make rdb-fixtures`).
//!
//! For every Redis or Valkey server binary this machine has (3.2, 4.0 and 5.0
//! from `../shared/redis-bin/` when present, 6.0.9, 6.2, 7.4 and Valkey 9.1
//! from `.deps/` as `scripts/deps.sh` installs them, and the system's 7.0),
//! it starts the server on a loopback port in a temporary directory, writes a
//! dataset of every type and encoding that version has, `SAVE`s, and copies
//! the file to `<server>__all_types.rdb`. Beside it goes `<server>__all_types.json`:
//! the ground truth, read back from the same server with ordinary commands
//! (GET, LRANGE, SMEMBERS, HGETALL, ZRANGE, XINFO, PEXPIRETIME, …), in the
//! canonical format `shardsync rdb --json` prints (docs/output-formats.md).
//! The parser is then tested against what the server itself said it held
//! (`tests/rdb_fixtures.rs`), so the expected values never come from our own
//! parser. Values the server does not report exactly (a pending entry's
//! delivery time before Redis 6, whose `XPENDING` gives an idle time) are
//! written as `{"$any": null}`.
//!
//! The files are committed; run this again only to add a version or a case.
//! Servers missing on this machine are listed and left out, never faked.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};
use shardsync::rdb::json::{bytes_value, key_name, score_value};
use shardsync::resp::{Cmd, ConnectOptions, Connection, Value};

/// 2100-01-01T00:00:00Z: far enough that no key expires between the write and the check.
const FAR_MS: i64 = 4_102_444_800_000;

type Res<T> = Result<T, String>;

struct Server {
    name: &'static str,
    bin: PathBuf,
}

/// What the server says it is: Redis version, or Valkey.
#[derive(Clone, Copy)]
struct Version {
    major: u32,
    minor: u32,
    valkey: bool,
}

impl Version {
    fn at_least(&self, major: u32, minor: u32) -> bool {
        self.valkey || (self.major, self.minor) >= (major, minor)
    }
    fn field_ttls(&self) -> bool {
        self.valkey || self.at_least(7, 4)
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn servers() -> (Vec<Server>, Vec<String>) {
    let r = root();
    let candidates: Vec<(&'static str, Option<PathBuf>)> = vec![
        ("redis-3.2", Some(r.join("../shared/redis-bin/redis-server-3.2.13"))),
        ("redis-4.0", Some(r.join("../shared/redis-bin/redis-server-4.0.14"))),
        ("redis-5.0", Some(r.join("../shared/redis-bin/redis-server-5.0.14"))),
        ("redis-6.0", Some(r.join(".deps/redis-6.0.9/redis-server"))),
        ("redis-6.2", Some(r.join(".deps/redis-6.2/redis-server"))),
        ("redis-7.0", shardsync::sandbox::find("redis-server")),
        ("redis-7.4", Some(r.join(".deps/redis-7.4/redis-server"))),
        ("valkey-9.1", Some(r.join(".deps/valkey-9.1/valkey-server"))),
    ];
    let only = std::env::var("RDB_CORPUS").ok();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (name, bin) in candidates {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|x| x.trim() == name)) {
            continue;
        }
        match bin {
            Some(b) if b.is_file() => found.push(Server { name, bin: b }),
            Some(b) => missing.push(format!("{name}: {} not found", b.display())),
            None => missing.push(format!("{name}: redis-server not on PATH")),
        }
    }
    (found, missing)
}

/// A server process in its own directory, killed on drop.
struct Running {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(server: &Server) -> Res<Running> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    // Compressed quicklist nodes (depth 1) and LZF strings, as production defaults would not show.
    let child = Command::new(&server.bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--list-compress-depth", "1", "--rdbcompression", "yes", "--rdbchecksum", "yes"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(dir.path().join("server.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: cannot start {}: {e}", server.name, server.bin.display()))?;
    Ok(Running { child, dir, addr: format!("127.0.0.1:{port}") })
}

async fn connect(run: &Running, name: &str) -> Res<Connection> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match Connection::connect(&run.addr, &ConnectOptions::default()).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(run.dir.path().join("server.log")).unwrap_or_default();
                return Err(format!("{name} at {}: {e}\n{log}", run.addr));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One command; an error reply is an error naming the command.
async fn cmd<A: AsRef<[u8]>>(c: &mut Connection, args: &[A]) -> Res<Value> {
    let v = c.send(&Cmd::from_args(args.iter().map(|a| a.as_ref()))).await.map_err(|e| e.to_string())?;
    if let Value::Error(e) = &v {
        let shown: Vec<String> =
            args.iter().take(4).map(|a| String::from_utf8_lossy(a.as_ref()).into_owned()).collect();
        return Err(format!("{shown:?}: {e}"));
    }
    Ok(v)
}

fn bytes(v: &Value) -> Res<Vec<u8>> {
    v.as_bytes().map(<[u8]>::to_vec).ok_or_else(|| format!("expected a string, got {v:?}"))
}

fn array(v: &Value) -> Res<&[Value]> {
    v.as_array().ok_or_else(|| format!("expected an array, got {v:?}"))
}

fn int(v: &Value) -> Res<i64> {
    v.as_int().ok_or_else(|| format!("expected an integer, got {v:?}"))
}

/// Writes the dataset: every type and the encodings this version has, in DBs 0, 3 and 15.
async fn write_dataset(c: &mut Connection, v: Version) -> Res<()> {
    cmd(c, &["FLUSHALL"]).await?;
    // Strings: integer encodings (8, 16, 32 bit, and too big for 64), LZF, UTF-8, binary, empty.
    for (k, val) in [
        ("str:int8", "12"),
        ("str:neg", "-128"),
        ("str:int16", "1234"),
        ("str:int32", "123456789"),
        ("str:int64", "1234567890123"),
        ("str:bigint", "12345678901234567890"),
        ("str:utf8", "h\u{e9}llo w\u{f6}rld \u{2713}"),
        ("str:empty", ""),
        ("b64:not-base64", "a key that starts with b64:"),
    ] {
        cmd(c, &["SET", k, val]).await?;
    }
    cmd(c, &["SET", "str:lzf", &"compressible ".repeat(80)]).await?;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    cmd(c, &[&b"SET"[..], &b"str:binary"[..], &all_bytes]).await?;
    cmd(c, &[&b"SET"[..], &b"\xff\xfe binary key"[..], &b"v"[..]]).await?;
    cmd(c, &["PFADD", "hll", "a", "b", "c"]).await?;
    for i in 0..5 {
        let k = format!("ttl:str:{i}");
        cmd(c, &["SET", &k, "expires in 2100"]).await?;
        cmd(c, &["PEXPIREAT", &k, &(FAR_MS + i).to_string()]).await?;
    }
    // Lists: small (ziplist or listpack), long (quicklist, LZF-compressed nodes), long values.
    cmd(c, &["RPUSH", "list:small", "a", "1", "-5", "b", "300000"]).await?;
    let mut args = vec!["RPUSH".to_owned(), "list:big".to_owned()];
    args.extend((0..1000).map(|i| format!("element number {i} of a long list")));
    cmd(c, &args).await?;
    let long = "L".repeat(10_000);
    cmd(c, &["RPUSH", "list:longvalues", &long, "short", &long]).await?;
    // Sets: intset, listpack (7.2+; a hashtable before), hashtable.
    let mut args = vec!["SADD".to_owned(), "set:intset".to_owned()];
    args.extend((0..50).map(|i| (i * 7 - 20).to_string()));
    cmd(c, &args).await?;
    cmd(c, &["SADD", "set:small", "apple", "banana", "cherry"]).await?;
    let mut args = vec!["SADD".to_owned(), "set:big".to_owned()];
    args.extend((0..300).map(|i| format!("member-{i}")));
    cmd(c, &args).await?;
    // Hashes: small (ziplist/listpack), many fields, one long value (hashtable).
    cmd(c, &["HMSET", "hash:small", "f1", "v1", "f2", "2", "f3", "-3"]).await?;
    let mut args = vec!["HMSET".to_owned(), "hash:big".to_owned()];
    args.extend((0..600).flat_map(|i| [format!("field{i:04}"), format!("value {i}")]));
    cmd(c, &args).await?;
    cmd(c, &["HMSET", "hash:longvalue", "short", "x", "long", &"V".repeat(200)]).await?;
    // Sorted sets: small, skiplist, infinities, equal scores.
    cmd(c, &["ZADD", "zset:small", "1.5", "a", "-2", "b", "30000000000", "c", "0.1", "d"]).await?;
    let mut args = vec!["ZADD".to_owned(), "zset:big".to_owned()];
    args.extend((0..300).flat_map(|i| [format!("{}", f64::from(i) / 3.0), format!("m{i}")]));
    cmd(c, &args).await?;
    cmd(c, &["ZADD", "zset:inf", "inf", "top", "-inf", "bottom", "0", "zero", "0", "also-zero"]).await?;
    cmd(c, &["PEXPIREAT", "hash:small", &(FAR_MS + 100).to_string()]).await?;
    cmd(c, &["PEXPIREAT", "zset:small", &(FAR_MS + 101).to_string()]).await?;
    if v.at_least(5, 0) {
        write_streams(c).await?;
    }
    if v.field_ttls() {
        cmd(c, &["HSET", "hfe:small", "a", "1", "b", "2", "c", "3"]).await?;
        cmd(c, &["HPEXPIREAT", "hfe:small", &(FAR_MS + 7).to_string(), "FIELDS", "2", "a", "b"]).await?;
        let mut args = vec!["HSET".to_owned(), "hfe:big".to_owned()];
        args.extend((0..300).flat_map(|i| [format!("f{i:03}"), format!("v{i}")]));
        cmd(c, &args).await?;
        let fields: Vec<String> = (0..300).step_by(7).map(|i| format!("f{i:03}")).collect();
        let mut args = vec!["HPEXPIREAT".to_owned(), "hfe:big".to_owned(), (FAR_MS + 9).to_string()];
        args.extend(["FIELDS".to_owned(), fields.len().to_string()]);
        args.extend(fields);
        cmd(c, &args).await?;
    }
    if v.at_least(7, 0) {
        let lib =
            "#!lua name=corpuslib\nredis.register_function('corpus_echo', function(keys, args) return args[1] end)";
        cmd(c, &["FUNCTION", "LOAD", lib]).await?;
    }
    // Other databases, with TTLs.
    cmd(c, &["SELECT", "3"]).await?;
    cmd(c, &["SET", "db3:str", "in db 3"]).await?;
    cmd(c, &["RPUSH", "db3:list", "x", "y"]).await?;
    cmd(c, &["HMSET", "db3:hash", "k", "v"]).await?;
    cmd(c, &["PEXPIREAT", "db3:list", &(FAR_MS + 3).to_string()]).await?;
    cmd(c, &["SELECT", "15"]).await?;
    cmd(c, &["SET", "db15:str", "in db 15"]).await?;
    cmd(c, &["SADD", "db15:set", "1", "2", "3"]).await?;
    cmd(c, &["SELECT", "0"]).await?;
    Ok(())
}

async fn write_streams(c: &mut Connection) -> Res<()> {
    cmd(c, &["XADD", "stream:plain", "1-1", "name", "first", "n", "1"]).await?;
    cmd(c, &["XADD", "stream:plain", "1-2", "name", "second", "n", "2"]).await?;
    cmd(c, &["XADD", "stream:plain", "2-0", "other", "fields", "here", "now"]).await?;
    for i in 1..=20 {
        cmd(c, &["XADD", "stream:groups", &format!("{i}-0"), "i", &i.to_string(), "pad", "xxxxxxxxxx"]).await?;
    }
    cmd(c, &["XDEL", "stream:groups", "4-0"]).await?;
    cmd(c, &["XGROUP", "CREATE", "stream:groups", "g1", "0"]).await?;
    cmd(c, &["XGROUP", "CREATE", "stream:groups", "g2", "$"]).await?;
    cmd(c, &["XREADGROUP", "GROUP", "g1", "alice", "COUNT", "5", "STREAMS", "stream:groups", ">"]).await?;
    cmd(c, &["XREADGROUP", "GROUP", "g1", "bob", "COUNT", "3", "STREAMS", "stream:groups", ">"]).await?;
    cmd(c, &["XACK", "stream:groups", "g1", "1-0", "7-0"]).await?;
    for i in 1..=600 {
        cmd(c, &["XADD", "stream:big", &format!("{i}-{}", i % 3), "seq", &i.to_string(), "payload", "some bytes"])
            .await?;
    }
    cmd(c, &["XADD", "stream:emptied", "5-5", "f", "v"]).await?;
    cmd(c, &["XDEL", "stream:emptied", "5-5"]).await?;
    Ok(())
}

/// Every key of the current DB, in the canonical JSON of `shardsync rdb --json`.
async fn read_db(c: &mut Connection, v: Version) -> Res<Map<String, Json>> {
    let keys = array(&cmd(c, &["KEYS", "*"]).await?)?.iter().map(bytes).collect::<Res<Vec<_>>>()?;
    let mut out = BTreeMap::new();
    for k in keys {
        let ty = String::from_utf8_lossy(&bytes(&cmd(c, &[&b"TYPE"[..], &k]).await?)?).into_owned();
        let mut obj = Map::new();
        obj.insert("type".into(), json!(ty));
        let value = match ty.as_str() {
            "string" => bytes_value(&bytes(&cmd(c, &[&b"GET"[..], &k]).await?)?),
            "list" => {
                let items = cmd(c, &[&b"LRANGE"[..], &k, b"0", b"-1"]).await?;
                Json::Array(array(&items)?.iter().map(|i| bytes(i).map(|b| bytes_value(&b))).collect::<Res<_>>()?)
            }
            "set" => {
                let mut m =
                    array(&cmd(c, &[&b"SMEMBERS"[..], &k]).await?)?.iter().map(bytes).collect::<Res<Vec<_>>>()?;
                m.sort();
                Json::Array(m.iter().map(|b| bytes_value(b)).collect())
            }
            "hash" => {
                let flat = cmd(c, &[&b"HGETALL"[..], &k]).await?;
                let mut pairs =
                    array(&flat)?.chunks(2).map(|p| Ok((bytes(&p[0])?, bytes(&p[1])?))).collect::<Res<Vec<_>>>()?;
                pairs.sort();
                if v.field_ttls() {
                    let fttl = field_ttls(c, &k, &pairs).await?;
                    if !fttl.is_empty() {
                        obj.insert("field_expire_at_ms".into(), Json::Array(fttl));
                    }
                }
                Json::Array(pairs.iter().map(|(f, x)| json!([bytes_value(f), bytes_value(x)])).collect())
            }
            "zset" => {
                let flat = cmd(c, &[&b"ZRANGE"[..], &k, b"0", b"-1", b"WITHSCORES"]).await?;
                let pairs = array(&flat)?
                    .chunks(2)
                    .map(|p| {
                        let s = String::from_utf8_lossy(&bytes(&p[1])?).into_owned();
                        let f: f64 = s.parse().map_err(|e| format!("score {s}: {e}"))?;
                        Ok(json!([bytes_value(&bytes(&p[0])?), score_value(f)]))
                    })
                    .collect::<Res<Vec<_>>>()?;
                Json::Array(pairs)
            }
            "stream" if v.at_least(6, 0) => stream_full(c, &k).await?,
            "stream" => stream_pieces(c, &k).await?,
            other => return Err(format!("key {}: unexpected type {other}", String::from_utf8_lossy(&k))),
        };
        obj.insert("expire_at_ms".into(), expire_at(c, &k, v).await?);
        obj.insert("value".into(), value);
        out.insert(key_name(&k), Json::Object(obj));
    }
    Ok(out.into_iter().collect())
}

/// The absolute expiry in ms: PEXPIRETIME (7.0+), else the one we set, checked against PTTL.
async fn expire_at(c: &mut Connection, k: &[u8], v: Version) -> Res<Json> {
    if v.at_least(7, 0) {
        let t = int(&cmd(c, &[&b"PEXPIRETIME"[..], k]).await?)?;
        return Ok(if t < 0 { Json::Null } else { json!(t) });
    }
    let ttl = int(&cmd(c, &[&b"PTTL"[..], k]).await?)?;
    if ttl < 0 {
        return Ok(Json::Null);
    }
    let set = match k {
        b"hash:small" => FAR_MS + 100,
        b"zset:small" => FAR_MS + 101,
        b"db3:list" => FAR_MS + 3,
        _ => match k.strip_prefix(b"ttl:str:") {
            Some(i) => FAR_MS + String::from_utf8_lossy(i).parse::<i64>().map_err(|e| e.to_string())?,
            None => return Err(format!("{} has a TTL the generator did not set", String::from_utf8_lossy(k))),
        },
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    let implied = now.as_millis() as i64 + ttl;
    if (implied - set).abs() > 5_000 {
        return Err(format!("{}: PTTL {ttl} does not match the expiry set, {set}", String::from_utf8_lossy(k)));
    }
    Ok(json!(set))
}

/// `[[field, ms], …]` for the fields that have a TTL, sorted by field.
async fn field_ttls(c: &mut Connection, k: &[u8], pairs: &[(Vec<u8>, Vec<u8>)]) -> Res<Vec<Json>> {
    let mut args: Vec<Vec<u8>> = vec![b"HPEXPIRETIME".to_vec(), k.to_vec(), b"FIELDS".to_vec()];
    args.push(pairs.len().to_string().into_bytes());
    args.extend(pairs.iter().map(|(f, _)| f.clone()));
    let times = cmd(c, &args).await?;
    let mut out = Vec::new();
    for ((f, _), t) in pairs.iter().zip(array(&times)?) {
        let t = int(t)?;
        if t >= 0 {
            out.push(json!([bytes_value(f), t]));
        }
    }
    Ok(out)
}

/// A flat `[name, value, …]` reply as pairs.
fn pairs(v: &Value) -> Res<Vec<(String, &Value)>> {
    array(v)?.chunks(2).map(|p| Ok((String::from_utf8_lossy(&bytes(&p[0])?).into_owned(), &p[1]))).collect()
}

/// An entry `[id, [field, value, …]]`.
fn entry(e: &Value) -> Res<Json> {
    let e = array(e)?;
    let fields = array(&e[1])?.iter().map(|f| bytes(f).map(|b| bytes_value(&b))).collect::<Res<Vec<_>>>()?;
    Ok(json!([String::from_utf8_lossy(&bytes(&e[0])?), fields]))
}

/// A scalar reply as JSON: integers as numbers, strings as text.
fn scalar(v: &Value) -> Res<Json> {
    match v {
        Value::Integer(i) => Ok(json!(i)),
        Value::Bulk(None) => Ok(Json::Null),
        other => Ok(bytes_value(&bytes(other)?)),
    }
}

/// `XINFO STREAM key FULL` (6.0+) without what the loading server derives
/// (`lag`, the radix tree's size): the same fields our parser reads from the file.
async fn stream_full(c: &mut Connection, k: &[u8]) -> Res<Json> {
    let info = cmd(c, &[&b"XINFO"[..], b"STREAM", k, b"FULL", b"COUNT", b"0"]).await?;
    let mut out = Map::new();
    for (name, val) in pairs(&info)? {
        match name.as_str() {
            "radix-tree-keys" | "radix-tree-nodes" => {}
            "entries" => {
                out.insert(name, Json::Array(array(val)?.iter().map(entry).collect::<Res<_>>()?));
            }
            "groups" => {
                let mut gs = Vec::new();
                for g in array(val)? {
                    let mut go = Map::new();
                    for (gname, gval) in pairs(g)? {
                        match gname.as_str() {
                            "lag" => {}
                            "pending" => {
                                go.insert(gname, pending(gval)?);
                            }
                            "consumers" => {
                                let mut cs = Vec::new();
                                for cons in array(gval)? {
                                    let mut co = Map::new();
                                    for (cname, cval) in pairs(cons)? {
                                        let j = if cname == "pending" { pending(cval)? } else { scalar(cval)? };
                                        co.insert(cname, j);
                                    }
                                    cs.push(Json::Object(co));
                                }
                                go.insert(gname, Json::Array(cs));
                            }
                            _ => {
                                go.insert(gname, scalar(gval)?);
                            }
                        }
                    }
                    gs.push(Json::Object(go));
                }
                out.insert(name, Json::Array(gs));
            }
            _ => {
                out.insert(name, scalar(val)?);
            }
        }
    }
    Ok(Json::Object(out))
}

/// A pending list: arrays of scalars.
fn pending(v: &Value) -> Res<Json> {
    Ok(Json::Array(
        array(v)?
            .iter()
            .map(|p| Ok(Json::Array(array(p)?.iter().map(scalar).collect::<Res<_>>()?)))
            .collect::<Res<_>>()?,
    ))
}

/// Redis 5.0 has no `XINFO … FULL`: the same shape from XRANGE, XINFO and
/// XPENDING, with the times it reports only as idle times left open.
async fn stream_pieces(c: &mut Connection, k: &[u8]) -> Res<Json> {
    let any = json!({ "$any": null });
    let entries = cmd(c, &[&b"XRANGE"[..], k, b"-", b"+"]).await?;
    let info = cmd(c, &[&b"XINFO"[..], b"STREAM", k]).await?;
    let info: BTreeMap<String, &Value> = pairs(&info)?.into_iter().collect();
    let mut groups = Vec::new();
    for g in array(&cmd(c, &[&b"XINFO"[..], b"GROUPS", k]).await?)? {
        let g: BTreeMap<String, &Value> = pairs(g)?.into_iter().collect();
        let gname = bytes(g["name"])?;
        let pel = cmd(c, &[&b"XPENDING"[..], k, &gname, b"-", b"+", b"100000"]).await?;
        let pend: Vec<Json> = array(&pel)?
            .iter()
            .map(|p| {
                let p = array(p)?;
                Ok(json!([scalar(&p[0])?, scalar(&p[1])?, any, scalar(&p[3])?]))
            })
            .collect::<Res<_>>()?;
        let mut consumers = Vec::new();
        for cons in array(&cmd(c, &[&b"XINFO"[..], b"CONSUMERS", k, &gname]).await?)? {
            let cons: BTreeMap<String, &Value> = pairs(cons)?.into_iter().collect();
            let cname = bytes(cons["name"])?;
            let mine = cmd(c, &[&b"XPENDING"[..], k, &gname, b"-", b"+", b"100000", &cname]).await?;
            let mine: Vec<Json> = array(&mine)?
                .iter()
                .map(|p| {
                    let p = array(p)?;
                    Ok(json!([scalar(&p[0])?, any, scalar(&p[3])?]))
                })
                .collect::<Res<_>>()?;
            consumers.push(json!({
                "name": bytes_value(&cname), "seen-time": any, "pel-count": scalar(cons["pending"])?, "pending": mine,
            }));
        }
        groups.push(json!({
            "name": bytes_value(&gname), "last-delivered-id": scalar(g["last-delivered-id"])?,
            "pel-count": scalar(g["pending"])?, "pending": pend, "consumers": consumers,
        }));
    }
    Ok(json!({
        "length": scalar(info["length"])?,
        "last-generated-id": scalar(info["last-generated-id"])?,
        "entries": Json::Array(array(&entries)?.iter().map(entry).collect::<Res<_>>()?),
        "groups": groups,
    }))
}

async fn one(server: &Server, out_dir: &Path) -> Res<String> {
    let run = start(server)?;
    let mut c = connect(&run, server.name).await?;
    let info = String::from_utf8_lossy(&bytes(&cmd(&mut c, &["INFO", "server"]).await?)?).into_owned();
    let field = |f: &str| info.lines().find_map(|l| l.strip_prefix(f).map(|s| s.trim().to_owned()));
    let redis_version = field("redis_version:").ok_or("no redis_version in INFO")?;
    let mut parts = redis_version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = Version {
        major: parts.next().unwrap_or(0),
        minor: parts.next().unwrap_or(0),
        valkey: field("server_name:").as_deref() == Some("valkey"),
    };
    let shown = field("valkey_version:").map_or(format!("Redis {redis_version}"), |x| format!("Valkey {x}"));
    write_dataset(&mut c, v).await?;
    cmd(&mut c, &["SAVE"]).await?;
    let mut dbs = Map::new();
    for db in [0, 3, 15] {
        cmd(&mut c, &["SELECT", &db.to_string()]).await?;
        dbs.insert(db.to_string(), Json::Object(read_db(&mut c, v).await?));
    }
    let mut truth = json!({
        "server": shown,
        "generated_by": "examples/rdb_corpus.rs (make rdb-fixtures)",
        "db": dbs,
    });
    if v.at_least(7, 0) {
        let list = cmd(&mut c, &["FUNCTION", "LIST", "WITHCODE"]).await?;
        let mut fs = Vec::new();
        for lib in array(&list)? {
            let lib: BTreeMap<String, &Value> = pairs(lib)?.into_iter().collect();
            fs.push(json!({ "library_name": scalar(lib["library_name"])?, "code": scalar(lib["library_code"])? }));
        }
        truth["functions"] = Json::Array(fs);
    }
    let rdb = out_dir.join(format!("{}__all_types.rdb", server.name));
    std::fs::copy(run.dir.path().join("dump.rdb"), &rdb).map_err(|e| format!("{}: {e}", rdb.display()))?;
    let text = serde_json::to_string(&truth).map_err(|e| e.to_string())? + "\n";
    let meta = rdb.with_extension("json");
    std::fs::write(&meta, text).map_err(|e| format!("{}: {e}", meta.display()))?;
    Ok(shown)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let out_dir = root().join("tests/fixtures/rdb");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("{}: {e}", out_dir.display());
        std::process::exit(1);
    }
    let (found, missing) = servers();
    for m in &missing {
        eprintln!("left out: {m}");
    }
    let mut failed = false;
    for s in &found {
        match one(s, &out_dir).await {
            Ok(shown) => println!("{}: {shown} -> tests/fixtures/rdb/{}__all_types.rdb", s.name, s.name),
            Err(e) => {
                eprintln!("{}: {e}", s.name);
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
