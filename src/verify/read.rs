//! Reading a batch of keys from both sides and judging each: the hot path.
//!
//! An [`Endpoint`] is one connection with its DB selected and the server's
//! version known. [`compare_batch`] takes the keys of one `SCAN` reply:
//!
//! * keys mode: one round, `TYPE` of every key on both sides at once;
//! * full mode: a `TYPE` round on the source, then, per slice of
//!   `pipeline_keys` keys, `PTTL` and a bounded read of the whole value on
//!   both sides at once (`GETRANGE 0 <small_string_bytes-1>`, `LRANGE 0
//!   <small_elements-1>`, `SSCAN`/`HSCAN`/`ZSCAN 0 COUNT <small_elements>`).
//!   A reply that shows the value is longer than that (a full `GETRANGE` or
//!   `LRANGE`, a `SCAN` cursor not back to 0) sends the key to `big`, as do
//!   streams and module types. The destination is never asked `TYPE`: a
//!   `WRONGTYPE` reply, or nothing where the source has something, says it.
//!
//! Each key ends as an [`Outcome`]; a difference carries the digests the
//! re-check rounds compare (`suspects`).

use std::future::Future;

use bytes::Bytes;

use super::big;
use super::content::{digest_of, parse_score, value_difference, Content, KeyType};
use super::suspects::Seen;
use super::ttl::{from_pttl, ttl_difference, Expiry, PttlReading};
use super::{DiffKind, VerifyError, VerifyMode, VerifyOptions};
use crate::dest::RedisVersion;
use crate::engine::source_side::now_ms;
use crate::resp::{Cmd, Connection, Value};

/// One side of a comparison: a connection with its DB selected.
pub(crate) struct Endpoint {
    conn: Connection,
    /// `source server1 (127.0.0.1:7001) db 0`, for messages.
    pub side: String,
    pub version: RedisVersion,
}

/// `SMISMEMBER`, `ZMSCORE`: Redis 6.2.
const V6_2: RedisVersion = RedisVersion::new(6, 2, 0);

impl Endpoint {
    /// Connects, learns the version, selects `db`.
    pub(crate) async fn open(
        side: &str,
        addr: &str,
        secret: &crate::config::Secret,
        db: u32,
    ) -> Result<Endpoint, VerifyError> {
        let mut conn = super::counts::connect(side, addr, secret).await?;
        let side = format!("{side} db {db}");
        let caps = crate::dest::dest_info(&mut conn).await.map_err(|source| VerifyError::Query {
            side: side.clone(),
            during: "reading the server version (INFO server)".into(),
            source,
        })?;
        if db != 0 {
            conn.query(&Cmd::new("SELECT").arg(db.to_string())).await.map_err(|source| VerifyError::Query {
                side: side.clone(),
                during: format!("selecting db {db}"),
                source,
            })?;
        }
        Ok(Endpoint { conn, side, version: caps.version })
    }

    /// Whether `SMISMEMBER` and `ZMSCORE` exist.
    pub(crate) fn has_multi_member(&self) -> bool {
        self.version >= V6_2
    }

    pub(crate) fn pipeline<'a>(
        &'a mut self,
        cmds: &'a [Cmd],
        during: impl FnOnce() -> String + 'a,
    ) -> impl Future<Output = Result<Vec<Value>, VerifyError>> + 'a {
        async move {
            if cmds.is_empty() {
                return Ok(Vec::new());
            }
            self.conn.pipeline(cmds).await.map_err(|source| VerifyError::Query {
                side: self.side.clone(),
                during: during(),
                source,
            })
        }
    }

    /// A reply no Redis sends for `command`.
    pub(crate) fn unexpected(&self, command: &str, key: &[u8], got: &Value) -> VerifyError {
        VerifyError::Reply {
            side: self.side.clone(),
            command: command.to_owned(),
            during: format!("comparing key {}", super::content::shown(key)),
            got: match got {
                Value::Error(e) => format!("the error \"{e}\""),
                other => format!("{} {other}", other.kind()),
            },
        }
    }
}

/// A command of a name and one key, without copying the key.
pub(crate) fn key_cmd(name: &'static [u8], key: &Bytes) -> Cmd {
    Cmd::from_bytes(vec![Bytes::from_static(name), key.clone()])
}

/// A key command with more arguments after the key.
pub(crate) fn key_cmd_args(name: &'static [u8], key: &Bytes, args: &[&[u8]]) -> Cmd {
    let mut v = Vec::with_capacity(args.len() + 2);
    v.push(Bytes::from_static(name));
    v.push(key.clone());
    v.extend(args.iter().map(|a| Bytes::copy_from_slice(a)));
    Cmd::from_bytes(v)
}

