//! The soak's own comparison of every key: written independently of
//! `shardsync verify`, so a fault shared by the tool and its verify cannot
//! hide itself.
//!
//! For each source and DB it SCANs every key, reads on the source its type,
//! PTTL, encoding and idle time, then the value (logically: a set's members
//! sorted, a hash's pairs sorted, a stream's entries and groups), and reads
//! the same on the destination. Keys differ when the type, the value, or
//! the TTL (beyond `TTL_SLACK_MS`, or one side without) differs. Every
//! difference is read again once before it is reported, and the
//! destination's key counts are checked for keys no source holds.

use std::collections::BTreeMap;

use shardsync::resp::{Cmd, ConnectOptions, Connection, Value};

/// Reads of the source and the destination are a few ms apart.
const TTL_SLACK_MS: i64 = 2000;
/// Keys per pipeline.
const BATCH: usize = 512;

/// What the source says about a key, for the report.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub kind: String,
    pub pttl: i64,
    pub encoding: String,
    pub idle_s: i64,
}

#[derive(Debug, Clone)]
pub struct Difference {
    /// The source shard, or "-" for a key no source holds.
    pub shard: String,
    pub db: u32,
    pub key: Vec<u8>,
    pub what: String,
    pub facts: Facts,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let f_ = &self.facts;
        write!(
            f,
            "shard {} db{} {}: {} (source: type {} encoding {} pttl {} idle {} s)",
            self.shard,
            self.db,
            show(&self.key),
            self.what,
            f_.kind,
            f_.encoding,
            f_.pttl,
            f_.idle_s
        )
    }
}

#[derive(Debug, Default)]
pub struct Comparison {
    pub compared: u64,
    /// Differences of the first pass, before they were read again (keys
    /// still on their way: a shard's snapshot not yet applied).
    pub first_pass: u64,
    pub per_db: BTreeMap<u32, u64>,
    pub differences: Vec<Difference>,
}

pub fn show(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(key);
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// A key's logical value, comparable across servers.
type Content = Vec<Vec<u8>>;

async fn pipe(c: &mut Connection, cmds: &[Cmd], what: &str) -> Result<Vec<Value>, String> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    c.pipeline(cmds).await.map_err(|e| format!("{what} ({}): {e}", c.addr()))
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_bytes()
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| v.as_int().map(|i| i.to_string().into_bytes()).unwrap_or_default())
}

fn flat(v: &Value) -> Vec<Vec<u8>> {
    v.as_array().map(|a| a.iter().map(bytes).collect()).unwrap_or_default()
}

/// The reads that give a key's value, by type.
fn value_cmds(kind: &str, key: &[u8]) -> Vec<Cmd> {
    match kind {
        "string" => vec![Cmd::new("GET").arg(key)],
        "list" => vec![Cmd::new("LRANGE").arg(key).arg("0").arg("-1")],
        "set" => vec![Cmd::new("SMEMBERS").arg(key)],
        "hash" => vec![Cmd::new("HGETALL").arg(key)],
        "zset" => vec![Cmd::new("ZRANGE").arg(key).arg("0").arg("-1").arg("WITHSCORES")],
        "stream" => vec![Cmd::new("XRANGE").arg(key).arg("-").arg("+"), Cmd::new("XINFO").arg("GROUPS").arg(key)],
        _ => Vec::new(),
    }
}

