//! The destination's checks: reachable, a standalone Redis that accepts
//! writes, a version that takes the sources' RDB payloads, no eviction,
//! room for the data, the selected DBs exist, the conflict mode's
//! expectations (intercept: empty target DBs), and MULTI for exactly-once
//! checkpoints.
//!
//! A task that resumes from its own checkpoints finds its earlier copy on
//! the destination: those keys are neither a conflict nor new memory.

use std::collections::{BTreeMap, BTreeSet};

use super::{destination_subject, group_digits, reachable, CheckResult, Facts};
use crate::config::{ConflictMode, DestKind, TaskConfig};
use crate::dest::CheckpointRecord;
use crate::engine::checkpoint;
use crate::probe::{self, config_size, human_bytes, Role, ServerFacts, ServerMode};
use crate::resp::{Cmd, Connection, Value};

/// Where each shard stands on this destination.
struct Resume {
    /// Shards with a checkpoint (in the destination, or the local file).
    resuming: Vec<String>,
    /// Of those, the shards whose checkpoint key is on the destination:
    /// proof that it holds this task's copy of them (a shard writes its
    /// checkpoint before its first key).
    on_dest: Vec<String>,
}

impl Resume {
    fn all(&self, task: &TaskConfig) -> bool {
        self.resuming.len() == task.sources.len()
    }
}

pub(super) async fn checks(task: &TaskConfig, facts: &Facts) -> Vec<CheckResult> {
    let subject = destination_subject(task);
    let mut out = Vec::new();
    let password_key = "`password` of [destination]";
    if !reachable(("destination.reachable", "destination.redis"), &subject, password_key, &facts.destination, &mut out)
    {
        return out;
    }
    let Ok(dest) = &facts.destination else { return out };
    let cluster = match (dest.mode, task.destination.kind) {
        (ServerMode::Cluster, DestKind::Auto | DestKind::Cluster) => true,
        (ServerMode::Standalone, DestKind::Auto | DestKind::Standalone) => false,
        (mode, kind) => {
            out.push(CheckResult::fail(
                "destination.mode",
                &subject,
                "a standalone Redis or a Redis Cluster",
                format!("the destination runs in {mode} mode, and the task says kind = \"{kind}\""),
                "give a Redis master or a cluster node, with kind = \"auto\" (or the kind it is)".to_owned(),
            ));
            return out;
        }
    };
    if cluster {
        out.push(version(task, &subject, dest, facts));
        out.push(forms(task, &subject, dest, facts));
        out.extend(super::cluster::checks(task, &subject, facts).await);
        return out;
    }
    let addr = task.destination.addr.to_string();
    let conn = probe::connect(&addr, &probe::probe_options(&task.destination.password)).await;
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            out.push(CheckResult::fail(
                "destination.reachable",
                &subject,
                "reachable and authenticated",
                e.to_string(),
                "check that the destination stays up".to_owned(),
            ));
            return out;
        }
    };
    // The tool's own key space, where the checkpoints go: what this user
    // cannot write there, it cannot checkpoint.
    let test_key = format!("{}:precheck", task.sync.heartbeat_key);
    let test = write_test(&mut conn, &test_key).await;
    out.push(writable(&subject, dest, &test_key, test));
    out.push(version(task, &subject, dest, facts));
    out.push(forms(task, &subject, dest, facts));
    out.push(modules(task, &subject, dest, facts));
    out.push(eviction(&subject, dest));
    let resume = resume_state(task, &mut conn).await;
    out.push(memory(task, &subject, dest, facts, &resume));
    let targets = target_dbs(task, facts);
    out.push(databases(&subject, dest, &targets, &mut conn).await);
    out.push(conflict(task, &subject, dest, &targets, &resume));
    out.push(multi(&subject, &mut conn).await);
    out
}

