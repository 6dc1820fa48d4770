//! The spool: a byte stream kept on disk between a fast producer (the
//! source socket) and a slower consumer (the destination writer), so the
//! producer never waits and memory stays bounded.
//!
//! A spool is a directory of segment files named by the stream position of
//! their first byte (`00000000000000000000.seg`, ...); positions count bytes
//! since the spool was created and never restart. One [`SpoolWriter`]
//! appends, rotating to a new segment once the current one reaches
//! [`SpoolOptions::segment_size`], and publishes its end position on a
//! `watch` channel. It may also move its end past bytes it does not write
//! ([`SpoolWriter::pass`]: the caller hands them to the reader in memory);
//! the file then has a gap there, and the next bytes written start a new
//! segment. A reader must take such bytes from where they were handed
//! over: reading the file at a gap fails as corrupt. [`SpoolReader`]s read
//! sequentially across segments and
//! wait (blocking or async, always cancellable) when they catch up; they see
//! the end of the data once the writer is dropped. A consumer deletes the
//! segments it is done with with [`SpoolReader::release_upto`]; the segment
//! being written is never deleted. A small JSON header (`spool.json`) lets
//! the producer record what the bytes are, atomically, so that a restarted
//! process knows what it has; the spool itself does not interpret it.
//! [`free_bytes`] measures the room where a spool goes (the precheck's disk
//! check, and a shard waiting for room after a full disk).
//!
//! Durability: the spool is a buffer, not the system of record (the source's
//! backlog and the checkpoints are), so a write is not fsynced; the active
//! segment is fsynced at most every [`SpoolOptions::fsync_interval`] and a
//! segment when it is closed. That bounds what a power loss costs and keeps
//! dirty pages from piling up into long write-back stalls.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const SEGMENT_SUFFIX: &str = ".seg";
const HEADER_FILE: &str = "spool.json";
const HEADER_TMP: &str = "spool.json.tmp";

/// How a spool writes.
#[derive(Clone, Debug)]
pub struct SpoolOptions {
    /// Bytes per segment (the last one fills up as data arrives). Smaller
    /// segments free disk sooner after they are applied; larger ones mean
    /// fewer files. Default 64 MiB; at least 1.
    pub segment_size: u64,
    /// Longest time written bytes stay without an fsync. Default 1 s.
    pub fsync_interval: Duration,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions { segment_size: 64 << 20, fsync_interval: Duration::from_secs(1) }
    }
}

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool {}: cannot {action}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "spool {}: no data at position {pos} (the spool holds {start}..{end}); \
         it was released or never written",
        dir.display()
    )]
    Gone { dir: PathBuf, pos: u64, start: u64, end: u64 },
    #[error("spool {}: {detail}; delete the directory to start over", dir.display())]
    Corrupt { dir: PathBuf, detail: String },
    #[error("spool {}: reading was cancelled", dir.display())]
    Cancelled { dir: PathBuf },
}

impl SpoolError {
    fn io(dir: &Path, action: impl Into<String>, source: io::Error) -> SpoolError {
        SpoolError::Io { dir: dir.to_owned(), action: action.into(), source }
    }
}

impl From<SpoolError> for io::Error {
    fn from(e: SpoolError) -> io::Error {
        let kind = match &e {
            SpoolError::Io { source, .. } => source.kind(),
            SpoolError::Cancelled { .. } => io::ErrorKind::Interrupted,
            SpoolError::Gone { .. } => io::ErrorKind::NotFound,
            SpoolError::Corrupt { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

fn segment_name(start: u64) -> String {
    format!("{start:020}{SEGMENT_SUFFIX}")
}

/// Start positions of the segments in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let entries = fs::read_dir(dir).map_err(|e| SpoolError::io(dir, "list the directory", e))?;
    let mut starts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io(dir, "list the directory", e))?;
        let name = entry.file_name();
        let Some(start) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)).and_then(|n| n.parse().ok())
        else {
            continue;
        };
        starts.push(start);
    }
    starts.sort_unstable();
    Ok(starts)
}

/// Reads the header a writer stored with [`SpoolWriter::write_header`];
/// `None` if there is none.
pub fn read_header<T: DeserializeOwned>(dir: &Path) -> Result<Option<T>, SpoolError> {
    let path = dir.join(HEADER_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SpoolError::io(dir, "read the header", e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| SpoolError::Corrupt { dir: dir.to_owned(), detail: format!("unreadable {HEADER_FILE}: {e}") })
}

/// Deletes a spool directory and everything in it (nothing if absent).
pub fn remove(dir: &Path) -> Result<(), SpoolError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SpoolError::io(dir, "remove the directory", e)),
        _ => Ok(()),
    }
}

