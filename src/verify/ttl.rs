//! Expiries: what a `PTTL` reply says, turned into an absolute time so that
//! two readings taken at different moments compare, and the rule that makes
//! two expiries "equal" (within a tolerance).
//!
//! The absolute expiry is the local clock at the reply plus the remaining
//! milliseconds. Source and destination are read at slightly different
//! moments and the sync itself takes time to apply an `EXPIRE`, hence the
//! tolerance (2 s by default).

/// A key's expiry as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No TTL (`PTTL` = -1).
    Persistent,
    /// Expires at `at_ms` (unix ms, local clock); `remaining_ms` as read.
    At { at_ms: i64, remaining_ms: i64 },
}

/// What a `PTTL` reply says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PttlReading {
    /// `-2`: no such key.
    Missing,
    Exists(Expiry),
}

/// Interprets a `PTTL` reply read at local time `now_ms`.
pub(crate) fn from_pttl(pttl: i64, now_ms: i64) -> PttlReading {
    match pttl {
        -2 => PttlReading::Missing,
        // -1; older servers also answer -1 for a missing key, which the
        // value read then tells apart.
        p if p < 0 => PttlReading::Exists(Expiry::Persistent),
        p => PttlReading::Exists(Expiry::At { at_ms: now_ms.saturating_add(p), remaining_ms: p }),
    }
}

impl Expiry {
    fn show(self) -> String {
        match self {
            Expiry::Persistent => "none".to_owned(),
            Expiry::At { remaining_ms, .. } => format!("{remaining_ms} ms"),
        }
    }

    /// For digests: whether there is a TTL and, rounded to `tolerance_ms`,
    /// when it ends. A key whose TTL keeps being pushed back changes digest;
    /// one left alone does not (but for a reading that straddles a rounding
    /// boundary, which at worst delays a verdict by a round).
    pub(crate) fn bucket(self, tolerance_ms: i64) -> i64 {
        match self {
            Expiry::Persistent => -1,
            Expiry::At { at_ms, .. } => at_ms / tolerance_ms.max(1),
        }
    }
}

/// The TTL difference between source and destination, for the report
/// (`ttl: source 120000 ms, destination none`); `None` when both have no
/// TTL, or both have one and they end within `tolerance_ms`.
pub(crate) fn ttl_difference(src: Expiry, dst: Expiry, tolerance_ms: i64) -> Option<String> {
    match (src, dst) {
        (Expiry::Persistent, Expiry::Persistent) => None,
        (Expiry::At { at_ms: a, .. }, Expiry::At { at_ms: b, .. }) => {
            let apart = (a - b).abs();
            (apart > tolerance_ms).then(|| {
                format!(
                    "ttl: source {}, destination {} ({apart} ms apart, tolerance {tolerance_ms} ms)",
                    src.show(),
                    dst.show()
                )
            })
        }
        _ => Some(format!("ttl: source {}, destination {}", src.show(), dst.show())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pttl_replies() {
        assert_eq!(from_pttl(-2, 1000), PttlReading::Missing);
        assert_eq!(from_pttl(-1, 1000), PttlReading::Exists(Expiry::Persistent));
        assert_eq!(from_pttl(500, 1000), PttlReading::Exists(Expiry::At { at_ms: 1500, remaining_ms: 500 }));
    }

    fn at(at_ms: i64, remaining_ms: i64) -> Expiry {
        Expiry::At { at_ms, remaining_ms }
    }

    #[test]
    fn ttls_within_the_tolerance_are_equal() {
        assert_eq!(ttl_difference(Expiry::Persistent, Expiry::Persistent, 2000), None);
        // Same expiry read 1.5 s apart: the remaining times differ, the ends do not.
        assert_eq!(ttl_difference(at(100_000, 60_000), at(100_000, 58_500), 2000), None);
        assert_eq!(ttl_difference(at(100_000, 60_000), at(101_999, 60_000), 2000), None);
        assert_eq!(ttl_difference(at(100_000, 60_000), at(102_000, 60_000), 2000), None);
        assert_eq!(
            ttl_difference(at(100_000, 60_000), at(102_001, 62_001), 2000).unwrap(),
            "ttl: source 60000 ms, destination 62001 ms (2001 ms apart, tolerance 2000 ms)"
        );
    }

    #[test]
    fn a_ttl_on_one_side_only_is_a_difference() {
        assert_eq!(
            ttl_difference(at(100_000, 120_000), Expiry::Persistent, 2000).unwrap(),
            "ttl: source 120000 ms, destination none"
        );
        assert_eq!(
            ttl_difference(Expiry::Persistent, at(100_000, 5), 1_000_000).unwrap(),
            "ttl: source none, destination 5 ms"
        );
    }

    #[test]
    fn buckets_follow_the_expiry() {
        assert_eq!(Expiry::Persistent.bucket(2000), -1);
        assert_eq!(at(10_500, 1).bucket(2000), at(11_999, 9).bucket(2000));
        assert_ne!(at(10_500, 1).bucket(2000), at(20_500, 1).bucket(2000));
    }
}
