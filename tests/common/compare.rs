//! Logical comparison of real servers: every key of the sources must exist
//! on the destination with the same type, value and TTL (±1 s), and the
//! destination must hold nothing else (the tool's own keys aside).

use std::collections::BTreeMap;

use shardsync::resp::{Cmd, ConnectOptions, Connection, Value};

async fn q(c: &mut Connection, args: &[&[u8]]) -> Value {
    let cmd = Cmd::from_args(args.iter().copied());
    c.query(&cmd).await.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(args[0])))
}

fn bytes_list(v: Value) -> Vec<Vec<u8>> {
    v.into_array()
        .unwrap_or_default()
        .into_iter()
        .map(|x| x.into_bytes().map(|b| b.to_vec()).unwrap_or_default())
        .collect()
}

/// A key's logical content.
#[derive(Debug, PartialEq)]
pub enum Content {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    Hash(Vec<Vec<u8>>),
    Zset(Vec<Vec<u8>>),
    Stream(Vec<Vec<u8>>),
    None,
}

pub async fn content(c: &mut Connection, key: &[u8]) -> (String, Content, i64) {
    let t = q(c, &[b"TYPE", key]).await.as_str().unwrap_or_default().to_string();
    let content = match t.as_str() {
        "string" => Content::String(q(c, &[b"GET", key]).await.into_bytes().map(|b| b.to_vec()).unwrap_or_default()),
        "list" => Content::List(bytes_list(q(c, &[b"LRANGE", key, b"0", b"-1"]).await)),
        "set" => {
            let mut v = bytes_list(q(c, &[b"SMEMBERS", key]).await);
            v.sort();
            Content::Set(v)
        }
        "hash" => {
            let flat = bytes_list(q(c, &[b"HGETALL", key]).await);
            let mut pairs: Vec<Vec<u8>> =
                flat.chunks(2).map(|p| [p[0].clone(), b"=".to_vec(), p[1].clone()].concat()).collect();
            pairs.sort();
            Content::Hash(pairs)
        }
        "zset" => Content::Zset(bytes_list(q(c, &[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]).await)),
        "stream" => {
            let v = q(c, &[b"XRANGE", key, b"-", b"+"]).await;
            Content::Stream(vec![format!("{v:?}").into_bytes()])
        }
        _ => Content::None,
    };
    let pttl = q(c, &[b"PTTL", key]).await.as_int().unwrap_or(-2);
    (t, content, pttl)
}

pub async fn connect(addr: &str) -> Connection {
    Connection::connect(addr, &ConnectOptions::default()).await.unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// Keys per DB (`INFO keyspace`).
pub async fn keyspace(c: &mut Connection) -> BTreeMap<u32, u64> {
    let info = q(c, &[b"INFO", b"keyspace"]).await;
    let text = info.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter_map(|l| {
            let (db, rest) = l.strip_prefix("db")?.split_once(':')?;
            let keys = rest.split(',').find_map(|f| f.strip_prefix("keys="))?;
            Some((db.parse().ok()?, keys.parse().ok()?))
        })
        .collect()
}

/// Every key of the connection's DB (`SCAN`).
pub async fn scan_all(c: &mut Connection) -> Vec<Vec<u8>> {
    let mut cursor = b"0".to_vec();
    let mut keys = Vec::new();
    loop {
        let v = q(c, &[b"SCAN", &cursor, b"COUNT", b"1000"]).await.into_array().unwrap_or_default();
        let mut it = v.into_iter();
        cursor = it.next().and_then(|x| x.into_bytes()).map(|b| b.to_vec()).unwrap_or_default();
        keys.extend(bytes_list(it.next().unwrap_or(Value::Array(None))));
        if cursor == b"0" {
            return keys;
        }
    }
}

/// Compare every key of `sources` with `dest`; returns the differences.
pub async fn diff(sources: &[String], dest: &str, own_keys: &[&[u8]]) -> Vec<String> {
    let mut out = Vec::new();
    let mut d = connect(dest).await;
    let mut expected: BTreeMap<u32, u64> = BTreeMap::new();
    for src in sources {
        let mut s = connect(src).await;
        for (db, _) in keyspace(&mut s).await {
            let dbs = db.to_string();
            q(&mut s, &[b"SELECT", dbs.as_bytes()]).await;
            q(&mut d, &[b"SELECT", dbs.as_bytes()]).await;
            for key in scan_all(&mut s).await {
                if own_keys.contains(&key.as_slice()) {
                    continue;
                }
                *expected.entry(db).or_default() += 1;
                let (st, sv, sttl) = content(&mut s, &key).await;
                let (dt, dv, dttl) = content(&mut d, &key).await;
                let k = String::from_utf8_lossy(&key);
                if st != dt {
                    out.push(format!("{src} db{db} {k}: type {st} vs {dt}"));
                } else if sv != dv && !same_hyperloglog(&mut s, &mut d, &key, &sv, &dv).await {
                    out.push(format!("{src} db{db} {k}: value {} vs {}", shorten(&sv), shorten(&dv)));
                } else if (sttl < 0) != (dttl < 0) || (sttl - dttl).abs() > 1500 {
                    out.push(format!("{src} db{db} {k}: pttl {sttl} vs {dttl}"));
                }
            }
        }
        q(&mut s, &[b"SELECT", b"0"]).await;
    }
    let mut got = keyspace(&mut d).await;
    // Checkpoint keys `<own key>:ckpt:<shard>` live in destination DB 0 by
    // design; anything else extra is a difference.
    q(&mut d, &[b"SELECT", b"0"]).await;
    let ckpt: Vec<Vec<u8>> = scan_all(&mut d)
        .await
        .into_iter()
        .filter(|k| own_keys.iter().any(|own| k.starts_with(&[*own, b":ckpt:".as_slice()].concat())))
        .collect();
    if let Some(n) = got.get_mut(&0) {
        *n -= ckpt.len() as u64;
        if *n == 0 {
            got.remove(&0);
        }
    }
    for (db, n) in &got {
        if expected.get(db).copied().unwrap_or(0) != *n {
            out.push(format!(
                "destination db{db} holds {n} keys, the sources {}",
                expected.get(db).copied().unwrap_or(0)
            ));
        }
    }
    for own in own_keys {
        q(&mut d, &[b"SELECT", b"0"]).await;
        if q(&mut d, &[b"EXISTS", own]).await.as_int() == Some(1) {
            out.push(format!("the tool's own key {} is on the destination", String::from_utf8_lossy(own)));
        }
    }
    out
}

/// Two HyperLogLogs whose bytes differ but whose counts agree: Redis 3.2's
/// `PFMERGE` writes the dense encoding where later versions keep the sparse
/// one, so the same command stream gives other bytes on other versions.
pub async fn same_hyperloglog(s: &mut Connection, d: &mut Connection, key: &[u8], sv: &Content, dv: &Content) -> bool {
    let hll = |c: &Content| matches!(c, Content::String(v) if v.starts_with(b"HYLL"));
    if !(hll(sv) && hll(dv)) {
        return false;
    }
    let count = |v: Value| v.as_int();
    count(q(s, &[b"PFCOUNT", key]).await) == count(q(d, &[b"PFCOUNT", key]).await)
}

/// A value for a difference report: readable text, bounded.
pub fn shorten(c: &Content) -> String {
    let text = match c {
        Content::String(v) => String::from_utf8_lossy(v).into_owned(),
        other => format!("{other:?}"),
    };
    if text.chars().count() > 120 {
        format!("{}… ({} chars)", text.chars().take(120).collect::<String>(), text.chars().count())
    } else {
        text
    }
}