/// Bytes available to this user on the file system holding `path` (where a
/// spool is or would be: the nearest parent that exists, the task creating
/// the rest when it starts), and the directory actually measured.
pub fn free_bytes(path: &Path) -> io::Result<(u64, PathBuf)> {
    let mut dir = path.to_path_buf();
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => {
                dir = PathBuf::from(".");
                break;
            }
        }
    }
    let stat = nix::sys::statvfs::statvfs(&dir).map_err(io::Error::from)?;
    Ok((stat.blocks_available() as u64 * stat.fragment_size() as u64, dir))
}

/// Appends to a spool; see the module docs. One writer per directory.
#[derive(Debug)]
pub struct SpoolWriter {
    dir: PathBuf,
    opts: SpoolOptions,
    file: File,
    seg_start: u64,
    end: u64,
    /// The position after the last byte in the files: `end` unless the
    /// stream moved on past bytes it did not write ([`SpoolWriter::pass`]).
    file_end: u64,
    last_sync: Instant,
    dirty: bool,
    end_tx: watch::Sender<u64>,
}

impl SpoolWriter {
    /// Starts an empty spool in `dir` (created if needed), deleting any
    /// segments and header already there.
    pub fn create(dir: &Path, opts: SpoolOptions) -> Result<SpoolWriter, SpoolError> {
        crate::private_fs::create_dir_all(dir).map_err(|e| SpoolError::io(dir, "create the directory", e))?;
        for start in list_segments(dir)? {
            let path = dir.join(segment_name(start));
            fs::remove_file(&path).map_err(|e| SpoolError::io(dir, format!("delete {}", path.display()), e))?;
        }
        for name in [HEADER_FILE, HEADER_TMP] {
            match fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(SpoolError::io(dir, format!("delete {name}"), e))
                }
                _ => {}
            }
        }
        let file = create_segment(dir, 0)?;
        Ok(SpoolWriter::with_file(dir, opts, file, 0, 0))
    }

    /// Continues the spool in `dir` after a restart, appending at its end;
    /// an empty spool is created if there is none. The segments must be
    /// contiguous (each one ends where the next starts): a spool whose
    /// writer passed bytes ([`SpoolWriter::pass`]) has gaps, and is refused
    /// as corrupt, since those bytes were only ever in memory. The link
    /// never reopens one: each connection starts its spool anew
    /// ([`SpoolWriter::create`]).
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<SpoolWriter, SpoolError> {
        crate::private_fs::create_dir_all(dir).map_err(|e| SpoolError::io(dir, "create the directory", e))?;
        let starts = list_segments(dir)?;
        let Some(&last) = starts.last() else {
            let file = create_segment(dir, 0)?;
            return Ok(SpoolWriter::with_file(dir, opts, file, 0, 0));
        };
        for pair in starts.windows(2) {
            let len = segment_len(dir, pair[0])?;
            if pair[0] + len != pair[1] {
                return Err(SpoolError::Corrupt {
                    dir: dir.to_owned(),
                    detail: format!(
                        "segment {} holds {len} bytes but the next one starts at {}",
                        segment_name(pair[0]),
                        pair[1]
                    ),
                });
            }
        }
        let path = dir.join(segment_name(last));
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| SpoolError::io(dir, format!("open {}", path.display()), e))?;
        let len = segment_len(dir, last)?;
        Ok(SpoolWriter::with_file(dir, opts, file, last, last + len))
    }

    fn with_file(dir: &Path, mut opts: SpoolOptions, file: File, seg_start: u64, end: u64) -> SpoolWriter {
        opts.segment_size = opts.segment_size.max(1);
        let (end_tx, _) = watch::channel(end);
        SpoolWriter {
            dir: dir.to_owned(),
            opts,
            file,
            seg_start,
            end,
            file_end: end,
            last_sync: Instant::now(),
            dirty: false,
            end_tx,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The position after the last byte appended or passed.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The position after the last byte in the files.
    pub fn file_end(&self) -> u64 {
        self.file_end
    }

    /// Moves the end past `len` bytes without writing them: the caller has
    /// handed them to the reader another way, before this call (readers
    /// woken by the new end look for them there). The next append starts a
    /// new segment, so that every segment stays contiguous.
    pub fn pass(&mut self, len: u64) {
        if len > 0 {
            self.end += len;
            self.end_tx.send_replace(self.end);
        }
    }

    /// Appends `bytes` and makes them visible to readers.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        self.append_with(bytes, |_| {})
    }

    /// As [`append`](Self::append), calling `written(start)` (`start`: the
    /// position of the first byte) once the bytes are written and before
    /// readers can see them: a reader woken by them finds whatever
    /// `written` left for it (see [`SpoolReader::skip`]).
    pub fn append_with(&mut self, mut bytes: &[u8], written: impl FnOnce(u64)) -> Result<(), SpoolError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let start = self.end;
        if self.file_end != self.end {
            // After a gap: a new segment, named by where its bytes start.
            self.rotate()?;
        }
        while !bytes.is_empty() {
            let used = self.end - self.seg_start;
            if used >= self.opts.segment_size {
                self.rotate()?;
                continue;
            }
            let room = usize::try_from(self.opts.segment_size - used).unwrap_or(usize::MAX);
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.file.write_all(now).map_err(|e| SpoolError::io(&self.dir, "write a segment", e))?;
            self.end += now.len() as u64;
            self.file_end = self.end;
            self.dirty = true;
            bytes = later;
        }
        if self.last_sync.elapsed() >= self.opts.fsync_interval {
            self.sync()?;
        }
        written(start);
        self.end_tx.send_replace(self.end);
        Ok(())
    }

    /// Flushes the active segment to stable storage.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.dirty {
            self.file.sync_data().map_err(|e| SpoolError::io(&self.dir, "fsync a segment", e))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        self.file = create_segment(&self.dir, self.end)?;
        self.seg_start = self.end;
        self.file_end = self.end;
        Ok(())
    }

    /// Drops every byte from `pos` on, e.g. a torn tail found after a crash.
    /// No reader may be past `pos`.
    pub fn truncate(&mut self, pos: u64) -> Result<(), SpoolError> {
        if pos >= self.end {
            return Ok(());
        }
        let starts = list_segments(&self.dir)?;
        let Some(&keep) = starts.iter().rev().find(|&&s| s <= pos) else {
            let start = starts.first().copied().unwrap_or(self.end);
            return Err(SpoolError::Gone { dir: self.dir.clone(), pos, start, end: self.end });
        };
        for &start in starts.iter().filter(|&&s| s > keep) {
            let path = self.dir.join(segment_name(start));
            fs::remove_file(&path).map_err(|e| SpoolError::io(&self.dir, format!("delete {}", path.display()), e))?;
        }
        if pos > keep + segment_len(&self.dir, keep)? {
            // Inside a gap: there is no file to cut there.
            return Err(SpoolError::Gone { dir: self.dir.clone(), pos, start: keep, end: self.end });
        }
        let path = self.dir.join(segment_name(keep));
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| SpoolError::io(&self.dir, format!("open {}", path.display()), e))?;
        file.set_len(pos - keep).map_err(|e| SpoolError::io(&self.dir, "truncate a segment", e))?;
        self.file = file;
        self.seg_start = keep;
        self.end = pos;
        self.file_end = pos;
        self.dirty = true;
        self.end_tx.send_replace(self.end);
        Ok(())
    }

    /// Stores `header` as the spool's header, replacing it atomically.
    pub fn write_header<T: Serialize>(&self, header: &T) -> Result<(), SpoolError> {
        let text = serde_json::to_vec_pretty(header)
            .map_err(|e| SpoolError::io(&self.dir, "encode the header", io::Error::other(e)))?;
        let tmp = self.dir.join(HEADER_TMP);
        let write = || -> io::Result<()> {
            let mut f = crate::private_fs::options().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(HEADER_FILE))?;
            sync_dir(&self.dir)
        };
        write().map_err(|e| SpoolError::io(&self.dir, "write the header", e))
    }

    /// Something to open readers with, usable after the writer moved to
    /// another thread.
    pub fn watch(&self) -> SpoolWatch {
        SpoolWatch { dir: self.dir.clone(), end_rx: self.end_tx.subscribe() }
    }

    /// A reader from position `from`.
    pub fn reader(&self, from: u64, cancel: CancellationToken) -> Result<SpoolReader, SpoolError> {
        self.watch().reader(from, cancel)
    }
}

