//! How the link's bytes reach the spool: [`SpoolFeed`], the link's end, and
//! the spool writer thread behind it.
//!
//! The writer thread does the file work (appends, fsyncs, the header), so
//! that a slow disk never blocks the link's runtime thread. The command
//! stream, while the consumer keeps up, needs no file work: each chunk the
//! link framed is held in the [`Handoff`] as its only copy and the spool's
//! end moves past it (a gap in the file, see [`SpoolWriter::pass`]). The
//! link does that itself when nothing waits for the writer thread — taking
//! the chunk to the thread only for it to hold it cost a thread wake-up per
//! chunk, the largest share of the thread's CPU — and queues the chunk for
//! the thread otherwise. Both sides decide through one [`SpoolSide`] behind
//! a mutex, and the link holds only when every operation it queued has
//! been applied, so a held chunk can never overtake bytes still queued.
//!
//! Once the handoff cannot hold a chunk (the consumer fell behind), chunks
//! are written, and handed over as copies while there is room, until the
//! consumer has read everything in the file; only then are chunks held
//! again, so the file is not cut into a segment per chunk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::handoff::{Handed, Handoff};
use super::psync::KnownFrame;
use super::spool::{SpoolError, SpoolWriter};

/// Operations queued for the writer thread, and the bytes they may hold
/// together: enough to ride out an fsync, small enough that a disk slower
/// than the network pushes back on the socket instead of filling memory
/// (reads of a snapshot take up to 256 KiB: 64 of those would be 16 MiB a
/// shard).
const SPOOL_QUEUE: usize = 64;
const SPOOL_QUEUE_BYTES: usize = 4 << 20;

/// The unit [`SPOOL_QUEUE_BYTES`] is counted in.
const QUEUE_UNIT: usize = 4096;

/// What the writer thread is asked to do, in order.
enum SpoolOp<H> {
    /// Bytes to append, with their share of [`SPOOL_QUEUE_BYTES`], given
    /// back once written, and the frames they are when the link could
    /// tell (see [`Handoff`]).
    Append(Bytes, OwnedSemaphorePermit, Option<Vec<KnownFrame>>),
    Header(Box<H>),
}

/// The spool writer and the one decision both sides share.
#[derive(Debug)]
struct SpoolSide {
    writer: SpoolWriter,
    /// Chunks are written (the handoff refused one) until the consumer has
    /// read the whole file.
    overflowing: bool,
}

impl SpoolSide {
    /// Holds a framed stream chunk in the handoff as its only copy and
    /// moves the spool's end past it; gives it back when it must be
    /// written instead.
    fn hold(
        &mut self,
        bytes: Bytes,
        frames: Vec<KnownFrame>,
        handoff: &Handoff,
    ) -> Result<(), (Bytes, Vec<KnownFrame>)> {
        self.overflowing = self.overflowing && handoff.reader_at() < self.writer.file_end();
        if self.overflowing {
            return Err((bytes, frames));
        }
        let len = bytes.len() as u64;
        match handoff.hold(Handed { start: self.writer.end(), bytes, frames: Some(frames) }) {
            Ok(()) => {
                self.writer.pass(len);
                Ok(())
            }
            Err(refused) => {
                self.overflowing = true;
                Err((refused.bytes, refused.frames.unwrap_or_default()))
            }
        }
    }

    /// The writer thread's part of one operation.
    fn apply<H: Serialize>(&mut self, op: SpoolOp<H>, handoff: &Handoff) -> Result<(), SpoolError> {
        match op {
            SpoolOp::Append(bytes, _queued, Some(frames)) => {
                let Err((bytes, frames)) = self.hold(bytes, frames, handoff) else { return Ok(()) };
                let handed = bytes.clone();
                self.writer
                    .append_with(&bytes, |start| handoff.push(Handed { start, bytes: handed, frames: Some(frames) }))
            }
            // Only the command stream is handed over: a snapshot's bytes
            // are parsed from a copy anyway, and keeping them from their
            // buffer made the link allocate (and fault in) new ones; held
            // instead of written they saved nothing measurable (a full
            // copy's consumer waits on the destination, and was further
            // behind than the handoff's limit half the time).
            SpoolOp::Append(bytes, _queued, None) => {
                self.overflowing = true;
                self.writer.append(&bytes)
            }
            SpoolOp::Header(header) => self.writer.write_header(&*header),
        }
    }
}

/// The link's end of the spool: see the module docs.
pub(super) struct SpoolFeed<H> {
    queue: mpsc::Sender<SpoolOp<H>>,
    side: Arc<Mutex<SpoolSide>>,
    /// Operations queued and not yet applied by the thread. Only the link
    /// adds to it, so at 0 the thread has nothing left to do before the
    /// link's next chunk.
    queued: Arc<AtomicUsize>,
    /// [`SPOOL_QUEUE_BYTES`] in [`QUEUE_UNIT`]s: what the queue may hold.
    budget: Arc<Semaphore>,
    handoff: Arc<Handoff>,
}

/// Why the feed took nothing.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FeedStopped {
    /// The token was cancelled while the feed waited for room.
    Cancelled,
    /// The writer thread is gone: [`SpoolThread::join`] has its error.
    WriterGone,
}