/// How a key compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Equal,
    /// Gone from the source between the `SCAN` and the read (expired or
    /// deleted): nothing to compare.
    Vanished,
    Differs(Seen),
}

/// Digest standing for "no such key" on the destination.
pub(crate) fn missing_digest() -> u64 {
    digest_of(&"(missing)")
}

/// A type difference, or the key missing on the destination, as a
/// reading; `None` when both have type `src`.
pub(crate) fn type_reading(src: &KeyType, dst: Option<&KeyType>) -> Option<Seen> {
    match dst {
        None => Some(missing_reading(src)),
        Some(d) if d != src => Some(Seen {
            kind: DiffKind::Type,
            detail: format!("type: source {}, destination {}", src.name(), d.name()),
            source_digest: digest_of(src),
            dest_digest: digest_of(d),
        }),
        Some(_) => None,
    }
}

/// The key is on the source (with type `src`), not on the destination.
pub(crate) fn missing_reading(src: &KeyType) -> Seen {
    Seen {
        kind: DiffKind::Missing,
        detail: format!("missing: source has a {}, destination has no such key", src.name()),
        source_digest: digest_of(src),
        dest_digest: missing_digest(),
    }
}

/// Reads a `TYPE` reply.
pub(crate) fn parse_type(ep: &Endpoint, key: &[u8], reply: &Value) -> Result<Option<KeyType>, VerifyError> {
    match reply.as_str() {
        Some(name) => Ok(KeyType::parse(name)),
        None => Err(ep.unexpected("TYPE", key, reply)),
    }
}

/// Reads a `PTTL` reply taken at `now`.
pub(crate) fn parse_pttl(ep: &Endpoint, key: &[u8], reply: &Value, now: i64) -> Result<PttlReading, VerifyError> {
    match reply {
        Value::Integer(p) => Ok(from_pttl(*p, now)),
        other => Err(ep.unexpected("PTTL", key, other)),
    }
}

/// The digest of a value and its expiry, for a reading.
pub(crate) fn value_digest(value: u64, expiry: Expiry, tolerance_ms: i64) -> u64 {
    digest_of(&(value, expiry.bucket(tolerance_ms)))
}

/// Compares `keys` of one source DB with the destination.
pub(crate) async fn compare_batch(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    keys: &[Bytes],
    opts: &VerifyOptions,
) -> Result<Vec<Outcome>, VerifyError> {
    let n = keys.len();
    let types: Vec<Cmd> = keys.iter().map(|k| key_cmd(b"TYPE", k)).collect();
    if opts.mode == VerifyMode::Keys {
        let during = || format!("reading the types of {n} keys");
        let (s, d) = tokio::join!(src.pipeline(&types, during), dst.pipeline(&types, during));
        let (s, d) = (s?, d?);
        let mut out = Vec::with_capacity(n);
        for (i, key) in keys.iter().enumerate() {
            let Some(st) = parse_type(src, key, &s[i])? else {
                out.push(Outcome::Vanished);
                continue;
            };
            let dt = parse_type(dst, key, &d[i])?;
            out.push(type_reading(&st, dt.as_ref()).map_or(Outcome::Equal, Outcome::Differs));
        }
        return Ok(out);
    }
    let replies = src.pipeline(&types, || format!("reading the types of {n} keys")).await?;
    let mut src_types = Vec::with_capacity(n);
    for (key, reply) in keys.iter().zip(&replies) {
        src_types.push(parse_type(src, key, reply)?);
    }
    drop(replies);
    let mut out = Vec::with_capacity(n);
    let mut big_keys = Vec::new();
    let step = opts.pipeline_keys.max(1);
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        read_values(src, dst, &keys[start..end], &src_types[start..end], opts, &mut out, &mut big_keys).await?;
    }
    // Big keys one at a time, a chunk at a time: their memory is bounded
    // by the chunk size, not the key's.
    for i in big_keys {
        out[i] = big::compare_key(src, dst, &keys[i], opts).await?;
    }
    Ok(out)
}

/// What a bounded read of a whole value returned.
enum Fetch {
    Whole(Content),
    /// The value is longer than a bounded read returns.
    Partial,
    /// Nothing: a collection is never empty, so the key does not exist.
    Empty,
    /// The key holds another type.
    WrongType,
}

/// The arguments of the bounded whole-value reads, formatted once per
/// batch rather than once per key.
struct ReadArgs {
    string_end: Bytes,
    list_end: Bytes,
    count: Bytes,
}

