//! The canonical NDJSON rendering of RDB events (`shardsync rdb --json`,
//! and the format of the corpus ground truth, `docs/output-formats.md`).
//!
//! One object per key: `{"db", "key", "type", "expire_at_ms", "value"}` plus
//! `field_expire_at_ms` for hashes with field TTLs and `module` for module
//! values. Byte strings are JSON strings when valid UTF-8, else
//! `{"b64": …}`; keys are text or `"b64:" + base64`. Lists and stream entries
//! are written as they arrive; sets, hashes and zsets must be sorted, so they
//! are collected per key (one value in memory, as the format demands).

use std::collections::HashMap;
use std::io::{self, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use super::event::*;

/// A byte string in the canonical form.
pub fn bytes_value(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "b64": B64.encode(b) }),
    }
}

/// A key name in the canonical form.
pub fn key_name(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.starts_with("b64:") => s.to_owned(),
        _ => format!("b64:{}", B64.encode(b)),
    }
}

/// A score: an exact JSON number, or `"inf"`, `"-inf"`, `"nan"`.
pub fn score_value(f: f64) -> Value {
    if f.is_nan() {
        json!("nan")
    } else if f == f64::INFINITY {
        json!("inf")
    } else if f == f64::NEG_INFINITY {
        json!("-inf")
    } else {
        json!(f)
    }
}

#[derive(Default)]
struct Group {
    name: Bytes,
    last_id: StreamId,
    entries_read: Option<u64>,
    pel: Vec<PendingEntry>,
    consumers: Vec<(StreamConsumer, Vec<StreamId>)>,
}

/// What is being collected for the current key.
enum Current {
    None,
    /// Header and opening bracket written; elements go straight out.
    StreamingList {
        first: bool,
    },
    String(Vec<u8>),
    Set(Vec<Bytes>),
    Hash(Vec<HashField>),
    Zset(Vec<(Bytes, f64)>),
    Stream {
        first: bool,
        meta: Option<StreamMeta>,
        groups: Vec<Group>,
    },
    Module(String),
}

/// Renders events as canonical NDJSON lines.
pub struct JsonWriter<W: Write> {
    out: W,
    key: Option<KeyStart>,
    cur: Current,
}

impl<W: Write> JsonWriter<W> {
    pub fn new(out: W) -> Self {
        JsonWriter { out, key: None, cur: Current::None }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn head(&mut self, k: &KeyStart, kind: &str) -> io::Result<()> {
        write!(
            self.out,
            "{{\"db\":{},\"key\":{},\"type\":\"{kind}\",\"expire_at_ms\":{}",
            k.db,
            Value::String(key_name(&k.key)),
            k.expire_at_ms.map_or("null".to_string(), |e| e.to_string())
        )
    }

    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        match ev {
            Event::Aux(kv) => {
                let (key, value) = &**kv;
                let line = json!({ "aux": bytes_value(key), "value": bytes_value(value) });
                writeln!(self.out, "{line}")
            }
            Event::Function { code } => writeln!(self.out, "{}", json!({ "function": { "code": bytes_value(code) } })),
            Event::FunctionPreGa(f) => writeln!(
                self.out,
                "{}",
                json!({ "function": {
                    "library_name": bytes_value(&f.name), "engine": bytes_value(&f.engine),
                    "description": f.description.as_deref().map(bytes_value), "code": bytes_value(&f.code) } })
            ),
            Event::KeyStart(k) => {
                self.cur = match k.kind {
                    ValueKind::List => {
                        self.head(k, "list")?;
                        self.out.write_all(b",\"value\":[")?;
                        Current::StreamingList { first: true }
                    }
                    ValueKind::Stream => {
                        self.head(k, "stream")?;
                        self.out.write_all(b",\"value\":{\"entries\":[")?;
                        Current::Stream { first: true, meta: None, groups: Vec::new() }
                    }
                    ValueKind::String => Current::String(Vec::new()),
                    ValueKind::Set => Current::Set(Vec::new()),
                    ValueKind::Hash => Current::Hash(Vec::new()),
                    ValueKind::Zset => Current::Zset(Vec::new()),
                    ValueKind::Module => Current::Module(String::new()),
                };
                self.key = Some((**k).clone());
                Ok(())
            }
            Event::Chunk(c) => self.chunk(c),
            Event::KeyEnd { .. } => self.key_end(),
            _ => Ok(()),
        }
    }