/// The writer thread, to wait for once the feed is dropped.
pub(super) struct SpoolThread(tokio::task::JoinHandle<Result<(), SpoolError>>);

impl SpoolThread {
    /// The thread's end: its error, if it failed; its panic goes on.
    pub async fn join(self) -> Result<(), SpoolError> {
        match self.0.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => Ok(()),
        }
    }
}

impl<H: Serialize + Send + 'static> SpoolFeed<H> {
    /// Starts the writer thread on `writer`; it ends once the feed is
    /// dropped and everything queued is applied, with an fsync.
    pub fn start(writer: SpoolWriter, handoff: Arc<Handoff>) -> (SpoolFeed<H>, SpoolThread) {
        let (queue, rx) = mpsc::channel(SPOOL_QUEUE);
        let side = Arc::new(Mutex::new(SpoolSide { writer, overflowing: false }));
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (side, queued, handoff) = (side.clone(), queued.clone(), handoff.clone());
            tokio::task::spawn_blocking(move || write_spool(&side, rx, &queued, &handoff))
        };
        let budget = Arc::new(Semaphore::new(SPOOL_QUEUE_BYTES / QUEUE_UNIT));
        (SpoolFeed { queue, side, queued, budget, handoff }, SpoolThread(thread))
    }

    /// Spools `bytes` (whole frames; `frames` says which, when the link
    /// could tell), holding them in memory when it can; otherwise queues
    /// them, waiting for room in the queue.
    pub async fn append(
        &self,
        bytes: Bytes,
        frames: Option<Vec<KnownFrame>>,
        cancel: &CancellationToken,
    ) -> Result<(), FeedStopped> {
        let (bytes, frames) = match frames {
            Some(frames) => match self.hold(bytes, frames) {
                Ok(()) => return Ok(()),
                Err((bytes, frames)) => (bytes, Some(frames)),
            },
            None => (bytes, None),
        };
        self.queue_append(bytes, frames, cancel).await
    }

    /// Queues a new spool header, written in order with the bytes.
    pub async fn header(&self, header: H, cancel: &CancellationToken) -> Result<(), FeedStopped> {
        self.send(SpoolOp::Header(Box::new(header)), cancel).await
    }

    fn hold(&self, bytes: Bytes, frames: Vec<KnownFrame>) -> Result<(), (Bytes, Vec<KnownFrame>)> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return Err((bytes, frames));
        }
        // The thread is idle or about to release the lock after its last
        // operation; a poisoned lock (the thread panicked) leaves the
        // chunk to the queue, which reports the thread gone.
        let Ok(mut side) = self.side.lock() else { return Err((bytes, frames)) };
        side.hold(bytes, frames, &self.handoff)
    }

    async fn queue_append(
        &self,
        bytes: Bytes,
        frames: Option<Vec<KnownFrame>>,
        cancel: &CancellationToken,
    ) -> Result<(), FeedStopped> {
        // A frame bigger than the whole budget waits for all of it.
        let share = bytes.len().div_ceil(QUEUE_UNIT).clamp(1, SPOOL_QUEUE_BYTES / QUEUE_UNIT);
        let permit = match cancel.run_until_cancelled(self.budget.clone().acquire_many_owned(share as u32)).await {
            None => return Err(FeedStopped::Cancelled),
            Some(Err(_)) => return Err(FeedStopped::WriterGone),
            Some(Ok(permit)) => permit,
        };
        self.send(SpoolOp::Append(bytes, permit, frames), cancel).await
    }

    async fn send(&self, op: SpoolOp<H>, cancel: &CancellationToken) -> Result<(), FeedStopped> {
        // Counted before it can be applied, so the link never sees 0 while
        // it is queued.
        self.queued.fetch_add(1, Ordering::AcqRel);
        let sent = cancel.run_until_cancelled(self.queue.send(op)).await;
        if !matches!(sent, Some(Ok(()))) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        match sent {
            Some(Ok(())) => Ok(()),
            None => Err(FeedStopped::Cancelled),
            Some(Err(_)) => Err(FeedStopped::WriterGone),
        }
    }
}

/// The writer thread: applies operations in order; fsyncs on the way out.
/// A failed operation ends it with the count still raised, so the link
/// queues everything after it and learns the thread is gone.
fn write_spool<H: Serialize>(
    side: &Mutex<SpoolSide>,
    mut queue: mpsc::Receiver<SpoolOp<H>>,
    queued: &AtomicUsize,
    handoff: &Handoff,
) -> Result<(), SpoolError> {
    while let Some(op) = queue.blocking_recv() {
        let mut side = lock(side);
        side.apply(op, handoff)?;
        // Inside the lock: a link that sees 0 and takes the lock sees this
        // operation's effects.
        queued.fetch_sub(1, Ordering::AcqRel);
    }
    lock(side).writer.sync()
}

/// The side, even after a panic while it was locked: that panic is what
/// gets reported (the task that panicked fails with it), and the state
/// it left is still a spool whose every step was a whole write or pass.
fn lock(side: &Mutex<SpoolSide>) -> MutexGuard<'_, SpoolSide> {
    side.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