impl ReadArgs {
    fn new(opts: &VerifyOptions) -> ReadArgs {
        let small = opts.small_elements.max(1);
        ReadArgs {
            string_end: Bytes::from(opts.small_string_bytes.max(1).saturating_sub(1).to_string()),
            list_end: Bytes::from((small - 1).to_string()),
            count: Bytes::from(small.to_string()),
        }
    }

    /// The bounded whole-value read for a key of type `ty`; `None` for the
    /// types always compared by `big`.
    fn value_cmd(&self, ty: &KeyType, key: &Bytes) -> Option<Cmd> {
        let args = |name: &'static [u8], a: &Bytes, b: &Bytes| {
            Cmd::from_bytes(vec![Bytes::from_static(name), key.clone(), a.clone(), b.clone()])
        };
        let scan = |name: &'static [u8]| {
            Cmd::from_bytes(vec![
                Bytes::from_static(name),
                key.clone(),
                Bytes::from_static(b"0"),
                Bytes::from_static(b"COUNT"),
                self.count.clone(),
            ])
        };
        let zero = Bytes::from_static(b"0");
        Some(match ty {
            KeyType::String => args(b"GETRANGE", &zero, &self.string_end),
            KeyType::List => args(b"LRANGE", &zero, &self.list_end),
            KeyType::Set => scan(b"SSCAN"),
            KeyType::Hash => scan(b"HSCAN"),
            KeyType::Zset => scan(b"ZSCAN"),
            KeyType::Stream | KeyType::Other(_) => return None,
        })
    }
}

/// Whether [`ReadArgs::value_cmd`] reads keys of type `ty`.
fn has_value_cmd(ty: &KeyType) -> bool {
    !matches!(ty, KeyType::Stream | KeyType::Other(_))
}

fn value_cmd_name(ty: &KeyType) -> &'static str {
    match ty {
        KeyType::String => "GETRANGE",
        KeyType::List => "LRANGE",
        KeyType::Set => "SSCAN",
        KeyType::Hash => "HSCAN",
        KeyType::Zset => "ZSCAN",
        KeyType::Stream | KeyType::Other(_) => "TYPE",
    }
}

/// Interprets the reply to [`ReadArgs::value_cmd`].
fn parse_fetch(
    ep: &Endpoint,
    ty: &KeyType,
    key: &[u8],
    reply: Value,
    opts: &VerifyOptions,
) -> Result<Fetch, VerifyError> {
    if reply.error_code() == Some("WRONGTYPE") {
        return Ok(Fetch::WrongType);
    }
    let bad = |reply: &Value| ep.unexpected(value_cmd_name(ty), key, reply);
    match ty {
        KeyType::String => match reply {
            Value::Bulk(Some(b)) if b.len() >= opts.small_string_bytes => Ok(Fetch::Partial),
            Value::Bulk(Some(b)) => Ok(Fetch::Whole(Content::String(b))),
            other => Err(bad(&other)),
        },
        KeyType::List => {
            let items = bulk_items(&reply).ok_or_else(|| bad(&reply))?;
            Ok(match items.len() {
                0 => Fetch::Empty,
                n if n >= opts.small_elements.max(1) => Fetch::Partial,
                _ => Fetch::Whole(Content::List(items)),
            })
        }
        KeyType::Set | KeyType::Hash | KeyType::Zset => {
            let (cursor, items) = scan_reply(&reply).ok_or_else(|| bad(&reply))?;
            if &cursor[..] != b"0" {
                return Ok(Fetch::Partial);
            }
            if items.is_empty() {
                return Ok(Fetch::Empty);
            }
            Ok(Fetch::Whole(match ty {
                KeyType::Set => Content::set(items),
                KeyType::Hash => Content::hash(pairs(items).ok_or_else(|| bad(&reply))?),
                _ => {
                    let mut scored = Vec::with_capacity(items.len() / 2);
                    for (member, score) in pairs(items).ok_or_else(|| bad(&reply))? {
                        scored.push((member, parse_score(&score).ok_or_else(|| bad(&reply))?));
                    }
                    Content::zset(scored)
                }
            }))
        }
        KeyType::Stream | KeyType::Other(_) => Ok(Fetch::Partial),
    }
}

/// The bulk strings of an array reply.
pub(crate) fn bulk_items(reply: &Value) -> Option<Vec<Bytes>> {
    reply.as_array()?.iter().map(|v| v.clone().into_bytes()).collect()
}

