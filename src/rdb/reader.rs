//! `RdbReader`: drives the I/O-free parser over anything `Read` (a file, a
//! spool, a socket in a blocking task), and verifies the file's CRC64.
//!
//! It holds the unconsumed bytes as one shared `Bytes`, hands it to the
//! parser, and reads more only when the parser asks. Strings in events are
//! slices of that buffer, so values are never copied; a refill starts a new
//! buffer (with the few leftover bytes of a partial unit) because consumers
//! may still hold slices of the old one. A buffer grows only as far as the
//! largest single unit (one element or one encoded blob) and only as data
//! actually arrives: a corrupt length field of 2^60 makes it read to the end
//! of the input and report truncation, never allocate 2^60 bytes.
//!
//! The CRC64 is computed here, over whole consumed spans rather than per
//! parser step, because hashing ~300-byte pieces cost a quarter of the
//! parse time.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};
use crc_fast::{CrcAlgorithm, Digest};

use super::error::RdbError;
use super::event::Event;
use super::parser::{Parser, ParserOptions, Step};

/// Bytes asked from the source per read.
const READ_SIZE: usize = 256 * 1024;

pub struct RdbReader<R> {
    src: R,
    parser: Parser,
    /// Unconsumed input. `hashed` is how many bytes before its start have
    /// been consumed but not yet hashed (they are in `pending`).
    data: Bytes,
    /// Consumed bytes not yet fed to the CRC: the start of the buffer `data`
    /// is a suffix of.
    pending: Bytes,
    crc: Digest,
    /// The CRC of everything before the trailer, once the parser reaches it.
    computed: Option<u64>,
    eof: bool,
}

/// Where an [`RdbReader`] gets its bytes: anything `Read` (a file, a
/// socket), or a source that appends to the reader's buffer itself, which
/// then needs no zeroing before each read (the spool's snapshot body: it
/// hands over pieces of a few KiB, and zeroing the reader's 256 KiB of
/// free room for each was a visible part of a copy's CPU).
pub trait RdbSource {
    /// Appends at most `max` bytes to `buf`, returning how many; 0 at the
    /// end of the input.
    fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize>;
}

impl<R: Read> RdbSource for R {
    fn read_into(&mut self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        let filled = buf.len();
        buf.resize(filled + max, 0);
        let read = self.read(&mut buf[filled..]);
        buf.truncate(filled + *read.as_ref().unwrap_or(&0));
        read
    }
}

impl<R: RdbSource> RdbReader<R> {
    pub fn new(src: R) -> Self {
        Self::with_options(src, ParserOptions::default())
    }

    pub fn with_options(src: R, opts: ParserOptions) -> Self {
        RdbReader {
            src,
            parser: Parser::new(opts),
            data: Bytes::new(),
            pending: Bytes::new(),
            crc: Digest::new(CrcAlgorithm::Crc64Redis),
            computed: None,
            eof: false,
        }
    }

    /// Bytes of the input consumed so far.
    pub fn offset(&self) -> u64 {
        self.parser.offset()
    }

    /// The keys read so far, and what the snapshot declared.
    pub fn tally(&self) -> &super::parser::KeyTally {
        self.parser.tally()
    }

    /// The file's RDB version (0 until the header is read).
    pub fn version(&self) -> u32 {
        self.parser.version()
    }

    /// The next event, or `None` after `Event::Eof`.
    pub fn next_event(&mut self) -> Result<Option<Event>, RdbError> {
        loop {
            if self.computed.is_none() && self.parser.in_trailer() {
                self.hash_consumed();
                self.computed = Some(self.crc.finalize());
            }
            match self.parser.step(&self.data)? {
                Step::Event(ev, n) => {
                    self.data.advance(n);
                    if let Event::Eof { checksum: Some(stored) } = ev {
                        let computed = self.computed.unwrap_or_default();
                        if stored != computed {
                            return Err(RdbError::Checksum { offset: self.parser.offset() - 8, stored, computed });
                        }
                    }
                    return Ok(Some(ev));
                }
                Step::Skip(n) => self.data.advance(n),
                Step::More(need) if need <= self.data.len() => {
                    // A parser bug, not bad input; looping would hang.
                    return Err(RdbError::Corrupt {
                        offset: self.parser.offset(),
                        what: format!(
                            "internal error: parser asked for {need} bytes it already has ({})",
                            self.parser.context()
                        ),
                    });
                }
                Step::More(need) => self.fill(need)?,
                Step::Done => return Ok(None),
            }
        }
    }

    /// Feed the CRC with everything consumed since the last time.
    fn hash_consumed(&mut self) {
        let consumed = self.pending.len() - self.data.len();
        if consumed > 0 && self.computed.is_none() {
            self.crc.update(&self.pending[..consumed]);
        }
        self.pending = self.data.clone();
    }

    /// Make at least `need` unconsumed bytes available, or fail at the end of input.
    fn fill(&mut self, need: usize) -> Result<(), RdbError> {
        self.hash_consumed();
        self.pending = Bytes::new();
        let held = self.data.len();
        // Double at most, and never past what the unit needs: a buffer only
        // grows when it is full of real data.
        let mut cap = (held + READ_SIZE).max(need.min(held.saturating_mul(2)));
        // Reuse the buffer when no event still holds a slice of it: a fresh
        // one costs page faults and zeroing on every refill.
        let mut buf = match std::mem::take(&mut self.data).try_into_mut() {
            Ok(b) => b,
            Err(shared) => {
                let mut b = BytesMut::with_capacity(cap);
                b.extend_from_slice(&shared);
                b
            }
        };
        buf.reserve(cap.saturating_sub(buf.len()));
        while buf.len() < need {
            if self.eof {
                return Err(RdbError::Truncated {
                    offset: self.parser.offset() + buf.len() as u64,
                    expected: format!(
                        "{} (the next unit needs {need} bytes, {} remain)",
                        self.parser.context(),
                        buf.len()
                    ),
                });
            }
            if buf.len() == cap {
                cap = (buf.len() + READ_SIZE).max(need.min(buf.len().saturating_mul(2)));
                buf.reserve(cap - buf.len());
            }
            let filled = buf.len();
            let n = loop {
                match self.src.read_into(&mut buf, cap - filled) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(RdbError::Io { offset: self.parser.offset() + filled as u64, source: e });
                    }
                }
            };
            if n == 0 {
                self.eof = true;
            }
        }
        self.data = buf.freeze();
        self.pending = self.data.clone();
        Ok(())
    }
}

impl<R: RdbSource> Iterator for RdbReader<R> {
    type Item = Result<Event, RdbError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}
