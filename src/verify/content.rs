//! What a key holds, in a form two servers can be compared by: the key's
//! type as `TYPE` names it, and a small value in canonical form (sets and
//! hashes sorted, scores as numbers), so that encodings and versions never
//! matter. No I/O: `read` turns replies into these, `big` streams the values
//! too large for them.
//!
//! Also here: the human description of a value difference (the first
//! element that differs, previews escaped and cut), and the 64-bit digests
//! the re-check rounds use to tell a key that is still being written from
//! one that stays different.

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;

/// Bytes of a value shown in a difference's detail.
const PREVIEW_BYTES: usize = 40;

/// A key's type, as the `TYPE` command names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeyType {
    String,
    List,
    Set,
    Zset,
    Hash,
    /// Redis 5.0+.
    Stream,
    /// A module type (`ReJSON-RL`, …) or one newer than this code: compared
    /// by type and TTL only.
    Other(String),
}

impl KeyType {
    /// `None` for `none` (no such key).
    pub(crate) fn parse(reply: &str) -> Option<KeyType> {
        Some(match reply {
            "none" => return None,
            "string" => KeyType::String,
            "list" => KeyType::List,
            "set" => KeyType::Set,
            "zset" => KeyType::Zset,
            "hash" => KeyType::Hash,
            "stream" => KeyType::Stream,
            other => KeyType::Other(other.to_owned()),
        })
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            KeyType::String => "string",
            KeyType::List => "list",
            KeyType::Set => "set",
            KeyType::Zset => "zset",
            KeyType::Hash => "hash",
            KeyType::Stream => "stream",
            KeyType::Other(name) => name,
        }
    }
}

/// A whole value small enough to hold, in canonical form: equal logical
/// values are equal `Content`s whatever their encoding on either server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Content {
    String(Bytes),
    /// In list order.
    List(Vec<Bytes>),
    /// Sorted, no duplicates.
    Set(Vec<Bytes>),
    /// Sorted by field, no duplicate fields.
    Hash(Vec<(Bytes, Bytes)>),
    /// Sorted by member, no duplicate members. Scores are compared as
    /// numbers: Redis versions print the same double differently.
    Zset(Vec<(Bytes, f64)>),
}

impl Content {
    /// A set from members in any order, possibly repeated (a `SSCAN` may
    /// return a member twice).
    pub(crate) fn set(mut members: Vec<Bytes>) -> Content {
        members.sort_unstable();
        members.dedup();
        Content::Set(members)
    }

    pub(crate) fn hash(mut pairs: Vec<(Bytes, Bytes)>) -> Content {
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Content::Hash(pairs)
    }

    pub(crate) fn zset(mut pairs: Vec<(Bytes, f64)>) -> Content {
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Content::Zset(pairs)
    }

    /// A digest of the value: equal for equal contents, different (but for
    /// a 2^-64 chance) otherwise. Only the re-check rounds need it.
    pub(crate) fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        match self {
            Content::String(v) => {
                0u8.hash(&mut h);
                v.hash(&mut h);
            }
            Content::List(items) => {
                1u8.hash(&mut h);
                items.hash(&mut h);
            }
            Content::Set(members) => {
                2u8.hash(&mut h);
                members.hash(&mut h);
            }
            Content::Hash(pairs) => {
                3u8.hash(&mut h);
                pairs.hash(&mut h);
            }
            Content::Zset(pairs) => {
                4u8.hash(&mut h);
                for (member, score) in pairs {
                    member.hash(&mut h);
                    score_bits(*score).hash(&mut h);
                }
            }
        }
        h.finish()
    }
}

/// `-0` and `0` are the same score to Redis (`ZSCORE` prints `0` for both
/// in some versions, `-0` in others).
pub(crate) fn score_bits(score: f64) -> u64 {
    if score == 0.0 {
        0
    } else {
        score.to_bits()
    }
}

/// Parses a score as Redis prints it (`1.5`, `inf`, `-inf`,
/// `0.10000000000000001`).
pub(crate) fn parse_score(raw: &[u8]) -> Option<f64> {
    std::str::from_utf8(raw).ok()?.trim().parse().ok()
}