/// A `SCAN`-family reply: the next cursor and the items.
pub(crate) fn scan_reply(reply: &Value) -> Option<(Bytes, Vec<Bytes>)> {
    let [cursor, items] = reply.as_array()? else { return None };
    Some((cursor.clone().into_bytes()?, bulk_items(items)?))
}

/// `[a, 1, b, 2]` → `[(a, 1), (b, 2)]`; `None` for an odd count.
pub(crate) fn pairs(items: Vec<Bytes>) -> Option<Vec<(Bytes, Bytes)>> {
    if items.len() % 2 != 0 {
        return None;
    }
    let mut it = items.into_iter();
    let mut out = Vec::with_capacity(it.len() / 2);
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Some(out)
}

/// `PTTL` and the bounded value read of one slice of keys, both sides at
/// once; appends one outcome per key (a placeholder for big keys, whose
/// index goes to `big_keys`).
async fn read_values(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    keys: &[Bytes],
    types: &[Option<KeyType>],
    opts: &VerifyOptions,
    out: &mut Vec<Outcome>,
    big_keys: &mut Vec<usize>,
) -> Result<(), VerifyError> {
    // Per key: PTTL, then the value read when the type has one.
    let read = ReadArgs::new(opts);
    let mut cmds = Vec::with_capacity(keys.len() * 2);
    for (key, ty) in keys.iter().zip(types) {
        if let Some(ty) = ty {
            cmds.push(key_cmd(b"PTTL", key));
            if let Some(c) = read.value_cmd(ty, key) {
                cmds.push(c);
            }
        }
    }
    let n = keys.len();
    let during = || format!("reading the values of {n} keys");
    let (s, d) = tokio::join!(src.pipeline(&cmds, during), dst.pipeline(&cmds, during));
    let now = now_ms();
    let (s, d) = (s?, d?);
    drop(cmds);
    let (mut s, mut d) = (s.into_iter(), d.into_iter());
    let tolerance = opts.ttl_tolerance.as_millis() as i64;
    let mut wrong_type = Vec::new();
    for (key, ty) in keys.iter().zip(types) {
        let Some(ty) = ty else {
            out.push(Outcome::Vanished);
            continue;
        };
        let short = || VerifyError::Reply {
            side: src.side.clone(),
            command: "a pipeline".into(),
            during: "reading values".into(),
            got: "fewer replies than commands".into(),
        };
        let (s_pttl, d_pttl) = (s.next().ok_or_else(short)?, d.next().ok_or_else(short)?);
        let s_pttl = parse_pttl(src, key, &s_pttl, now)?;
        let d_pttl = parse_pttl(dst, key, &d_pttl, now)?;
        let (s_val, d_val) = if has_value_cmd(ty) {
            let (sv, dv) = (s.next().ok_or_else(short)?, d.next().ok_or_else(short)?);
            (parse_fetch(src, ty, key, sv, opts)?, parse_fetch(dst, ty, key, dv, opts)?)
        } else {
            (Fetch::Partial, Fetch::Partial)
        };
        let PttlReading::Exists(s_exp) = s_pttl else {
            out.push(Outcome::Vanished);
            continue;
        };
        let s_content = match s_val {
            Fetch::Whole(c) => c,
            Fetch::Empty => {
                out.push(Outcome::Vanished);
                continue;
            }
            // Replaced by another type since `TYPE`, or too big: the big
            // path reads it again from the start.
            Fetch::WrongType | Fetch::Partial => {
                big_keys.push(out.len());
                out.push(Outcome::Equal);
                continue;
            }
        };
        let (d_content, d_exp) = match (d_val, d_pttl) {
            (Fetch::WrongType, _) => {
                wrong_type.push((out.len(), key.clone(), ty.clone()));
                out.push(Outcome::Equal);
                continue;
            }
            (Fetch::Partial, _) => {
                big_keys.push(out.len());
                out.push(Outcome::Equal);
                continue;
            }
            // `GETRANGE` of no key is "", like an empty string's: PTTL tells.
            (Fetch::Empty, _) => {
                out.push(Outcome::Differs(missing_reading(ty)));
                continue;
            }
            (Fetch::Whole(Content::String(v)), PttlReading::Missing) if v.is_empty() => {
                out.push(Outcome::Differs(missing_reading(ty)));
                continue;
            }
            // Created between the two reads: compare with no TTL; a
            // re-check settles it.
            (Fetch::Whole(c), PttlReading::Missing) => (c, Expiry::Persistent),
            (Fetch::Whole(c), PttlReading::Exists(e)) => (c, e),
        };
        out.push(judge(&s_content, s_exp, &d_content, d_exp, tolerance));
    }
    if !wrong_type.is_empty() {
        let cmds: Vec<Cmd> = wrong_type.iter().map(|(_, k, _)| key_cmd(b"TYPE", k)).collect();
        let replies = dst.pipeline(&cmds, || "reading the types of keys with another type".into()).await?;
        for ((i, key, ty), reply) in wrong_type.into_iter().zip(&replies) {
            let dt = parse_type(dst, &key, reply)?;
            out[i] = match type_reading(&ty, dt.as_ref()) {
                Some(seen) => Outcome::Differs(seen),
                // Same type again (rewritten between the reads): read it again.
                None => big::compare_key(src, dst, &key, opts).await?,
            };
        }
    }
    Ok(())
}

