//! Reading a batch of keys from both sides and judging each: the hot path.
//!
//! An [`Endpoint`] (`endpoint`) is one connection with its DB selected and
//! the server's version known. [`compare_batch`] takes the keys of one
//! `SCAN` reply:
//!
//! * keys mode: one round, `TYPE` of every key on both sides at once;
//! * full mode: a round of `TYPE` and `PTTL` on the source, then, per
//!   slice of `pipeline_keys` keys, a bounded read of the whole value on
//!   both sides at once, with `PTTL` on the destination
//!   (`GETRANGE 0 <small_string_bytes-1>`, `LRANGE 0 <small_elements-1>`,
//!   `SRANDMEMBER`/`HRANDFIELD <small_elements>`, `ZSCAN 0 COUNT
//!   <small_elements>`: see [`WholeRead`]). A reply that shows the value is
//!   longer than that (a full `GETRANGE` or `LRANGE`, `small_elements`
//!   random members, a `SCAN` cursor not back to 0) sends the key to `big`,
//!   as do streams and module types. The destination is never asked
//!   `TYPE`: a `WRONGTYPE` reply, or nothing where the source has
//!   something, says it.
//!
//! Each key ends as an [`Outcome`]; a difference carries the digests the
//! re-check rounds compare (`suspects`).

use bytes::Bytes;

use super::big;
use super::content::{parse_score, value_difference, Content, KeyType};
use super::endpoint::{into_bulks, key_cmd, odd_items, pairs, parse_pttl, parse_type, scan_reply, Endpoint};
use super::outcome::{missing_reading, type_reading, value_digest, Outcome};
use super::suspects::Seen;
use super::ttl::{ttl_difference, Expiry, PttlReading};
use super::{DiffKind, VerifyError, VerifyMode, VerifyOptions};
use crate::clock::now_ms;
use crate::dest::RedisVersion;
use crate::resp::{Cmd, Value};

