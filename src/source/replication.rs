//! [`ReplicationReader`]: one source master's replication link, from the
//! handshake to the spool; and [`ReplicationStream`]: the spool read back as
//! an RDB and a command stream.
//!
//! The reader's task connects with `resp::Connection` (AUTH), sends
//! `REPLCONF listening-port` and `REPLCONF capa eof capa psync2`, then takes
//! the raw socket, writes `PSYNC`, and loops: read the socket, frame the
//! bytes in place with a [`PsyncFramer`] (no copy, no argument vectors:
//! commands are split into arguments once, by the spool's reader), hand whole
//! frames to the spool through a [`SpoolFeed`] (a blocking writer thread
//! behind a small bounded queue), answer `REPLCONF GETACK`, and
//! send `REPLCONF ACK <offset>` every second once the command stream runs.
//! Framing on the way in is what tracks the offset and spots GETACKs; it
//! also keeps the spool ending on a frame boundary (a partial command waits
//! in memory), so a reconnect's `+CONTINUE` can be appended to the same
//! spool (issue 4). Progress goes out on a `watch` channel; every wait
//! selects on the cancellation token.
//!
//! The spool holds exactly what the master sent after `PSYNC`, starting with
//! its reply, plus a [`SpoolHeader`] saying what was asked and answered
//! (command-stream bytes the consumer took from memory as they came are
//! gaps in its files: see `spool_feed`). A
//! [`ReplicationStream`] (blocking: run it in `spawn_blocking` or a thread)
//! decodes the spool with the same decoder, yields the RDB as
//! an `rdb::RdbSource` ([`ReplicationStream::rdb`]) and then [`PsyncEvent::Command`]s
//! with their offsets, and frees applied segments
//! ([`ReplicationStream::release_upto`]).