/// Two whole values of the same type and their expiries.
pub(crate) fn judge(src: &Content, s_exp: Expiry, dst: &Content, d_exp: Expiry, tolerance_ms: i64) -> Outcome {
    if let Some(detail) = value_difference(src, dst) {
        return Outcome::Differs(Seen {
            kind: DiffKind::Value,
            detail: format!("value: {detail}"),
            source_digest: value_digest(src.digest(), s_exp, tolerance_ms),
            dest_digest: value_digest(dst.digest(), d_exp, tolerance_ms),
        });
    }
    match ttl_difference(s_exp, d_exp, tolerance_ms) {
        Some(detail) => Outcome::Differs(Seen {
            kind: DiffKind::Ttl,
            detail,
            source_digest: value_digest(src.digest(), s_exp, tolerance_ms),
            dest_digest: value_digest(dst.digest(), d_exp, tolerance_ms),
        }),
        None => Outcome::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Content {
        Content::String(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn at(ms: i64) -> Expiry {
        Expiry::At { at_ms: ms, remaining_ms: ms - 1000 }
    }

    #[test]
    fn judging_values_and_ttls() {
        assert_eq!(judge(&s("a"), Expiry::Persistent, &s("a"), Expiry::Persistent, 2000), Outcome::Equal);
        assert_eq!(judge(&s("a"), at(50_000), &s("a"), at(51_000), 2000), Outcome::Equal);
        let Outcome::Differs(v) = judge(&s("a"), at(50_000), &s("b"), Expiry::Persistent, 2000) else { panic!() };
        // A value difference hides a TTL difference: one finding per key.
        assert_eq!(v.kind, DiffKind::Value);
        assert!(v.detail.starts_with("value: "), "{}", v.detail);
        let Outcome::Differs(t) = judge(&s("a"), at(50_000), &s("a"), Expiry::Persistent, 2000) else { panic!() };
        assert_eq!((t.kind, t.detail.as_str()), (DiffKind::Ttl, "ttl: source 49000 ms, destination none"));
        // The same reading gives the same digests; another value another.
        let Outcome::Differs(t2) = judge(&s("a"), at(50_100), &s("a"), Expiry::Persistent, 2000) else { panic!() };
        assert_eq!((t.source_digest, t.dest_digest), (t2.source_digest, t2.dest_digest));
        let Outcome::Differs(v2) = judge(&s("z"), at(50_000), &s("b"), Expiry::Persistent, 2000) else { panic!() };
        assert_ne!(v.source_digest, v2.source_digest);
        assert_eq!(v.dest_digest, v2.dest_digest);
    }

    #[test]
    fn missing_and_type_readings() {
        let m = type_reading(&KeyType::Hash, None).unwrap();
        assert_eq!(
            (m.kind, m.detail.as_str()),
            (DiffKind::Missing, "missing: source has a hash, destination has no such key")
        );
        let t = type_reading(&KeyType::Hash, Some(&KeyType::String)).unwrap();
        assert_eq!((t.kind, t.detail.as_str()), (DiffKind::Type, "type: source hash, destination string"));
        assert_eq!(type_reading(&KeyType::Set, Some(&KeyType::Set)), None);
        assert_ne!(m.dest_digest, t.dest_digest);
    }

    #[test]
    fn scan_replies_and_pairs() {
        let b = |s: &str| Value::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())));
        let reply = Value::Array(Some(vec![b("0"), Value::Array(Some(vec![b("f"), b("1"), b("g"), b("2")]))]));
        let (cursor, items) = scan_reply(&reply).unwrap();
        assert_eq!(&cursor[..], b"0");
        let p = pairs(items).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(&p[1].1[..], b"2");
        assert!(pairs(vec![Bytes::new()]).is_none());
        assert!(scan_reply(&b("x")).is_none());
        assert!(bulk_items(&Value::Array(Some(vec![Value::Integer(1)]))).is_none());
    }
}
