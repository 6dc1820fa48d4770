//! `RdbReader`: drives the I/O-free parser over anything `Read` (a file, a
//! spool, a socket in a blocking task).
//!
//! It keeps one buffer of unconsumed bytes, hands it to the parser, and
//! reads more only when the parser asks. The buffer grows only as far as the
//! largest single unit (one element or one encoded blob), and only as data
//! actually arrives: a corrupt length field of 2^60 makes it read to the end
//! of the input and report truncation, never allocate 2^60 bytes.

use std::io::Read;

use super::error::RdbError;
use super::event::Event;
use super::parser::{Parser, ParserOptions, Step};

/// Bytes asked from the source per read.
const READ_SIZE: usize = 256 * 1024;

pub struct RdbReader<R> {
    src: R,
    parser: Parser,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> RdbReader<R> {
    pub fn new(src: R) -> Self {
        Self::with_options(src, ParserOptions::default())
    }

    pub fn with_options(src: R, opts: ParserOptions) -> Self {
        RdbReader { src, parser: Parser::new(opts), buf: vec![0; READ_SIZE], start: 0, end: 0, eof: false }
    }

    /// Bytes of the input consumed so far.
    pub fn offset(&self) -> u64 {
        self.parser.offset()
    }

    /// The file's RDB version (0 until the header is read).
    pub fn version(&self) -> u32 {
        self.parser.version()
    }

    /// The next event, or `None` after `Event::Eof`.
    pub fn next_event(&mut self) -> Result<Option<Event>, RdbError> {
        loop {
            match self.parser.step(&self.buf[self.start..self.end])? {
                Step::Event(ev, n) => {
                    self.start += n;
                    return Ok(Some(ev));
                }
                Step::Skip(n) => self.start += n,
                Step::More(need) if need <= self.end - self.start => {
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

    /// Make at least `need` unconsumed bytes available, or fail at the end of input.
    fn fill(&mut self, need: usize) -> Result<(), RdbError> {
        while self.end - self.start < need {
            if self.eof {
                return Err(RdbError::Truncated {
                    offset: self.parser.offset() + (self.end - self.start) as u64,
                    expected: format!(
                        "{} (the next unit needs {need} bytes, {} remain)",
                        self.parser.context(),
                        self.end - self.start
                    ),
                });
            }
            if self.end == self.buf.len() {
                self.make_room(need);
            }
            let n = loop {
                match self.src.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(RdbError::Io {
                            offset: self.parser.offset() + (self.end - self.start) as u64,
                            source: e,
                        })
                    }
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
        Ok(())
    }

    /// Free space at the end of the buffer: move unconsumed bytes to the
    /// front, and grow (by at most one read size beyond what is held) when
    /// the unit is larger than the buffer.
    fn make_room(&mut self, need: usize) {
        let held = self.end - self.start;
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = held;
        }
        if self.end == self.buf.len() {
            // Double at most, and never past what the unit needs: the buffer
            // only grows when it is full of real data.
            let target = (held + READ_SIZE).max(need.min(held.saturating_mul(2)));
            self.buf.resize(target, 0);
        } else if self.buf.len() > 4 * READ_SIZE && held < READ_SIZE && need <= READ_SIZE {
            // A big unit has passed: give its memory back.
            self.buf.truncate(READ_SIZE);
            self.buf.shrink_to_fit();
        }
    }
}

impl<R: Read> Iterator for RdbReader<R> {
    type Item = Result<Event, RdbError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}