use std::{io, path::PathBuf, sync::Arc, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
    task::JoinHandle,
    time::{timeout, timeout_at, Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use super::{
    handoff::{Handed, Handoff},
    psync::{
        ack_request, psync_request, Frame, KnownFrame, PsyncDecoder, PsyncError, PsyncEvent, PsyncFramer, PsyncPosition,
    },
    spool::{SpoolError, SpoolOptions, SpoolReader, SpoolWatch, SpoolWriter},
    spool_feed::{FeedStopped, SpoolFeed},
};
use crate::rdb::RdbSource;
use crate::resp::{Cmd, ConnectOptions, Connection, Credentials, RespError};

/// Free space ensured before each socket read of the command stream. A
/// catch-up reads a master's backlog as fast as it comes, each read then
/// filling its room: every read is a spool operation and a wake-up
/// downstream, and 256 KiB instead of 64 KiB took 14% off a catch-up's CPU
/// per command (`scripts/bench-stream-cpu.sh`, three alternating rounds;
/// 7% in four more by hand). A live stream's reads are smaller than either.
const READ_CHUNK: usize = 256 * 1024;

/// Bytes the consumer reads from the spool at a time.
const CONSUMER_CHUNK: usize = 256 * 1024;

/// Free space ensured before each read inside the snapshot: room for what
/// [`RDB_LOW_WATER`] lets gather.
const RDB_READ_CHUNK: usize = 1024 * 1024;

/// A snapshot read that brought less than this waits
/// [`RDB_COALESCE_WAIT`] before the next (see `Link::receive`). A diskless
/// master sends mixed-1m at about 70 MB/s here: 3 ms lets about 200 KiB
/// gather, and cut the tool's CPU per full copy by 8% against 1 ms (four
/// alternating rounds each, wall time unchanged); 5 ms gained no more than
/// the noise.
const RDB_COALESCE_BELOW: usize = 64 * 1024;
const RDB_COALESCE_WAIT: Duration = Duration::from_millis(3);

/// While a snapshot arrives, the socket's receive low-water mark
/// (`SO_RCVLOWAT`, see `resp::low_water`): the kernel wakes the link only
/// once this much is queued, and the link looks anyway after
/// [`RDB_LOW_WATER_WAIT`] (a wait that saw nothing lowers the mark, which
/// makes whatever is queued readable at once; the next read raises it
/// again). So the link reads a snapshot every 10 ms or every MiB, whichever
/// comes first, and a snapshot's last bytes (its size is not known before
/// a diskless master's end mark) wait 10 ms at most.
///
/// A master writes a snapshot in pieces of 16 KiB, and each piece woke a
/// runtime thread that had parked, mostly for nothing (the link was waiting
/// out [`RDB_COALESCE_WAIT`]): about 21,000 voluntary context switches per
/// diskless full copy of mixed-1m. With the mark: about 4,500, and the
/// tool's CPU 1.76 → 1.27 s (median of four alternating rounds; 256 KiB:
/// 1.31 s, 2 MiB: 1.25 s with 3 MB more RSS, 4 MiB: 1.30 s with 10 MB more).
const RDB_LOW_WATER: usize = 1024 * 1024;
const RDB_LOW_WATER_WAIT: Duration = Duration::from_millis(10);

/// A command-stream read that drained the socket and still brought this
/// much (a busy source: over a hundred commands of 64 bytes) waits
/// [`STREAM_COALESCE_WAIT`] before the next. Under `redis-benchmark -P 16`
/// the link read about 24 KiB at a time, and each read cost a wake-up of
/// the link, the consumer and the applier; 8 KiB and 5 ms took 11% off the
/// tool's CPU per streamed command (five alternating rounds; 3 ms: 8%;
/// 500 bytes and 0.5 ms: 15% more, as a quiet stream's every read then
/// also costs a timer's wake-up). A quieter stream never waits, and a
/// busy one's commands wait at most this long on their way through.
const STREAM_COALESCE_FROM: usize = 8 * 1024;
const STREAM_COALESCE_WAIT: Duration = Duration::from_millis(5);

/// Longest wait to hand a few bytes (PSYNC, an ACK) to the kernel.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a diskless snapshot the master starts the command stream only on
/// an ACK that arrives once it has reaped the snapshot's child process
/// (replconfCommand, "ack"); an earlier ACK is not enough. So the first ACKs
/// go out this often, this many times, instead of waiting a whole
/// `ack_interval` for the next one.
const STARTUP_ACK_EVERY: Duration = Duration::from_millis(100);
const STARTUP_ACKS: u32 = 20;

/// The spool header's format version.
const HEADER_FORMAT: u32 = 1;

/// One source master and how to replicate from it.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// The shard's name, for messages.
    pub shard: String,
    /// `host:port` of the Redis-Server.
    pub addr: String,
    pub credentials: Option<Credentials>,
    /// The spool directory (`<state_dir>/<task>/spool/<shard>`); emptied at
    /// start.
    pub spool_dir: PathBuf,
    pub spool: SpoolOptions,
    /// Continue after this position (`PSYNC <replid> <offset+1>`); `None`
    /// asks for a full copy (`PSYNC ? -1`).
    pub resume: Option<PsyncPosition>,
    /// Sent as `REPLCONF listening-port`. The master only shows it in
    /// `INFO replication`; 0 (the default) makes sure nothing (Sentinel,
    /// an operator's script) mistakes the tool for a Redis it could connect
    /// to and promote.
    pub listening_port: u16,
    /// How often `REPLCONF ACK` is sent during the command stream. 1 s, as
    /// Redis replicas do; the master drops a replica that is silent for
    /// `repl-timeout` (60 s).
    pub ack_interval: Duration,
    /// Bounds the TCP connect and each handshake reply.
    pub connect_timeout: Duration,
    /// Longest silence from the master before the link is considered dead.
    /// Masters send a keep-alive every second while preparing a snapshot
    /// and a PING every `repl-ping-replica-period` (10 s) after it.
    pub idle_timeout: Duration,
}

impl ReplicationConfig {
    /// Defaults: no password, full copy, 64 MiB segments, ACK every second,
    /// 5 s connect timeout, 60 s idle timeout (Redis's `repl-timeout`).
    pub fn new(shard: impl Into<String>, addr: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        ReplicationConfig {
            shard: shard.into(),
            addr: addr.into(),
            credentials: None,
            spool_dir: spool_dir.into(),
            spool: SpoolOptions::default(),
            resume: None,
            listening_port: 0,
            ack_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the link is, as in the `--json` progress records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationState {
    #[default]
    Connecting,
    /// AUTH, REPLCONF, PSYNC, and waiting for the snapshot to start.
    Handshake,
    /// Receiving the snapshot.
    Rdb,
    /// Receiving the command stream.
    Incremental,
    /// Cancelled.
    Stopped,
    Failed,
}

/// The reader's latest progress; plain data for dashboards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationProgress {
    pub state: ReplicationState,
    /// The master's replication ID, once it answered PSYNC.
    pub replid: Option<String>,
    /// Whether the master sent a full copy (`None` before its answer).
    pub full_sync: Option<bool>,
    pub rdb_received: u64,
    /// The snapshot's size when the master said (disk-based sync).
    pub rdb_total: Option<u64>,
    /// The replication offset after the last complete command received.
    pub received_offset: Option<u64>,
    /// The last offset sent in `REPLCONF ACK`.
    pub acked_offset: Option<u64>,
    /// Bytes handed to the spool.
    pub spooled: u64,
    /// Why the reader failed, when it did.
    pub error: Option<String>,
}

/// How the snapshot arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum RdbTransfer {
    /// `$<len>`: the master saved to disk first.
    Disk { len: u64 },
    /// `$EOF:<mark>`: streamed from the fork (`repl-diskless-sync yes`).
    Diskless,
}

/// What a spool holds, stored next to it (`spool.json`) so that a restarted
/// process knows without decoding it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolHeader {
    pub format: u32,
    pub shard: String,
    pub addr: String,
    /// What PSYNC asked for; `None` = `PSYNC ? -1`. The spool's first bytes
    /// are the answer to it.
    pub requested: Option<PsyncPosition>,
    /// The master's replication ID and the offset its command stream starts
    /// at, once it answered.
    pub session: Option<PsyncPosition>,
    pub full_sync: Option<bool>,
    pub rdb: Option<RdbTransfer>,
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{shard} ({addr}): {step}: {source}")]
    Resp {
        shard: String,
        addr: String,
        step: &'static str,
        #[source]
        source: Box<RespError>,
    },
    #[error("{shard} ({addr}): the source refused PSYNC: \"{message}\"{hint}")]
    PsyncRefused { shard: String, addr: String, message: String, hint: &'static str },
    #[error("{shard} ({addr}): bad replication stream while {step}: {source}")]
    Protocol {
        shard: String,
        addr: String,
        step: String,
        #[source]
        source: PsyncError,
    },
    #[error("{shard} ({addr}): the source closed the connection while {step}")]
    Closed { shard: String, addr: String, step: String },
    #[error(
        "{shard} ({addr}): nothing received for {timeout:?} while {step}: \
         the source or the network stalled"
    )]
    Idle { shard: String, addr: String, step: String, timeout: Duration },
    #[error("{shard} ({addr}): network error while {step}: {source}")]
    Io {
        shard: String,
        addr: String,
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("{shard}: {source}")]
    Spool {
        shard: String,
        #[source]
        source: SpoolError,
    },
    #[error("{shard}: the spooled replication stream is invalid at spool byte {position}: {source}")]
    SpoolStream {
        shard: String,
        position: u64,
        #[source]
        source: PsyncError,
    },
}

/// What the master's refusal means for the operator.
fn refusal_hint(message: &str) -> &'static str {
    let upper = message.to_ascii_uppercase();
    if upper.starts_with("ERR UNKNOWN COMMAND") {
        ": PSYNC is disabled or renamed on this server (rename-command), or the address is a proxy \
         such as twemproxy; point the task at the Redis-Server itself with PSYNC enabled"
    } else if upper.starts_with("NOPERM") {
        ": the user may not replicate; grant it +psync +replconf (or +@admin)"
    } else if upper.starts_with("LOADING") {
        ": the source is loading its dataset; start again once it has finished"
    } else if upper.starts_with("NOMASTERLINK") || upper.starts_with("MASTERDOWN") {
        ": the source is a replica whose link to its master is down; use the master, or wait for the link"
    } else {
        ""
    }
}

