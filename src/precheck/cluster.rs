//! The checks of a Redis Cluster destination: its state and slot
//! coverage, every master reachable with the task's credentials and set to
//! `noeviction`, room for the sources' data (in total and per master,
//! keys spread evenly), DB 0 only (other source DBs need a `db_map` to 0),
//! how often the sources ran commands that a cluster applies only within
//! one slot, and the conflict mode's expectation (intercept: an empty
//! cluster, unless it holds this task's own earlier copy).

use std::collections::BTreeMap;

use super::destination::target_dbs;
use super::{group_digits, CheckResult, Facts};
use crate::config::{ConflictMode, TaskConfig};
use crate::dest::cluster::topology::SlotMap;
use crate::probe::{self, human_bytes, ServerFacts};
use crate::resp::info::info_field;
use crate::resp::Cmd;

/// Commands a cluster applies only when their keys share a slot (`INFO
/// commandstats` names, lower case). `MSET`, `DEL`, `UNLINK` and `TOUCH`
/// are split per slot instead, so they are not counted.
const CROSS_SLOT_COMMANDS: &[&str] = &[
    "rename",
    "renamenx",
    "smove",
    "rpoplpush",
    "brpoplpush",
    "lmove",
    "blmove",
    "copy",
    "msetnx",
    "sunionstore",
    "sinterstore",
    "sdiffstore",
    "zunionstore",
    "zinterstore",
    "zdiffstore",
    "zrangestore",
    "pfmerge",
    "bitop",
    "geosearchstore",
    "eval",
    "evalsha",
    "fcall",
];