fn writable(subject: &str, dest: &ServerFacts, test_key: &str, write_test: Result<(), String>) -> CheckResult {
    const TITLE: &str = "accepts writes";
    match &dest.role {
        Role::Master => match write_test {
            Ok(()) => CheckResult::pass(
                "destination.writable",
                subject,
                TITLE,
                format!("a master; SET and DEL of {test_key} work"),
            ),
            Err(e) => CheckResult::fail(
                "destination.writable",
                subject,
                TITLE,
                format!("a master, but SET {test_key} was refused ({e}): the copy and its checkpoints would be too"),
                "give the user write rights on every key (e.g. ACL SETUSER <user> ~* +@all), or fix what the \
                 error says (OOM: raise maxmemory)"
                    .to_owned(),
            ),
        },
        Role::Replica { master, .. } if dest.read_only != Some(false) => CheckResult::fail(
            "destination.writable",
            subject,
            TITLE,
            format!("a read-only replica of {master}: every write would be refused (READONLY)"),
            format!("give the master {master}, or `REPLICAOF NO ONE` on this server if it is meant to be the new one"),
        ),
        Role::Replica { master, .. } => CheckResult::warn(
            "destination.writable",
            subject,
            TITLE,
            format!("a writable replica of {master}: its master's stream can overwrite what is copied here"),
            "run `REPLICAOF NO ONE` on the destination first".to_owned(),
        ),
    }
}

fn version(task: &TaskConfig, subject: &str, dest: &ServerFacts, facts: &Facts) -> CheckResult {
    const TITLE: &str = "reads the sources' snapshots";
    // What the sources send shardsync, against what RESTORE here reads.
    let slower: Vec<String> = task
        .sources
        .iter()
        .zip(&facts.sources)
        .filter_map(|(s, f)| f.as_ref().ok().map(|f| (s, f)))
        .filter(|(_, f)| !dest.server.reads_rdb(f.server.replica_rdb_version()))
        .map(|(s, f)| {
            let engine = match f.server.engine {
                crate::dest::Engine::Redis => "Redis",
                crate::dest::Engine::Valkey => "Valkey",
            };
            format!("{} runs {} ({engine}, RDB {})", s.name, f.server.version, f.server.replica_rdb_version())
        })
        .collect();
    if slower.is_empty() {
        CheckResult::pass(
            "destination.version",
            subject,
            TITLE,
            format!("{}: keys are written with RESTORE (the fast path)", dest.server),
        )
    } else {
        CheckResult::warn(
            "destination.version",
            subject,
            TITLE,
            format!(
                "{} (RDB {}) cannot RESTORE the snapshots of these sources: {}; their keys are written as commands, \
                 which is slower",
                dest.server,
                dest.server.rdb_version(),
                slower.join("; ")
            ),
            "use a destination that reads every source's RDB version for the faster RESTORE path, or accept the \
             slower copy"
                .to_owned(),
        )
    }
}

/// The command forms the sources have used (`INFO commandstats`) that the
/// destination lacks: rewritten (see `dest::translate`), or, without an
/// equivalent, a pause of the shard at each.
fn forms(task: &TaskConfig, subject: &str, dest: &ServerFacts, facts: &Facts) -> CheckResult {
    const TITLE: &str = "takes the sources' command forms";
    let caps = crate::dest::DestCaps::of(dest.server);
    let mut rewritten: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut need = crate::dest::RedisVersion::new(0, 0, 0);
    for (s, f) in task.sources.iter().zip(&facts.sources) {
        let Ok(f) = f else { continue };
        for (form, calls) in crate::dest::forms_used(&f.commands_used, &f.server, &caps) {
            let calls: Vec<String> =
                calls.iter().map(|(c, n)| format!("{c} {}", crate::human::group_digits(*n))).collect();
            let used = format!("{} ({}: {})", form.form, s.name, calls.join(", "));
            match form.older {
                Some(instead) => rewritten.push(format!("{used} → {instead}")),
                None => {
                    need = need.max(form.since);
                    missing.push(format!("{used}, from {}", form.since));
                }
            }
        }
    }
    if !missing.is_empty() {
        return CheckResult::warn(
            "destination.forms",
            subject,
            TITLE,
            format!(
                "{} has no equivalent of what the sources have used: {}; the shard pauses at each such command{}",
                dest.server,
                missing.join("; "),
                if rewritten.is_empty() { String::new() } else { format!(". Rewritten: {}", rewritten.join("; ")) }
            ),
            format!("use a destination of version {need} or newer, or stop these commands on the sources"),
        );
    }
    let reason = if rewritten.is_empty() {
        format!("{} takes every command form the sources have used, as it is", dest.server)
    } else {
        format!("{} gets rewritten forms of what the sources have used: {}", dest.server, rewritten.join("; "))
    };
    CheckResult::pass("destination.forms", subject, TITLE, reason)
}

