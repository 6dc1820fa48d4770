//! The replication reader against real `redis-server` masters: full sync
//! (disk-based and diskless) read back from the spool as an RDB that the
//! parser accepts, the command stream with offsets that match the master's,
//! ACKs the master sees, `PSYNC <replid> <offset>` continuing after a
//! disconnect, Redis 6.0.9, and a master that refuses PSYNC.

mod common;

use std::{collections::BTreeSet, error::Error, time::Duration};

use common::{RedisOptions, RedisServer};
use shardsync::{
    rdb::{Event, RdbReader},
    resp::{Cmd, ConnectOptions, Connection, Credentials, Value},
    source::{
        spool::SpoolOptions, PsyncEvent, PsyncPosition, ReplCommand, ReplicationConfig, ReplicationReader,
        ReplicationState, ReplicationStream, SourceError,
    },
};
use tokio::{sync::mpsc, time::timeout};
use tokio_util::sync::CancellationToken;

type TestResult = Result<(), Box<dyn Error>>;

/// Generous: two cores run several test binaries at once.
const WAIT: Duration = Duration::from_secs(20);

/// What the consumer thread saw, in order.
#[derive(Debug)]
enum Seen {
    FullResync {
        replid: String,
        offset: u64,
    },
    Continue {
        new_replid: Option<String>,
    },
    /// The keys (db, name) of the RDB, parsed to its verified end.
    Rdb {
        keys: BTreeSet<(u64, String)>,
        freed: u64,
    },
    Command(ReplCommand),
}

/// Reads the spool on a blocking thread the way the engine will: RDB through
/// `RdbReader`, then commands, releasing what it has consumed.
fn consume(mut stream: ReplicationStream, tx: mpsc::Sender<Seen>) -> Result<(), String> {
    loop {
        let event = stream.next_event().map_err(|e| e.to_string())?;
        let seen = match event {
            None => return Ok(()),
            Some(PsyncEvent::FullResync { replid, offset }) => {
                if tx.blocking_send(Seen::FullResync { replid, offset }).is_err() {
                    return Ok(());
                }
                let mut keys = BTreeSet::new();
                let mut db = 0;
                let mut rdb = RdbReader::new(stream.rdb());
                let mut verified = false;
                while let Some(event) = rdb.next_event().map_err(|e| e.to_string())? {
                    match event {
                        Event::SelectDb { db: d } => db = d,
                        Event::KeyStart(k) => {
                            keys.insert((db, String::from_utf8_lossy(&k.key).into_owned()));
                        }
                        Event::Eof { .. } => verified = true,
                        _ => {}
                    }
                }
                if !verified {
                    return Err("the RDB ended without its EOF opcode".into());
                }
                drop(rdb);
                match stream.next_event().map_err(|e| e.to_string())? {
                    Some(PsyncEvent::RdbEnd) => {}
                    other => return Err(format!("expected RdbEnd after the RDB, got {other:?}")),
                }
                let freed = stream.release_upto(stream.position()).map_err(|e| e.to_string())?;
                Seen::Rdb { keys, freed }
            }
            Some(PsyncEvent::Continue { new_replid }) => Seen::Continue { new_replid },
            Some(PsyncEvent::Command(c)) => Seen::Command(c),
            Some(other) => return Err(format!("unexpected event {other:?}")),
        };
        if tx.blocking_send(seen).is_err() {
            return Ok(());
        }
    }
}

struct Replica {
    reader: ReplicationReader,
    cancel: CancellationToken,
    seen: mpsc::Receiver<Seen>,
    consumer: tokio::task::JoinHandle<Result<(), String>>,
    /// The consumer ends by itself once the reader stops; this stops it
    /// when a test fails first.
    _consumer_guard: tokio_util::sync::DropGuard,
    _spool: tempfile::TempDir,
}

impl Replica {
    fn start(master: &RedisServer, tweak: impl FnOnce(&mut ReplicationConfig)) -> Result<Replica, Box<dyn Error>> {
        let spool = tempfile::tempdir()?;
        let mut config = ReplicationConfig::new("server1", master.addr(), spool.path().join("spool/server1"));
        // Small segments so a test crosses several.
        config.spool = SpoolOptions { segment_size: 16 * 1024, ..SpoolOptions::default() };
        tweak(&mut config);
        let cancel = CancellationToken::new();
        let reader = ReplicationReader::spawn(config, cancel.clone())?;
        let consumer_cancel = CancellationToken::new();
        let stream = reader.stream(consumer_cancel.clone())?;
        let (tx, seen) = mpsc::channel(1024);
        let consumer = tokio::task::spawn_blocking(move || consume(stream, tx));
        Ok(Replica { reader, cancel, seen, consumer, _consumer_guard: consumer_cancel.drop_guard(), _spool: spool })
    }

