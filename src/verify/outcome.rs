//! How a key compared ([`Outcome`]) and the readings a difference is
//! recorded as (a [`Seen`] with the digests the re-check rounds compare):
//! a key missing on the destination, a type difference, a value with its
//! expiry. Shared by the batch reader (`read`) and the big-key reader
//! (`big`).

use super::content::{digest_of, KeyType};
use super::suspects::Seen;
use super::ttl::Expiry;
use super::DiffKind;

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

/// The digest of a value and its expiry, for a reading.
pub(crate) fn value_digest(value: u64, expiry: Expiry, tolerance_ms: i64) -> u64 {
    digest_of(&(value, expiry.bucket(tolerance_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
