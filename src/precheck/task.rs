//! Task-wide checks: the selected databases hold data somewhere, and the
//! state dir can take the spool.

use std::collections::BTreeMap;

use super::{group_digits, CheckResult, Facts};
use crate::config::TaskConfig;
use crate::probe::{human_bytes, ServerFacts};

pub(super) fn checks(task: &TaskConfig, facts: &Facts) -> Vec<CheckResult> {
    vec![selection(task, facts), not_running(task), spool_disk(task, facts)]
}

/// Two processes running one task would apply every write twice.
fn not_running(task: &TaskConfig) -> CheckResult {
    const TITLE: &str = "not already running";
    let state = task.state_path();
    let subject = format!("state dir {}", state.display());
    match crate::engine::state_lock::is_held(&state) {
        None => {
            CheckResult::pass("task.running", &subject, TITLE, "no other shardsync process runs this task".to_owned())
        }
        Some(holder) => CheckResult::fail(
            "task.running",
            &subject,
            TITLE,
            format!("another shardsync process runs this task ({holder})"),
            "use that process (its TUI or its standard input), or stop it first".to_owned(),
        ),
    }
}

/// Keys per source DB over every reachable source.
fn keys_by_db(facts: &Facts) -> BTreeMap<u32, u64> {
    let mut by_db = BTreeMap::new();
    for f in facts.sources.iter().flatten() {
        for (db, k) in &f.keyspace {
            *by_db.entry(*db).or_insert(0) += k.keys;
        }
    }
    by_db
}

fn selection(task: &TaskConfig, facts: &Facts) -> CheckResult {
    const SUBJECT: &str = "task";
    const TITLE: &str = "selected databases hold data";
    let by_db = keys_by_db(facts);
    let show = |db: u32| format!("db{db} ({} keys)", group_digits(by_db.get(&db).copied().unwrap_or(0)));
    match &task.sync.databases {
        None if by_db.is_empty() => CheckResult::warn(
            "task.databases",
            SUBJECT,
            TITLE,
            "the sources hold no keys: there is nothing to copy yet (new writes are still followed)".to_owned(),
            "check that these are the right sources".to_owned(),
        ),
        None => CheckResult::pass(
            "task.databases",
            SUBJECT,
            TITLE,
            format!("every DB with keys: {}", by_db.keys().map(|&d| show(d)).collect::<Vec<_>>().join(", ")),
        ),
        Some(selected) => {
            let empty: Vec<u32> = selected.iter().copied().filter(|db| !by_db.contains_key(db)).collect();
            let left_out: Vec<String> = by_db.keys().copied().filter(|db| !selected.contains(db)).map(show).collect();
            let left_out =
                if left_out.is_empty() { String::new() } else { format!("; not selected: {}", left_out.join(", ")) };
            let chosen = selected.iter().map(|&d| show(d)).collect::<Vec<_>>().join(", ");
            if empty.is_empty() {
                CheckResult::pass("task.databases", SUBJECT, TITLE, format!("selected {chosen}{left_out}"))
            } else {
                let names = empty.iter().map(|d| format!("db{d}")).collect::<Vec<_>>().join(", ");
                CheckResult::warn(
                    "task.databases",
                    SUBJECT,
                    TITLE,
                    format!("{names} selected but empty on every source{left_out}"),
                    "check sync.databases: a typo there copies nothing".to_owned(),
                )
            }
        }
    }
}

/// The spool holds what the destination has not applied yet: at worst one
/// source's whole snapshot, or every source's at once when the destination
/// is slow. The snapshot is smaller than the dataset in memory, so the
/// dataset is a safe upper bound.
fn spool_disk(task: &TaskConfig, facts: &Facts) -> CheckResult {
    const TITLE: &str = "free disk for the spool";
    let state = task.state_path();
    let subject = format!("state dir {}", state.display());
    if let Err(e) = super::disk::writable(&state) {
        return CheckResult::fail(
            "task.disk",
            &subject,
            TITLE,
            format!("cannot create files there: {e}"),
            "choose a writable state_dir in the task file, or fix its permissions".to_owned(),
        );
    }
    let (free, measured) = match crate::source::spool::free_bytes(&state) {
        Ok(r) => r,
        Err(e) => {
            return CheckResult::warn(
                "task.disk",
                &subject,
                TITLE,
                format!("cannot read the free space: {e}"),
                "make sure the state dir has room for the largest source's snapshot".to_owned(),
            )
        }
    };
    let datasets: Vec<u64> = facts.sources.iter().flatten().map(ServerFacts::dataset_bytes).collect();
    let largest = datasets.iter().copied().max().unwrap_or(0);
    let total: u64 = datasets.iter().sum();
    let numbers = format!(
        "{} free on {}; largest source ~{}, all sources ~{}",
        human_bytes(free),
        measured.display(),
        human_bytes(largest),
        human_bytes(total)
    );
    if free < largest {
        CheckResult::fail(
            "task.disk",
            &subject,
            TITLE,
            format!("{numbers}: the largest source's snapshot may not fit"),
            format!("free {} there, or set state_dir to a larger disk", human_bytes(largest - free)),
        )
    } else if free < total {
        CheckResult::warn(
            "task.disk",
            &subject,
            TITLE,
            format!("{numbers}: enough for one snapshot, not for all of them spooled at once"),
            "free more space, or set state_dir to a larger disk, if the destination may fall behind".to_owned(),
        )
    } else {
        CheckResult::pass("task.disk", &subject, TITLE, numbers)
    }
}