    async fn next(&mut self) -> Result<Seen, Box<dyn Error>> {
        match timeout(WAIT, self.seen.recv()).await {
            Ok(Some(seen)) => Ok(seen),
            Ok(None) => Err(format!("consumer ended: {:?}", self.reader.progress().borrow()).into()),
            Err(_) => {
                Err(format!("nothing from the consumer in {WAIT:?}: {:?}", self.reader.progress().borrow()).into())
            }
        }
    }

    /// Commands until one ends exactly at `offset`.
    async fn commands_upto(&mut self, offset: u64) -> Result<Vec<ReplCommand>, Box<dyn Error>> {
        let mut out: Vec<ReplCommand> = Vec::new();
        loop {
            match self.next().await? {
                Seen::Command(c) => {
                    if let Some(last) = out.last() {
                        assert_eq!(c.offset, last.offset + c.frame().len() as u64, "offsets add up");
                    }
                    let done = c.offset >= offset;
                    out.push(c);
                    if done {
                        assert_eq!(out.last().map(|c| c.offset), Some(offset), "a command ends at the master's offset");
                        return Ok(out);
                    }
                }
                other => return Err(format!("expected a command, got {other:?}").into()),
            }
        }
    }

    async fn stop(self) -> Result<(), Box<dyn Error>> {
        self.cancel.cancel();
        self.reader.join().await?;
        self.consumer.await?.map_err(|e| format!("consumer: {e}"))?;
        Ok(())
    }
}

async fn client(master: &RedisServer, password: Option<&str>) -> Result<Connection, Box<dyn Error>> {
    let opts = ConnectOptions { credentials: password.and_then(Credentials::parse), ..ConnectOptions::default() };
    Ok(Connection::connect(&master.addr(), &opts).await?)
}

async fn run(conn: &mut Connection, cmds: &[&[&str]]) -> Result<Vec<Value>, Box<dyn Error>> {
    let cmds: Vec<Cmd> = cmds.iter().map(|args| Cmd::from_args(args.iter())).collect();
    let replies = conn.pipeline(&cmds).await?;
    if let Some(err) = replies.iter().find_map(Value::as_error) {
        return Err(format!("command failed: {err}").into());
    }
    Ok(replies)
}

/// A field of `INFO <section>`.
async fn info_field(conn: &mut Connection, section: &str, field: &str) -> Result<String, Box<dyn Error>> {
    let info = conn.query(&Cmd::new("INFO").arg(section)).await?;
    let text = info.as_str().ok_or("INFO reply is not text")?.to_owned();
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .ok_or_else(|| format!("no {field} in INFO {section}: {text}").into())
}

async fn master_offset(conn: &mut Connection) -> Result<u64, Box<dyn Error>> {
    Ok(info_field(conn, "replication", "master_repl_offset").await?.parse()?)
}

/// The `offset=` the master holds for its (only) replica: our last ACK.
async fn replica_ack(conn: &mut Connection) -> Result<u64, Box<dyn Error>> {
    let line = info_field(conn, "replication", "slave0").await?;
    let offset = line.split(',').find_map(|kv| kv.strip_prefix("offset=")).ok_or("no offset= in slave0")?;
    Ok(offset.parse()?)
}

/// Polls the master until the offset it holds for our replica satisfies
/// `ok`.
async fn wait_for_ack(conn: &mut Connection, ok: impl Fn(u64) -> bool) -> TestResult {
    let start = tokio::time::Instant::now();
    loop {
        let acked = replica_ack(conn).await?;
        if ok(acked) {
            return Ok(());
        }
        if start.elapsed() > WAIT {
            return Err(format!("the master still holds offset={acked} for our replica").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seed_keys() -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = vec![
        vec!["HSET".into(), "hash".into(), "f".into(), "v".into()],
        vec!["RPUSH".into(), "list".into(), "a".into(), "b".into()],
        vec!["SADD".into(), "set".into(), "m".into()],
        vec!["ZADD".into(), "zset".into(), "1".into(), "m".into()],
        vec!["SET".into(), "ttl".into(), "v".into(), "EX".into(), "1000".into()],
    ];
    // Enough data for the RDB to span several 16 KiB spool segments, and
    // values LZF cannot shrink.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..400 {
        let value: String = (0..16)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                format!("{:08x}", state >> 32)
            })
            .collect();
        cmds.push(vec!["SET".into(), format!("key:{i}"), value]);
    }
    cmds
}