/// Why two values of the same type differ, for the report (without the
/// `value: ` prefix); `None` when they are equal.
pub(crate) fn value_difference(src: &Content, dst: &Content) -> Option<String> {
    match (src, dst) {
        (Content::String(a), Content::String(b)) => string_difference(a, b, 0),
        (Content::List(a), Content::List(b)) => list_difference(a, b, 0),
        (Content::Set(a), Content::Set(b)) => set_difference(a, b),
        (Content::Hash(a), Content::Hash(b)) => hash_difference(a, b),
        (Content::Zset(a), Content::Zset(b)) => zset_difference(a, b),
        (a, b) => Some(format!("source {}, destination {}", a.kind(), b.kind())),
    }
}

impl Content {
    fn kind(&self) -> &'static str {
        match self {
            Content::String(_) => "string",
            Content::List(_) => "list",
            Content::Set(_) => "set",
            Content::Hash(_) => "hash",
            Content::Zset(_) => "zset",
        }
    }
}

/// An element or a piece of a value for a message: escaped, quoted, cut.
pub(crate) fn preview(bytes: &[u8]) -> String {
    format!("\"{}\"", crate::display::escape_preview(bytes, PREVIEW_BYTES))
}

/// `a` and `b` are the bytes from `offset` of two strings (a whole string,
/// or one chunk of a long one).
pub(crate) fn string_difference(a: &[u8], b: &[u8], offset: u64) -> Option<String> {
    if a == b {
        return None;
    }
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    if offset == 0 && a.len() != b.len() {
        return Some(format!("source {} bytes {}, destination {} bytes {}", a.len(), preview(a), b.len(), preview(b)));
    }
    Some(format!(
        "first difference at byte {}: source {}, destination {}",
        offset + at as u64,
        preview(&a[at..]),
        preview(&b[at..])
    ))
}

/// Two runs of list elements starting at index `offset`.
pub(crate) fn list_difference(a: &[Bytes], b: &[Bytes], offset: u64) -> Option<String> {
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        return Some(format!(
            "element {} differs: source {}, destination {}",
            offset + i as u64,
            preview(&a[i]),
            preview(&b[i])
        ));
    }
    (a.len() != b.len())
        .then(|| format!("source {} elements, destination {}", offset + a.len() as u64, offset + b.len() as u64))
}

/// Walks two sorted, deduplicated sequences of `(member, value)` and
/// returns the first member whose presence or value differs.
fn first_sorted_difference<'a, V: PartialEq>(a: &'a [(Bytes, V)], b: &'a [(Bytes, V)]) -> Option<SortedDiff<'a, V>> {
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return None,
            (Some((m, _)), None) => return Some(SortedDiff::OnlySource(m)),
            (None, Some((m, _))) => return Some(SortedDiff::OnlyDestination(m)),
            (Some((ma, va)), Some((mb, vb))) => match ma.cmp(mb) {
                std::cmp::Ordering::Less => return Some(SortedDiff::OnlySource(ma)),
                std::cmp::Ordering::Greater => return Some(SortedDiff::OnlyDestination(mb)),
                std::cmp::Ordering::Equal if va != vb => return Some(SortedDiff::Value(ma, va, vb)),
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
            },
        }
    }
}

