//! Keys too big to hold, compared a chunk at a time, and streams.
//!
//! The key's type and TTL are read again on both sides (the key may have
//! changed since the batch read), then, by type:
//!
//! * string: `STRLEN` on both, then `GETRANGE` chunks of `chunk_bytes`;
//! * list: `LLEN`, then `LRANGE` chunks of `chunk_elements`, in order;
//! * set: `SCARD`, then `SSCAN` chunks of the source, each member looked up
//!   on the destination (`SMISMEMBER`, 6.2+, else pipelined `SISMEMBER`);
//!   equal cardinalities and every source member present make equal sets,
//!   and a member `SSCAN` returns twice is harmless;
//! * hash: `HLEN`, then `HSCAN` chunks against `HMGET`;
//! * zset: `ZCARD`, then `ZSCAN` chunks against `ZMSCORE` (6.2+) or
//!   pipelined `ZSCORE`, scores compared as numbers;
//! * stream: `XLEN` and the last generated ID (`XINFO STREAM`), the entries
//!   in `XRANGE` chunks, and each consumer group's name, last delivered ID
//!   and pending count (`XINFO GROUPS`);
//! * a module type: type and TTL only.
//!
//! The comparison stops at the first difference. Digests cover what was
//! read up to there, so a re-check that sees the same stopping point with
//! the same content calls the key stable.

use bytes::Bytes;

use super::content::{
    digest_of, list_difference, parse_score, preview, score_bits, string_difference, KeyType, OrderedDigest,
    UnorderedDigest,
};
use super::endpoint::{
    into_bulks, key_cmd, key_cmd_args, odd_items, pairs, parse_pttl, parse_type, scan_reply, Endpoint,
};
use super::outcome::{missing_reading, type_reading, value_digest, Outcome};
use super::suspects::Seen;
use super::ttl::{ttl_difference, PttlReading};
use super::{DiffKind, VerifyError, VerifyOptions};
use crate::clock::now_ms;
use crate::resp::{Cmd, Value};

/// What comparing the values found: the first difference (without the
/// `value: ` prefix) and digests of what each side showed.
struct Compared {
    difference: Option<String>,
    source: u64,
    dest: u64,
}

impl Compared {
    fn equal(source: u64, dest: u64) -> Compared {
        Compared { difference: None, source, dest }
    }

    fn differs(detail: String, source: u64, dest: u64) -> Compared {
        Compared { difference: Some(detail), source, dest }
    }
}

/// Compares one key of any size and type.
pub(crate) async fn compare_key(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    key: &Bytes,
    opts: &VerifyOptions,
) -> Result<Outcome, VerifyError> {
    let cmds = [key_cmd(b"TYPE", key), key_cmd(b"PTTL", key)];
    let during = || format!("reading the type of key {}", crate::display::quoted_key(key));
    let (s, d) = tokio::join!(src.pipeline(&cmds, during), dst.pipeline(&cmds, during));
    let now = now_ms();
    let (s, d) = (s?, d?);
    let (Some(st), Some(sp)) = (s.first(), s.get(1)) else {
        return Err(src.unexpected("TYPE", key, &Value::Array(None)));
    };
    let (Some(dt), Some(dp)) = (d.first(), d.get(1)) else {
        return Err(dst.unexpected("TYPE", key, &Value::Array(None)));
    };
    let (Some(ty), PttlReading::Exists(s_exp)) = (parse_type(src, key, st)?, parse_pttl(src, key, sp, now)?) else {
        return Ok(Outcome::Vanished);
    };
    let dt = parse_type(dst, key, dt)?;
    let d_exp = match (dt.as_ref(), parse_pttl(dst, key, dp, now)?) {
        (None, _) | (Some(_), PttlReading::Missing) => return Ok(Outcome::Differs(missing_reading(&ty))),
        (Some(_), PttlReading::Exists(e)) => e,
    };
    if let Some(seen) = type_reading(&ty, dt.as_ref()) {
        return Ok(Outcome::Differs(seen));
    }
    let compared = match &ty {
        KeyType::String => strings(src, dst, key, opts).await?,
        KeyType::List => lists(src, dst, key, opts).await?,
        KeyType::Set => sets(src, dst, key, opts).await?,
        KeyType::Hash => hashes(src, dst, key, opts).await?,
        KeyType::Zset => zsets(src, dst, key, opts).await?,
        KeyType::Stream => streams(src, dst, key, opts).await?,
        KeyType::Other(_) => Compared::equal(0, 0),
    };
    let tolerance = opts.ttl_tolerance.as_millis() as i64;
    let source_digest = value_digest(compared.source, s_exp, tolerance);
    let dest_digest = value_digest(compared.dest, d_exp, tolerance);
    if let Some(detail) = compared.difference {
        return Ok(Outcome::Differs(Seen {
            kind: DiffKind::Value,
            detail: format!("value: {detail}"),
            source_digest,
            dest_digest,
        }));
    }
    Ok(match ttl_difference(s_exp, d_exp, tolerance) {
        Some(detail) => Outcome::Differs(Seen { kind: DiffKind::Ttl, detail, source_digest, dest_digest }),
        None => Outcome::Equal,
    })
}

