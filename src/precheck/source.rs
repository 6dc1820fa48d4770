//! The checks of one source master: reachable, a Redis-Server, a master,
//! PSYNC available, backlog and replica buffer large enough for its write
//! rate, heartbeat key writable.
//!
//! The write rate is measured, not guessed: `master_repl_offset` counts
//! every byte of the replication stream, so two readings a second apart
//! give the bytes per second a replica must keep up with.

use std::time::{Duration, Instant};

use super::{group_digits, reachable, source_subject, CheckResult, Facts, PrecheckOptions};
use crate::config::{SourceConfig, TaskConfig};
use crate::dest::RedisVersion;
use crate::probe::{self, config_size, human_bytes, ProbeError, Role, ServerFacts, ServerMode};
use crate::resp::info::info_field;
use crate::resp::{Cmd, Value};

/// The copy rate the estimates assume, in bytes of the sources' dataset per
/// second. BENCHMARKS.md measures ~80 MB/s (437 MB of `used_memory` copied
/// in 5.3 s on 2 cores); half of that leaves room for slower destinations
/// and busier hosts.
pub(super) const COPY_BYTES_PER_SEC: u64 = 40 * 1024 * 1024;

/// The shortest window the backlog must cover: a link that drops during
/// the incremental phase reconnects within the engine's longest backoff
/// (30 s) and must still find its offset in the backlog.
const MIN_WINDOW_SECS: u64 = 30;

const PSYNC_SINCE: RedisVersion = RedisVersion::new(2, 8, 0);

pub(super) async fn checks(
    task: &TaskConfig,
    opts: &PrecheckOptions,
    source: &SourceConfig,
    facts: &Result<ServerFacts, ProbeError>,
    all: &Facts,
) -> Vec<CheckResult> {
    let subject = source_subject(source);
    let mut out = Vec::new();
    let password_key = format!("`password` of source {}", source.name);
    if !reachable(("source.reachable", "source.redis"), &subject, &password_key, facts, &mut out) {
        return out;
    }
    let Ok(f) = facts else { return out };
    out.push(role(&subject, f));
    out.push(psync(&subject, f, replconf_refused(source).await));
    // The heartbeat is a write: it must not count in the rate.
    let rate = write_rate(source, opts.rate_sample).await;
    let heartbeat = heartbeat(task, source).await;
    out.push(backlog(&subject, f, rate, copy_estimate_secs(all)));
    out.push(heartbeat_check(&subject, &task.sync.heartbeat_key, heartbeat));
    out
}

fn role(subject: &str, f: &ServerFacts) -> CheckResult {
    const TITLE: &str = "a master";
    let keys = group_digits(f.total_keys());
    match (&f.role, f.mode) {
        (Role::Master, ServerMode::Standalone) => {
            CheckResult::pass("source.role", subject, TITLE, format!("master, {keys} keys"))
        }
        (Role::Master, mode) => CheckResult::warn(
            "source.role",
            subject,
            TITLE,
            format!("master in {mode} mode, {keys} keys: a twemproxy shard is normally a standalone server"),
            "check that this is the server you mean; its keys are copied as any other".to_owned(),
        ),
        (Role::Replica { master, link_up }, _) => CheckResult::warn(
            "source.role",
            subject,
            TITLE,
            format!(
                "replica of {master} (link {}), {keys} keys: the copy works, but it trails its master and the \
                 migration procedure copies the masters",
                if *link_up { "up" } else { "DOWN" }
            ),
            format!("give the master {master} instead, unless copying from the replica is intended"),
        ),
    }
}

fn psync(subject: &str, f: &ServerFacts, replconf_refused: Option<String>) -> CheckResult {
    const TITLE: &str = "PSYNC available";
    let version = f.redis_version();
    if version < PSYNC_SINCE {
        return CheckResult::fail(
            "source.psync",
            subject,
            TITLE,
            format!("{} has no PSYNC (it came in Redis 2.8)", f.server),
            "upgrade the source to Redis 2.8 or later".to_owned(),
        );
    }
    if let Some(why) = replconf_refused {
        return CheckResult::fail(
            "source.psync",
            subject,
            TITLE,
            format!("this user may not replicate: REPLCONF was refused ({why})"),
            "grant it: ACL SETUSER <user> +psync +replconf +ping (or use a user that may)".to_owned(),
        );
    }
    match f.psync_command {
        Some(true) => CheckResult::pass("source.psync", subject, TITLE, format!("{}, PSYNC enabled", f.server)),
        Some(false) => CheckResult::fail(
            "source.psync",
            subject,
            TITLE,
            "PSYNC is renamed or disabled on this server (COMMAND INFO psync answers nothing)".to_owned(),
            "remove `rename-command PSYNC` (and SYNC) from its redis.conf and restart it, or give a replica where \
             PSYNC is enabled"
                .to_owned(),
        ),
        None => CheckResult::warn(
            "source.psync",
            subject,
            TITLE,
            format!("{} has PSYNC, but COMMAND INFO is refused, so a rename cannot be ruled out", f.server),
            "make sure PSYNC is not renamed in its redis.conf (`rename-command PSYNC`)".to_owned(),
        ),
    }
}