enum SortedDiff<'a, V> {
    OnlySource(&'a Bytes),
    OnlyDestination(&'a Bytes),
    Value(&'a Bytes, &'a V, &'a V),
}

fn set_difference(a: &[Bytes], b: &[Bytes]) -> Option<String> {
    // Pairs with a unit value reuse the sorted walk.
    let pa: Vec<(Bytes, ())> = a.iter().map(|m| (m.clone(), ())).collect();
    let pb: Vec<(Bytes, ())> = b.iter().map(|m| (m.clone(), ())).collect();
    let which = match first_sorted_difference(&pa, &pb)? {
        SortedDiff::OnlySource(m) => format!("member {} only on the source", preview(m)),
        SortedDiff::OnlyDestination(m) => format!("member {} only on the destination", preview(m)),
        SortedDiff::Value(..) => return None,
    };
    Some(format!("{which} (source {} members, destination {})", a.len(), b.len()))
}

fn hash_difference(a: &[(Bytes, Bytes)], b: &[(Bytes, Bytes)]) -> Option<String> {
    let which = match first_sorted_difference(a, b)? {
        SortedDiff::OnlySource(f) => format!("field {} only on the source", preview(f)),
        SortedDiff::OnlyDestination(f) => format!("field {} only on the destination", preview(f)),
        SortedDiff::Value(f, x, y) => {
            format!("field {}: source {}, destination {}", preview(f), preview(x), preview(y))
        }
    };
    Some(format!("{which} (source {} fields, destination {})", a.len(), b.len()))
}

fn zset_difference(a: &[(Bytes, f64)], b: &[(Bytes, f64)]) -> Option<String> {
    let ka: Vec<(Bytes, u64)> = a.iter().map(|(m, s)| (m.clone(), score_bits(*s))).collect();
    let kb: Vec<(Bytes, u64)> = b.iter().map(|(m, s)| (m.clone(), score_bits(*s))).collect();
    let which = match first_sorted_difference(&ka, &kb)? {
        SortedDiff::OnlySource(m) => format!("member {} only on the source", preview(m)),
        SortedDiff::OnlyDestination(m) => format!("member {} only on the destination", preview(m)),
        SortedDiff::Value(m, x, y) => format!(
            "member {}: source score {}, destination score {}",
            preview(m),
            f64::from_bits(*x),
            f64::from_bits(*y)
        ),
    };
    Some(format!("{which} (source {} members, destination {})", a.len(), b.len()))
}

/// An order-independent digest of elements seen in pieces (a big set, hash
/// or zset read with `SSCAN`): the wrapping sum of each element's hash. A
/// `SSCAN` that returns an element twice (the set was resized while being
/// scanned, so it was written) changes the sum: the key then counts as
/// changing, which is the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UnorderedDigest(u64);

impl UnorderedDigest {
    pub(crate) fn add(&mut self, item: &impl Hash) {
        let mut h = DefaultHasher::new();
        item.hash(&mut h);
        self.0 = self.0.wrapping_add(h.finish());
    }

    pub(crate) fn value(self) -> u64 {
        self.0
    }
}

/// A digest of a sequence seen in pieces (a long string or list, a stream).
#[derive(Debug, Clone)]
pub(crate) struct OrderedDigest(DefaultHasher);

impl Default for OrderedDigest {
    fn default() -> Self {
        OrderedDigest(DefaultHasher::new())
    }
}

impl OrderedDigest {
    pub(crate) fn add(&mut self, item: &impl Hash) {
        item.hash(&mut self.0);
    }

    pub(crate) fn value(&self) -> u64 {
        self.0.finish()
    }
}

/// A digest of anything hashable (a type name, a difference's detail).
pub(crate) fn digest_of(item: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    item.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn bs(items: &[&str]) -> Vec<Bytes> {
        items.iter().map(|s| b(s)).collect()
    }

    #[test]
    fn types_parse_and_name_themselves() {
        assert_eq!(KeyType::parse("none"), None);
        for name in ["string", "list", "set", "zset", "hash", "stream", "ReJSON-RL"] {
            assert_eq!(KeyType::parse(name).unwrap().name(), name);
        }
        assert_eq!(KeyType::parse("ReJSON-RL"), Some(KeyType::Other("ReJSON-RL".into())));
    }

    #[test]
    fn canonical_forms_ignore_order_and_repeats() {
        assert_eq!(Content::set(bs(&["b", "a", "b"])), Content::set(bs(&["a", "b"])));
        assert_eq!(
            Content::hash(vec![(b("f2"), b("2")), (b("f1"), b("1")), (b("f2"), b("2"))]),
            Content::hash(vec![(b("f1"), b("1")), (b("f2"), b("2"))])
        );
        let z1 = Content::zset(vec![(b("m"), 0.1), (b("a"), f64::INFINITY)]);
        let z2 = Content::zset(vec![(b("a"), parse_score(b"inf").unwrap()), (b("m"), parse_score(b"0.1").unwrap())]);
        assert_eq!(z1, z2);
        assert_eq!(value_difference(&z1, &z2), None);
        assert_eq!(z1.digest(), z2.digest());
    }

    #[test]
    fn scores_compare_as_numbers_whatever_the_version_printed() {
        // Redis 6 prints %.17g, 7.2 the shortest form that reads back.
        assert_eq!(parse_score(b"0.10000000000000001"), parse_score(b"0.1"));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(score_bits(-0.0), score_bits(0.0));
        assert_eq!(parse_score(b"x"), None);
        let a = Content::zset(vec![(b("m"), -0.0)]);
        let c = Content::zset(vec![(b("m"), 0.0)]);
        assert_eq!(value_difference(&a, &c), None);
        assert_eq!(a.digest(), c.digest());
    }

    #[test]
    fn string_differences_say_where() {
        assert_eq!(string_difference(b"abc", b"abc", 0), None);
        assert_eq!(
            string_difference(b"abc", b"abd", 0).unwrap(),
            r#"first difference at byte 2: source "c", destination "d""#
        );
        assert_eq!(string_difference(b"ab", b"abc", 0).unwrap(), r#"source 2 bytes "ab", destination 3 bytes "abc""#);
        // A chunk of a long string: the offset is the string's.
        assert!(string_difference(b"xyz", b"xYz", 1 << 20).unwrap().starts_with("first difference at byte 1048577"));
        let long = vec![b'a'; 100];
        assert!(string_difference(&long, b"\x00\r\n", 0).unwrap().contains(r#"destination 3 bytes "\x00\r\n""#));
        assert!(string_difference(&long, b"b", 0).unwrap().contains("…"));
    }

    #[test]
    fn list_differences_name_the_element() {
        let a = bs(&["x", "y", "z"]);
        assert_eq!(list_difference(&a, &a, 0), None);
        assert_eq!(
            list_difference(&a, &bs(&["x", "Y", "z"]), 1000).unwrap(),
            r#"element 1001 differs: source "y", destination "Y""#
        );
        assert_eq!(list_difference(&a, &bs(&["x", "y"]), 0).unwrap(), "source 3 elements, destination 2");
        assert_ne!(Content::List(a.clone()).digest(), Content::List(bs(&["y", "x", "z"])).digest());
    }

    #[test]
    fn set_hash_and_zset_differences_name_the_member() {
        let d = value_difference(&Content::set(bs(&["a", "b"])), &Content::set(bs(&["a", "c"]))).unwrap();
        assert_eq!(d, r#"member "b" only on the source (source 2 members, destination 2)"#);
        let d = value_difference(&Content::set(bs(&["a", "b"])), &Content::set(bs(&["a", "b", "c"]))).unwrap();
        assert_eq!(d, r#"member "c" only on the destination (source 2 members, destination 3)"#);

        let h1 = Content::hash(vec![(b("f"), b("1")), (b("g"), b("x"))]);
        let h2 = Content::hash(vec![(b("f"), b("2")), (b("g"), b("x"))]);
        assert_eq!(
            value_difference(&h1, &h2).unwrap(),
            r#"field "f": source "1", destination "2" (source 2 fields, destination 2)"#
        );
        let h3 = Content::hash(vec![(b("f"), b("1"))]);
        assert!(value_difference(&h1, &h3).unwrap().starts_with(r#"field "g" only on the source"#));
        assert_ne!(h1.digest(), h2.digest());

        let z1 = Content::zset(vec![(b("m"), 1.5)]);
        let z2 = Content::zset(vec![(b("m"), 2.0)]);
        assert_eq!(
            value_difference(&z1, &z2).unwrap(),
            r#"member "m": source score 1.5, destination score 2 (source 1 members, destination 1)"#
        );
        assert_ne!(z1.digest(), z2.digest());
    }

    #[test]
    fn digests_tell_types_and_values_apart() {
        let s = Content::String(b("a"));
        assert_eq!(s.digest(), Content::String(b("a")).digest());
        assert_ne!(s.digest(), Content::String(b("b")).digest());
        assert_ne!(s.digest(), Content::List(bs(&["a"])).digest());
        assert_ne!(Content::set(bs(&["a"])).digest(), Content::List(bs(&["a"])).digest());
    }

    #[test]
    fn unordered_digest_ignores_order_but_not_repeats() {
        let mut x = UnorderedDigest::default();
        let mut y = UnorderedDigest::default();
        for m in ["a", "b", "c"] {
            x.add(&m);
        }
        for m in ["c", "a", "b"] {
            y.add(&m);
        }
        assert_eq!(x, y);
        y.add(&"a");
        assert_ne!(x, y);
        let mut o1 = OrderedDigest::default();
        let mut o2 = OrderedDigest::default();
        o1.add(&"ab");
        o1.add(&"c");
        o2.add(&"a");
        o2.add(&"bc");
        assert_ne!(o1.value(), o2.value(), "piece boundaries are part of an ordered digest of elements");
    }
}