async fn write_seed(conn: &mut Connection) -> Result<BTreeSet<(u64, String)>, Box<dyn Error>> {
    let cmds = seed_keys();
    let cmds: Vec<Cmd> = cmds.iter().map(|args| Cmd::from_args(args.iter())).collect();
    conn.pipeline(&cmds).await?;
    run(conn, &[&["SELECT", "3"], &["SET", "in-db-3", "v"], &["SELECT", "0"]]).await?;
    let mut keys: BTreeSet<(u64, String)> = seed_keys().into_iter().map(|c| (0, c[1].clone())).collect();
    keys.insert((3, "in-db-3".into()));
    Ok(keys)
}

/// Full sync, then live writes through the stream; the master's offsets,
/// ACKs and sync counters checked along the way.
async fn full_sync_then_stream(master: &RedisServer, password: Option<&str>, diskless: bool) -> TestResult {
    let mut conn = client(master, password).await?;
    let keys = write_seed(&mut conn).await?;

    let mut replica = Replica::start(master, |c| c.credentials = password.and_then(Credentials::parse))?;
    let Seen::FullResync { replid, offset } = replica.next().await? else { panic!("expected +FULLRESYNC") };
    assert_eq!(replid.len(), 40);
    let Seen::Rdb { keys: got, freed } = replica.next().await? else { panic!("expected the RDB") };
    assert_eq!(got, keys);
    assert!(freed > 0, "applied segments are released");

    // Writes after the snapshot arrive as commands.
    run(&mut conn, &[&["SET", "after", "1"], &["INCR", "counter"], &["LPUSH", "list", "c"]]).await?;
    run(&mut conn, &[&["MULTI"], &["SET", "tx", "1"], &["INCR", "counter"], &["EXEC"]]).await?;
    // A command far bigger than a socket read or a spool segment.
    let big = "v".repeat(3 << 20);
    run(&mut conn, &[&["SET", "big", &big]]).await?;
    let target = master_offset(&mut conn).await?;
    let commands = replica.commands_upto(target).await?;
    assert!(commands[0].offset > offset);
    let names: Vec<String> = commands
        .iter()
        .map(|c| String::from_utf8_lossy(&c.args()[0]).to_ascii_uppercase())
        .filter(|n| n != "PING" && n != "SELECT")
        .collect();
    assert_eq!(names, ["SET", "INCR", "LPUSH", "MULTI", "SET", "INCR", "EXEC", "SET"]);
    assert_eq!(commands.last().map(|c| c.args()[2].len()), Some(big.len()));

    let progress = replica.reader.progress().borrow().clone();
    assert_eq!(progress.state, ReplicationState::Incremental);
    assert_eq!(progress.replid.as_deref(), Some(replid.as_str()));
    assert_eq!(progress.full_sync, Some(true));
    assert!(progress.received_offset >= Some(target));
    if diskless {
        assert_eq!(progress.rdb_total, None);
    } else {
        assert_eq!(progress.rdb_total, Some(progress.rdb_received));
    }
    assert!(progress.rdb_received > 40_000);

    // The periodic ACK reaches the master.
    wait_for_ack(&mut conn, |acked| acked >= target).await?;
    assert_eq!(info_field(&mut conn, "stats", "sync_full").await?, "1");
    replica.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_based_full_sync_then_commands() -> TestResult {
    let master = RedisServer::start(RedisOptions::new().password("s3cret").config("repl-diskless-sync no"))?;
    full_sync_then_stream(&master, Some("s3cret"), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diskless_full_sync_then_commands() -> TestResult {
    let master =
        RedisServer::start(RedisOptions::new().config("repl-diskless-sync yes").config("repl-diskless-sync-delay 0"))?;
    full_sync_then_stream(&master, None, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis6_full_sync_then_commands() -> TestResult {
    let master = RedisServer::start(RedisOptions::redis6()?.config("repl-diskless-sync no"))?;
    full_sync_then_stream(&master, None, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getack_is_answered_at_once() -> TestResult {
    // Disk-based: the master streams commands without waiting for an ACK,
    // so no ACK at all goes out unless a GETACK asks for it.
    let master = RedisServer::start(RedisOptions::new().config("repl-diskless-sync no"))?;
    let mut conn = client(&master, None).await?;
    // No periodic ACK during the test: only GETACK answers can satisfy WAIT.
    let mut replica = Replica::start(&master, |c| c.ack_interval = Duration::from_secs(3600))?;
    assert!(matches!(replica.next().await?, Seen::FullResync { .. }));
    assert!(matches!(replica.next().await?, Seen::Rdb { .. }));
    run(&mut conn, &[&["SET", "k", "v"]]).await?;
    let started = std::time::Instant::now();
    let acked = conn.query(&Cmd::from_args(["WAIT", "1", "5000"])).await?;
    assert_eq!(acked.as_int(), Some(1), "WAIT counts our replica");
    assert!(started.elapsed() < Duration::from_secs(4), "answered promptly: {:?}", started.elapsed());
    // The GETACK itself counts: the answer covers everything up to and
    // including it.
    let target = master_offset(&mut conn).await?;
    let commands = replica.commands_upto(target).await?;
    let getack = commands.iter().find(|c| c.is_getack()).ok_or("no REPLCONF GETACK in the stream")?;
    wait_for_ack(&mut conn, |acked| acked >= getack.offset).await?;
    replica.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psync_continues_after_a_disconnect() -> TestResult {
    let master = RedisServer::start(RedisOptions::new().config("repl-diskless-sync no"))?;
    let mut conn = client(&master, None).await?;
    run(&mut conn, &[&["SET", "before", "1"]]).await?;

    let mut first = Replica::start(&master, |_| {})?;
    let Seen::FullResync { replid, .. } = first.next().await? else { panic!("expected +FULLRESYNC") };
    assert!(matches!(first.next().await?, Seen::Rdb { .. }));
    run(&mut conn, &[&["SET", "during", "1"]]).await?;
    let target = master_offset(&mut conn).await?;
    first.commands_upto(target).await?;
    first.stop().await?;

    // Written while disconnected: must come through the backlog.
    run(&mut conn, &[&["INCR", "missed"], &["RPUSH", "list", "x"]]).await?;
    let resume = PsyncPosition { replid: replid.clone(), offset: target };
    let mut second = Replica::start(&master, |c| c.resume = Some(resume))?;
    let Seen::Continue { new_replid } = second.next().await? else { panic!("expected +CONTINUE") };
    // PSYNC2 masters name their ID on +CONTINUE to `capa psync2` replicas.
    assert_eq!(new_replid.as_deref(), Some(replid.as_str()));
    let target2 = master_offset(&mut conn).await?;
    let commands = second.commands_upto(target2).await?;
    assert_eq!(commands[0].offset, target + commands[0].frame().len() as u64, "continues exactly after our offset");
    let names: Vec<String> = commands
        .iter()
        .map(|c| String::from_utf8_lossy(&c.args()[0]).to_ascii_uppercase())
        .filter(|n| n != "PING" && n != "SELECT")
        .collect();
    assert_eq!(names, ["INCR", "RPUSH"]);
    let progress = second.reader.progress().borrow().clone();
    assert_eq!(progress.full_sync, Some(false));
    assert_eq!(progress.state, ReplicationState::Incremental);
    assert_eq!(info_field(&mut conn, "stats", "sync_partial_ok").await?, "1");
    assert_eq!(info_field(&mut conn, "stats", "sync_full").await?, "1");
    second.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_psync_is_a_clear_error() -> TestResult {
    let master = RedisServer::start(RedisOptions::new().config("rename-command PSYNC \"\""))?;
    let replica = Replica::start(&master, |_| {})?;
    let progress = replica.reader.progress();
    let err = timeout(WAIT, replica.reader.join()).await?.expect_err("PSYNC is refused");
    let message = err.to_string();
    assert!(matches!(err, SourceError::PsyncRefused { .. }), "{message}");
    assert!(message.contains("server1") && message.contains(&master.addr()), "{message}");
    assert!(message.contains("rename-command"), "{message}");
    let progress = progress.borrow().clone();
    assert_eq!(progress.state, ReplicationState::Failed);
    assert!(progress.error.is_some_and(|e| e.contains("PSYNC")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_names_the_step() -> TestResult {
    let master = RedisServer::start(RedisOptions::new().password("right"))?;
    let replica = Replica::start(&master, |c| c.credentials = Credentials::parse("wrong"))?;
    let err = timeout(WAIT, replica.reader.join()).await?.expect_err("AUTH fails");
    let message = err.to_string();
    assert!(message.contains("server1") && message.contains("connecting") && message.contains("password"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diskless_stream_starts_without_the_periodic_ack() -> TestResult {
    // The master waits for an ACK sent after it reaped the snapshot's child;
    // the reader's quick startup ACKs provide it.
    let master =
        RedisServer::start(RedisOptions::new().config("repl-diskless-sync yes").config("repl-diskless-sync-delay 0"))?;
    let mut conn = client(&master, None).await?;
    let mut replica = Replica::start(&master, |c| c.ack_interval = Duration::from_secs(3600))?;
    assert!(matches!(replica.next().await?, Seen::FullResync { .. }));
    assert!(matches!(replica.next().await?, Seen::Rdb { .. }));
    run(&mut conn, &[&["SET", "k", "v"]]).await?;
    let target = master_offset(&mut conn).await?;
    let started = std::time::Instant::now();
    replica.commands_upto(target).await?;
    assert!(started.elapsed() < Duration::from_secs(5), "stream started after {:?}", started.elapsed());
    replica.stop().await
}