/// Compares `keys` of one source DB with the destination.
pub(crate) async fn compare_batch(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    keys: &[Bytes],
    opts: &VerifyOptions,
) -> Result<Vec<Outcome>, VerifyError> {
    let n = keys.len();
    if opts.mode == VerifyMode::Keys {
        let types: Vec<Cmd> = keys.iter().map(|k| key_cmd(b"TYPE", k)).collect();
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
    // TYPE and PTTL together, so that the source looks each key up while
    // it is still in its CPU cache from the SCAN just before (when the
    // caller scanned): 0.8 and 0.1 µs a call instead of 1.0 and 1.0
    // (`INFO commandstats` on the benchmark dataset). Betting on a string
    // and sending the string read along would save a few percent more, but
    // makes the source answer WRONGTYPE for every other key: error
    // counters an operator may be watching on a production master.
    let mut cmds = Vec::with_capacity(2 * n);
    for key in keys {
        cmds.push(key_cmd(b"TYPE", key));
        cmds.push(key_cmd(b"PTTL", key));
    }
    let replies = src.pipeline(&cmds, || format!("reading the types and TTLs of {n} keys")).await?;
    let now = now_ms();
    drop(cmds);
    let mut src_reads = Vec::with_capacity(n);
    let mut replies = replies.into_iter();
    for key in keys {
        let (Some(ty), Some(pttl)) = (replies.next(), replies.next()) else {
            return Err(src.unexpected("PTTL", key, &Value::Array(None)));
        };
        src_reads.push(match (parse_type(src, key, &ty)?, parse_pttl(src, key, &pttl, now)?) {
            (Some(ty), PttlReading::Exists(expiry)) => Some(SourceRead { ty, expiry }),
            // Gone between the SCAN and now.
            _ => None,
        });
    }
    drop(replies);
    let mut out = Vec::with_capacity(n);
    let mut big_keys = Vec::new();
    let step = opts.pipeline_keys.max(1);
    for start in (0..n).step_by(step) {
        let end = (start + step).min(n);
        read_values(src, dst, &keys[start..end], &src_reads[start..end], opts, &mut out, &mut big_keys).await?;
    }
    // Big keys one at a time, a chunk at a time: their memory is bounded
    // by the chunk size, not the key's.
    for i in big_keys {
        out[i] = big::compare_key(src, dst, &keys[i], opts).await?;
    }
    Ok(out)
}

/// What the first round read from the source about a key.
struct SourceRead {
    ty: KeyType,
    expiry: Expiry,
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

/// How a small value is read whole, by type and server version. Each read
/// is bounded, and its reply says whether it holds the whole value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WholeRead {
    /// `GETRANGE 0 <limit-1>`: whole when shorter than the limit.
    StringRange,
    /// `LRANGE 0 <count-1>`: whole when fewer than `count` elements.
    ListRange,
    /// `SRANDMEMBER k <count>`, `HRANDFIELD k <count> WITHVALUES` (6.2+):
    /// with a positive count at least the size, Redis returns the whole
    /// collection, iterating it directly: under half of what a `SSCAN` or
    /// `HSCAN` of the same small key costs it (`INFO commandstats` on the
    /// benchmark dataset: 3.0 µs against 6.9, 1.9 against 4.3). Whole when
    /// fewer than `count` elements came back.
    Random(&'static [u8]),
    /// `SSCAN`/`HSCAN`/`ZSCAN k 0 COUNT <count>`: whole when the cursor is
    /// back to 0. Zsets always: `ZRANDMEMBER ... WITHSCORES` formats every
    /// score as a double (8.4 µs a call against `ZSCAN`'s 4.9), where
    /// `ZSCAN` of a compact zset returns the stored text.
    Scan(&'static [u8]),
}

/// `HRANDFIELD`: Redis 6.2.
const RANDOM_FIELDS: RedisVersion = RedisVersion::new(6, 2, 0);

impl WholeRead {
    /// `None` for the types always compared by `big`.
    fn of(ty: &KeyType, version: RedisVersion) -> Option<WholeRead> {
        Some(match ty {
            KeyType::String => WholeRead::StringRange,
            KeyType::List => WholeRead::ListRange,
            KeyType::Set => WholeRead::Random(b"SRANDMEMBER"),
            KeyType::Hash if version >= RANDOM_FIELDS => WholeRead::Random(b"HRANDFIELD"),
            KeyType::Hash => WholeRead::Scan(b"HSCAN"),
            KeyType::Zset => WholeRead::Scan(b"ZSCAN"),
            KeyType::Stream | KeyType::Other(_) => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            WholeRead::StringRange => "GETRANGE",
            WholeRead::ListRange => "LRANGE",
            WholeRead::Random(name) | WholeRead::Scan(name) => std::str::from_utf8(name).unwrap_or("SCAN"),
        }
    }
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

    fn cmd(&self, read: WholeRead, key: &Bytes) -> Cmd {
        let name = |n: &'static [u8]| Bytes::from_static(n);
        let zero = || Bytes::from_static(b"0");
        Cmd::from_bytes(match read {
            WholeRead::StringRange => vec![name(b"GETRANGE"), key.clone(), zero(), self.string_end.clone()],
            WholeRead::ListRange => vec![name(b"LRANGE"), key.clone(), zero(), self.list_end.clone()],
            WholeRead::Random(n) if n == b"HRANDFIELD" => {
                vec![name(n), key.clone(), self.count.clone(), name(b"WITHVALUES")]
            }
            WholeRead::Random(n) => vec![name(n), key.clone(), self.count.clone()],
            WholeRead::Scan(n) => vec![name(n), key.clone(), zero(), name(b"COUNT"), self.count.clone()],
        })
    }
}

/// Interprets the reply to the read `WholeRead::of(ty, ep.version)`.
fn parse_fetch(
    ep: &Endpoint,
    ty: &KeyType,
    key: &[u8],
    reply: Value,
    opts: &VerifyOptions,
) -> Result<Fetch, VerifyError> {
    let Some(read) = WholeRead::of(ty, ep.version) else { return Ok(Fetch::Partial) };
    if reply.error_code() == Some("WRONGTYPE") {
        return Ok(Fetch::WrongType);
    }
    let bad = |reply: &Value| ep.unexpected(read.name(), key, reply);
    let small = opts.small_elements.max(1);
    let items = match (read, reply) {
        (WholeRead::StringRange, Value::Bulk(Some(b))) if b.len() >= opts.small_string_bytes => {
            return Ok(Fetch::Partial)
        }
        (WholeRead::StringRange, Value::Bulk(Some(b))) => return Ok(Fetch::Whole(Content::String(b))),
        (WholeRead::StringRange, other) => return Err(bad(&other)),
        (WholeRead::ListRange | WholeRead::Random(_), reply) => into_bulks(reply).map_err(|v| bad(&v))?,
        (WholeRead::Scan(_), reply) => {
            let (cursor, items) = scan_reply(reply).map_err(|v| bad(&v))?;
            if &cursor[..] != b"0" {
                return Ok(Fetch::Partial);
            }
            items
        }
    };
    if items.is_empty() {
        return Ok(Fetch::Empty);
    }
    // Pairs for hashes and zsets: `count` elements are `2 * count` items.
    let per_element = if matches!(ty, KeyType::Hash | KeyType::Zset) { 2 } else { 1 };
    if matches!(read, WholeRead::ListRange | WholeRead::Random(_)) && items.len() >= small * per_element {
        return Ok(Fetch::Partial);
    }
    Ok(Fetch::Whole(match ty {
        KeyType::List => Content::List(items),
        KeyType::Set => Content::set(items),
        KeyType::Hash => {
            let n = items.len();
            Content::hash(pairs(items).ok_or_else(|| bad(&odd_items(n)))?)
        }
        _ => {
            let n = items.len();
            let mut scored = Vec::with_capacity(n / 2);
            for (member, score) in pairs(items).ok_or_else(|| bad(&odd_items(n)))? {
                let parsed = parse_score(&score).ok_or_else(|| bad(&Value::Bulk(Some(score.clone()))))?;
                scored.push((member, parsed));
            }
            Content::zset(scored)
        }
    }))
}

/// `PTTL` and the bounded value read of one slice of keys, both sides at
/// once; appends one outcome per key (a placeholder for big keys, whose
/// index goes to `big_keys`).
async fn read_values(
    src: &mut Endpoint,
    dst: &mut Endpoint,
    keys: &[Bytes],
    reads: &[Option<SourceRead>],
    opts: &VerifyOptions,
    out: &mut Vec<Outcome>,
    big_keys: &mut Vec<usize>,
) -> Result<(), VerifyError> {
    // Per key: the value read; on the destination PTTL first. The servers
    // may differ in version, hence in the commands they get.
    let args = ReadArgs::new(opts);
    let mut src_cmds = Vec::with_capacity(keys.len());
    let mut dst_cmds = Vec::with_capacity(keys.len() * 2);
    for (key, read) in keys.iter().zip(reads.iter()) {
        if let Some(SourceRead { ty, .. }) = read {
            dst_cmds.push(key_cmd(b"PTTL", key));
            if let Some(whole) = WholeRead::of(ty, src.version) {
                src_cmds.push(args.cmd(whole, key));
            }
            if let Some(whole) = WholeRead::of(ty, dst.version) {
                dst_cmds.push(args.cmd(whole, key));
            }
        }
    }
    let n = keys.len();
    let during = || format!("reading the values of {n} keys");
    let (s, d) = tokio::join!(src.pipeline(&src_cmds, during), dst.pipeline(&dst_cmds, during));
    let now = now_ms();
    let (s, d) = (s?, d?);
    drop((src_cmds, dst_cmds));
    let (mut s, mut d) = (s.into_iter(), d.into_iter());
    let tolerance = opts.ttl_tolerance.as_millis() as i64;
    let mut wrong_type = Vec::new();
    for (key, read) in keys.iter().zip(reads) {
        let Some(SourceRead { ty, expiry: s_exp }) = read else {
            out.push(Outcome::Vanished);
            continue;
        };
        let s_exp = *s_exp;
        let short = || VerifyError::Reply {
            side: src.side.clone(),
            command: "a pipeline".into(),
            during: "reading values".into(),
            got: "fewer replies than commands".into(),
        };
        let d_pttl = parse_pttl(dst, key, &d.next().ok_or_else(short)?, now)?;
        let s_val = match WholeRead::of(ty, src.version) {
            Some(_) => parse_fetch(src, ty, key, s.next().ok_or_else(short)?, opts)?,
            None => Fetch::Partial,
        };
        let d_val = match WholeRead::of(ty, dst.version) {
            Some(_) => parse_fetch(dst, ty, key, d.next().ok_or_else(short)?, opts)?,
            None => Fetch::Partial,
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
}