/// One command on each side at once, one reply each.
async fn both(src: &mut Endpoint, dst: &mut Endpoint, cmd: Cmd, key: &Bytes) -> Result<(Value, Value), VerifyError> {
    let cmds = [cmd];
    let name = cmds[0].name();
    let during = || format!("comparing key {} ({name})", crate::display::quoted_key(key));
    let (s, d) = tokio::join!(src.pipeline(&cmds, during), dst.pipeline(&cmds, during));
    let (mut s, mut d) = (s?, d?);
    match (s.pop(), d.pop()) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(src.unexpected(&name, key, &Value::Array(None))),
    }
}

/// One command on one side, one reply.
async fn one(ep: &mut Endpoint, cmd: Cmd, key: &Bytes) -> Result<Value, VerifyError> {
    let cmds = [cmd];
    let name = cmds[0].name();
    let mut r = ep.pipeline(&cmds, || format!("comparing key {} ({name})", crate::display::quoted_key(key))).await?;
    r.pop().ok_or_else(|| ep.unexpected(&name, key, &Value::Array(None)))
}

fn int(ep: &Endpoint, command: &str, key: &[u8], v: &Value) -> Result<i64, VerifyError> {
    match v {
        Value::Integer(i) => Ok(*i),
        other => Err(ep.unexpected(command, key, other)),
    }
}

/// The lengths of both sides (`STRLEN`, `LLEN`…); a difference when they differ.
async fn lengths(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    command: &'static str,
    unit: &str,
    key: &Bytes,
) -> Result<Result<i64, Compared>, VerifyError> {
    let (a, b) = both(src, dst, key_cmd(command.as_bytes(), key), key).await?;
    let (a, b) = (int(src, command, key, &a)?, int(dst, command, key, &b)?);
    if a != b {
        return Ok(Err(Compared::differs(
            format!("source {a} {unit}, destination {b} {unit}"),
            digest_of(&a),
            digest_of(&b),
        )));
    }
    Ok(Ok(a))
}

async fn strings(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    key: &Bytes,
    opts: &VerifyOptions,
) -> Result<Compared, VerifyError> {
    let len = match lengths(src, dst, "STRLEN", "bytes", key).await? {
        Ok(len) => len,
        Err(differs) => return Ok(differs),
    };
    let chunk = opts.chunk_bytes.max(1) as i64;
    let (mut ds, mut dd) = (OrderedDigest::default(), OrderedDigest::default());
    let mut off = 0i64;
    while off < len {
        let range = [off.to_string(), (off + chunk - 1).to_string()];
        let cmd = key_cmd_args(b"GETRANGE", key, &[range[0].as_bytes(), range[1].as_bytes()]);
        let (a, b) = both(src, dst, cmd, key).await?;
        let a = a.into_bytes().ok_or_else(|| src.unexpected("GETRANGE", key, &Value::Bulk(None)))?;
        let b = b.into_bytes().ok_or_else(|| dst.unexpected("GETRANGE", key, &Value::Bulk(None)))?;
        ds.add(&&a[..]);
        dd.add(&&b[..]);
        if let Some(d) = string_difference(&a, &b, off as u64) {
            return Ok(Compared::differs(d, ds.value(), dd.value()));
        }
        if a.is_empty() {
            // Shortened since STRLEN: what is left compared equal.
            break;
        }
        off += chunk;
    }
    Ok(Compared::equal(ds.value(), dd.value()))
}