pub(super) async fn checks(task: &TaskConfig, subject: &str, facts: &Facts) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let addr = task.destination.addr.to_string();
    let opts = probe::probe_options(&task.destination.password);
    let mut state = None;
    let map = match probe::connect(&addr, &opts).await {
        Ok(mut conn) => {
            if let Ok(info) = conn.query(&Cmd::new("CLUSTER").arg("INFO")).await {
                state = info.as_bytes().and_then(|b| info_field(b, "cluster_state")).map(str::to_owned);
            }
            SlotMap::read(&mut conn, &addr).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let map = match map {
        Ok(map) => map,
        Err(e) => {
            out.push(CheckResult::fail(
                "destination.cluster",
                subject,
                "a whole Redis Cluster",
                format!("its slot map could not be read: {e}"),
                "check that the node answers CLUSTER SLOTS with the task's credentials".to_owned(),
            ));
            return out;
        }
    };
    out.push(coverage(subject, &map, state.as_deref()));
    // Every master, with the task's credentials.
    let mut masters: Vec<(String, Result<ServerFacts, String>)> = Vec::new();
    for m in &map.masters {
        let facts = probe::probe(m, &task.destination.password).await.map_err(|e| e.to_string());
        masters.push((m.clone(), facts));
    }
    out.push(reachable(subject, &masters));
    out.push(eviction(subject, &masters));
    out.push(memory(subject, &masters, facts));
    out.push(databases(task, subject, facts));
    let resuming = resuming(task, &opts, &map).await;
    out.push(conflict(task, subject, &masters, &resuming));
    out.push(cross_slot(subject, facts));
    out
}

fn coverage(subject: &str, map: &SlotMap, state: Option<&str>) -> CheckResult {
    const TITLE: &str = "every slot served";
    let uncovered = map.uncovered();
    if uncovered.is_empty() && state.is_some_and(|s| s != "ok") {
        return CheckResult::fail(
            "destination.cluster",
            subject,
            TITLE,
            format!("every slot is assigned, but the node says cluster_state:{}", state.unwrap_or_default()),
            "bring the failed masters back (CLUSTER INFO, CLUSTER NODES), then run the precheck again".to_owned(),
        );
    }
    if uncovered.is_empty() {
        let masters: Vec<String> =
            map.masters.iter().zip(map.slot_counts()).map(|(m, n)| format!("{m} ({n} slots)")).collect();
        return CheckResult::pass(
            "destination.cluster",
            subject,
            TITLE,
            format!("a Redis Cluster of {} masters: {}", map.masters.len(), masters.join(", ")),
        );
    }
    let ranges: Vec<String> =
        uncovered.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    CheckResult::fail(
        "destination.cluster",
        subject,
        TITLE,
        format!("no master serves slots {}", ranges.join(", ")),
        "assign every slot (redis-cli --cluster fix), then run the precheck again".to_owned(),
    )
}

fn reachable(subject: &str, masters: &[(String, Result<ServerFacts, String>)]) -> CheckResult {
    const TITLE: &str = "every master reachable with the same credentials";
    let failed: Vec<String> =
        masters.iter().filter_map(|(m, f)| f.as_ref().err().map(|e| format!("{m}: {e}"))).collect();
    if failed.is_empty() {
        return CheckResult::pass(
            "destination.cluster.masters",
            subject,
            TITLE,
            format!("{} masters answered", masters.len()),
        );
    }
    CheckResult::fail(
        "destination.cluster.masters",
        subject,
        TITLE,
        failed.join("; "),
        "give every master the destination's user and password, and make it reachable from this host".to_owned(),
    )
}

fn eviction(subject: &str, masters: &[(String, Result<ServerFacts, String>)]) -> CheckResult {
    const TITLE: &str = "maxmemory-policy noeviction on every master";
    let other: Vec<String> = masters
        .iter()
        .filter_map(|(m, f)| {
            let policy = f.as_ref().ok()?.maxmemory_policy.clone().unwrap_or_else(|| "unknown".to_owned());
            (policy != "noeviction").then(|| format!("{m}: {policy}"))
        })
        .collect();
    if other.is_empty() {
        return CheckResult::pass(
            "destination.cluster.eviction",
            subject,
            TITLE,
            "noeviction: no copied key is evicted".to_owned(),
        );
    }
    CheckResult::warn(
        "destination.cluster.eviction",
        subject,
        TITLE,
        format!("{}: copied keys can be evicted when memory runs short", other.join(", ")),
        "CONFIG SET maxmemory-policy noeviction on every master".to_owned(),
    )
}

fn memory(subject: &str, masters: &[(String, Result<ServerFacts, String>)], facts: &Facts) -> CheckResult {
    const TITLE: &str = "room for the sources' data";
    let data: u64 = facts.sources.iter().flatten().map(|f| f.used_memory_dataset.unwrap_or(f.used_memory)).sum();
    let n = masters.len().max(1) as u64;
    let share = data / n;
    let mut short = Vec::new();
    let mut free_total = 0u64;
    let mut unlimited = false;
    for (m, f) in masters {
        let Ok(f) = f else { continue };
        if f.maxmemory == 0 {
            unlimited = true;
            continue;
        }
        let free = f.maxmemory.saturating_sub(f.used_memory);
        free_total += free;
        if free < share {
            short.push(format!("{m} has {} free for about {}", human_bytes(free), human_bytes(share)));
        }
    }
    if short.is_empty() {
        let room = if unlimited { "no maxmemory on some masters".to_owned() } else { human_bytes(free_total) };
        return CheckResult::pass(
            "destination.cluster.memory",
            subject,
            TITLE,
            format!("the sources hold {} (about {} per master); free: {room}", human_bytes(data), human_bytes(share)),
        );
    }
    CheckResult::fail(
        "destination.cluster.memory",
        subject,
        TITLE,
        format!("keys spread evenly over the slots: {}", short.join("; ")),
        "raise maxmemory on those masters, or add masters and rebalance the slots".to_owned(),
    )
}

fn databases(task: &TaskConfig, subject: &str, facts: &Facts) -> CheckResult {
    const TITLE: &str = "DB 0 only";
    let targets = target_dbs(task, facts);
    let elsewhere: Vec<String> = targets
        .iter()
        .filter(|(db, _)| **db != 0)
        .flat_map(|(_, sources)| sources.iter().map(|s| s.to_string()))
        .collect();
    if elsewhere.is_empty() {
        return CheckResult::pass("destination.databases", subject, TITLE, "every copied DB goes to DB 0".to_owned());
    }
    let map: Vec<String> = elsewhere.iter().map(|db| format!("\"{db}\" = 0")).collect();
    CheckResult::fail(
        "destination.databases",
        subject,
        TITLE,
        format!("source DBs {} would go to DBs a Redis Cluster does not have", elsewhere.join(", ")),
        format!(
            "map them to DB 0 in [sync.db_map] ({}; keys that exist in several are then collisions), or leave them \
             out with [sync] databases",
            map.join(", ")
        ),
    )
}

/// The shards whose checkpoint key is on the cluster (read from the master
/// serving its slot): the cluster holds their earlier copy.
async fn resuming(task: &TaskConfig, opts: &crate::resp::ConnectOptions, map: &SlotMap) -> Vec<String> {
    let mut out = Vec::new();
    for s in &task.sources {
        let key = task.checkpoint_key(&s.name);
        let Some(addr) = map.addr_of(crate::dest::cluster::slot::slot_of(key.as_bytes())) else { continue };
        let Ok(mut conn) = probe::connect(addr, opts).await else { continue };
        if conn.query(&Cmd::new("EXISTS").arg(&key)).await.ok().and_then(|v| v.as_int()) == Some(1) {
            out.push(s.name.clone());
        }
    }
    out
}

fn conflict(
    task: &TaskConfig,
    subject: &str,
    masters: &[(String, Result<ServerFacts, String>)],
    resuming: &[String],
) -> CheckResult {
    let mode = task.sync.conflict;
    let title = format!("conflict = \"{mode}\"");
    let keys: u64 =
        masters.iter().filter_map(|(_, f)| f.as_ref().ok()).filter_map(|f| f.keyspace.get(&0)).map(|k| k.keys).sum();
    if keys == 0 {
        return CheckResult::pass(
            "destination.conflict",
            subject,
            &title,
            "the cluster is empty: nothing to overwrite".to_owned(),
        );
    }
    let held = format!("the cluster holds {} keys", group_digits(keys));
    match mode {
        ConflictMode::Intercept if !resuming.is_empty() => CheckResult::pass(
            "destination.conflict",
            subject,
            &title,
            format!(
                "{held}: this task's own earlier copy ({} continue from their checkpoints; a shard starting a fresh \
                 copy reports a key found already there as a collision, never overwrites it)",
                resuming.join(", ")
            ),
        ),
        ConflictMode::Intercept => CheckResult::fail(
            "destination.conflict",
            subject,
            &title,
            format!("{held}, and intercept requires an empty destination"),
            "empty it (FLUSHALL on every master), or choose conflict = \"overwrite\" (source wins) or \"skip\" \
             (destination wins)"
                .to_owned(),
        ),
        ConflictMode::Overwrite => CheckResult::warn(
            "destination.conflict",
            subject,
            &title,
            format!("{held}: a key the sources also hold is replaced by the source's"),
            "check that the cluster is the intended destination".to_owned(),
        ),
        ConflictMode::Skip => CheckResult::warn(
            "destination.conflict",
            subject,
            &title,
            format!("{held}: a key the sources also hold keeps the cluster's value"),
            "check that the cluster is the intended destination".to_owned(),
        ),
    }
}

fn cross_slot(subject: &str, facts: &Facts) -> CheckResult {
    const TITLE: &str = "commands a cluster applies within one slot";
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for f in facts.sources.iter().flatten() {
        for name in CROSS_SLOT_COMMANDS {
            if let Some(n) = f.commands_used.get(*name) {
                *counts.entry(name).or_default() += n;
            }
        }
    }
    if counts.is_empty() {
        return CheckResult::pass(
            "destination.cross_slot",
            subject,
            TITLE,
            "the sources ran none since their statistics were reset".to_owned(),
        );
    }
    let list: Vec<String> =
        counts.iter().map(|(name, n)| format!("{} {}", name.to_ascii_uppercase(), group_digits(*n))).collect();
    CheckResult::warn(
        "destination.cross_slot",
        subject,
        TITLE,
        format!(
            "the sources ran {} (INFO commandstats): each one whose keys fall in different slots pauses its shard",
            list.join(", ")
        ),
        "keep the keys of one command under one hash tag ({…}), or resume past such commands and apply them by hand"
            .to_owned(),
    )
}