/// A running replication link; see the module docs.
#[derive(Debug)]
pub struct ReplicationReader {
    shard: String,
    requested: Option<u64>,
    progress: watch::Receiver<ReplicationProgress>,
    spool: SpoolWatch,
    handoff: Arc<Handoff>,
    task: JoinHandle<Result<(), SourceError>>,
}

impl ReplicationReader {
    /// Creates the spool (emptying the directory) and starts the link on
    /// the current tokio runtime. It runs until `cancel` fires (then ends
    /// `Ok`, state `Stopped`) or it fails (state `Failed`).
    pub fn spawn(config: ReplicationConfig, cancel: CancellationToken) -> Result<ReplicationReader, SourceError> {
        let spool_error = |source| SourceError::Spool { shard: config.shard.clone(), source };
        let writer = SpoolWriter::create(&config.spool_dir, config.spool.clone()).map_err(spool_error)?;
        let header = SpoolHeader {
            format: HEADER_FORMAT,
            shard: config.shard.clone(),
            addr: config.addr.clone(),
            requested: config.resume.clone(),
            session: None,
            full_sync: None,
            rdb: None,
        };
        writer.write_header(&header).map_err(spool_error)?;
        let spool = writer.watch();
        let (progress_tx, progress) = watch::channel(ReplicationProgress::default());
        let shard = config.shard.clone();
        let requested = config.resume.as_ref().map(|p| p.offset);
        let handoff = Arc::new(Handoff::default());
        let task = tokio::spawn(run(config, header, cancel, writer, handoff.clone(), progress_tx));
        Ok(ReplicationReader { shard, requested, progress, spool, handoff, task })
    }

    /// The latest progress, updated as bytes arrive.
    pub fn progress(&self) -> watch::Receiver<ReplicationProgress> {
        self.progress.clone()
    }

    pub fn spool(&self) -> &SpoolWatch {
        &self.spool
    }

    /// A consumer of everything spooled, from the PSYNC reply on. One per
    /// reader: the command stream's bytes held in memory go to the first
    /// consumer that takes them, and a second one would find gaps in the
    /// file where they are (a corrupt-spool error, never a silent skip).
    pub fn stream(&self, cancel: CancellationToken) -> Result<ReplicationStream, SourceError> {
        let reader =
            self.spool.reader(0, cancel).map_err(|source| SourceError::Spool { shard: self.shard.clone(), source })?;
        let mut stream = ReplicationStream::new(self.shard.clone(), reader, PsyncDecoder::new(self.requested));
        stream.handoff = Some(self.handoff.clone());
        Ok(stream)
    }

    /// Waits for the link to end: `Ok` when cancelled.
    pub async fn join(self) -> Result<(), SourceError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => Ok(()),
        }
    }
}

async fn run(
    config: ReplicationConfig,
    header: SpoolHeader,
    cancel: CancellationToken,
    writer: SpoolWriter,
    handoff: Arc<Handoff>,
    progress_tx: watch::Sender<ReplicationProgress>,
) -> Result<(), SourceError> {
    let (feed, spooler) = SpoolFeed::start(writer, handoff.clone());
    let mut link = Link::new(&config, header, feed, &progress_tx, handoff);
    let received = link.run(&cancel).await;
    drop(link);
    // A failed spool closes the queue, which the link reports vaguely; the
    // spool's own error is the cause.
    let result = match spooler.join().await {
        Err(source) => Err(SourceError::Spool { shard: config.shard.clone(), source }),
        Ok(()) => received,
    };
    progress_tx.send_modify(|p| {
        p.state = if result.is_ok() { ReplicationState::Stopped } else { ReplicationState::Failed };
        p.error = result.as_ref().err().map(ToString::to_string);
    });
    result
}

/// What a batch of decoded events asks the link to do.
#[derive(Default)]
struct Reactions {
    ack_now: bool,
    header_changed: bool,
}

/// How long the link lets bytes gather after a read of `n` bytes that had
/// `room` bytes of buffer (see `Link::receive`).
fn pause_after_read(in_rdb: bool, n: usize, room: usize) -> Option<Duration> {
    if in_rdb {
        // The room is at least a quarter of `RDB_READ_CHUNK`, more than this.
        return (n < RDB_COALESCE_BELOW).then_some(RDB_COALESCE_WAIT);
    }
    let drained = n < room;
    (drained && n >= STREAM_COALESCE_FROM).then_some(STREAM_COALESCE_WAIT)
}

/// The state of one connection's receive loop.
struct Link<'a> {
    config: &'a ReplicationConfig,
    header: SpoolHeader,
    spool: SpoolFeed<SpoolHeader>,
    progress_tx: &'a watch::Sender<ReplicationProgress>,
    progress: ReplicationProgress,
    framer: PsyncFramer,
    /// Raw bytes read but not yet spooled: the frames found by the last
    /// pass, then a partial frame at most.
    pending: BytesMut,
    /// Framer position up to which bytes went to the spool.
    spooled_upto: u64,
    rdb_started: bool,
    /// Quick ACKs still to send after a diskless snapshot, and when.
    startup_acks: u32,
    next_startup_ack: Option<Instant>,
    /// Whether the consumer would take frames in memory (see [`Handoff`]).
    handoff: Arc<Handoff>,
}

enum Wake {
    Cancelled,
    Ack,
    Read(io::Result<usize>),
    /// A wait under a raised low-water mark saw nothing for
    /// [`RDB_LOW_WATER_WAIT`].
    Look,
    Idle,
}

/// The link socket's receive low-water mark: raised while a snapshot
/// arrives (see [`RDB_LOW_WATER`]).
#[derive(Debug, Default)]
struct LowWater {
    /// The mark as the kernel has it (0 before the first change: the
    /// kernel's default, 1).
    set: usize,
    /// A wait saw nothing under the raised mark: it stays lowered until
    /// the next read.
    lowered: bool,
}