async fn lists(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    key: &Bytes,
    opts: &VerifyOptions,
) -> Result<Compared, VerifyError> {
    let len = match lengths(src, dst, "LLEN", "elements", key).await? {
        Ok(len) => len,
        Err(differs) => return Ok(differs),
    };
    let chunk = opts.chunk_elements.max(1) as i64;
    let (mut ds, mut dd) = (OrderedDigest::default(), OrderedDigest::default());
    let mut off = 0i64;
    while off < len {
        let range = [off.to_string(), (off + chunk - 1).to_string()];
        let cmd = key_cmd_args(b"LRANGE", key, &[range[0].as_bytes(), range[1].as_bytes()]);
        let (a, b) = both(src, dst, cmd, key).await?;
        let a = into_bulks(a).map_err(|v| src.unexpected("LRANGE", key, &v))?;
        let b = into_bulks(b).map_err(|v| dst.unexpected("LRANGE", key, &v))?;
        ds.add(&a);
        dd.add(&b);
        if let Some(d) = list_difference(&a, &b, off as u64) {
            return Ok(Compared::differs(d, ds.value(), dd.value()));
        }
        if a.is_empty() {
            break;
        }
        off += chunk;
    }
    Ok(Compared::equal(ds.value(), dd.value()))
}

/// Where a `SSCAN`/`HSCAN`/`ZSCAN` walk of the source is.
struct SourceScan {
    command: &'static str,
    cursor: Option<Bytes>,
    count: String,
}

impl SourceScan {
    fn new(command: &'static str, opts: &VerifyOptions) -> SourceScan {
        SourceScan { command, cursor: Some(Bytes::from_static(b"0")), count: opts.chunk_elements.max(1).to_string() }
    }

    /// The next non-empty chunk of items; `None` once the walk is over.
    async fn next(&mut self, src: &mut Endpoint, key: &Bytes) -> Result<Option<Vec<Bytes>>, VerifyError> {
        // A call may return no item with the walk not over (empty buckets).
        while let Some(cursor) = self.cursor.take() {
            let cmd = Cmd::from_bytes(vec![
                Bytes::from_static(self.command.as_bytes()),
                key.clone(),
                cursor,
                Bytes::from_static(b"COUNT"),
                Bytes::copy_from_slice(self.count.as_bytes()),
            ]);
            let reply = one(src, cmd, key).await?;
            let (next, items) = scan_reply(reply).map_err(|v| src.unexpected(self.command, key, &v))?;
            if &next[..] != b"0" {
                self.cursor = Some(next);
            }
            if !items.is_empty() {
                return Ok(Some(items));
            }
        }
        Ok(None)
    }
}

async fn sets(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    key: &Bytes,
    opts: &VerifyOptions,
) -> Result<Compared, VerifyError> {
    let card = match lengths(src, dst, "SCARD", "members", key).await? {
        Ok(n) => n,
        Err(differs) => return Ok(differs),
    };
    let (mut ds, mut dd) = (UnorderedDigest::default(), UnorderedDigest::default());
    dd.add(&card);
    let mut walk = SourceScan::new("SSCAN", opts);
    while let Some(members) = walk.next(src, key).await? {
        let present = membership(dst, key, &members).await?;
        for (m, here) in members.iter().zip(&present) {
            ds.add(m);
            dd.add(&(m, *here));
            if !here {
                let d = format!("member {} only on the source (both have {card} members)", preview(m));
                return Ok(Compared::differs(d, ds.value(), dd.value()));
            }
        }
    }
    Ok(Compared::equal(ds.value(), dd.value()))
}

/// Whether each of `members` is in the destination's set.
async fn membership(dst: &mut Endpoint, key: &Bytes, members: &[Bytes]) -> Result<Vec<bool>, VerifyError> {
    let during = || format!("looking up members of key {} on the destination", crate::display::quoted_key(key));
    if dst.has_multi_member() {
        let mut args = Vec::with_capacity(members.len() + 2);
        args.push(Bytes::from_static(b"SMISMEMBER"));
        args.push(key.clone());
        args.extend(members.iter().cloned());
        let mut r = dst.pipeline(&[Cmd::from_bytes(args)], during).await?;
        let reply = r.pop().unwrap_or(Value::Array(None));
        let Some(items) = reply.as_array() else { return Err(dst.unexpected("SMISMEMBER", key, &reply)) };
        return items.iter().map(|v| int(dst, "SMISMEMBER", key, v).map(|i| i == 1)).collect();
    }
    let cmds: Vec<Cmd> = members
        .iter()
        .map(|m| Cmd::from_bytes(vec![Bytes::from_static(b"SISMEMBER"), key.clone(), m.clone()]))
        .collect();
    let replies = dst.pipeline(&cmds, during).await?;
    replies.iter().map(|v| int(dst, "SISMEMBER", key, v).map(|i| i == 1)).collect()
}