fn create_segment(dir: &Path, start: u64) -> Result<File, SpoolError> {
    let path = dir.join(segment_name(start));
    // Every byte of the source's data: the owner's only.
    let file = crate::private_fs::options()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| SpoolError::io(dir, format!("create {}", path.display()), e))?;
    // The new name must survive a crash, or a restart would see a gap.
    sync_dir(dir).map_err(|e| SpoolError::io(dir, "fsync the directory", e))?;
    Ok(file)
}

fn segment_len(dir: &Path, start: u64) -> Result<u64, SpoolError> {
    let path = dir.join(segment_name(start));
    fs::metadata(&path).map(|m| m.len()).map_err(|e| SpoolError::io(dir, format!("stat {}", path.display()), e))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens readers on a spool whose writer lives elsewhere.
#[derive(Clone, Debug)]
pub struct SpoolWatch {
    dir: PathBuf,
    end_rx: watch::Receiver<u64>,
}

impl SpoolWatch {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The writer's end position (its last, once it is gone).
    pub fn end(&self) -> u64 {
        *self.end_rx.borrow()
    }

    /// A reader from position `from`, which must not have been released.
    pub fn reader(&self, from: u64, cancel: CancellationToken) -> Result<SpoolReader, SpoolError> {
        let mut reader = SpoolReader {
            dir: self.dir.clone(),
            pos: from,
            file: None,
            seg_start: 0,
            skipped: false,
            release_from: 0,
            end_rx: self.end_rx.clone(),
            cancel,
        };
        if from < reader.end() {
            reader.open_segment()?;
        }
        Ok(reader)
    }
}

/// Reads a spool sequentially; see the module docs.
///
/// [`Read`] blocks while the reader is caught up with the writer (it must
/// not run on an async runtime's worker thread: use `spawn_blocking` or a
/// thread), returns 0 once the writer is gone and everything is read, and
/// fails with `ErrorKind::Interrupted` when the token is cancelled.
#[derive(Debug)]
pub struct SpoolReader {
    dir: PathBuf,
    pos: u64,
    /// The open segment, positioned at `pos` (unless `skipped`), and where
    /// it starts.
    file: Option<File>,
    seg_start: u64,
    /// `pos` moved past bytes not read from `file` ([`SpoolReader::skip`]):
    /// it seeks before its next read.
    skipped: bool,
    /// [`release_upto`](Self::release_upto) cannot delete anything below
    /// this position: the start of the second-oldest segment it last saw,
    /// or the spool's end then, where any later segment starts. It saves
    /// listing the directory at every call (the consumer releases every
    /// MiB; a segment is 64 MiB).
    release_from: u64,
    end_rx: watch::Receiver<u64>,
    cancel: CancellationToken,
}

impl SpoolReader {
    /// The position of the next byte to read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The writer's end position.
    pub fn end(&self) -> u64 {
        *self.end_rx.borrow()
    }

    /// Reads what is already written, without waiting: 0 when caught up.
    pub fn read_available(&mut self, buf: &mut [u8]) -> Result<usize, SpoolError> {
        self.read_before(buf, self.end())
    }

    /// As [`read_available`](Self::read_available), but reads nothing at or
    /// past `end`, an end the caller read earlier. A caller that also
    /// takes passed bytes from elsewhere reads the end first, then looks
    /// there, then reads the file up to that end: bytes passed after it
    /// looked are past that end, so it never reads into their gap.
    pub fn read_before(&mut self, buf: &mut [u8], end: u64) -> Result<usize, SpoolError> {
        let max = buf.len();
        self.read_with(end, max, |file, want| file.read(&mut buf[..want]))
    }

    /// As [`read_before`](Self::read_before), appending at most `max` bytes
    /// to `out` straight from the file. A catch-up reads its whole backlog
    /// back: read into a buffer of its own first, every byte was copied
    /// once more into the decoder's (2.6% of a catch-up's CPU).
    pub fn read_before_into(&mut self, out: &mut BytesMut, max: usize, end: u64) -> Result<usize, SpoolError> {
        self.read_with(end, max, |file, want| read_appending(file, out, want))
    }

    /// The reading of [`read_before`](Self::read_before): `read` reads at
    /// most `want` bytes (more than 0) from the segment's file.
    fn read_with(
        &mut self,
        end: u64,
        max: usize,
        mut read: impl FnMut(&mut File, usize) -> io::Result<usize>,
    ) -> Result<usize, SpoolError> {
        let end = end.min(self.end());
        if max == 0 || self.pos >= end {
            return Ok(0);
        }
        // Never read past the published end: bytes beyond it may be half
        // written.
        let want = max.min(usize::try_from(end - self.pos).unwrap_or(usize::MAX));
        for _ in 0..2 {
            if self.file.is_none() {
                self.open_segment()?;
            }
            let Some(file) = self.file.as_mut() else { break };
            if self.skipped {
                // Past the segment's end, the read below finds nothing and
                // the segment holding `pos` is opened.
                file.seek(SeekFrom::Start(self.pos - self.seg_start))
                    .map_err(|e| SpoolError::io(&self.dir, "seek in a segment", e))?;
                self.skipped = false;
            }
            let n = read(file, want).map_err(|e| SpoolError::io(&self.dir, "read a segment", e))?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
            // The segment is exhausted while more is published: the writer
            // moved on to a segment starting exactly here.
            self.file = None;
        }
        Err(SpoolError::Corrupt {
            dir: self.dir.clone(),
            detail: format!("no segment continues at position {} (written up to {end})", self.pos),
        })
    }

    /// Moves past `n` bytes the caller had from elsewhere (the same bytes,
    /// handed over in memory as they were written, see
    /// [`SpoolWriter::append_with`]), without reading them. The file
    /// seeks only if it is read after all.
    pub fn skip(&mut self, n: u64) {
        if n > 0 {
            self.pos += n;
            self.skipped = true;
        }
    }

    /// Waits until there is something to read (`true`) or the writer is
    /// gone with everything read (`false`).
    pub async fn wait_readable(&mut self) -> Result<bool, SpoolError> {
        loop {
            if *self.end_rx.borrow_and_update() > self.pos {
                return Ok(true);
            }
            // `biased` needs no runtime RNG, so this also runs on
            // `futures::executor::block_on` from a plain thread.
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(SpoolError::Cancelled { dir: self.dir.clone() }),
                changed = self.end_rx.changed() => {
                    if changed.is_err() {
                        return Ok(*self.end_rx.borrow() > self.pos);
                    }
                }
            }
        }
    }

    /// [`wait_readable`](Self::wait_readable), blocking the thread.
    pub fn wait_readable_blocking(&mut self) -> Result<bool, SpoolError> {
        futures::executor::block_on(self.wait_readable())
    }

    /// Reads, blocking the thread while caught up; 0 = the writer is gone
    /// and everything is read.
    pub fn read_blocking(&mut self, buf: &mut [u8]) -> Result<usize, SpoolError> {
        loop {
            let n = self.read_available(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if !self.wait_readable_blocking()? {
                return Ok(0);
            }
        }
    }

    /// Deletes the segments that lie entirely before `pos` (capped at this
    /// reader's position); the segment being written always stays. Returns
    /// the number of bytes freed (what the files held: a gap after a
    /// segment held nothing).
    pub fn release_upto(&mut self, pos: u64) -> Result<u64, SpoolError> {
        let pos = pos.min(self.pos);
        if pos < self.release_from {
            return Ok(0);
        }
        // Read before listing: a segment created after the listing starts
        // at or past it.
        let end = self.end();
        let starts = list_segments(&self.dir)?;
        let mut freed = 0;
        let mut next = end;
        for pair in starts.windows(2) {
            if pair[1] > pos {
                next = pair[1];
                break;
            }
            let len = segment_len(&self.dir, pair[0])?;
            let path = self.dir.join(segment_name(pair[0]));
            fs::remove_file(&path).map_err(|e| SpoolError::io(&self.dir, format!("delete {}", path.display()), e))?;
            freed += len;
        }
        // Only after every deletion it was due: a failed one is tried again
        // at the next call.
        self.release_from = next;
        Ok(freed)
    }

    /// Opens the segment holding `pos`, positioned there.
    fn open_segment(&mut self) -> Result<(), SpoolError> {
        let starts = list_segments(&self.dir)?;
        let Some(&start) = starts.iter().rev().find(|&&s| s <= self.pos) else {
            let first = starts.first().copied().unwrap_or(self.end());
            return Err(SpoolError::Gone { dir: self.dir.clone(), pos: self.pos, start: first, end: self.end() });
        };
        let path = self.dir.join(segment_name(start));
        let mut file =
            File::open(&path).map_err(|e| SpoolError::io(&self.dir, format!("open {}", path.display()), e))?;
        file.seek(SeekFrom::Start(self.pos - start))
            .map_err(|e| SpoolError::io(&self.dir, format!("seek in {}", path.display()), e))?;
        self.file = Some(file);
        self.seg_start = start;
        self.skipped = false;
        Ok(())
    }
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_blocking(buf)?)
    }
}

