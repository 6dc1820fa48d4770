//! The precheck: before a task starts, everything that can be known to go
//! wrong, each as a pass / warn / fail line with the measured numbers and,
//! when it is not a pass, what to do.
//!
//! `run` probes every source and the destination at once
//! ([`crate::probe`]), then runs the checks of each side
//! ([`source`], [`destination`], [`task`]) concurrently and sends each
//! result as soon as it is known (the wizard shows them live). The report
//! lists them in a stable order: sources in task order, the destination,
//! then the task-wide checks. A source or destination that cannot be
//! reached gets that one failure; the checks that need it are left out
//! rather than failed a second time.
//!
//! `shardsync check` prints the report; `shardsync run` refuses to start
//! when a check fails; the TUI's precheck step shows it.

mod cluster;
mod destination;
pub(crate) mod disk;
mod source;
mod task;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::TaskConfig;
use crate::probe::{self, ServerFacts};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    /// It works, but the operator should know (and acknowledge).
    Warn,
    /// The task would fail or lose data: it does not start.
    Fail,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        })
    }
}

/// One line of the precheck.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Stable identifier, e.g. `source.psync`, for scripts and tests.
    pub id: &'static str,
    /// What was checked: `source server1 (127.0.0.1:7001)`,
    /// `destination 127.0.0.1:6379`, `task`, `state dir /var/lib/...`.
    pub subject: String,
    /// Short name of the check.
    pub title: String,
    pub status: CheckStatus,
    /// One line, with the measured numbers.
    pub reason: String,
    /// What to do, for a warn or a fail.
    pub fix: Option<String>,
}

impl CheckResult {
    fn new(id: &'static str, subject: &str, title: &str, status: CheckStatus, reason: String) -> CheckResult {
        CheckResult { id, subject: subject.to_owned(), title: title.to_owned(), status, reason, fix: None }
    }

    fn pass(id: &'static str, subject: &str, title: &str, reason: String) -> CheckResult {
        CheckResult::new(id, subject, title, CheckStatus::Pass, reason)
    }

    fn warn(id: &'static str, subject: &str, title: &str, reason: String, fix: String) -> CheckResult {
        CheckResult::new(id, subject, title, CheckStatus::Warn, reason).fix(fix)
    }

    fn fail(id: &'static str, subject: &str, title: &str, reason: String, fix: String) -> CheckResult {
        CheckResult::new(id, subject, title, CheckStatus::Fail, reason).fix(fix)
    }

    fn fix(mut self, fix: String) -> CheckResult {
        self.fix = Some(fix);
        self
    }
}

/// Every check, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrecheckReport {
    pub checks: Vec<CheckResult>,
}

impl PrecheckReport {
    /// No check failed (warnings allowed).
    pub fn passed(&self) -> bool {
        self.failures() == 0
    }

    pub fn warnings(&self) -> usize {
        self.count(CheckStatus::Warn)
    }

    pub fn failures(&self) -> usize {
        self.count(CheckStatus::Fail)
    }

    fn count(&self, status: CheckStatus) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The first check with this id (and subject containing `subject`).
    pub fn find(&self, id: &str, subject: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id && c.subject.contains(subject))
    }
}

/// What the probes found: the input of every check.
pub(crate) struct Facts {
    /// Per source, in task order: the facts or why there are none.
    pub sources: Vec<Result<ServerFacts, probe::ProbeError>>,
    pub destination: Result<ServerFacts, probe::ProbeError>,
}

/// Collects results in order and forwards each to the live listener.
struct Sink {
    progress: Option<mpsc::Sender<CheckResult>>,
}

impl Sink {
    async fn emit(&self, checks: &[CheckResult]) {
        if let Some(tx) = &self.progress {
            for c in checks {
                // A listener that went away (the wizard moved on) is not an error.
                let _ = tx.send(c.clone()).await;
            }
        }
    }
}

/// How the precheck measures.
#[derive(Debug, Clone)]
pub struct PrecheckOptions {
    /// How long each source's write rate is sampled.
    pub rate_sample: Duration,
}

impl Default for PrecheckOptions {
    /// A second: long enough for a rate a person can act on.
    fn default() -> Self {
        PrecheckOptions { rate_sample: Duration::from_secs(1) }
    }
}

/// Runs every check against the live servers; sends each result to
/// `progress` as it is known.
pub async fn run(task: &TaskConfig, progress: Option<mpsc::Sender<CheckResult>>) -> PrecheckReport {
    run_with(task, &PrecheckOptions::default(), progress).await
}

