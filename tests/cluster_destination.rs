//! A Redis Cluster as the destination (real servers: `redis-server
//! --cluster-enabled yes`, joined by `redis-cli --cluster create`): two
//! sources copied and streamed into three masters, multi-key commands split
//! per slot or pausing the shard, and a SIGKILL in the middle of the stream
//! that neither loses nor repeats an `INCR` or an `LPUSH`.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::cluster::{self, Cluster};
use common::task::{finish, info_stat, run_binary, task_file, verify_binary};
use common::{RedisOptions, RedisServer};

const OWN: &[u8] = b"SHARDSYNC_HEARTBEAT";

/// `shardsync check --config F`: exit code and output.
fn check(task: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(["check", "--config"])
        .arg(task)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("shardsync check");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn sigterm(child: &Child) {
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

/// Waits until the sources and the cluster compare equal; panics with the
/// differences after `limit`.
fn wait_equal(sources: &[String], seed: &str, limit: Duration) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let start = Instant::now();
    loop {
        let diff = rt.block_on(cluster::diff(sources, seed, OWN));
        if diff.is_empty() {
            return;
        }
        if start.elapsed() > limit {
            let shown: Vec<&String> = diff.iter().take(10).collect();
            panic!("{} differences after {limit:?}, first: {shown:#?}", diff.len());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `redis-cli --pipe` of `commands` (one per line); true on success.
fn redis_pipe(port: u16, commands: &str) -> bool {
    let mut child = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli --pipe");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(commands.as_bytes()).expect("pipe");
    child.wait().expect("wait").success()
}

fn load(source: &RedisServer, prefix: &str, n: usize) {
    let mut pipe = String::new();
    for i in 0..n {
        pipe.push_str(&format!("SET {prefix}:s:{i} v{i}\n"));
        pipe.push_str(&format!("RPUSH {prefix}:l:{i} a b c\n"));
        pipe.push_str(&format!("HSET {prefix}:h:{i} f1 1 f2 2\n"));
        pipe.push_str(&format!("SADD {{{prefix}-tag{}}}:set:{i} x y\n", i % 7));
        pipe.push_str(&format!("ZADD {prefix}:z:{i} 1 a 2 b\n"));
    }
    pipe.push_str(&format!("SET {prefix}:ttl v EX 3000\n"));
    // Streams, one with a consumer group read from: `XGROUP` names its key
    // after a subcommand, and a read replicates `XCLAIM` and `XGROUP SETID`.
    for i in 0..n.div_ceil(50) {
        pipe.push_str(&format!("XADD {prefix}:x:{i} * f v{i}\nXADD {prefix}:x:{i} * g w{i}\n"));
    }
    // (No `XGROUP CREATECONSUMER`: Redis 6.0 has none, and pauses on it.)
    pipe.push_str(&format!("XGROUP CREATE {prefix}:x:0 grp 0\n"));
    pipe.push_str(&format!("XREADGROUP GROUP grp c1 COUNT 1 STREAMS {prefix}:x:0 >\n"));
    assert!(redis_pipe(source.port(), &pipe));
    // A list far above the big-key limit: built under a temporary name in
    // the key's own slot, then renamed into place.
    let elements: Vec<String> = (0..3000).map(|i| format!("element-{i}")).collect();
    let mut args = vec!["RPUSH".to_owned(), format!("{prefix}:big")];
    args.extend(elements);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    source.redis_cli(&args).expect("big list");
}

#[test]
fn two_sources_into_a_three_master_cluster_with_splits_and_a_cross_slot_pause() {
    let cluster = Cluster::start(3, 1).expect("cluster");
    let s1 = RedisServer::with_config(&[]).expect("s1");
    let s2 = RedisServer::with_config(&[]).expect("s2");
    load(&s1, "a", 500);
    load(&s2, "b", 500);
    let dir = tempfile::tempdir().expect("tmp");
    let sources = [("server1", s1.addr()), ("server2", s2.addr())];
    let task = task_file(dir.path(), &sources, &cluster.seed(), "big_key_bytes = 4096\nflush = \"refuse\"\n");
    let addrs = vec![s1.addr(), s2.addr()];
    let (code, out) = check(&task);
    assert_eq!(code, 0, "{out}");
    for line in ["every slot served: a Redis Cluster of 3 masters", "the cluster is empty: nothing to overwrite"] {
        assert!(out.contains(line), "{line}:\n{out}");
    }

    let child = run_binary(&task, false);
    wait_equal(&addrs, &cluster.seed(), Duration::from_secs(90));

    // The stream: counters and lists, a cross-slot MSET and DEL (split per
    // slot), a RENAME inside one hash tag, a transaction.
    for i in 0..50 {
        s1.redis_cli(&["INCR", &format!("a:counter:{}", i % 10)]).expect("incr");
        s2.redis_cli(&["LPUSH", &format!("b:list:{}", i % 10), &i.to_string()]).expect("lpush");
    }
    s1.redis_cli(&["MSET", "foo", "1", "bar", "2", "a:s:1", "changed"]).expect("mset");
    s1.redis_cli(&["DEL", "a:s:2", "a:s:3", "a:l:4"]).expect("del");
    s2.redis_cli(&["RENAME", "{b-tag1}:set:1", "{b-tag1}:renamed"]).expect("rename");
    s2.redis_cli(&["SET", "b:ttl2", "x", "PX", "600000"]).expect("set px");
    wait_equal(&addrs, &cluster.seed(), Duration::from_secs(60));
    // verify reads every key from the master serving its slot, and leaves
    // the tool's checkpoint keys (one per shard and per slot written) out
    // of the counts.
    for mode in ["counts", "full"] {
        let (code, out, err) = verify_binary(&task, &["--mode", mode]);
        assert_eq!(code, 0, "--mode {mode}:\n{out}\n{err}");
        assert!(out.contains("result: EQUAL"), "{out}");
    }
    // And it sees a difference on the cluster.
    cluster.cli(&["SET", "a:s:7", "tampered"]).expect("set");
    let (code, out, err) = verify_binary(&task, &["--mode", "full"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("\"a:s:7\""), "{out}");
    s1.redis_cli(&["SET", "a:s:7", "v7"]).expect("set");
    wait_equal(&addrs, &cluster.seed(), Duration::from_secs(30));

    // A RENAME across slots pauses its shard before it, naming keys and slots.
    s1.redis_cli(&["RENAME", "foo", "bar"]).expect("rename across slots");
    s1.redis_cli(&["SET", "a:after-the-pause", "1"]).expect("set");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cluster.cli(&["EXISTS", "a:after-the-pause"]).expect("exists"), "0", "the shard went on past it");
    // The other shard goes on.
    s2.redis_cli(&["SET", "b:still-flowing", "1"]).expect("set");
    let start = Instant::now();
    while cluster.cli(&["EXISTS", "b:still-flowing"]).expect("exists") != "1" {
        assert!(start.elapsed() < Duration::from_secs(20), "server2 stopped too");
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&child);
    let (_, out) = finish(child, Duration::from_secs(30));
    assert!(
        out.contains("RENAME at source offset")
            && out.contains("its keys are in different slots of the destination cluster")
            && out.contains("\"foo\" in slot 12182, \"bar\" in slot 5061"),
        "{out}"
    );
    assert!(out.contains("is a Redis Cluster: writing to"), "{out}");

    // One record a second per master of the cluster.
    let node_records = out.lines().filter(|l| l.contains("\"destination_node\"")).count();
    assert!(node_records >= 3, "no per-master records:\n{out}");

    // Stopped: the same task resumes over its own copy; another task into
    // the same cluster is refused under intercept.
    let (code, checked) = check(&task);
    assert_eq!(code, 0, "{checked}");
    assert!(checked.contains("this task's own earlier copy (server1, server2 continue"), "{checked}");
    let other = tempfile::tempdir().expect("tmp");
    let other_task = task_file(other.path(), &[("other", s1.addr())], &cluster.seed(), "");
    let (code, checked) = check(&other_task);
    assert_eq!(code, 1, "{checked}");
    assert!(checked.contains("and intercept requires an empty destination"), "{checked}");
}

/// Writes `INCR c:<i>` and `LPUSH l:<i%20>` (200 of each a round) to the
/// source until stopped: keys in every slot range, so every master.
/// A running source writer: its stop flag and its thread.
type Writer = (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<()>);

fn start_writer(port: u16) -> Writer {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut pipe = String::new();
                for i in 0..200 {
                    pipe.push_str(&format!("INCR c:{i}\nLPUSH l:{} {rounds}\n", i % 20));
                }
                redis_pipe(port, &pipe);
                rounds += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    (stop, handle)
}

/// One source copied into a cluster, the task running and the data equal.
struct Streaming {
    source: RedisServer,
    task: std::path::PathBuf,
    addrs: Vec<String>,
    child: Child,
    /// The source's `sync_full` once the copy is done.
    full_syncs: u64,
    _dir: tempfile::TempDir,
}

impl Streaming {
    /// Stops `writer`, waits until the data compares equal, stops the tool
    /// and checks that it never copied again in full. Its output.
    fn end(self, writer: Writer, cluster: &Cluster, limit: Duration) -> String {
        let (stop, handle) = writer;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handle.join().expect("writer");
        wait_equal(&self.addrs, &cluster.seed(), limit);
        sigterm(&self.child);
        let (_, out) = finish(self.child, Duration::from_secs(30));
        assert_eq!(info_stat(&self.source, "sync_full"), self.full_syncs, "copied again in full:\n{out}");
        out
    }
}

/// Waits until `node` says it is a master (a failover promoted it).
fn wait_master(node: &RedisServer, limit: Duration) {
    let start = Instant::now();
    while !node.redis_cli(&["ROLE"]).is_ok_and(|r| r.starts_with("master")) {
        assert!(start.elapsed() < limit, "{} was not promoted within {limit:?}", node.addr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every node says `cluster_state:ok` again after `what`.
fn wait_settled(cluster: &Cluster, what: &str) {
    let start = Instant::now();
    while !cluster.is_ok() {
        assert!(start.elapsed() < Duration::from_secs(30), "the cluster did not settle after {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`streaming_into`], then the source writer started and given `warmup`.
fn writing_into(cluster: &Cluster, keys: usize, warmup: Duration) -> (Streaming, Writer) {
    let stream = streaming_into(cluster, keys);
    let writer = start_writer(stream.source.port());
    std::thread::sleep(warmup);
    (stream, writer)
}

fn streaming_into(cluster: &Cluster, keys: usize) -> Streaming {
    // A backlog that holds the whole test's writes: every restart continues.
    let source = RedisServer::with_config(&["repl-backlog-size 64mb"]).expect("source");
    load(&source, "k", keys);
    let dir = tempfile::tempdir().expect("tmp");
    let task = task_file(dir.path(), &[("server1", source.addr())], &cluster.seed(), "");
    let addrs = vec![source.addr()];
    let child = run_binary(&task, false);
    wait_equal(&addrs, &cluster.seed(), Duration::from_secs(60));
    let full_syncs = info_stat(&source, "sync_full");
    Streaming { source, task, addrs, child, full_syncs, _dir: dir }
}

/// The other server versions of this machine, as cluster nodes: what
/// `scripts/deps.sh` puts in `.deps/` (which `make test` runs first).
fn other_versions() -> Vec<(&'static str, RedisOptions)> {
    let deps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps");
    [
        ("Redis 6.0.9", "redis-6.0.9/redis-server"),
        ("Redis 6.2", "redis-6.2/redis-server"),
        ("Redis 7.4", "redis-7.4/redis-server"),
        ("Valkey 9.1", "valkey-9.1/valkey-server"),
    ]
    .into_iter()
    .map(|(name, bin)| {
        let bin = deps.join(bin);
        assert!(bin.is_file(), "{name} is missing at {}: run scripts/deps.sh", bin.display());
        (name, RedisOptions::new().bin(bin))
    })
    .collect()
}

/// Every other server version here as the cluster (the rest of this file
/// uses the system's 7.0): a 7.0 source copied (`RESTORE` into 7.4 and
/// Valkey, whose payload versions are newer; the command path into 6.x,
/// which cannot read 7.0's) and then streamed, counters and lists whose
/// doubling or loss would show. Valkey 8+ says `server_mode:cluster` where
/// Redis says `redis_mode`: read as Redis alone, its cluster passed for a
/// standalone server and the precheck refused it (`MOVED`).
#[test]
fn every_other_server_version_serves_as_the_cluster() {
    for (name, opts) in other_versions() {
        eprintln!("--- a cluster of {name}");
        let cluster = Cluster::start_with(&opts, 3, 0).unwrap_or_else(|e| panic!("a cluster of {name}: {e}"));
        let (stream, writer) = writing_into(&cluster, 200, Duration::from_millis(700));
        // Every type again during the stream, consumer groups among them.
        load(&stream.source, "late", 50);
        let out = stream.end(writer, &cluster, Duration::from_secs(60));
        let masters = cluster.masters();
        assert_eq!(masters.len(), 3);
        for m in masters {
            assert!(out.contains(&format!("\"destination_node\":\"{m}\"")), "{name}: no record of master {m}:\n{out}");
        }
    }
}

/// Moves `slots` slots from the first master to the second with `redis-cli
/// --cluster reshard` (`MIGRATE` of their keys); returns the masters as
/// they were before.
fn reshard(cluster: &Cluster, slots: usize) -> Vec<String> {
    let masters = cluster.masters();
    reshard_between(cluster.node(&masters[0]), cluster.node(&masters[1]), slots);
    masters
}

/// Moves `slots` slots from `from` to `to` (`redis-cli --cluster reshard`,
/// which takes the lowest slots `from` serves).
fn reshard_between(from: &RedisServer, to: &RedisServer, slots: usize) {
    let id = |n: &RedisServer| n.redis_cli(&["CLUSTER", "MYID"]).expect("myid");
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &from.addr(), "--cluster-from", &id(from), "--cluster-to", &id(to)])
        .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("reshard");
    assert!(out.status.success(), "reshard: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn resharding_and_a_failover_during_the_stream_lose_and_double_nothing() {
    let cluster = Cluster::start(3, 1).expect("cluster");
    let (stream, writer) = writing_into(&cluster, 300, Duration::from_millis(500));

    // 1,000 slots move from one master to another (MIGRATE of their keys,
    // the tool's slot checkpoints among them: MOVED and ASK replies).
    let masters = reshard(&cluster, 1000);

    // A master fails over to its replica (a manual, coordinated failover).
    let replica = cluster.replica_of(&masters[2]);
    replica.redis_cli(&["CLUSTER", "FAILOVER"]).expect("failover");
    wait_master(replica, Duration::from_secs(30));
    wait_settled(&cluster, "the failover");
    std::thread::sleep(Duration::from_millis(1500));
    stream.end(writer, &cluster, Duration::from_secs(90));
}

#[test]
fn a_master_that_crashes_fails_over_to_its_replica_and_no_write_is_lost_or_doubled() {
    let mut cluster = Cluster::start(3, 1).expect("cluster");
    let (stream, writer) = writing_into(&cluster, 300, Duration::from_millis(1000));
    // A master dies mid-stream (SIGKILL); the cluster promotes its replica
    // after cluster-node-timeout. Writes count as done only once the
    // replica has them, so the promoted one holds every confirmed write.
    let masters = cluster.masters();
    let victim = masters.iter().find(|m| **m != cluster.seed()).expect("a master besides the seed").clone();
    let replica = cluster.replica_of(&victim).addr();
    cluster.kill(&victim);
    wait_master(cluster.node(&replica), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    stream.end(writer, &cluster, Duration::from_secs(90));
}

#[test]
fn a_master_that_restarts_without_its_data_is_caught_and_the_shard_copied_again() {
    let mut cluster = Cluster::start(3, 0).expect("cluster");
    let (stream, writer) = writing_into(&cluster, 300, Duration::from_millis(1000));
    // A master without replicas or persistence restarts: it comes back
    // serving its slots (nodes.conf), with none of the keys it confirmed.
    let seed = cluster.seed();
    let victim = cluster.nodes.iter().position(|n| n.addr() != seed).expect("a master besides the seed");
    cluster.nodes[victim].crash_and_restart(Duration::from_millis(300)).expect("restart");
    wait_settled(&cluster, "the restart");
    std::thread::sleep(Duration::from_millis(1500));
    let (stop, handle) = writer;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handle.join().expect("writer");
    // Without the check the stream carries on over the hole: the restarted
    // master's keys stay missing and its counters restart from 1.
    wait_equal(&stream.addrs, &cluster.seed(), Duration::from_secs(90));
    sigterm(&stream.child);
    let (_, out) = finish(stream.child, Duration::from_secs(30));
    assert!(info_stat(&stream.source, "sync_full") > stream.full_syncs, "no second full copy:\n{out}");
    assert!(out.contains("restarted (run_id"), "the restart was not named:\n{out}");
    assert!(out.contains("copying this shard again in full"), "the remedy was not named:\n{out}");
}

/// A master other than `spare` restarts without its data (no persistence).
/// With `write`, new writes then reach every master: before its first, the
/// restarted master's writer must find its tracked checkpoint gone and the
/// shard copy again. Without `write`, nothing is sent to it, and only a
/// probe of an idle master can notice. Either way, without the check its
/// share of the copy stays missing and the data never compares equal.
fn restart_a_master_without_its_data(cluster: &mut Cluster, stream: Streaming, spare: &str, write: bool) {
    let victim = cluster.nodes.iter().find(|n| n.addr() != spare).expect("another master").addr();
    restart_without_its_data(cluster, stream, &victim, write);
}

/// [`restart_a_master_without_its_data`], of the master at `victim`.
fn restart_without_its_data(cluster: &mut Cluster, stream: Streaming, victim: &str, write: bool) {
    let victim = cluster.nodes.iter().position(|n| n.addr() == victim).expect("a node of the cluster");
    cluster.nodes[victim].crash_and_restart(Duration::from_millis(300)).expect("restart");
    wait_settled(cluster, "the restart");
    if write {
        load(&stream.source, "after", 20);
    }
    wait_equal(&stream.addrs, &cluster.seed(), Duration::from_secs(90));
    sigterm(&stream.child);
    let (_, out) = finish(stream.child, Duration::from_secs(30));
    assert!(info_stat(&stream.source, "sync_full") > stream.full_syncs, "no second full copy:\n{out}");
    assert!(out.contains("restarted (run_id"), "the restart was not named:\n{out}");
}

#[test]
fn a_master_the_stream_never_wrote_to_that_restarts_without_its_data_is_caught() {
    let mut cluster = Cluster::start(3, 0).expect("cluster");
    // The copy, then no writes: only the end of the copy wrote to every
    // master (its slot checkpoint), and the stream has written nothing.
    let stream = streaming_into(&cluster, 300);
    std::thread::sleep(Duration::from_millis(1500));
    let seed = cluster.seed();
    restart_a_master_without_its_data(&mut cluster, stream, &seed, true);
}

/// As above, with the tool stopped and started again in between: the run
/// that resumes tracks the checkpoints the first one left.
#[test]
fn a_resumed_task_checks_the_checkpoints_the_run_before_it_left() {
    let mut cluster = Cluster::start(3, 0).expect("cluster");
    let mut stream = streaming_into(&cluster, 300);
    std::thread::sleep(Duration::from_millis(1500));
    sigterm(&stream.child);
    let (_, first) = finish(stream.child, Duration::from_secs(30));
    stream.child = run_binary(&stream.task, false);
    wait_equal(&stream.addrs, &cluster.seed(), Duration::from_secs(60));
    assert_eq!(info_stat(&stream.source, "sync_full"), stream.full_syncs, "the restart copied again:\n{first}");
    let seed = cluster.seed();
    restart_a_master_without_its_data(&mut cluster, stream, &seed, true);
}

/// As `a_master_the_stream_never_wrote_to_that_restarts_without_its_data_is_caught`,
/// with no write at all after the restart: the stream moves only the
/// shard's own checkpoint (at every heartbeat), and the master that
/// restarts is not the one holding it. Without the probe its share of the
/// copy stays missing until a write happens to reach it, maybe after the
/// cut-over.
#[test]
fn an_idle_master_that_restarts_without_its_data_is_caught_before_any_write() {
    let mut cluster = Cluster::start(3, 0).expect("cluster");
    let stream = streaming_into(&cluster, 300);
    std::thread::sleep(Duration::from_millis(1500));
    let checkpoint_master = cluster.owner_of("SHARDSYNC_HEARTBEAT:ckpt:server1");
    restart_a_master_without_its_data(&mut cluster, stream, &checkpoint_master, false);
}

/// A master joins during the stream and takes slots by a resharding the
/// stream never meets (nothing is written to them, so no `MOVED`). The
/// writers read the map every 10 s: the new master gets a writer, its
/// probes, and the copy's checkpoint that moved with the lowest slot. It
/// then restarts without its data: caught, and the shard copied again.
/// Before, no writer knew of it, and its share stayed missing.
#[test]
fn a_master_that_joins_and_takes_slots_then_restarts_without_its_data_is_caught() {
    restart_after_slots_moved_to_a_new_master(true);
}

/// As above, with the master the slots left restarting. Its one tracked
/// checkpoint (the copy's, in its lowest slot) moved away with the slots;
/// the stream marks its new lowest slot. Before, its restart check met
/// `MOVED` for that key, forgot it, and found nothing missing.
#[test]
fn a_master_whose_checkpoint_moved_away_then_restarts_without_its_data_is_caught() {
    restart_after_slots_moved_to_a_new_master(false);
}

fn restart_after_slots_moved_to_a_new_master(the_new_one_restarts: bool) {
    let mut cluster = Cluster::start(3, 0).expect("cluster");
    let stream = streaming_into(&cluster, 300);
    let joined = cluster.add_master().expect("a fourth master");
    // Not the master holding the shard's own checkpoint, which the
    // heartbeats move.
    let own = cluster.owner_of("SHARDSYNC_HEARTBEAT:ckpt:server1");
    let from = cluster.masters().into_iter().find(|m| *m != own).expect("another master");
    let lowest = cluster.first_slot_of(&from);
    reshard_between(cluster.node(&from), cluster.node(&joined), 500);
    wait_settled(&cluster, "the resharding");
    assert_eq!(cluster.slot_counts().get(&joined), Some(&500));
    assert_eq!(cluster.owner_of_slot(lowest), joined, "the copy's checkpoint of {from} moved with slot {lowest}");
    // The map is read again within 10 s (at a batch, one a second), and
    // the batch after marks what is bare: 15 s leave a few to spare.
    std::thread::sleep(Duration::from_secs(15));
    let victim = if the_new_one_restarts { joined } else { from };
    restart_without_its_data(&mut cluster, stream, &victim, false);
}

/// Slots that move while the stream writes nothing to them (no `MOVED`
/// to tell the writers): the per-master figures read the map again every
/// 10 s, so the records show the move.
#[test]
fn a_move_the_stream_never_meets_shows_in_the_per_master_records() {
    let cluster = Cluster::start(3, 0).expect("cluster");
    let stream = streaming_into(&cluster, 100);
    reshard(&cluster, 500);
    let counts = cluster.slot_counts();
    std::thread::sleep(Duration::from_secs(13));
    sigterm(&stream.child);
    let (_, out) = finish(stream.child, Duration::from_secs(30));
    for (master, slots) in counts {
        let last = out
            .lines()
            .rev()
            .filter(|l| l.contains(&format!("\"destination_node\":\"{master}\"")))
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .unwrap_or_else(|| panic!("no record of {master}:\n{out}"));
        assert_eq!(last["slots"].as_u64(), Some(slots as u64), "{master}: {last}");
    }
}

#[test]
fn writes_a_replica_has_not_acknowledged_are_checked_and_never_doubled() {
    let cluster = Cluster::start(3, 1).expect("cluster");
    let (stream, writer) = writing_into(&cluster, 100, Duration::from_millis(500));
    // A replica stops answering (below cluster-node-timeout: the cluster
    // still counts it): its master's writes are applied but not replicated,
    // so they go back and are judged by their slots' checkpoints.
    let replica = cluster.replica_of(&cluster.masters()[1]);
    replica.signal("-STOP");
    std::thread::sleep(Duration::from_millis(2500));
    replica.signal("-CONT");
    std::thread::sleep(Duration::from_millis(1000));
    let out = stream.end(writer, &cluster, Duration::from_secs(60));
    assert!(out.contains("replicas acknowledged within 2000 ms"), "the wait was not shown:\n{out}");
}

#[test]
fn sigkill_during_the_stream_into_a_cluster_neither_loses_nor_repeats_a_write() {
    let cluster = Cluster::start(3, 0).expect("cluster");
    let Streaming { source, task, addrs, child, full_syncs, _dir } = streaming_into(&cluster, 200);

    // A writer of counters and lists spread over every master, while the
    // tool is killed and started again, three times.
    let (stop, writer) = start_writer(source.port());
    let mut child = child;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        child = run_binary(&task, false);
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    wait_equal(&addrs, &cluster.seed(), Duration::from_secs(60));
    sigterm(&child);
    let (_, out) = finish(child, Duration::from_secs(30));
    assert_eq!(info_stat(&source, "sync_full"), full_syncs, "a restart copied again in full:\n{out}");

    // finish removes the shard's checkpoint and every slot's, from every master.
    let tool_keys = || {
        cluster
            .masters()
            .iter()
            .map(|m| cluster.node(m).redis_cli(&["--scan", "--pattern", "SHARDSYNC_HEARTBEAT*"]).expect("scan"))
            .filter(|out| !out.is_empty())
            .count()
    };
    assert!(tool_keys() > 0, "no checkpoint keys on the cluster before finish");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardsync"))
        .args(["finish", "--config"])
        .arg(&task)
        .output()
        .expect("finish");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("and their slots' keys, from 3 cluster masters"), "{text}");
    assert_eq!(tool_keys(), 0, "checkpoint keys left after finish");
}

#[test]
fn a_slot_in_the_middle_of_a_move_is_written_with_asking() {
    let cluster = Cluster::start(3, 0).expect("cluster");
    let id = |n: &RedisServer| n.redis_cli(&["CLUSTER", "MYID"]).expect("myid");
    let slot = cluster.nodes[0].redis_cli(&["CLUSTER", "KEYSLOT", "{mv}"]).expect("keyslot");
    let masters = cluster.masters();
    let owner = cluster.owner_of("{mv}");
    let from = cluster.node(&owner);
    let to = cluster.node(masters.iter().find(|m| **m != owner).expect("another master"));
    // The slot is half-way through a move and stays so: every key of it is
    // missing on its owner, which answers ASK, and only ASKING writes it
    // on the importing master.
    to.redis_cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id(from)]).expect("importing");
    from.redis_cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id(to)]).expect("migrating");

    let source = RedisServer::with_config(&["repl-backlog-size 64mb"]).expect("source");
    load(&source, "k", 100);
    let mut pipe = String::new();
    for i in 0..500 {
        pipe.push_str(&format!("SET {{mv}}:k:{i} v{i}\n"));
    }
    assert!(redis_pipe(source.port(), &pipe));
    let dir = tempfile::tempdir().expect("tmp");
    let task = task_file(dir.path(), &[("server1", source.addr())], &cluster.seed(), "");
    let child = run_binary(&task, false);
    let in_slot = |n: &RedisServer| n.redis_cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]).expect("count");
    let start = Instant::now();
    while in_slot(to) != "500" {
        assert!(start.elapsed() < Duration::from_secs(60), "the slot's keys did not reach the importing master");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(in_slot(from), "0");
    // verify reads the slot's keys where they are: its owner answers ASK,
    // and they are read on the importing master after ASKING (the ASK was
    // "a reply no Redis sends", and verify stopped there).
    let (code, out, err) = verify_binary(&task, &["--mode", "full"]);
    assert_eq!(code, 0, "verify while a slot is half-moved:\n{out}\n{err}");
    assert!(out.contains("result: EQUAL"), "{out}");

    // The stream: the slot's writes wait (a transaction with the slot's
    // checkpoint finds its keys on neither side yet: TRYAGAIN), retried.
    source.redis_cli(&["INCR", "{mv}:counter"]).expect("incr");
    source.redis_cli(&["SET", "{mv}:k:1", "changed"]).expect("set");
    source.redis_cli(&["SET", "elsewhere", "1"]).expect("set");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(in_slot(from), "0", "a write of the moving slot went to its old owner");
    // The move ends (importing side first, as redis-cli does).
    for n in [to, from] {
        n.redis_cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &id(to)]).expect("setslot node");
    }
    let addrs = vec![source.addr()];
    wait_equal(&addrs, &cluster.seed(), Duration::from_secs(60));
    assert_eq!(cluster.cli(&["GET", "{mv}:counter"]).expect("get"), "1");
    sigterm(&child);
    let (_, out) = finish(child, Duration::from_secs(30));
    assert_eq!(info_stat(&source, "sync_full"), 1, "copied again in full:\n{out}");
    assert!(out.contains("TRYAGAIN"), "the wait was not shown:\n{out}");
    let failing = |l: &&str| l.contains("\"destination_node\"") && !l.contains("\"errors\":0,");
    assert!(out.lines().any(|l| failing(&l)), "no master shows its errors:\n{out}");
}