/// Reads at most `want` bytes of `file` into `out`'s spare room and
/// appends them: the kernel writes them in place, so the room needs no
/// zeroing first (safe Rust reads only into initialised memory).
#[allow(unsafe_code)]
fn read_appending(file: &File, out: &mut BytesMut, want: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    out.reserve(want);
    let room = out.spare_capacity_mut();
    let want = want.min(room.len());
    loop {
        // SAFETY: the kernel writes at most `want` bytes from the start of
        // `room`, which is at least that long and is not read here; the
        // descriptor is `file`'s, open for as long as the borrow lasts.
        let n = unsafe { libc::read(file.as_raw_fd(), room.as_mut_ptr().cast(), want) };
        match usize::try_from(n) {
            Ok(n) => {
                // SAFETY: the read initialised the room's first `n` bytes,
                // `n <= want <= room.len()`, which is the spare capacity.
                unsafe { out.set_len(out.len() + n) };
                return Ok(n);
            }
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(segment_size: u64) -> SpoolOptions {
        SpoolOptions { segment_size, ..SpoolOptions::default() }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn read_all(reader: &mut SpoolReader) -> Vec<u8> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        out
    }

    /// `n` bytes through `read_available`, never asking for more.
    fn read_exactly(reader: &mut SpoolReader, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        let mut at = 0;
        while at < n {
            at += reader.read_available(&mut got[at..]).unwrap();
        }
        got
    }

    #[test]
    fn reads_across_segment_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(100)).unwrap();
        let mut all = Vec::new();
        for (i, len) in [30, 70, 1, 250, 99, 100, 3].into_iter().enumerate() {
            let piece = pattern(len, i as u8);
            w.append(&piece).unwrap();
            all.extend(piece);
        }
        // Writes are split so every closed segment holds exactly 100 bytes.
        assert_eq!(list_segments(dir.path()).unwrap(), [0, 100, 200, 300, 400, 500]);
        assert_eq!(segment_len(dir.path(), 400).unwrap(), 100);
        assert_eq!(segment_len(dir.path(), 500).unwrap(), 53);
        // From the start, and from every position, with odd buffer sizes.
        let watch = w.watch();
        drop(w);
        for from in [0, 1, 99, 100, 101, 350, all.len() as u64] {
            let mut r = watch.reader(from, CancellationToken::new()).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 7];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, all[from as usize..], "from {from}");
        }
        // Appended straight to a buffer that holds bytes already (what the
        // decoder had left), never past the end given, across segments.
        let mut r = watch.reader(90, CancellationToken::new()).unwrap();
        let mut out = BytesMut::from(&b"left"[..]);
        assert_eq!(r.read_before_into(&mut out, 1 << 20, 95).unwrap(), 5);
        assert_eq!(r.read_before_into(&mut out, 1 << 20, 95).unwrap(), 0, "the end given");
        while r.read_before_into(&mut out, 33, u64::MAX).unwrap() > 0 {}
        assert_eq!(&out[..4], b"left");
        assert_eq!(out[4..], all[90..]);
    }

    #[test]
    fn reader_waits_for_the_writer_and_ends_when_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(64)).unwrap();
        let mut r = w.reader(0, CancellationToken::new()).unwrap();
        let consumer = std::thread::spawn(move || read_all(&mut r));
        let mut all = Vec::new();
        for i in 0..50u8 {
            let piece = pattern(13 + i as usize, i);
            w.append(&piece).unwrap();
            all.extend(piece);
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(w);
        assert_eq!(consumer.join().unwrap(), all);
    }

    #[tokio::test]
    async fn async_wait_and_cancellation() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(64)).unwrap();
        let cancel = CancellationToken::new();
        let mut r = w.reader(0, cancel.clone()).unwrap();
        let waiter = tokio::spawn(async move {
            let ready = r.wait_readable().await.unwrap();
            let mut buf = [0u8; 16];
            let n = r.read_available(&mut buf).unwrap();
            (ready, buf[..n].to_vec(), r)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.append(b"hello").unwrap();
        let (ready, got, mut r) = waiter.await.unwrap();
        assert!(ready);
        assert_eq!(got, b"hello");
        cancel.cancel();
        assert!(matches!(r.wait_readable().await, Err(SpoolError::Cancelled { .. })));
        // The blocking path reports cancellation as Interrupted.
        let err = tokio::task::spawn_blocking(move || r.read(&mut [0u8; 4]).unwrap_err()).await.unwrap();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }

    /// Bytes a reader had from elsewhere are skipped, within a segment and
    /// across its end, and what follows reads as written; the writer's
    /// callback sees each append's start before readers see its bytes.
    #[test]
    fn a_reader_skips_what_it_was_handed_and_reads_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(100)).unwrap();
        let mut all = Vec::new();
        let mut starts = Vec::new();
        for (i, len) in [30, 70, 1, 250, 99].into_iter().enumerate() {
            let piece = pattern(len, i as u8);
            let end_seen = w.watch().end();
            w.append_with(&piece, |start| starts.push((start, end_seen))).unwrap();
            all.extend(piece);
        }
        assert_eq!(starts, [(0, 0), (30, 30), (100, 100), (101, 101), (351, 351)], "(start, end readers saw)");
        let watch = w.watch();
        drop(w);
        for (read_first, skip) in [(0, 5), (10, 20), (30, 71), (95, 200), (0, 449), (7, 443)] {
            let mut r = watch.reader(0, CancellationToken::new()).unwrap();
            let mut head = vec![0u8; read_first];
            r.read_exact(&mut head).unwrap();
            r.skip(skip);
            assert_eq!(r.position(), (read_first + skip as usize) as u64);
            let rest = read_all(&mut r);
            assert_eq!(rest, all[read_first + skip as usize..], "read {read_first}, skipped {skip}");
        }
    }

    #[test]
    fn release_deletes_applied_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(100)).unwrap();
        for i in 0..5 {
            w.append(&pattern(100, i)).unwrap();
        }
        assert_eq!(list_segments(dir.path()).unwrap(), [0, 100, 200, 300, 400]);
        let mut r = w.reader(0, CancellationToken::new()).unwrap();
        let mut buf = vec![0u8; 250];
        let mut read = 0;
        while read < 250 {
            read += r.read_available(&mut buf[read..]).unwrap();
        }
        // Capped at the reader's position: 250, so segments 0 and 100 go.
        assert_eq!(r.release_upto(10_000).unwrap(), 200);
        assert_eq!(list_segments(dir.path()).unwrap(), [200, 300, 400]);
        // Reading on still works, and released positions are gone.
        let mut rest = vec![0u8; 250];
        let mut got = 0;
        while got < 250 {
            got += r.read_available(&mut rest[got..]).unwrap();
        }
        assert_eq!(rest[..50], pattern(100, 2)[50..]);
        assert!(matches!(w.reader(150, CancellationToken::new()), Err(SpoolError::Gone { pos: 150, .. })));
        // The active segment stays even when everything was read.
        assert_eq!(r.release_upto(500).unwrap(), 200);
        assert_eq!(list_segments(dir.path()).unwrap(), [400]);
    }

    /// Releasing skips the directory listing below the next possible
    /// deletion, and still deletes every segment written after a listing
    /// once the reader is past it.
    #[test]
    fn release_finds_segments_written_after_it_last_looked() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(100)).unwrap();
        w.append(&pattern(150, 1)).unwrap();
        let mut r = w.reader(0, CancellationToken::new()).unwrap();
        assert_eq!(read_exactly(&mut r, 120), pattern(150, 1)[..120]);
        assert_eq!(r.release_upto(120).unwrap(), 100);
        assert_eq!(list_segments(dir.path()).unwrap(), [100]);
        // Below the end it saw (150) nothing can go, whatever is written.
        w.append(&pattern(200, 2)).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), [100, 200, 300]);
        assert_eq!(read_exactly(&mut r, 20).len(), 20);
        assert_eq!(r.release_upto(140).unwrap(), 0);
        assert_eq!(read_exactly(&mut r, 120).len(), 120);
        assert_eq!(r.release_upto(260).unwrap(), 100);
        assert_eq!(list_segments(dir.path()).unwrap(), [200, 300]);
        assert_eq!(r.release_upto(280).unwrap(), 0);
        assert_eq!(read_exactly(&mut r, 60).len(), 60);
        assert_eq!(r.release_upto(320).unwrap(), 100);
        assert_eq!(list_segments(dir.path()).unwrap(), [300]);
    }

    /// Bytes passed rather than written leave a gap in the files: the
    /// next write starts a segment where its bytes start, a reader that
    /// skips the gap reads on, one that reads into it is told the spool is
    /// corrupt, and release counts what the files held.
    #[test]
    fn passed_bytes_leave_a_gap_and_the_next_write_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(100)).unwrap();
        w.append(&pattern(30, 1)).unwrap();
        let mut r = w.reader(0, CancellationToken::new()).unwrap();
        w.pass(20);
        assert_eq!((w.end(), w.file_end(), r.end()), (50, 30, 50));
        w.append(&pattern(10, 2)).unwrap();
        w.pass(5);
        w.pass(0);
        w.append(&pattern(200, 3)).unwrap();
        assert_eq!((w.end(), w.file_end()), (265, 265));
        assert_eq!(list_segments(dir.path()).unwrap(), [0, 50, 65, 165]);
        assert_eq!(segment_len(dir.path(), 0).unwrap(), 30);
        assert_eq!(segment_len(dir.path(), 50).unwrap(), 10);
        // Read, skip the gap (as handed over), read on across segments.
        let mut buf = vec![0u8; 64];
        assert_eq!(r.read_available(&mut buf).unwrap(), 30, "a read stops at the gap");
        assert_eq!(buf[..30], pattern(30, 1));
        r.skip(20);
        assert_eq!(read_exactly(&mut r, 10), pattern(10, 2));
        r.skip(5);
        assert_eq!(read_exactly(&mut r, 200), pattern(200, 3));
        // A reader that reads into a gap fails loudly, it never reads on.
        let mut lost = w.reader(0, CancellationToken::new()).unwrap();
        assert_eq!(lost.read_available(&mut buf).unwrap(), 30);
        assert!(matches!(lost.read_available(&mut buf), Err(SpoolError::Corrupt { .. })));
        // Released: the bytes the files held, not the positions they span.
        assert_eq!(r.release_upto(100).unwrap(), 40);
        assert_eq!(list_segments(dir.path()).unwrap(), [65, 165]);
        // A truncation inside a gap is refused.
        let mut w2 = SpoolWriter::create(&dir.path().join("two"), opts(100)).unwrap();
        w2.append(b"abc").unwrap();
        w2.pass(10);
        w2.append(b"def").unwrap();
        assert!(matches!(w2.truncate(8), Err(SpoolError::Gone { pos: 8, .. })));
    }

    #[test]
    fn reopen_after_restart_continues_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut all = Vec::new();
        {
            let mut w = SpoolWriter::create(dir.path(), opts(100)).unwrap();
            w.write_header(&serde_json::json!({"replid": "abc", "offset": 7})).unwrap();
            for i in 0..3 {
                let piece = pattern(80, i);
                w.append(&piece).unwrap();
                all.extend(piece);
            }
        }
        let header: Option<serde_json::Value> = read_header(dir.path()).unwrap();
        assert_eq!(header.unwrap()["offset"], 7);
        let mut w = SpoolWriter::open(dir.path(), opts(100)).unwrap();
        assert_eq!(w.end(), 240);
        let piece = pattern(500, 9);
        w.append(&piece).unwrap();
        all.extend(piece);
        let mut r = w.reader(0, CancellationToken::new()).unwrap();
        drop(w);
        assert_eq!(read_all(&mut r), all);
        // `create` starts over.
        let w = SpoolWriter::create(dir.path(), opts(100)).unwrap();
        assert_eq!(w.end(), 0);
        assert_eq!(list_segments(dir.path()).unwrap(), [0]);
        assert!(read_header::<serde_json::Value>(dir.path()).unwrap().is_none());
    }

    #[test]
    fn reopen_refuses_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(10)).unwrap();
        for i in 0..3 {
            w.append(&pattern(10, i)).unwrap();
        }
        drop(w);
        fs::write(dir.path().join(segment_name(10)), b"short").unwrap();
        assert!(matches!(SpoolWriter::open(dir.path(), opts(10)), Err(SpoolError::Corrupt { .. })));
    }

    #[test]
    fn truncate_drops_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::create(dir.path(), opts(10)).unwrap();
        let all = pattern(35, 1);
        for piece in all.chunks(10) {
            w.append(piece).unwrap();
        }
        w.truncate(15).unwrap();
        assert_eq!(w.end(), 15);
        w.append(b"xyz").unwrap();
        let mut r = w.reader(0, CancellationToken::new()).unwrap();
        drop(w);
        let got = read_all(&mut r);
        assert_eq!(got[..15], all[..15]);
        assert_eq!(&got[15..], b"xyz");
    }
}
