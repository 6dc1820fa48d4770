//! The wall clock, in one place: [`now_ms`] is the current unix time in
//! milliseconds, as the engine stamps snapshots, alerts, checkpoints and
//! heartbeats with it, and as verify and the precheck compare TTLs.
//!
//! Code that must be testable without a clock takes `now_ms` as an argument
//! instead (the rewrite, `translate`, the dashboard), and its caller reads it
//! here.

/// The current unix time in milliseconds (0 if the system clock is set
/// before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020() {
        // 2020-01-01T00:00:00Z
        assert!(now_ms() > 1_577_836_800_000);
    }
}