/// Whether the ACL lets this user replicate: `REPLCONF listening-port`
/// is the first step a replica takes and changes nothing on a plain
/// connection, so a `NOPERM` to it is the refusal PSYNC would meet.
async fn replconf_refused(source: &SourceConfig) -> Option<String> {
    let addr = source.addr.to_string();
    let mut conn = probe::connect(&addr, &probe::probe_options(&source.password)).await.ok()?;
    match conn.send(&Cmd::new("REPLCONF").arg("listening-port").arg("0")).await {
        Ok(Value::Error(e)) if e.starts_with("NOPERM") => Some(e),
        _ => None,
    }
}

/// A source's write rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct WriteRate {
    pub bytes_per_sec: f64,
    /// Measured on the replication stream (exact), or on all client input
    /// (no replica attached yet, so no stream to count: an upper bound).
    pub exact: bool,
}

/// The replication bytes a second from two readings of `master_repl_offset`
/// `sample` apart. A master that never had a replica keeps no backlog and
/// its offset stands still: then, if keys changed in between
/// (`rdb_changes_since_last_save`), all client input is taken as the bound.
async fn write_rate(source: &SourceConfig, sample: Duration) -> Option<WriteRate> {
    let addr = source.addr.to_string();
    let mut conn = probe::connect(&addr, &probe::probe_options(&source.password)).await.ok()?;
    let mut read = async || -> Option<(u64, u64, u64, bool)> {
        let info = conn.query(&Cmd::new("INFO")).await.ok()?;
        let info = info.as_bytes()?;
        let num = |name: &str| info_field(info, name)?.parse::<u64>().ok();
        let active = info_field(info, "repl_backlog_active") == Some("1");
        Some((num("master_repl_offset")?, num("total_net_input_bytes")?, num("rdb_changes_since_last_save")?, active))
    };
    let started = Instant::now();
    let (offset0, input0, changes0, _) = read().await?;
    tokio::time::sleep(sample).await;
    let (offset1, input1, changes1, active) = read().await?;
    let secs = started.elapsed().as_secs_f64().max(0.001);
    if active {
        return Some(WriteRate { bytes_per_sec: offset1.saturating_sub(offset0) as f64 / secs, exact: true });
    }
    let changed = changes1 != changes0;
    let input = if changed { input1.saturating_sub(input0) as f64 / secs } else { 0.0 };
    Some(WriteRate { bytes_per_sec: input, exact: false })
}

/// Seconds the whole task's full copy is expected to take.
pub(super) fn copy_estimate_secs(all: &Facts) -> u64 {
    let total: u64 = all.sources.iter().flatten().map(ServerFacts::dataset_bytes).sum();
    total.div_ceil(COPY_BYTES_PER_SEC)
}

fn backlog(subject: &str, f: &ServerFacts, rate: Option<WriteRate>, copy_secs: u64) -> CheckResult {
    const TITLE: &str = "backlog and replica buffer";
    let window = copy_secs.max(MIN_WINDOW_SECS);
    let Some(rate) = rate else {
        return CheckResult::warn(
            "source.backlog",
            subject,
            TITLE,
            "could not measure the write rate (INFO replication unreadable)".to_owned(),
            "check repl-backlog-size and client-output-buffer-limit replica by hand".to_owned(),
        );
    };
    let exact = rate.exact;
    let rate = rate.bytes_per_sec;
    let need = (rate * window as f64).ceil() as u64;
    let rate_text = if exact {
        format!("{}/s of writes", human_bytes(rate as u64))
    } else {
        format!("up to {}/s of writes (no replica attached: all client input counted)", human_bytes(rate as u64))
    };
    let copy_text = format!("a full copy of every source takes ~{copy_secs} s");
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let backlog_text = match f.repl_backlog_size {
        Some(size) if size < need => {
            problems.push(format!(
                "repl-backlog-size {} holds {} s of writes, less than the {window} s a resume must reach back",
                human_bytes(size),
                (size as f64 / rate.max(1.0)) as u64
            ));
            fixes.push(format!("CONFIG SET repl-backlog-size {}", config_size(need.saturating_mul(2))));
            None
        }
        Some(size) => Some(format!("backlog {}", human_bytes(size))),
        None => Some("backlog size unknown".to_owned()),
    };
    let buffer_text = match f.replica_buffer_limit {
        Some(l) => {
            let hard_short = l.hard > 0 && l.hard < need;
            let soft_short = l.soft > 0 && l.soft < need && l.soft_secs < window;
            if hard_short || soft_short {
                problems.push(format!(
                    "client-output-buffer-limit replica {} {} {} can drop the link while the snapshot is built",
                    human_bytes(l.hard),
                    human_bytes(l.soft),
                    l.soft_secs
                ));
                let size = config_size(need.saturating_mul(2));
                fixes.push(format!("CONFIG SET client-output-buffer-limit \"replica {size} {size} 60\""));
                None
            } else if l.hard == 0 && l.soft == 0 {
                Some("replica buffer unlimited".to_owned())
            } else {
                Some(format!("replica buffer {} hard", human_bytes(l.hard)))
            }
        }
        None => Some("replica buffer limit unknown (CONFIG refused)".to_owned()),
    };
    if problems.is_empty() {
        let mut parts = vec![rate_text, copy_text];
        parts.extend(backlog_text);
        parts.extend(buffer_text);
        CheckResult::pass("source.backlog", subject, TITLE, parts.join("; "))
    } else {
        CheckResult::warn(
            "source.backlog",
            subject,
            TITLE,
            format!("{rate_text}, {copy_text}: {}", problems.join("; ")),
            format!("{} (and the same in its redis.conf)", fixes.join(" and ")),
        )
    }
}