impl LowWater {
    /// Sets the mark for the next wait; `true` while it is raised (the wait
    /// must then look again after [`RDB_LOW_WATER_WAIT`]). Setting it fails
    /// only for a closed or foreign descriptor, which the read reports; the
    /// mark is then taken to be what it was.
    fn before_read(&mut self, socket: &TcpStream, in_rdb: bool) -> bool {
        let want = if in_rdb && !self.lowered { RDB_LOW_WATER } else { 1 };
        if want != self.set.max(1) {
            match crate::resp::low_water::set_low_water_up_to(socket, want, RDB_LOW_WATER) {
                Ok(()) => self.set = want,
                Err(e) => tracing::debug!(error = %e, "cannot set the link's receive low-water mark"),
            }
        }
        self.set > 1
    }
}

impl<'a> Link<'a> {
    fn new(
        config: &'a ReplicationConfig,
        header: SpoolHeader,
        spool: SpoolFeed<SpoolHeader>,
        progress_tx: &'a watch::Sender<ReplicationProgress>,
        handoff: Arc<Handoff>,
    ) -> Self {
        Link {
            config,
            header,
            spool,
            progress_tx,
            progress: ReplicationProgress::default(),
            framer: PsyncFramer::new(config.resume.as_ref().map(|p| p.offset)),
            pending: BytesMut::new(),
            spooled_upto: 0,
            rdb_started: false,
            startup_acks: 0,
            next_startup_ack: None,
            handoff,
        }
    }

    fn publish(&self) {
        self.progress_tx.send_replace(self.progress.clone());
    }

    fn set_state(&mut self, state: ReplicationState) {
        self.progress.state = state;
        self.publish();
    }

    /// The step in progress, for error messages.
    fn step(&self) -> String {
        let p = &self.progress;
        match p.state {
            ReplicationState::Rdb if self.rdb_started => match p.rdb_total {
                Some(total) => format!("reading the RDB at byte {} of {total}", p.rdb_received),
                None => format!("reading the RDB (diskless) at byte {}", p.rdb_received),
            },
            ReplicationState::Rdb => "waiting for the master to start sending the RDB".to_owned(),
            ReplicationState::Incremental => {
                format!("reading the command stream at offset {}", p.received_offset.unwrap_or(0))
            }
            _ => "waiting for the reply to PSYNC".to_owned(),
        }
    }

    fn resp_error(&self, step: &'static str) -> impl FnOnce(RespError) -> SourceError + '_ {
        move |source| SourceError::Resp {
            shard: self.config.shard.clone(),
            addr: self.config.addr.clone(),
            step,
            source: Box::new(source),
        }
    }

    fn io_error(&self, source: io::Error) -> SourceError {
        let (shard, addr, step) = (self.config.shard.clone(), self.config.addr.clone(), self.step());
        match source.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => SourceError::Closed { shard, addr, step },
            _ => SourceError::Io { shard, addr, step, source },
        }
    }

    /// Connects, handshakes, and receives until cancelled or failed.
    async fn run(&mut self, cancel: &CancellationToken) -> Result<(), SourceError> {
        self.set_state(ReplicationState::Connecting);
        let Some(socket) = cancel.run_until_cancelled(self.handshake()).await else {
            return Ok(());
        };
        let (socket, leftover) = socket?;
        self.receive(socket, leftover, cancel).await
    }

    async fn handshake(&mut self) -> Result<(TcpStream, BytesMut), SourceError> {
        let config = self.config;
        let opts = ConnectOptions {
            connect_timeout: config.connect_timeout,
            read_timeout: Some(config.connect_timeout),
            credentials: config.credentials.clone(),
        };
        let mut conn = Connection::connect(&config.addr, &opts).await.map_err(self.resp_error("connecting"))?;
        self.set_state(ReplicationState::Handshake);
        let port = Cmd::new("REPLCONF").arg("listening-port").arg(config.listening_port.to_string());
        conn.query(&port).await.map_err(self.resp_error("REPLCONF listening-port"))?;
        // eof: we can read a diskless `$EOF:` transfer; psync2: we
        // understand `+CONTINUE <new replid>`.
        let capa = Cmd::from_args(["REPLCONF", "capa", "eof", "capa", "psync2"]);
        conn.query(&capa).await.map_err(self.resp_error("REPLCONF capa"))?;
        // From here the master speaks the replication framing, which
        // `Connection` does not parse: PSYNC goes out on the raw socket.
        let (mut socket, leftover) = conn.into_inner();
        let psync = psync_request(config.resume.as_ref());
        match timeout(WRITE_TIMEOUT, socket.write_all(&psync)).await {
            Ok(Ok(())) => Ok((socket, leftover)),
            Ok(Err(e)) => Err(self.io_error(e)),
            Err(_) => Err(self.io_error(io::Error::new(io::ErrorKind::TimedOut, "sending PSYNC timed out"))),
        }
    }

