//! What the spool writer just wrote, handed to the spool's reader in
//! memory: the same bytes the file holds, and for the command stream where
//! each frame ends, as the link framed them.
//!
//! Every spooled byte used to be read back from the file and framed a
//! second time by the consumer: a read (a kernel copy), a copy into the
//! decoder's buffer, and the framing of every command again. A reader that
//! keeps up takes the bytes from here instead and moves its file position
//! past them ([`super::spool::SpoolReader::skip`]). The queue holds at most
//! [`HANDOFF_BYTES`] (a full queue takes nothing more until the reader
//! takes from it) and takes nothing while the reader is further behind
//! than that (catching up from the file, it would never reach them); a
//! reader that finds nothing at its position reads the file as before.
//!
//! Bytes the queue keeps can skip the file altogether ([`Handoff::hold`]):
//! writing them only to read them back from memory cost the spool writer
//! a kernel copy per byte, the largest single share of a live stream's
//! CPU. A held entry is the only copy of its bytes, so nothing drops it
//! before the reader has taken it (a full queue refuses new entries, it
//! never evicts); the spool file has a gap there
//! ([`super::spool::SpoolWriter::pass`]). The file is the overflow: what
//! the queue cannot hold is written, and read from there.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use super::psync::KnownFrame;

/// Most bytes the queue holds (besides the spool queue's own
/// `SPOOL_QUEUE_BYTES`, which these bytes were part of until written).
pub const HANDOFF_BYTES: usize = 4 << 20;

/// Bytes written to the spool at `start`, and when the link could tell, the
/// frames they are (whole frames, in order, covering every byte).
#[derive(Debug)]
pub struct Handed {
    pub start: u64,
    pub bytes: Bytes,
    pub frames: Option<Vec<KnownFrame>>,
}

/// The queue between the spool writer and the spool's reader.
#[derive(Debug)]
pub struct Handoff {
    queue: Mutex<Queue>,
    limit: usize,
    /// The position the reader last asked for.
    reader_at: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Handed>,
    bytes: usize,
}

impl Default for Handoff {
    fn default() -> Self {
        Handoff::with_limit(HANDOFF_BYTES)
    }
}

impl Handoff {
    pub fn with_limit(limit: usize) -> Self {
        Handoff { queue: Mutex::new(Queue::default()), limit, reader_at: AtomicU64::new(0) }
    }

    /// Whether bytes spooled at `start` would be kept for the reader: not
    /// when it is further behind than the limit.
    pub fn accepts(&self, start: u64) -> bool {
        start <= self.reader_at.load(Ordering::Relaxed).saturating_add(self.limit as u64)
    }

    /// Keeps `entry` as the only copy of its bytes (the caller does not
    /// write them to the file) until the reader takes it; gives it back
    /// when the queue cannot hold it (full, or the reader further behind
    /// than the limit), for the caller to write. Only the spool's writing
    /// side adds entries (the link or the writer thread, one at a time: see
    /// `spool_feed`) and the reader only frees room, so a `hold` that
    /// succeeds cannot be undone by anything but the reader passing the
    /// entry.
    pub fn hold(&self, entry: Handed) -> Result<(), Handed> {
        if !self.accepts(entry.start) {
            return Err(entry);
        }
        let Ok(mut q) = self.queue.lock() else { return Err(entry) };
        if q.bytes + entry.bytes.len() > self.limit {
            return Err(entry);
        }
        q.bytes += entry.bytes.len();
        q.entries.push_back(entry);
        Ok(())
    }

    /// The position the reader last asked for.
    pub fn reader_at(&self) -> u64 {
        self.reader_at.load(Ordering::Relaxed)
    }

    /// Keeps `entry`, bytes the writer just wrote to the file too, if the
    /// queue can (as [`hold`](Self::hold)); otherwise drops it. Call it
    /// before readers can see the bytes in the file, so a reader they wake
    /// finds them here. A full queue keeps what it has rather than this:
    /// the reader comes to the oldest entries first, and dropping those
    /// instead left it reading the file while the bytes it skipped past
    /// were framed and kept for nothing.
    pub fn push(&self, entry: Handed) {
        let _ = self.hold(entry);
    }