/// The sources' modules (`MODULE LIST`) against the destination's, under
/// `sync.modules`.
fn modules(task: &TaskConfig, subject: &str, dest: &ServerFacts, facts: &Facts) -> CheckResult {
    use crate::config::ModulePolicy;
    const TITLE: &str = "modules the sources load";
    let mut used: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (s, f) in task.sources.iter().zip(&facts.sources) {
        for (name, ver) in f.as_ref().ok().and_then(|f| f.modules.as_ref()).into_iter().flatten() {
            used.push(format!("{} loads {name} ({ver})", s.name));
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    if used.is_empty() {
        return CheckResult::pass("destination.modules", subject, TITLE, "no modules are loaded on the sources".into());
    }
    let here: Vec<&str> = dest.modules.iter().flatten().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<&str> = names.iter().map(String::as_str).filter(|n| !here.contains(n)).collect();
    let used = used.join(", ");
    match task.sync.modules {
        ModulePolicy::Restore if missing.is_empty() => CheckResult::pass(
            "destination.modules",
            subject,
            TITLE,
            format!("{used}; the destination loads them too: their keys are restored (sync.modules = \"restore\")"),
        ),
        ModulePolicy::Restore => CheckResult::fail(
            "destination.modules",
            subject,
            TITLE,
            format!(
                "{used}; sync.modules = \"restore\" needs {} on the destination, which does not load {}",
                names.join(", "),
                if missing.len() == 1 { "it" } else { "them all" }
            ),
            format!("load {} on the destination (loadmodule), or set modules = \"skip\"", missing.join(", ")),
        ),
        ModulePolicy::Fail => CheckResult::warn(
            "destination.modules",
            subject,
            TITLE,
            format!("{used}: a key of their types stops the copy (sync.modules = \"fail\")"),
            if missing.is_empty() {
                "the destination loads them: set modules = \"restore\" to copy such keys".to_owned()
            } else {
                format!(
                    "load {} on the destination and set modules = \"restore\", or set modules = \"skip\" to leave \
                     such keys out",
                    missing.join(", ")
                )
            },
        ),
        ModulePolicy::Skip => CheckResult::warn(
            "destination.modules",
            subject,
            TITLE,
            format!("{used}: keys of their types are left out, each counted and named (sync.modules = \"skip\")"),
            "set modules = \"restore\" with the modules loaded on the destination to copy them".to_owned(),
        ),
    }
}

fn eviction(subject: &str, dest: &ServerFacts) -> CheckResult {
    const TITLE: &str = "maxmemory-policy noeviction";
    match dest.maxmemory_policy.as_deref() {
        Some("noeviction") => {
            CheckResult::pass("destination.eviction", subject, TITLE, "noeviction: no copied key is evicted".to_owned())
        }
        Some(policy) => CheckResult::warn(
            "destination.eviction",
            subject,
            TITLE,
            format!("{policy}: when memory runs short the destination evicts keys, and the copy silently loses them"),
            "CONFIG SET maxmemory-policy noeviction (and in its redis.conf)".to_owned(),
        ),
        None => CheckResult::warn(
            "destination.eviction",
            subject,
            TITLE,
            "the eviction policy cannot be read (CONFIG refused)".to_owned(),
            "make sure maxmemory-policy is noeviction".to_owned(),
        ),
    }
}

/// `SET key <now> PX 5000` then `DEL key`, in DB 0.
async fn write_test(conn: &mut Connection, key: &str) -> Result<(), String> {
    let set = Cmd::new("SET").arg(key).arg(crate::clock::now_ms().to_string()).arg("PX").arg("5000");
    match conn.send(&set).await {
        Ok(Value::Error(e)) => return Err(e),
        Err(e) => return Err(e.to_string()),
        Ok(_) => {}
    }
    match conn.send(&Cmd::new("DEL").arg(key)).await {
        Ok(Value::Error(e)) => Err(e),
        Err(e) => Err(e.to_string()),
        Ok(_) => Ok(()),
    }
}

async fn resume_state(task: &TaskConfig, conn: &mut Connection) -> Resume {
    let mut resuming = Vec::new();
    let mut on_destination = Vec::new();
    let state = task.state_path();
    for s in &task.sources {
        let key = task.checkpoint_key(&s.name);
        let on_dest = match conn.query(&Cmd::new("GET").arg(&key)).await {
            Ok(Value::Bulk(Some(raw))) => CheckpointRecord::decode(&raw).is_some(),
            _ => false,
        };
        let local = matches!(checkpoint::load(&state, &s.name), Ok(Some(_)));
        if on_dest || local {
            resuming.push(s.name.clone());
        }
        if on_dest {
            on_destination.push(s.name.clone());
        }
    }
    Resume { resuming, on_dest: on_destination }
}

fn memory(task: &TaskConfig, subject: &str, dest: &ServerFacts, facts: &Facts, resume: &Resume) -> CheckResult {
    const TITLE: &str = "room for the data";
    let need: u64 = task
        .sources
        .iter()
        .zip(&facts.sources)
        .filter(|(s, _)| !resume.resuming.contains(&s.name))
        .filter_map(|(_, f)| f.as_ref().ok().map(ServerFacts::dataset_bytes))
        .sum();
    let resumed = if resume.resuming.is_empty() {
        String::new()
    } else {
        format!(" (not counting {}, resuming from checkpoints)", resume.resuming.join(", "))
    };
    let used = dest.used_memory;
    if dest.maxmemory > 0 {
        let free = dest.maxmemory.saturating_sub(used);
        let numbers = format!(
            "maxmemory {} − used {} = {} free; the sources' data is ~{}{resumed}",
            human_bytes(dest.maxmemory),
            human_bytes(used),
            human_bytes(free),
            human_bytes(need)
        );
        let want = config_size(used.saturating_add(need.saturating_mul(5) / 4));
        if free < need {
            return CheckResult::fail(
                "destination.memory",
                subject,
                TITLE,
                numbers,
                format!("raise it: CONFIG SET maxmemory {want} (the copy would stop with OOM)"),
            );
        }
        // Keys cost some overhead beyond the dataset on the destination too.
        if free < need.saturating_mul(5) / 4 {
            return CheckResult::warn(
                "destination.memory",
                subject,
                TITLE,
                format!("{numbers}: less than 25% to spare"),
                format!("CONFIG SET maxmemory {want} to leave room for overheads and new writes"),
            );
        }
        return CheckResult::pass("destination.memory", subject, TITLE, numbers);
    }
    match dest.total_system_memory {
        Some(ram) if used.saturating_add(need) > ram => CheckResult::warn(
            "destination.memory",
            subject,
            TITLE,
            format!(
                "no maxmemory; the host has {} of RAM, {} used, and the sources' data is ~{}{resumed}",
                human_bytes(ram),
                human_bytes(used),
                human_bytes(need)
            ),
            "give the destination a host with more memory".to_owned(),
        ),
        Some(ram) => CheckResult::pass(
            "destination.memory",
            subject,
            TITLE,
            format!(
                "no maxmemory; host RAM {}, used {}, the sources' data ~{}{resumed}",
                human_bytes(ram),
                human_bytes(used),
                human_bytes(need)
            ),
        ),
        None => CheckResult::pass(
            "destination.memory",
            subject,
            TITLE,
            format!("no maxmemory; used {}, the sources' data ~{}{resumed}", human_bytes(used), human_bytes(need)),
        ),
    }
}

/// The destination DBs the task writes, with the source DBs mapped to each:
/// the selected DBs, or every DB with keys on some source.
pub(super) fn target_dbs(task: &TaskConfig, facts: &Facts) -> BTreeMap<u32, BTreeSet<u32>> {
    let sources: BTreeSet<u32> = match &task.sync.databases {
        Some(dbs) => dbs.iter().copied().collect(),
        None => facts.sources.iter().flatten().flat_map(|f| f.keyspace.keys().copied()).collect(),
    };
    let mut targets: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for db in sources {
        targets.entry(task.sync.target_db(db)).or_default().insert(db);
    }
    targets
}

async fn databases(
    subject: &str,
    dest: &ServerFacts,
    targets: &BTreeMap<u32, BTreeSet<u32>>,
    conn: &mut Connection,
) -> CheckResult {
    const TITLE: &str = "selected DBs exist";
    let missing: Vec<u32> = match dest.databases {
        Some(n) => targets.keys().copied().filter(|&db| db >= n).collect(),
        // CONFIG refused: ask SELECT itself.
        None => {
            let mut missing = Vec::new();
            for &db in targets.keys() {
                if let Ok(Value::Error(_)) = conn.send(&Cmd::new("SELECT").arg(db.to_string())).await {
                    missing.push(db);
                }
            }
            let _ = conn.query(&Cmd::new("SELECT").arg("0")).await;
            missing
        }
    };
    let count = dest.databases.map(|n| format!("{n} databases")).unwrap_or_else(|| "its databases".to_owned());
    let list = |dbs: &mut dyn Iterator<Item = u32>| dbs.map(|d| format!("db{d}")).collect::<Vec<_>>().join(", ");
    if missing.is_empty() {
        let written = if targets.is_empty() { "none yet".to_owned() } else { list(&mut targets.keys().copied()) };
        return CheckResult::pass("destination.databases", subject, TITLE, format!("writes {written}; has {count}"));
    }
    let highest = missing.iter().max().copied().unwrap_or(0);
    CheckResult::fail(
        "destination.databases",
        subject,
        TITLE,
        format!("the task writes {} but the destination has {count}", list(&mut missing.iter().copied())),
        format!(
            "set `databases {}` in the destination's redis.conf and restart it, or map those DBs with sync.db_map",
            highest + 1
        ),
    )
}

fn conflict(
    task: &TaskConfig,
    subject: &str,
    dest: &ServerFacts,
    targets: &BTreeMap<u32, BTreeSet<u32>>,
    resume: &Resume,
) -> CheckResult {
    let mode = task.sync.conflict;
    let title = format!("conflict = \"{mode}\"");
    let held: Vec<(u32, u64)> = targets.keys().filter_map(|&db| Some((db, dest.keyspace.get(&db)?.keys))).collect();
    let listed = held.iter().map(|(db, k)| format!("db{db} holds {} keys", group_digits(*k))).collect::<Vec<_>>();
    if held.is_empty() {
        return CheckResult::pass(
            "destination.conflict",
            subject,
            &title,
            "the target databases are empty: nothing to overwrite".to_owned(),
        );
    }
    if mode == ConflictMode::Intercept && resume.all(task) {
        return CheckResult::pass(
            "destination.conflict",
            subject,
            &title,
            format!("{}: this task's own earlier copy (every shard resumes from its checkpoint)", listed.join(", ")),
        );
    }
    // A task stopped during its first full copies: the shards that got
    // going left their checkpoint (a shard writes it before its first key),
    // the others wrote nothing yet.
    if mode == ConflictMode::Intercept && !resume.on_dest.is_empty() {
        let fresh: Vec<&str> =
            task.sources.iter().map(|s| s.name.as_str()).filter(|n| !resume.resuming.iter().any(|r| r == n)).collect();
        return CheckResult::pass(
            "destination.conflict",
            subject,
            &title,
            format!(
                "{}: this task's own earlier copy ({} continue from their checkpoints, replacing only their own \
                 keys; {} start a fresh copy, where a key found already there is reported as a collision, never \
                 overwritten)",
                listed.join(", "),
                resume.resuming.join(", "),
                if fresh.is_empty() { "none".to_owned() } else { fresh.join(", ") }
            ),
        );
    }
    match mode {
        ConflictMode::Intercept => CheckResult::fail(
            "destination.conflict",
            subject,
            &title,
            format!("{}, and intercept requires empty target databases", listed.join(", ")),
            "empty them (FLUSHDB on each), select other databases, or choose conflict = \"overwrite\" (source wins) \
             or \"skip\" (destination wins)"
                .to_owned(),
        ),
        ConflictMode::Overwrite => CheckResult::warn(
            "destination.conflict",
            subject,
            &title,
            format!("{}: keys also on a source will be overwritten by the source's", listed.join(", ")),
            "make sure those keys may be replaced".to_owned(),
        ),
        ConflictMode::Skip => CheckResult::warn(
            "destination.conflict",
            subject,
            &title,
            format!(
                "{}: keys also on a source keep the destination's value (the source's is dropped)",
                listed.join(", ")
            ),
            "make sure the destination's values are the ones to keep; verify lists them as differences".to_owned(),
        ),
    }
}

async fn multi(subject: &str, conn: &mut Connection) -> CheckResult {
    const TITLE: &str = "MULTI/EXEC for exactly-once checkpoints";
    match conn.send(&Cmd::new("MULTI")).await {
        Ok(Value::Error(e)) => CheckResult::warn(
            "destination.multi",
            subject,
            TITLE,
            format!("MULTI refused ({e}): checkpoints are kept only locally, so a crash can repeat a second of writes"),
            "allow MULTI/EXEC on the destination, or set sync.checkpoint = \"local\" to accept it".to_owned(),
        ),
        Err(e) => CheckResult::warn(
            "destination.multi",
            subject,
            TITLE,
            format!("MULTI could not be tried: {e}"),
            "run the precheck again".to_owned(),
        ),
        Ok(_) => {
            let _ = conn.query(&Cmd::new("DISCARD")).await;
            CheckResult::pass(
                "destination.multi",
                subject,
                TITLE,
                "each batch and its checkpoint are written in one MULTI/EXEC".to_owned(),
            )
        }
    }
}