/// As [`run`], measuring as `opts` says.
pub async fn run_with(
    task: &TaskConfig,
    opts: &PrecheckOptions,
    progress: Option<mpsc::Sender<CheckResult>>,
) -> PrecheckReport {
    let sink = Sink { progress };
    let dest_addr = task.destination.addr.to_string();
    let checkpoint_keys: Vec<String> = task.sources.iter().map(|s| task.checkpoint_key(&s.name)).collect();
    let (sources, destination) = tokio::join!(
        futures::future::join_all(task.sources.iter().map(|s| async move {
            let addr = s.addr.to_string();
            probe::probe_with(&addr, &s.password, std::slice::from_ref(&task.sync.heartbeat_key)).await
        })),
        probe::probe_with(&dest_addr, &task.destination.password, &checkpoint_keys),
    );
    let facts = Facts { sources, destination };

    let source_groups = futures::future::join_all(task.sources.iter().enumerate().map(|(i, s)| {
        let facts = &facts;
        let sink = &sink;
        async move {
            let checks = source::checks(task, opts, s, &facts.sources[i], facts).await;
            sink.emit(&checks).await;
            checks
        }
    }));
    let dest_group = async {
        let checks = destination::checks(task, &facts).await;
        sink.emit(&checks).await;
        checks
    };
    let task_group = async {
        let checks = task::checks(task, &facts);
        sink.emit(&checks).await;
        checks
    };
    let (sources, dest, rest) = tokio::join!(source_groups, dest_group, task_group);
    let checks = sources.into_iter().flatten().chain(dest).chain(rest).collect();
    PrecheckReport { checks }
}

/// `source server1 (127.0.0.1:7001)`.
fn source_subject(s: &crate::config::SourceConfig) -> String {
    format!("source {} ({})", s.name, s.addr)
}

fn destination_subject(task: &TaskConfig) -> String {
    format!("destination {}", task.destination.addr)
}

/// The checks every server gets first: reachable, and a Redis-Server.
/// `None` ends that server's checks (the failure is in the list).
fn reachable(
    ids: (&'static str, &'static str),
    subject: &str,
    password_key: &str,
    facts: &Result<ServerFacts, probe::ProbeError>,
    out: &mut Vec<CheckResult>,
) -> bool {
    const REACHABLE: &str = "reachable and authenticated";
    const IS_REDIS: &str = "a Redis-Server, not a proxy";
    let (reach_id, redis_id) = ids;
    match facts {
        Ok(f) => {
            out.push(CheckResult::pass(
                reach_id,
                subject,
                REACHABLE,
                format!("connected and authenticated in {} ms", f.connect_ms),
            ));
            out.push(CheckResult::pass(redis_id, subject, IS_REDIS, format!("{} ({})", f.server, f.mode)));
            true
        }
        Err(e) if e.connected() => {
            out.push(CheckResult::pass(reach_id, subject, REACHABLE, "connected and authenticated".to_owned()));
            let fix = if e.is_proxy() {
                "list the Redis-Servers behind the proxy as [[source]] entries, or point [twemproxy] config at its \
                 nutcracker.yml"
                    .to_owned()
            } else {
                "give the address of a Redis-Server this user can run INFO on".to_owned()
            };
            out.push(CheckResult::fail(redis_id, subject, IS_REDIS, e.to_string(), fix));
            false
        }
        Err(e) => {
            out.push(CheckResult::fail(reach_id, subject, REACHABLE, e.to_string(), connect_fix(e, password_key)));
            false
        }
    }
}

/// What to do about a failed connection, by cause.
fn connect_fix(e: &probe::ProbeError, password_key: &str) -> String {
    use crate::resp::RespError as R;
    match e {
        probe::ProbeError::ProtectedMode { .. } => {
            "set requirepass (and `password` here), or disable protected-mode on a private network".to_owned()
        }
        probe::ProbeError::Connect(R::ConnectRefused { .. }) => {
            "check host and port; Redis accepts connections only on the addresses of its `bind` line (default \
             127.0.0.1): add an interface this machine can reach"
                .to_owned()
        }
        probe::ProbeError::Connect(R::ConnectTimeout { .. }) => {
            "check that the host is up and that a firewall lets this machine reach the port".to_owned()
        }
        probe::ProbeError::Connect(
            R::AuthRequired { .. }
            | R::WrongPassword { .. }
            | R::WrongUserOrPassword { .. }
            | R::NoPasswordSet { .. }
            | R::AclUnsupported { .. }
            | R::AuthFailed { .. },
        ) => format!(
            "set {password_key} in the task file, or the variable its `password_env` names: \"<password>\" or \"<user>:<password>\""
        ),
        _ => "check the address and that the server is a running Redis".to_owned(),
    }
}

pub(crate) use crate::human::group_digits;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts() {
        let mut r = PrecheckReport::default();
        r.checks.push(CheckResult::pass("a", "s", "t", "ok".into()));
        r.checks.push(CheckResult::warn("b", "s", "t", "hm".into(), "do".into()));
        assert!(r.passed());
        assert_eq!((r.warnings(), r.failures()), (1, 0));
        r.checks.push(CheckResult::fail("c", "s", "t", "no".into(), "do".into()));
        assert!(!r.passed());
        assert_eq!(r.find("c", "s").map(|c| c.status), Some(CheckStatus::Fail));
    }
}