fn content(kind: &str, replies: &[Value]) -> Content {
    match kind {
        "string" => vec![bytes(&replies[0])],
        "list" | "zset" => flat(&replies[0]),
        "set" => {
            let mut v = flat(&replies[0]);
            v.sort();
            v
        }
        "hash" => {
            let f = flat(&replies[0]);
            let mut pairs: Vec<Vec<u8>> =
                f.chunks(2).map(|p| [p[0].as_slice(), b"=", p.get(1).map_or(&[][..], |v| v)].concat()).collect();
            pairs.sort();
            pairs
        }
        "stream" => {
            let mut out = vec![format!("{:?}", replies[0]).into_bytes()];
            for g in replies[1].as_array().unwrap_or_default() {
                let fields = flat(g);
                for pair in fields.chunks(2) {
                    if let [name, value] = pair {
                        if matches!(
                            name.as_slice(),
                            b"name" | b"pending" | b"last-delivered-id" | b"consumers" | b"entries-read"
                        ) {
                            out.push([name.as_slice(), b"=", value].concat());
                        }
                    }
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// One side's view of a batch of keys.
struct Side {
    kinds: Vec<String>,
    pttls: Vec<i64>,
    contents: Vec<Content>,
    facts: Vec<Facts>,
}

/// Reads `keys` on `c`: type and TTL (and, on a source, encoding and idle
/// time), then the values — of the types `kinds` says when given (the
/// destination is read as the source's type says).
async fn read(c: &mut Connection, keys: &[Vec<u8>], source: bool, as_kinds: Option<&[String]>) -> Result<Side, String> {
    let per = if source { 4 } else { 2 };
    let mut cmds = Vec::with_capacity(keys.len() * per);
    for k in keys {
        cmds.push(Cmd::new("TYPE").arg(k));
        cmds.push(Cmd::new("PTTL").arg(k));
        if source {
            cmds.push(Cmd::new("OBJECT").arg("ENCODING").arg(k));
            cmds.push(Cmd::new("OBJECT").arg("IDLETIME").arg(k));
        }
    }
    let r = pipe(c, &cmds, "reading types").await?;
    let mut side = Side { kinds: Vec::new(), pttls: Vec::new(), contents: Vec::new(), facts: Vec::new() };
    for chunk in r.chunks(per) {
        let kind = chunk[0].as_str().unwrap_or("none").to_owned();
        let pttl = chunk[1].as_int().unwrap_or(-3);
        let mut facts = Facts { kind: kind.clone(), pttl, ..Facts::default() };
        if source {
            facts.encoding = chunk[2]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes(&chunk[2])).into_owned());
            facts.idle_s = chunk[3].as_int().unwrap_or(-1);
        }
        side.kinds.push(kind);
        side.pttls.push(pttl);
        side.facts.push(facts);
    }
    let read_as: Vec<String> = match as_kinds {
        Some(k) => k.to_vec(),
        None => side.kinds.clone(),
    };
    let mut cmds = Vec::new();
    let mut counts = Vec::new();
    for (k, kind) in keys.iter().zip(&read_as) {
        // The destination is only read as the source's type when it has it.
        let kind = if as_kinds.is_some() && side.kinds[counts.len()] != *kind { "none" } else { kind.as_str() };
        let v = value_cmds(kind, k);
        counts.push(v.len());
        cmds.extend(v);
    }
    let r = pipe(c, &cmds, "reading values").await?;
    let mut at = 0;
    for (i, n) in counts.into_iter().enumerate() {
        let kind = if as_kinds.is_some() && side.kinds[i] != read_as[i] { "none" } else { read_as[i].as_str() };
        side.contents.push(content(kind, &r[at..at + n]));
        at += n;
    }
    Ok(side)
}

fn judge(src: &Side, dst: &Side, i: usize) -> Option<String> {
    let (sk, dk) = (&src.kinds[i], &dst.kinds[i]);
    if sk == "none" {
        // Gone from the source since the SCAN (an expiry): nothing to compare.
        return None;
    }
    if dk == "none" {
        return Some("missing on the destination".to_owned());
    }
    if sk != dk {
        return Some(format!("type {sk} on the source, {dk} on the destination"));
    }
    if src.contents[i] != dst.contents[i] {
        let (a, b) = (&src.contents[i], &dst.contents[i]);
        return Some(format!("value differs ({} vs {} elements{})", a.len(), b.len(), first_diff(a, b)));
    }
    let (st, dt) = (src.pttls[i], dst.pttls[i]);
    if (st < 0) != (dt < 0) || (st - dt).abs() > TTL_SLACK_MS {
        return Some(format!("pttl {st} on the source, {dt} on the destination"));
    }
    None
}

fn first_diff(a: &Content, b: &Content) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("; first at element {i}: {} vs {}", show(&a[i]), show(&b[i])),
        None => String::new(),
    }
}

async fn select(c: &mut Connection, db: u32) -> Result<(), String> {
    let r = c.query(&Cmd::new("SELECT").arg(db.to_string())).await.map_err(|e| format!("SELECT {db}: {e}"))?;
    if r.is_error() {
        return Err(format!("SELECT {db}: {r}"));
    }
    Ok(())
}

/// SCANs the current DB: every key, in batches handed to `each`.
async fn scan(c: &mut Connection, mut each: impl FnMut(Vec<Vec<u8>>)) -> Result<(), String> {
    let mut cursor = b"0".to_vec();
    loop {
        let r =
            c.query(&Cmd::new("SCAN").arg(&cursor).arg("COUNT").arg("1000")).await.map_err(|e| format!("SCAN: {e}"))?;
        let items = r.into_array().unwrap_or_default();
        cursor = items.first().map(bytes).unwrap_or_default();
        each(items.get(1).map(flat).unwrap_or_default());
        if cursor == b"0" {
            return Ok(());
        }
    }
}

/// Compares every key of `dbs` on `sources` (name, address) with `dest`.
/// `own`: the tool's heartbeat key; `own:ckpt:*` are its checkpoint keys.
pub async fn compare(
    sources: &[(String, String)],
    dest: &str,
    dest_opts: &ConnectOptions,
    dbs: &[u32],
    own: &str,
) -> Result<Comparison, String> {
    let ckpt = format!("{own}:ckpt:");
    let is_own = |k: &[u8]| k == own.as_bytes() || k.starts_with(ckpt.as_bytes());
    let mut out = Comparison::default();
    let mut d = Connection::connect(dest, dest_opts).await.map_err(|e| e.to_string())?;
    let mut srcs = Vec::new();
    for (name, addr) in sources {
        srcs.push((
            name.clone(),
            Connection::connect(addr, &ConnectOptions::default()).await.map_err(|e| e.to_string())?,
        ));
    }
    for &db in dbs {
        select(&mut d, db).await?;
        for (name, s) in srcs.iter_mut() {
            select(s, db).await?;
            let mut keys = Vec::new();
            scan(s, |batch| keys.extend(batch.into_iter().filter(|k| !is_own(k)))).await?;
            for batch in keys.chunks(BATCH) {
                let src = read(s, batch, true, None).await?;
                let dst = read(&mut d, batch, false, Some(&src.kinds)).await?;
                for (i, key) in batch.iter().enumerate() {
                    if src.kinds[i] == "none" {
                        continue;
                    }
                    out.compared += 1;
                    *out.per_db.entry(db).or_default() += 1;
                    if let Some(what) = judge(&src, &dst, i) {
                        out.differences.push(Difference {
                            shard: name.clone(),
                            db,
                            key: key.clone(),
                            what,
                            facts: src.facts[i].clone(),
                        });
                    }
                }
            }
        }
    }
    // Read every difference again: only what persists is reported.
    out.first_pass = out.differences.len() as u64;
    let mut persisting = Vec::new();
    for diff in std::mem::take(&mut out.differences) {
        let Some((_, s)) = srcs.iter_mut().find(|(n, _)| *n == diff.shard) else { continue };
        select(s, diff.db).await?;
        select(&mut d, diff.db).await?;
        let keys = [diff.key.clone()];
        let src = read(s, &keys, true, None).await?;
        let dst = read(&mut d, &keys, false, Some(&src.kinds)).await?;
        if let Some(what) = judge(&src, &dst, 0) {
            persisting.push(Difference { what, ..diff });
        }
    }
    out.differences = persisting;
    // Keys on the destination that no source holds.
    for &db in dbs {
        select(&mut d, db).await?;
        let mut dest_keys = Vec::new();
        scan(&mut d, |batch| dest_keys.extend(batch.into_iter().filter(|k| !is_own(k)))).await?;
        let expected = out.per_db.get(&db).copied().unwrap_or(0);
        if dest_keys.len() as u64 <= expected {
            continue;
        }
        for (_, s) in srcs.iter_mut() {
            select(s, db).await?;
        }
        for batch in dest_keys.chunks(BATCH) {
            let mut found = vec![false; batch.len()];
            for (_, s) in srcs.iter_mut() {
                let cmds: Vec<Cmd> = batch.iter().map(|k| Cmd::new("EXISTS").arg(k)).collect();
                for (f, r) in found.iter_mut().zip(pipe(s, &cmds, "EXISTS").await?) {
                    *f |= r.as_int() == Some(1);
                }
            }
            for (k, f) in batch.iter().zip(found) {
                if !f {
                    out.differences.push(Difference {
                        shard: "-".into(),
                        db,
                        key: k.clone(),
                        what: "on the destination only".into(),
                        facts: Facts::default(),
                    });
                }
            }
        }
    }
    for (_, s) in srcs.iter_mut() {
        select(s, 0).await?;
    }
    Ok(out)
}