    async fn receive(
        &mut self,
        mut socket: TcpStream,
        leftover: BytesMut,
        cancel: &CancellationToken,
    ) -> Result<(), SourceError> {
        let mut ack_tick = tokio::time::interval(self.config.ack_interval);
        ack_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut deadline = Instant::now() + self.config.idle_timeout;
        self.pending = leftover;
        if !self.pending.is_empty() {
            self.absorb(&mut socket, cancel).await?;
        }
        let mut marks = LowWater::default();
        loop {
            let in_rdb = self.framer.in_rdb();
            let chunk = if in_rdb { RDB_READ_CHUNK } else { READ_CHUNK };
            if self.pending.capacity() - self.pending.len() < chunk / 4 {
                self.pending.reserve(chunk);
            }
            let room = self.pending.capacity() - self.pending.len();
            let acking = self.framer.in_command_stream();
            let startup_ack = self.next_startup_ack;
            let held = marks.before_read(&socket, in_rdb);
            let look = if held { deadline.min(Instant::now() + RDB_LOW_WATER_WAIT) } else { deadline };
            let wake = tokio::select! {
                biased;
                _ = cancel.cancelled() => Wake::Cancelled,
                _ = ack_tick.tick(), if acking => Wake::Ack,
                _ = tokio::time::sleep_until(startup_ack.unwrap_or(deadline)), if startup_ack.is_some() => {
                    self.startup_acks = self.startup_acks.saturating_sub(1);
                    self.next_startup_ack = (self.startup_acks > 0).then(|| Instant::now() + STARTUP_ACK_EVERY);
                    Wake::Ack
                }
                read = timeout_at(look, socket.read_buf(&mut self.pending)) => match read {
                    Ok(read) => Wake::Read(read),
                    // Past the deadline the link is idle, raised mark or not.
                    Err(_) if held && Instant::now() < deadline => Wake::Look,
                    Err(_) => Wake::Idle,
                },
            };
            match wake {
                Wake::Cancelled => return Ok(()),
                Wake::Look => marks.lowered = true,
                Wake::Ack => self.send_ack(&mut socket).await?,
                Wake::Idle => {
                    return Err(SourceError::Idle {
                        shard: self.config.shard.clone(),
                        addr: self.config.addr.clone(),
                        step: self.step(),
                        timeout: self.config.idle_timeout,
                    })
                }
                Wake::Read(Ok(0)) => return Err(self.io_error(io::ErrorKind::UnexpectedEof.into())),
                Wake::Read(Err(e)) => return Err(self.io_error(e)),
                Wake::Read(Ok(n)) => {
                    marks.lowered = false;
                    deadline = Instant::now() + self.config.idle_timeout;
                    self.absorb(&mut socket, cancel).await?;
                    // A read that drained the socket: let more arrive before
                    // the next. Each read wakes the consumer and the applier
                    // in turn, and a master writes in pieces of a few KiB,
                    // so reading them one by one cost more CPU in wake-ups
                    // than in work. Nothing waits on a snapshot byte by the
                    // millisecond; a busy stream's commands wait a few (see
                    // `STREAM_COALESCE_FROM`); the socket buffers hold far
                    // more. A read that filled the room it had did not
                    // drain the socket: the next follows at once.
                    if let Some(wait) = pause_after_read(self.framer.in_rdb(), n, room) {
                        tokio::select! {
                            _ = cancel.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }

    /// Handles every complete event in the decoder, spools the bytes they
    /// cover, and answers what needs answering.
    async fn absorb(&mut self, socket: &mut TcpStream, cancel: &CancellationToken) -> Result<(), SourceError> {
        let mut reactions = Reactions::default();
        // The frames found, for the consumer (see `Handoff`): only while
        // every one is part of the command stream, and not for a consumer
        // catching up from the file (the spooled bytes start at
        // `spooled_upto`). Sized for commands of about 64 bytes: grown by
        // doubling, the vector's copies showed in profiles.
        let wanted = self.framer.in_command_stream() && self.handoff.accepts(self.spooled_upto);
        let mut known: Option<Vec<KnownFrame>> = wanted.then(|| Vec::with_capacity(self.pending.len() / 64 + 1));
        loop {
            let framed = usize::try_from(self.framer.position() - self.spooled_upto).unwrap_or(usize::MAX);
            let frame = self.framer.next_frame(&self.pending[framed..]).map_err(|source| SourceError::Protocol {
                shard: self.config.shard.clone(),
                addr: self.config.addr.clone(),
                step: self.step(),
                source,
            })?;
            let Some((frame, len)) = frame else { break };
            if let Some(frames) = &mut known {
                match KnownFrame::of(&frame, len, &self.framer) {
                    Some(f) => frames.push(f),
                    None => known = None,
                }
            }
            self.react(frame, len, &mut reactions)?;
        }
        if reactions.header_changed {
            let header = self.header.clone();
            self.stopped_spool(self.spool.header(header, cancel).await)?;
        }
        let framed = usize::try_from(self.framer.position() - self.spooled_upto).unwrap_or(usize::MAX);
        self.progress.spooled += framed as u64;
        // Published before the bytes reach the spool, so whatever a consumer
        // reads is already reflected in the progress.
        self.publish();
        if framed > 0 {
            let bytes = self.pending.split_to(framed).freeze();
            self.spooled_upto = self.framer.position();
            // The frames must cover exactly these bytes, or none are given.
            let known = known.filter(|f| f.iter().map(KnownFrame::len).sum::<usize>() == bytes.len());
            match self.spool.append(bytes, known, cancel).await {
                // Nothing more to acknowledge: the caller's loop sees the token.
                Err(FeedStopped::Cancelled) => return Ok(()),
                fed => self.stopped_spool(fed)?,
            }
        }
        if reactions.ack_now {
            self.send_ack(socket).await?;
        }
        Ok(())
    }

    /// Takes note of one frame, `len` bytes long.
    fn react(&mut self, frame: Frame, len: usize, reactions: &mut Reactions) -> Result<(), SourceError> {
        let p = &mut self.progress;
        match frame {
            Frame::KeepAlive => {}
            Frame::FullResync { .. } | Frame::Continue { .. } if p.full_sync.is_some() => {
                return Err(SourceError::Protocol {
                    shard: self.config.shard.clone(),
                    addr: self.config.addr.clone(),
                    step: self.step(),
                    source: PsyncError::UnexpectedReply {
                        at: self.framer.position(),
                        line: "a second PSYNC reply on one connection".to_owned(),
                    },
                });
            }
            Frame::FullResync { replid, offset } => {
                p.replid = Some(replid.clone());
                p.full_sync = Some(true);
                p.received_offset = Some(offset);
                p.state = ReplicationState::Rdb;
                self.header.session = Some(PsyncPosition { replid, offset });
                self.header.full_sync = Some(true);
                reactions.header_changed = true;
            }
            Frame::Continue { new_replid } => {
                let requested = self.config.resume.clone();
                let replid = new_replid.or(requested.as_ref().map(|r| r.replid.clone())).unwrap_or_default();
                let offset = self.framer.offset().unwrap_or(0);
                p.replid = Some(replid.clone());
                p.full_sync = Some(false);
                p.received_offset = Some(offset);
                p.state = ReplicationState::Incremental;
                self.header.session = Some(PsyncPosition { replid, offset });
                self.header.full_sync = Some(false);
                reactions.header_changed = true;
                reactions.ack_now = true;
            }
            Frame::MasterError { message } => {
                return Err(SourceError::PsyncRefused {
                    shard: self.config.shard.clone(),
                    addr: self.config.addr.clone(),
                    hint: refusal_hint(&message),
                    message,
                });
            }
            Frame::RdbBegin { len: total } => {
                self.rdb_started = true;
                p.rdb_total = total;
                self.header.rdb = Some(match total {
                    Some(len) => RdbTransfer::Disk { len },
                    None => RdbTransfer::Diskless,
                });
                reactions.header_changed = true;
            }
            Frame::RdbData => p.rdb_received += len as u64,
            Frame::RdbEnd => {
                p.state = ReplicationState::Incremental;
                reactions.ack_now = true;
                if self.header.rdb == Some(RdbTransfer::Diskless) {
                    self.startup_acks = STARTUP_ACKS;
                    self.next_startup_ack = Some(Instant::now() + STARTUP_ACK_EVERY);
                }
            }
            Frame::Command { offset, getack } => {
                p.received_offset = Some(offset);
                reactions.ack_now |= getack;
            }
        }
        Ok(())
    }

    fn stopped_spool(&self, fed: Result<(), FeedStopped>) -> Result<(), SourceError> {
        match fed {
            // Cancelled: the caller's loop sees the token next.
            Ok(()) | Err(FeedStopped::Cancelled) => Ok(()),
            // The writer thread stopped; `run` reports its error instead.
            Err(FeedStopped::WriterGone) => Err(SourceError::Spool {
                shard: self.config.shard.clone(),
                source: SpoolError::Cancelled { dir: self.config.spool_dir.clone() },
            }),
        }
    }

    async fn send_ack(&mut self, socket: &mut TcpStream) -> Result<(), SourceError> {
        let Some(offset) = self.framer.offset().filter(|_| self.framer.in_command_stream()) else {
            return Ok(());
        };
        match timeout(WRITE_TIMEOUT, socket.write_all(&ack_request(offset))).await {
            Ok(Ok(())) => {
                self.progress.acked_offset = Some(offset);
                self.publish();
                Ok(())
            }
            Ok(Err(e)) => Err(self.io_error(e)),
            Err(_) => Err(self.io_error(io::Error::new(io::ErrorKind::TimedOut, "sending REPLCONF ACK timed out"))),
        }
    }
}

/// The spool read back; see the module docs. Blocking.
#[derive(Debug)]
pub struct ReplicationStream {
    shard: String,
    reader: SpoolReader,
    decoder: PsyncDecoder,
    /// What the spool writer hands over in memory (see [`Handoff`]); `None`
    /// reads only the file.
    handoff: Option<Arc<Handoff>>,
    /// Handed-over bytes whose frames the link described, not yet returned.
    known: Option<KnownRun>,
    /// RDB bytes taken from the decoder but not yet read through [`RdbBody`].
    rdb_piece: Bytes,
    /// An event [`RdbBody`] ran into, handed out by the next `next_event`.
    held: Option<(PsyncEvent, u64)>,
    /// Spool position after the last event handed out.
    position: u64,
}

impl ReplicationStream {
    /// Reads `reader` with `decoder` (e.g. `PsyncDecoder::new(requested)` at
    /// the spool's start).
    pub fn new(shard: String, reader: SpoolReader, decoder: PsyncDecoder) -> Self {
        let position = reader.position();
        ReplicationStream {
            shard,
            reader,
            decoder,
            handoff: None,
            known: None,
            rdb_piece: Bytes::new(),
            held: None,
            position,
        }
    }

    /// The spool position after the last event returned: what to pass to
    /// [`release_upto`](Self::release_upto) once that event is applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The replication offset after the last command decoded.
    pub fn offset(&self) -> Option<u64> {
        self.decoder.offset()
    }

    /// Whether bytes already read are waiting to be decoded: the next event
    /// is then (most likely) at hand, so a consumer batching events can keep
    /// going rather than hand over what it has.
    pub fn has_buffered(&self) -> bool {
        self.decoder.buffered() > 0
            || !self.rdb_piece.is_empty()
            || self.held.is_some()
            || self.known.as_ref().is_some_and(|k| k.at < k.bytes.len())
    }

    /// Deletes spool segments before `position` (see
    /// [`SpoolReader::release_upto`]); returns the bytes freed.
    pub fn release_upto(&mut self, position: u64) -> Result<u64, SourceError> {
        self.reader
            .release_upto(position.min(self.position))
            .map_err(|source| SourceError::Spool { shard: self.shard.clone(), source })
    }

    /// The next event other than a keep-alive, waiting for the reader as
    /// needed; `None` once the reader has stopped and everything spooled is
    /// returned (a frame cut by the stop is not).
    pub fn next_event(&mut self) -> Result<Option<PsyncEvent>, SourceError> {
        if !self.rdb_piece.is_empty() {
            return Ok(Some(PsyncEvent::RdbData(std::mem::take(&mut self.rdb_piece))));
        }
        if let Some((event, position)) = self.held.take() {
            self.position = position;
            return Ok(Some(event));
        }
        let event = self.decode()?;
        self.position = self.decoder.position();
        Ok(event)
    }

    fn decode(&mut self) -> Result<Option<PsyncEvent>, SourceError> {
        loop {
            if let Some(event) = self.next_known() {
                match event {
                    PsyncEvent::KeepAlive => continue,
                    event => return Ok(Some(event)),
                }
            }
            let event = self.decoder.next_event().map_err(|source| SourceError::SpoolStream {
                shard: self.shard.clone(),
                position: self.decoder.position(),
                source,
            })?;
            match event {
                Some(PsyncEvent::KeepAlive) => continue,
                Some(event) => return Ok(Some(event)),
                None => {}
            }
            if !self.fetch().map_err(|source| SourceError::Spool { shard: self.shard.clone(), source })? {
                return Ok(None);
            }
        }
    }

    /// The next event of the frames handed over with their bytes.
    fn next_known(&mut self) -> Option<PsyncEvent> {
        let run = self.known.as_mut()?;
        let Some(frame) = run.frames.next() else {
            self.known = None;
            return None;
        };
        let raw = run.bytes.slice(run.at..run.at + frame.len());
        match self.decoder.take_known(frame, raw) {
            Some(event) => {
                run.at += frame.len();
                Some(event)
            }
            // The decoder cannot take them as framed: it frames them itself.
            None => {
                self.decoder.feed(&run.bytes[run.at..]);
                self.known = None;
                None
            }
        }
    }

    /// More bytes for the decoder, waiting for the writer as needed: what
    /// it handed over in memory when that is where the reader is, else
    /// the file. `false` once the writer is gone and everything is read.
    fn fetch(&mut self) -> Result<bool, SpoolError> {
        loop {
            let (reader, handoff) = (&mut self.reader, self.handoff.as_deref());
            // Read from the file straight into the decoder's buffer.
            let piece = self.decoder.feed_with(|buf| next_piece(reader, handoff, buf, CONSUMER_CHUNK))?;
            match piece {
                Piece::Handed(handed) => {
                    match handed.frames {
                        // Frames cover their bytes (the link checked), and
                        // the decoder takes them only between frames.
                        Some(frames) if self.decoder.buffered() == 0 && self.decoder.in_command_stream() => {
                            self.known = Some(KnownRun { bytes: handed.bytes, frames: frames.into_iter(), at: 0 });
                        }
                        _ => self.decoder.feed(&handed.bytes),
                    }
                    return Ok(true);
                }
                Piece::Read => return Ok(true),
                Piece::CaughtUp => {
                    if !self.reader.wait_readable_blocking()? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// The snapshot's bytes as an `rdb::RdbSource`, for `rdb::RdbReader`: call it
    /// after `FullResync` (or `RdbBegin`). It returns 0 at the end of the
    /// snapshot; `next_event` then returns `RdbEnd` (and any RDB bytes the
    /// body was not asked for first).
    pub fn rdb(&mut self) -> RdbBody<'_> {
        RdbBody { stream: self }
    }
}

/// What the consumer gets next at the reader's position (see
/// [`next_piece`]).
enum Piece {
    /// Bytes the spool writer handed over in memory; the reader has moved
    /// past them.
    Handed(Handed),
    /// Bytes read from the file, appended to the caller's buffer.
    Read,
    /// Nothing published past the reader's position yet.
    CaughtUp,
}

/// The next bytes at `reader`'s position: from `handoff` when they are
/// there, else from the file. The spool's end is read before the handoff
/// is looked at: the writer holds bytes there before it publishes an end
/// past them, so bytes up to that end the handoff does not have are in the
/// file, and bytes held after the look (a gap in the file) are past it and
/// never read from the file.
fn next_piece(
    reader: &mut SpoolReader,
    handoff: Option<&Handoff>,
    out: &mut BytesMut,
    max: usize,
) -> Result<Piece, SpoolError> {
    let pos = reader.position();
    let end = reader.end();
    if let Some(handed) = handoff.and_then(|h| h.take(pos)) {
        reader.skip(handed.bytes.len() as u64);
        return Ok(Piece::Handed(handed));
    }
    match reader.read_before_into(out, max, end)? {
        0 => Ok(Piece::CaughtUp),
        _ => Ok(Piece::Read),
    }
}

/// Bytes handed over with the frames they are (see [`Handoff`]).
#[derive(Debug)]
struct KnownRun {
    bytes: Bytes,
    frames: std::vec::IntoIter<KnownFrame>,
    /// Where the next frame starts in `bytes`.
    at: usize,
}

/// The snapshot inside a [`ReplicationStream`]; see [`ReplicationStream::rdb`].
#[derive(Debug)]
pub struct RdbBody<'a> {
    stream: &'a mut ReplicationStream,
}

/// Appends to the reader's buffer directly, which then needs no zeroing.
impl RdbSource for RdbBody<'_> {
    fn read_into(&mut self, out: &mut BytesMut, max: usize) -> io::Result<usize> {
        let s = &mut *self.stream;
        loop {
            if !s.rdb_piece.is_empty() {
                let n = max.min(s.rdb_piece.len());
                out.extend_from_slice(&s.rdb_piece[..n]);
                s.rdb_piece.advance(n);
                return Ok(n);
            }
            if let Some((PsyncEvent::RdbEnd, _)) = &s.held {
                return Ok(0);
            }
            let event = s.decode().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            match event {
                Some(PsyncEvent::RdbData(bytes)) => s.rdb_piece = bytes,
                Some(PsyncEvent::FullResync { .. } | PsyncEvent::RdbBegin { .. }) => {}
                Some(other) => {
                    let is_end = other == PsyncEvent::RdbEnd;
                    let kind = event_name(&other);
                    s.held = Some((other, s.decoder.position()));
                    if is_end {
                        return Ok(0);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: expected RDB bytes in the spool, found {kind}", s.shard),
                    ));
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{}: the replication stream stopped inside the RDB", s.shard),
                    ))
                }
            }
        }
    }
}

fn event_name(event: &PsyncEvent) -> &'static str {
    match event {
        PsyncEvent::KeepAlive => "a keep-alive",
        PsyncEvent::FullResync { .. } => "+FULLRESYNC",
        PsyncEvent::Continue { .. } => "+CONTINUE",
        PsyncEvent::MasterError { .. } => "an error reply",
        PsyncEvent::RdbBegin { .. } => "the start of an RDB",
        PsyncEvent::RdbData(_) => "RDB bytes",
        PsyncEvent::RdbEnd => "the end of the RDB",
        PsyncEvent::Command(_) => "a command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The link's mark: raised inside a snapshot, where nothing under it
    /// wakes a reader; lowered after a wait saw nothing, which makes what
    /// is queued readable at once; never raised outside a snapshot.
    #[tokio::test]
    async fn the_link_raises_its_mark_only_inside_a_snapshot_and_lowers_it_to_look() {
        use tokio::io::AsyncWriteExt;
        let (mut master, link) = crate::resp::low_water::grown_pair().await;
        let mut marks = LowWater::default();
        assert!(marks.before_read(&link, true), "inside a snapshot");
        master.write_all(&[7u8; 4096]).await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(300), link.readable()).await;
        assert!(early.is_err(), "readable with 4 KiB queued under the raised mark");
        // What `Wake::Look` does: the next wait is under the kernel's mark.
        marks.lowered = true;
        assert!(!marks.before_read(&link, true));
        tokio::time::timeout(Duration::from_secs(5), link.readable()).await.unwrap().unwrap();
        let mut buf = vec![0u8; 8192];
        assert_eq!(link.try_read(&mut buf).unwrap(), 4096);
        // A read raises it again; outside a snapshot it stays down.
        marks.lowered = false;
        assert!(marks.before_read(&link, true));
        assert!(!marks.before_read(&link, false));
        master.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), link.readable()).await.unwrap().unwrap();
    }