async fn hashes(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    key: &Bytes,
    opts: &VerifyOptions,
) -> Result<Compared, VerifyError> {
    let len = match lengths(src, dst, "HLEN", "fields", key).await? {
        Ok(n) => n,
        Err(differs) => return Ok(differs),
    };
    let (mut ds, mut dd) = (UnorderedDigest::default(), UnorderedDigest::default());
    dd.add(&len);
    let mut walk = SourceScan::new("HSCAN", opts);
    while let Some(items) = walk.next(src, key).await? {
        let n = items.len();
        let fields = pairs(items).ok_or_else(|| src.unexpected("HSCAN", key, &odd_items(n)))?;
        let mut args = Vec::with_capacity(fields.len() + 2);
        args.push(Bytes::from_static(b"HMGET"));
        args.push(key.clone());
        args.extend(fields.iter().map(|(f, _)| f.clone()));
        let reply = one(dst, Cmd::from_bytes(args), key).await?;
        let Some(values) = reply.as_array() else { return Err(dst.unexpected("HMGET", key, &reply)) };
        for ((field, value), theirs) in fields.iter().zip(values) {
            ds.add(&(field, value));
            dd.add(&(field, theirs.as_bytes()));
            let d = match theirs.as_bytes() {
                None => format!("field {} only on the source (both have {len} fields)", preview(field)),
                Some(v) if v != &value[..] => {
                    format!("field {}: source {}, destination {}", preview(field), preview(value), preview(v))
                }
                Some(_) => continue,
            };
            return Ok(Compared::differs(d, ds.value(), dd.value()));
        }
    }
    Ok(Compared::equal(ds.value(), dd.value()))
}

async fn zsets(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    key: &Bytes,
    opts: &VerifyOptions,
) -> Result<Compared, VerifyError> {
    let card = match lengths(src, dst, "ZCARD", "members", key).await? {
        Ok(n) => n,
        Err(differs) => return Ok(differs),
    };
    let (mut ds, mut dd) = (UnorderedDigest::default(), UnorderedDigest::default());
    dd.add(&card);
    let mut walk = SourceScan::new("ZSCAN", opts);
    while let Some(items) = walk.next(src, key).await? {
        let n = items.len();
        let mut members = Vec::with_capacity(n / 2);
        for (m, s) in pairs(items).ok_or_else(|| src.unexpected("ZSCAN", key, &odd_items(n)))? {
            let score = parse_score(&s).ok_or_else(|| src.unexpected("ZSCAN", key, &Value::Bulk(Some(s.clone()))))?;
            members.push((m, score));
        }
        let theirs = scores(dst, key, &members).await?;
        for ((m, score), other) in members.iter().zip(&theirs) {
            ds.add(&(m, score_bits(*score)));
            dd.add(&(m, other.map(score_bits)));
            let d = match other {
                None => format!("member {} only on the source (both have {card} members)", preview(m)),
                Some(o) if score_bits(*o) != score_bits(*score) => {
                    format!("member {}: source score {score}, destination score {o}", preview(m))
                }
                Some(_) => continue,
            };
            return Ok(Compared::differs(d, ds.value(), dd.value()));
        }
    }
    Ok(Compared::equal(ds.value(), dd.value()))
}