    fn chunk(&mut self, c: &Chunk) -> io::Result<()> {
        match (&mut self.cur, c) {
            (Current::StreamingList { first }, Chunk::ListItems(items)) => {
                for i in items {
                    if !*first {
                        self.out.write_all(b",")?;
                    }
                    *first = false;
                    write!(self.out, "{}", bytes_value(i))?;
                }
            }
            (Current::String(s), Chunk::String(b)) => s.extend_from_slice(b),
            (Current::Set(v), Chunk::SetMembers(m)) => v.extend(m.iter().cloned()),
            (Current::Hash(v), Chunk::HashFields(f)) => v.extend(f.iter().cloned()),
            (Current::Zset(v), Chunk::ZsetMembers(m)) => v.extend(m.iter().cloned()),
            (Current::Module(n), Chunk::Module(m)) => *n = m.name.clone(),
            (Current::Stream { first, .. }, Chunk::StreamEntries(es)) => {
                for e in es {
                    if !*first {
                        self.out.write_all(b",")?;
                    }
                    *first = false;
                    let fields: Vec<Value> = e.fields.iter().map(|f| bytes_value(f)).collect();
                    write!(self.out, "{}", json!([e.id.to_string(), fields]))?;
                }
            }
            (Current::Stream { meta, .. }, Chunk::StreamMeta(m)) => *meta = Some((**m).clone()),
            (Current::Stream { groups, .. }, Chunk::StreamGroup(g)) => groups.push(Group {
                name: g.name.clone(),
                last_id: g.last_id,
                entries_read: g.entries_read,
                ..Default::default()
            }),
            (Current::Stream { groups, .. }, Chunk::StreamGroupPending(p)) => {
                if let Some(g) = groups.last_mut() {
                    g.pel.extend(p.iter().cloned());
                }
            }
            (Current::Stream { groups, .. }, Chunk::StreamConsumer(c)) => {
                if let Some(g) = groups.last_mut() {
                    g.consumers.push(((**c).clone(), Vec::new()));
                }
            }
            (Current::Stream { groups, .. }, Chunk::StreamConsumerPending(ids)) => {
                if let Some((_, v)) = groups.last_mut().and_then(|g| g.consumers.last_mut()) {
                    v.extend_from_slice(ids);
                }
            }
            (_, other) => {
                return Err(io::Error::other(format!("chunk {other:?} does not belong to the current key")));
            }
        }
        Ok(())
    }

