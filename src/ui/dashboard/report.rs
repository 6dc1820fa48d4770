//! The status report the `s` key saves: plain text a DBA can attach to a
//! change ticket. Addresses and figures only; never a password.

use std::fmt::Write as _;

use super::{Dashboard, VerifyState};
use crate::headless::progress_line;
use crate::ui::format::{clock, count, human_bytes, time_of_day};

/// How many differences (and changing keys) the report lists; `shardsync
/// verify --json` lists them all.
const REPORT_DIFFERENCES: usize = 100;
/// How many of the newest events the report carries.
const REPORT_EVENTS: usize = 50;

/// `20251125-095027` (UTC), for report file names.
pub fn file_stamp(ts_ms: i64) -> String {
    let days = ts_ms.div_euclid(86_400_000);
    let (y, m, d) = crate::human::civil_from_days(days);
    format!("{y:04}{m:02}{d:02}-{}", time_of_day(ts_ms).replace(':', ""))
}

pub fn render(d: &Dashboard) -> String {
    let mut out = String::new();
    let stamp = file_stamp(d.now_ms);
    let _ = writeln!(out, "shardsync status report, task {}, {stamp} UTC", d.task.name);
    let _ = writeln!(out, "elapsed {}", clock(d.elapsed_ms() / 1000));
    let _ = writeln!(out, "destination {}", d.task.destination);
    if let Some(s) = d.snapshot.destination {
        let _ = writeln!(
            out,
            "  keys {}, used memory {}, maxmemory {}, {} ops/s",
            count(s.keys),
            human_bytes(s.used_memory),
            if s.maxmemory == 0 { "no limit".to_owned() } else { human_bytes(s.maxmemory) },
            count(s.ops_per_sec)
        );
    }
    let _ = writeln!(out, "\nshards");
    for s in &d.snapshot.shards {
        let addr = d.task.sources.iter().find(|(n, _)| *n == s.shard).map_or("?", |(_, a)| a.as_str());
        let _ = writeln!(out, "  {}  ({addr})", progress_line(s));
        if s.rdb_total.is_some() || s.rdb_bytes > 0 {
            let _ = writeln!(
                out,
                "    full copy: received {}, applied {}, of {}; full copies {}, reconnects {}",
                human_bytes(s.rdb_bytes),
                human_bytes(s.rdb_applied),
                s.rdb_total.map_or("unknown".to_owned(), human_bytes),
                s.full_syncs,
                s.reconnects
            );
        }
    }
    let synced = d.snapshot.shards.iter().filter(|s| s.is_synced()).count();
    let _ = writeln!(out, "  {synced} of {} shard(s) incremental and caught up", d.snapshot.shards.len());
    match &d.verify {
        VerifyState::Idle => {}
        VerifyState::Running { mode, progress } => {
            let _ = writeln!(
                out,
                "\nverify ({}) running: {} of {} compared",
                mode.as_str(),
                count(progress.compared),
                count(progress.total)
            );
        }
        VerifyState::Failed { mode, error } => {
            let _ = writeln!(out, "\nverify ({}) failed: {error}", mode.as_str());
        }
        VerifyState::Done(r) => {
            let result = if r.is_equal() { "equal".to_owned() } else { super::verdict(r) };
            let _ = writeln!(out, "\nverify ({}): {result}, {} keys compared", r.mode.as_str(), count(r.compared));
            for c in &r.counts {
                let _ = writeln!(
                    out,
                    "  db{}: sources {}, destination {}",
                    c.db,
                    count(c.source_total),
                    count(c.destination)
                );
            }
            for x in r.differences.iter().take(REPORT_DIFFERENCES) {
                let _ = writeln!(out, "  {}", super::render::difference_line(x, ""));
            }
            for x in r.unsettled.iter().take(REPORT_DIFFERENCES) {
                let _ = writeln!(out, "  {}", super::render::difference_line(x, " (still changing)"));
            }
        }
    }
    let _ = writeln!(out, "\nevents (newest last, times UTC)");
    for e in d.events.iter().skip(d.events.len().saturating_sub(REPORT_EVENTS)) {
        let _ = writeln!(out, "  {} {} {}", time_of_day(e.ts_ms), e.shard, e.message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_name_the_utc_date_and_time() {
        assert_eq!(file_stamp(1_764_064_227_000), "20251125-095027");
        assert_eq!(file_stamp(0), "19700101-000000");
    }
}