/// The destination's score of each member (`None`: not a member).
async fn scores(dst: &mut Endpoint, key: &Bytes, members: &[(Bytes, f64)]) -> Result<Vec<Option<f64>>, VerifyError> {
    let during = || format!("looking up members of key {} on the destination", crate::display::quoted_key(key));
    let replies = if dst.has_multi_member() {
        let mut args = Vec::with_capacity(members.len() + 2);
        args.push(Bytes::from_static(b"ZMSCORE"));
        args.push(key.clone());
        args.extend(members.iter().map(|(m, _)| m.clone()));
        let mut r = dst.pipeline(&[Cmd::from_bytes(args)], during).await?;
        let reply = r.pop().unwrap_or(Value::Array(None));
        match reply {
            Value::Array(Some(items)) => items,
            other => return Err(dst.unexpected("ZMSCORE", key, &other)),
        }
    } else {
        let cmds: Vec<Cmd> = members
            .iter()
            .map(|(m, _)| Cmd::from_bytes(vec![Bytes::from_static(b"ZSCORE"), key.clone(), m.clone()]))
            .collect();
        dst.pipeline(&cmds, during).await?
    };
    replies
        .iter()
        .map(|v| match v {
            Value::Bulk(None) => Ok(None),
            other => {
                other.as_bytes().and_then(parse_score).map(Some).ok_or_else(|| dst.unexpected("ZSCORE", key, other))
            }
        })
        .collect()
}

/// Feeds a reply's bytes into a digest (stream entries are nested arrays).
fn feed(v: &Value, d: &mut OrderedDigest) {
    match v {
        Value::Bulk(Some(b)) => d.add(&&b[..]),
        Value::Array(Some(items)) => {
            d.add(&items.len());
            for item in items {
                feed(item, d);
            }
        }
        Value::Integer(i) => d.add(i),
        Value::Simple(s) => d.add(s),
        other => d.add(&other.kind()),
    }
}

/// The ID after `id` (`ms-seq`), to continue an `XRANGE` without the
/// exclusive `(` of Redis 6.2.
fn next_stream_id(id: &[u8]) -> Option<String> {
    let (ms, seq) = std::str::from_utf8(id).ok()?.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    Some(match seq.checked_add(1) {
        Some(next) => format!("{ms}-{next}"),
        None => format!("{}-0", ms.checked_add(1)?),
    })
}

/// A field of an `XINFO` reply (a flat array of names and values).
fn info_field<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    let items = reply.as_array()?;
    items.chunks(2).find(|p| p[0].as_bytes() == Some(name.as_bytes())).and_then(|p| p.get(1))
}

/// A consumer group: name, last delivered ID, pending entries.
type Group = (Vec<u8>, Vec<u8>, i64);

/// A stream's consumer groups, sorted.
fn groups(reply: &Value) -> Option<Vec<Group>> {
    let mut out: Vec<_> = reply
        .as_array()?
        .iter()
        .map(|g| {
            Some((
                info_field(g, "name")?.as_bytes()?.to_vec(),
                info_field(g, "last-delivered-id")?.as_bytes()?.to_vec(),
                info_field(g, "pending")?.as_int()?,
            ))
        })
        .collect::<Option<_>>()?;
    out.sort();
    Some(out)
}