    /// The feed holds stream chunks in memory while the reader keeps up
    /// (itself, or through the writer thread when that has something
    /// queued) and writes them once it falls behind: the consumer's reads
    /// (`next_piece`, what `ReplicationStream` reads through) get every
    /// byte in order, some having never been in the file and some read
    /// from it.
    #[test]
    fn the_stream_skips_the_file_while_the_reader_keeps_up_and_no_byte_is_lost() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let opts = SpoolOptions { segment_size: 16 << 10, fsync_interval: Duration::from_secs(60) };
        let writer = SpoolWriter::create(dir.path(), opts).unwrap();
        let mut reader = writer.reader(0, CancellationToken::new()).unwrap();
        let handoff = Arc::new(Handoff::with_limit(8 << 10));
        // The link's side of the spool, as `run` starts it: chunks held by
        // the feed itself while the writer thread is idle, by the thread
        // when it has something queued, written while overflowing.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (feed, spooler) = {
            let _in = rt.enter();
            SpoolFeed::<()>::start(writer, handoff.clone())
        };
        let cancel = CancellationToken::new();
        let h = handoff.clone();
        let consumer = std::thread::spawn(move || {
            let (mut got, mut from_memory, mut reads) = (Vec::new(), 0usize, 0usize);
            let mut buf = BytesMut::new();
            loop {
                match next_piece(&mut reader, Some(&h), &mut buf, 3000).unwrap() {
                    Piece::Handed(e) => {
                        from_memory += e.bytes.len();
                        got.extend_from_slice(&e.bytes);
                    }
                    Piece::Read => {
                        assert!(!buf.is_empty(), "a read appended nothing");
                        got.extend_from_slice(&buf.split());
                        reads += 1;
                        // Now and then the reader is slow, and falls behind.
                        if reads % 60 == 0 {
                            std::thread::sleep(Duration::from_millis(30));
                        }
                    }
                    Piece::CaughtUp => {
                        if !reader.wait_readable_blocking().unwrap() {
                            return (got, from_memory);
                        }
                    }
                }
            }
        });
        let mut sent = Vec::new();
        let mut state = 7u32;
        for i in 0..3000u32 {
            // A snapshot's bytes first (never handed over), then the stream.
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = 1 + (state >> 16) as usize % 700;
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
            sent.extend_from_slice(&chunk);
            let frames = (i >= 100).then(|| vec![KnownFrame::KeepAlive(len as u32)]);
            rt.block_on(feed.append(Bytes::from(chunk), frames, &cancel)).unwrap();
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(feed);
        rt.block_on(spooler.join()).unwrap();
        let (got, from_memory) = consumer.join().unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the bytes read differ from those sent");
        let in_files: u64 = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
        assert!(in_files < sent.len() as u64, "every byte was written: {in_files}");
        assert!(from_memory > 0 && in_files > 0, "memory {from_memory}, files {in_files}");
        // What was only ever in memory is what the files lack.
        let read_from_files = sent.len() - from_memory;
        assert!(read_from_files as u64 <= in_files, "read {read_from_files} from {in_files} bytes of files");
    }

    /// A quiet stream is read as it comes; a busy one in pieces a few ms
    /// apart; a read that filled its buffer is followed at once, or a
    /// source sending faster than that would be held back.
    #[test]
    fn only_a_busy_stream_that_drained_the_socket_waits_before_the_next_read() {
        let room = READ_CHUNK;
        assert_eq!(pause_after_read(false, 60, room), None, "one command");
        assert_eq!(pause_after_read(false, STREAM_COALESCE_FROM - 1, room), None);
        assert_eq!(pause_after_read(false, STREAM_COALESCE_FROM, room), Some(STREAM_COALESCE_WAIT));
        assert_eq!(pause_after_read(false, 24 << 10, room), Some(STREAM_COALESCE_WAIT));
        assert_eq!(pause_after_read(false, room, room), None, "the buffer was full: more is waiting");
        assert_eq!(pause_after_read(false, 20 << 10, 20 << 10), None, "a smaller room, filled");
        assert_eq!(pause_after_read(true, 4 << 10, RDB_READ_CHUNK), Some(RDB_COALESCE_WAIT));
        assert_eq!(pause_after_read(true, RDB_COALESCE_BELOW, RDB_READ_CHUNK), None);
    }

    #[test]
    fn refusal_hints_name_the_fix() {
        assert!(refusal_hint("ERR unknown command `PSYNC`, with args beginning with: `?`").contains("rename-command"));
        assert!(refusal_hint("NOPERM this user has no permissions to run the 'psync' command").contains("+psync"));
        assert!(refusal_hint("LOADING Redis is loading the dataset in memory").contains("loading"));
        assert!(refusal_hint("NOMASTERLINK Can't SYNC while not connected with my master").contains("replica"));
        assert_eq!(refusal_hint("ERR something else"), "");
    }
}