    fn key_end(&mut self) -> io::Result<()> {
        let Some(k) = self.key.take() else { return Ok(()) };
        match std::mem::replace(&mut self.cur, Current::None) {
            Current::None => {}
            Current::StreamingList { .. } => self.out.write_all(b"]}\n")?,
            Current::String(s) => {
                self.head(&k, "string")?;
                writeln!(self.out, ",\"value\":{}}}", bytes_value(&s))?;
            }
            Current::Set(mut v) => {
                v.sort_unstable();
                self.head(&k, "set")?;
                let vals: Vec<Value> = v.iter().map(|m| bytes_value(m)).collect();
                writeln!(self.out, ",\"value\":{}}}", Value::Array(vals))?;
            }
            Current::Hash(mut v) => {
                v.sort_unstable_by(|a, b| a.field.cmp(&b.field));
                self.head(&k, "hash")?;
                let vals: Vec<Value> =
                    v.iter().map(|f| json!([bytes_value(&f.field), bytes_value(&f.value)])).collect();
                write!(self.out, ",\"value\":{}", Value::Array(vals))?;
                let ttls: Vec<Value> =
                    v.iter().filter_map(|f| f.expire_at_ms.map(|e| json!([bytes_value(&f.field), e]))).collect();
                if !ttls.is_empty() {
                    write!(self.out, ",\"field_expire_at_ms\":{}", Value::Array(ttls))?;
                }
                self.out.write_all(b"}\n")?;
            }
            Current::Zset(mut v) => {
                // Redis orders -0 and 0 as equal scores, then by member.
                v.sort_unstable_by(|a, b| {
                    a.1.partial_cmp(&b.1).unwrap_or_else(|| a.1.total_cmp(&b.1)).then_with(|| a.0.cmp(&b.0))
                });
                self.head(&k, "zset")?;
                let vals: Vec<Value> = v.iter().map(|(m, s)| json!([bytes_value(m), score_value(*s)])).collect();
                writeln!(self.out, ",\"value\":{}}}", Value::Array(vals))?;
            }
            Current::Module(name) => {
                self.head(&k, "module")?;
                writeln!(self.out, ",\"module\":{},\"value\":null}}", Value::String(name))?;
            }
            Current::Stream { meta, groups, .. } => {
                self.out.write_all(b"]")?;
                if let Some(m) = meta {
                    write!(self.out, ",\"length\":{},\"last-generated-id\":\"{}\"", m.length, m.last_id)?;
                    if let Some(id) = m.first_id {
                        write!(self.out, ",\"recorded-first-entry-id\":\"{id}\"")?;
                    }
                    if let Some(id) = m.max_deleted_id {
                        write!(self.out, ",\"max-deleted-entry-id\":\"{id}\"")?;
                    }
                    if let Some(n) = m.entries_added {
                        write!(self.out, ",\"entries-added\":{n}")?;
                    }
                }
                let gs: Vec<Value> = groups.iter().map(group_json).collect();
                writeln!(self.out, ",\"groups\":{}}}}}", Value::Array(gs))?;
            }
        }
        Ok(())
    }
}

fn group_json(g: &Group) -> Value {
    let owner: HashMap<StreamId, &Bytes> =
        g.consumers.iter().flat_map(|(c, ids)| ids.iter().map(move |id| (*id, &c.name))).collect();
    let by_id: HashMap<StreamId, &PendingEntry> = g.pel.iter().map(|p| (p.id, p)).collect();
    let pending: Vec<Value> = g
        .pel
        .iter()
        .map(|p| {
            let c = owner.get(&p.id).map(|n| bytes_value(n)).unwrap_or(Value::Null);
            json!([p.id.to_string(), c, p.delivery_time_ms, p.delivery_count])
        })
        .collect();
    let consumers: Vec<Value> = g
        .consumers
        .iter()
        .map(|(c, ids)| {
            let pend: Vec<Value> = ids
                .iter()
                .map(|id| match by_id.get(id) {
                    Some(p) => json!([id.to_string(), p.delivery_time_ms, p.delivery_count]),
                    None => json!([id.to_string(), null, null]),
                })
                .collect();
            let mut o = json!({
                "name": bytes_value(&c.name),
                "seen-time": c.seen_time_ms,
                "pel-count": ids.len(),
                "pending": pend,
            });
            if let (Some(a), Some(map)) = (c.active_time_ms, o.as_object_mut()) {
                map.insert("active-time".into(), json!(a));
            }
            o
        })
        .collect();
    let mut o = json!({
        "name": bytes_value(&g.name),
        "last-delivered-id": g.last_id.to_string(),
        "pel-count": g.pel.len(),
        "pending": pending,
        "consumers": consumers,
    });
    if let (Some(n), Some(map)) = (g.entries_read, o.as_object_mut()) {
        // u64::MAX is SCG_INVALID_ENTRIES_READ: the group's read count is unknown.
        map.insert("entries-read".into(), if n == u64::MAX { Value::Null } else { json!(n) });
    }
    o
}