    /// The bytes from spool position `pos` on, as far as one entry goes;
    /// with their frames only when the entry starts exactly at `pos`.
    /// Entries before `pos` are dropped; `None` when nothing here holds
    /// `pos` (read the file).
    pub fn take(&self, pos: u64) -> Option<Handed> {
        self.reader_at.store(pos, Ordering::Relaxed);
        let Ok(mut q) = self.queue.lock() else { return None };
        loop {
            let front = q.entries.front()?;
            let end = front.start + front.bytes.len() as u64;
            if end <= pos {
                let old = q.entries.pop_front()?;
                q.bytes -= old.bytes.len();
                continue;
            }
            if front.start > pos {
                return None;
            }
            let mut entry = q.entries.pop_front()?;
            q.bytes -= entry.bytes.len();
            if entry.start < pos {
                // Part of it was read from the file: the rest, unframed.
                entry.bytes = entry.bytes.slice((pos - entry.start) as usize..);
                entry.start = pos;
                entry.frames = None;
            }
            return Some(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(start: u64, bytes: &'static [u8]) -> Handed {
        Handed { start, bytes: Bytes::from_static(bytes), frames: Some(vec![KnownFrame::KeepAlive(1)]) }
    }

    #[test]
    fn a_reader_takes_what_starts_at_its_position_and_skips_what_it_read() {
        let h = Handoff::default();
        h.push(entry(0, b"abc"));
        h.push(entry(3, b"defg"));
        h.push(entry(7, b"h"));
        let first = h.take(0).expect("at 0");
        assert_eq!((first.start, &first.bytes[..], first.frames.is_some()), (0, &b"abc"[..], true));
        // The reader read "de" from the file: the rest of that entry, without frames.
        let rest = h.take(5).expect("inside an entry");
        assert_eq!((rest.start, &rest.bytes[..], rest.frames), (5, &b"fg"[..], None));
        assert_eq!(h.take(7).map(|e| e.bytes), Some(Bytes::from_static(b"h")));
        assert!(h.take(8).is_none(), "nothing past the end");
    }

    /// A held entry (the only copy) stays until the reader passes it; a
    /// full queue or a reader too far behind gives the entry back instead.
    #[test]
    fn held_entries_stay_until_taken_and_a_full_queue_gives_them_back() {
        let h = Handoff::with_limit(5);
        assert!(h.hold(entry(0, b"abc")).is_ok());
        let back = h.hold(entry(3, b"def")).expect_err("over the limit");
        assert_eq!((back.start, &back.bytes[..]), (3, &b"def"[..]));
        assert!(h.hold(entry(3, b"de")).is_ok());
        assert_eq!(h.reader_at(), 0);
        assert_eq!(h.take(0).map(|e| e.start), Some(0));
        assert_eq!(h.take(3).map(|e| e.start), Some(3));
        assert_eq!(h.reader_at(), 3);
        // The reader at 3 is more than the limit behind position 9.
        assert!(h.hold(entry(9, b"x")).is_err());
        assert!(h.hold(entry(8, b"x")).is_ok());
    }

    #[test]
    fn a_reader_behind_the_queue_reads_the_file() {
        let h = Handoff::with_limit(4);
        h.push(entry(0, b"abc"));
        h.push(entry(3, b"de"));
        // Over the limit: the newest is not kept; the reader reads it from the file.
        assert_eq!(h.take(0).map(|e| e.start), Some(0));
        assert!(h.take(3).is_none());
        h.push(entry(7, b"x"));
        assert!(h.take(5).is_none(), "a gap: the file has bytes 5..7");
        assert_eq!(h.take(7).map(|e| e.start), Some(7));
        // Further behind than the limit: nothing is kept for the reader.
        h.push(entry(20, b"y"));
        assert!(h.take(20).is_none(), "not kept: the reader was at 8");
    }
}