/// Writes the heartbeat key the way the task will (`SET key <now-ms>`),
/// expiring in a minute so a precheck alone leaves nothing behind.
async fn heartbeat(task: &TaskConfig, source: &SourceConfig) -> Result<(), String> {
    let addr = source.addr.to_string();
    let mut conn = probe::connect(&addr, &probe::probe_options(&source.password)).await.map_err(|e| e.to_string())?;
    let now = crate::clock::now_ms().to_string();
    let set = Cmd::new("SET").arg(&task.sync.heartbeat_key).arg(now).arg("PX").arg("60000");
    match conn.send(&set).await {
        Ok(Value::Error(e)) => Err(e),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn heartbeat_check(subject: &str, key: &str, result: Result<(), String>) -> CheckResult {
    const TITLE: &str = "heartbeat key writable";
    match result {
        Ok(()) => CheckResult::pass(
            "source.heartbeat",
            subject,
            TITLE,
            format!("SET {key} works: lag in ms will be measured"),
        ),
        Err(e) => CheckResult::warn(
            "source.heartbeat",
            subject,
            TITLE,
            format!("SET {key} refused ({e}): the copy works, but lag in ms will be unavailable"),
            format!("allow SET and DEL on key {key} for this user, e.g. ACL SETUSER <user> ~{key} +set +del"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::precheck::CheckStatus;
    use crate::probe::BufferLimit;

    fn facts() -> ServerFacts {
        ServerFacts {
            addr: "127.0.0.1:7001".into(),
            version: "7.0.15".into(),
            server: crate::dest::ServerVersion::redis(crate::dest::RedisVersion::new(7, 0, 15)),
            role: Role::Master,
            mode: ServerMode::Standalone,
            used_memory: 1 << 20,
            used_memory_dataset: Some(1 << 19),
            maxmemory: 0,
            maxmemory_policy: Some("noeviction".into()),
            databases: Some(16),
            keyspace: BTreeMap::new(),
            master_repl_offset: Some(100),
            repl_backlog_size: Some(1 << 20),
            replica_buffer_limit: Some(BufferLimit { hard: 256 << 20, soft: 64 << 20, soft_secs: 60 }),
            psync_command: Some(true),
            read_only: None,
            total_system_memory: None,
            connect_ms: 1,
            commands_used: Default::default(),
            modules: None,
        }
    }

    fn rate(bytes_per_sec: f64) -> WriteRate {
        WriteRate { bytes_per_sec, exact: true }
    }

    #[test]
    fn backlog_passes_a_quiet_source_and_warns_a_busy_one() {
        let f = facts();
        assert_eq!(backlog("s", &f, Some(rate(0.0)), 5).status, CheckStatus::Pass);
        // 1 MB backlog, 100 KB/s over the 30 s minimum window = 3 MB needed.
        let busy = backlog("s", &f, Some(rate(100.0 * 1024.0)), 5);
        assert_eq!(busy.status, CheckStatus::Warn);
        assert!(busy.reason.contains("repl-backlog-size 1.0 MB holds 10 s"), "{}", busy.reason);
        assert!(busy.fix.as_deref().is_some_and(|f| f.contains("CONFIG SET repl-backlog-size 6mb")), "{busy:?}");
    }

    #[test]
    fn a_small_replica_buffer_is_named_with_its_config_line() {
        let mut f = facts();
        f.repl_backlog_size = Some(1 << 30);
        f.replica_buffer_limit = Some(BufferLimit { hard: 1 << 20, soft: 0, soft_secs: 0 });
        let c = backlog("s", &f, Some(rate(1024.0 * 1024.0)), 100);
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(c.reason.contains("client-output-buffer-limit replica 1.0 MB"), "{}", c.reason);
        assert!(c.fix.as_deref().is_some_and(|f| f.contains("client-output-buffer-limit \"replica 200mb")), "{c:?}");
    }

    #[test]
    fn psync_by_version_and_rename() {
        let mut f = facts();
        assert_eq!(psync("s", &f, None).status, CheckStatus::Pass);
        f.psync_command = Some(false);
        assert_eq!(psync("s", &f, None).status, CheckStatus::Fail);
        f.psync_command = None;
        assert_eq!(psync("s", &f, None).status, CheckStatus::Warn);
        assert_eq!(psync("s", &f, Some("NOPERM".into())).status, CheckStatus::Fail);
        f.version = "2.6.17".into();
        assert_eq!(psync("s", &f, None).status, CheckStatus::Fail);
    }
}