async fn streams(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    key: &Bytes,
    opts: &VerifyOptions,
) -> Result<Compared, VerifyError> {
    if let Err(differs) = lengths(src, dst, "XLEN", "entries", key).await? {
        return Ok(differs);
    }
    let (mut ds, mut dd) = (OrderedDigest::default(), OrderedDigest::default());
    // XINFO takes the subcommand before the key.
    let info = Cmd::from_bytes(vec![Bytes::from_static(b"XINFO"), Bytes::from_static(b"STREAM"), key.clone()]);
    let (a, b) = both(src, dst, info, key).await?;
    let last = |ep: &Endpoint, v: &Value| {
        info_field(v, "last-generated-id")
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| ep.unexpected("XINFO STREAM", key, v))
    };
    let (la, lb) = (last(src, &a)?, last(dst, &b)?);
    ds.add(&la);
    dd.add(&lb);
    if la != lb {
        return Ok(Compared::differs(
            format!("last generated ID: source {}, destination {}", preview(&la), preview(&lb)),
            ds.value(),
            dd.value(),
        ));
    }
    let chunk = opts.chunk_elements.max(1);
    let count = chunk.to_string();
    let mut start = "-".to_owned();
    let mut seen = 0i64;
    loop {
        let cmd = key_cmd_args(b"XRANGE", key, &[start.as_bytes(), b"+", b"COUNT", count.as_bytes()]);
        let (a, b) = both(src, dst, cmd, key).await?;
        let ea = a.as_array().ok_or_else(|| src.unexpected("XRANGE", key, &a))?;
        let eb = b.as_array().ok_or_else(|| dst.unexpected("XRANGE", key, &b))?;
        feed(&a, &mut ds);
        feed(&b, &mut dd);
        if let Some(i) = ea.iter().zip(eb).position(|(x, y)| x != y) {
            let id = |e: &Value| {
                e.as_array().and_then(|f| f.first()).and_then(Value::as_bytes).map(preview).unwrap_or_default()
            };
            return Ok(Compared::differs(
                format!(
                    "entry {} differs: source {} {}, destination {} {}",
                    seen + i as i64,
                    id(&ea[i]),
                    ea[i],
                    id(&eb[i]),
                    eb[i]
                ),
                ds.value(),
                dd.value(),
            ));
        }
        if ea.len() != eb.len() {
            return Ok(Compared::differs(
                format!(
                    "source {} entries, destination {} (after entry {})",
                    seen + ea.len() as i64,
                    seen + eb.len() as i64,
                    seen
                ),
                ds.value(),
                dd.value(),
            ));
        }
        seen += ea.len() as i64;
        if ea.len() < chunk {
            break;
        }
        let last_id = ea.last().and_then(|e| e.as_array()).and_then(|f| f.first()).and_then(Value::as_bytes);
        start = last_id.and_then(next_stream_id).ok_or_else(|| src.unexpected("XRANGE", key, &a))?;
    }
    let info = Cmd::from_bytes(vec![Bytes::from_static(b"XINFO"), Bytes::from_static(b"GROUPS"), key.clone()]);
    let (a, b) = both(src, dst, info, key).await?;
    let ga = groups(&a).ok_or_else(|| src.unexpected("XINFO GROUPS", key, &a))?;
    let gb = groups(&b).ok_or_else(|| dst.unexpected("XINFO GROUPS", key, &b))?;
    ds.add(&ga);
    dd.add(&gb);
    if ga != gb {
        let show = |g: &[Group]| {
            g.iter()
                .map(|(n, id, p)| format!("{} at {} with {p} pending", preview(n), preview(id)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Ok(Compared::differs(
            format!("consumer groups: source [{}], destination [{}]", show(&ga), show(&gb)),
            ds.value(),
            dd.value(),
        ));
    }
    Ok(Compared::equal(ds.value(), dd.value()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_step_past_the_last_one() {
        assert_eq!(next_stream_id(b"1700000000000-0").as_deref(), Some("1700000000000-1"));
        assert_eq!(next_stream_id(format!("5-{}", u64::MAX).as_bytes()).as_deref(), Some("6-0"));
        assert_eq!(next_stream_id(b"garbage"), None);
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn consumer_groups_are_read_from_xinfo() {
        let group = |name: &str, id: &str, pending: i64| {
            Value::Array(Some(vec![
                bulk("name"),
                bulk(name),
                bulk("consumers"),
                Value::Integer(1),
                bulk("pending"),
                Value::Integer(pending),
                bulk("last-delivered-id"),
                bulk(id),
            ]))
        };
        let reply = Value::Array(Some(vec![group("g2", "5-0", 0), group("g1", "3-1", 2)]));
        assert_eq!(
            groups(&reply).unwrap(),
            vec![(b"g1".to_vec(), b"3-1".to_vec(), 2), (b"g2".to_vec(), b"5-0".to_vec(), 0)]
        );
        assert_eq!(groups(&Value::Array(Some(vec![Value::Array(Some(vec![bulk("name")]))]))), None);
        let info = Value::Array(Some(vec![bulk("length"), Value::Integer(2), bulk("last-generated-id"), bulk("9-9")]));
        assert_eq!(info_field(&info, "last-generated-id"), Some(&bulk("9-9")));
    }

    #[test]
    fn digests_of_replies_follow_their_structure() {
        let mut a = OrderedDigest::default();
        let mut b = OrderedDigest::default();
        feed(&Value::Array(Some(vec![bulk("1-0"), Value::Array(Some(vec![bulk("f"), bulk("v")]))])), &mut a);
        feed(&Value::Array(Some(vec![bulk("1-0"), Value::Array(Some(vec![bulk("f"), bulk("w")]))])), &mut b);
        assert_ne!(a.value(), b.value());
    }
}
