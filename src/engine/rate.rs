//! The writer's optional rate limits (`max_keys_per_sec`,
//! `max_bytes_per_sec`): a virtual-clock token bucket per limit.
//!
//! Each admitted batch moves a virtual clock forward by its cost divided by
//! the rate; the applier sleeps while that clock runs ahead of real time by
//! more than the allowed burst. Idle time earns at most one burst, so a
//! pause is not followed by an unlimited flood.

use std::time::{Duration, Instant};

/// The burst a limit allows: a tenth of a second's worth.
const BURST: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Bucket {
    per_sec: u64,
    /// When the units admitted so far would have been sent at exactly the
    /// rate.
    clock: Instant,
}

impl Bucket {
    fn charge(&mut self, units: u64, now: Instant) -> Duration {
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        if self.clock < earliest {
            self.clock = earliest;
        }
        self.clock += Duration::from_secs_f64(units as f64 / self.per_sec as f64);
        self.clock.saturating_duration_since(now + BURST)
    }
}

/// Keys (or stream commands) and bytes per second; `0` means no limit.
#[derive(Debug, Default)]
pub struct RateLimit {
    keys: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl RateLimit {
    pub fn new(keys_per_sec: u64, bytes_per_sec: u64) -> Self {
        let bucket = |per_sec| (per_sec > 0).then(|| Bucket { per_sec, clock: Instant::now() });
        RateLimit { keys: bucket(keys_per_sec), bytes: bucket(bytes_per_sec) }
    }

    pub fn is_limited(&self) -> bool {
        self.keys.is_some() || self.bytes.is_some()
    }

    /// The most keys a batch should hold so one batch does not take longer
    /// than a burst to admit (smooth rather than stop-and-go).
    pub fn batch_keys(&self) -> Option<usize> {
        self.keys.as_ref().map(|b| ((b.per_sec as f64 * BURST.as_secs_f64()) as usize).max(1))
    }

    /// How long to wait before sending `keys` keys and `bytes` bytes.
    pub fn charge(&mut self, keys: u64, bytes: u64) -> Duration {
        let now = Instant::now();
        let k = self.keys.as_mut().map_or(Duration::ZERO, |b| b.charge(keys, now));
        let b = self.bytes.as_mut().map_or(Duration::ZERO, |b| b.charge(bytes, now));
        k.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_never_waits() {
        let mut r = RateLimit::new(0, 0);
        assert!(!r.is_limited());
        assert_eq!(r.charge(1_000_000, 1 << 30), Duration::ZERO);
    }

    #[test]
    fn the_wait_grows_with_what_was_sent_beyond_the_burst() {
        let mut r = RateLimit::new(100, 0);
        // A tenth of a second's worth passes at once.
        assert_eq!(r.charge(10, 0), Duration::ZERO);
        // 100 more keys at 100/s: about a second.
        let wait = r.charge(100, 0);
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_millis(1000), "{wait:?}");
        assert_eq!(r.batch_keys(), Some(10));
    }

    #[test]
    fn the_slower_limit_decides() {
        let mut r = RateLimit::new(1_000_000, 1000);
        let wait = r.charge(1, 2100);
        assert!(wait > Duration::from_millis(1900), "{wait:?}");
    }
}
