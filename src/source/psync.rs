//! The replication byte stream a master sends after `PSYNC`, decoded without
//! I/O. This is the one module that knows that layout.
//!
//! A [`PsyncDecoder`] is fed bytes as they arrive ([`PsyncDecoder::feed`])
//! and yields [`PsyncEvent`]s ([`PsyncDecoder::next_event`], `Ok(None)` = needs
//! more bytes); [`PsyncDecoder::position`] counts the bytes consumed by the
//! events returned so far, so a caller can tell where in the raw stream each
//! event ends. Its state machine is a [`PsyncFramer`], which a caller that
//! only needs to know where frames end (the source link, which spools whole
//! frames) runs over its own buffer, so the stream is parsed into arguments
//! once, by the reader of the spool. The stream has three phases:
//!
//! 1. The reply: `+FULLRESYNC <replid> <offset>`, `+CONTINUE [<new replid>]`
//!    or an error (`-NOMASTERLINK`, `-LOADING`, `-ERR unknown command`...),
//!    possibly preceded by bare `\n` keep-alives.
//! 2. After `+FULLRESYNC`, more `\n` keep-alives while the master prepares the
//!    snapshot, then the RDB: `$<len>\r\n` and exactly `len` bytes with no
//!    trailing CRLF (disk-based), or `$EOF:<40-byte mark>\r\n`, the payload,
//!    and the same mark again (diskless). The closing mark may be cut across
//!    reads anywhere, so the decoder withholds the last `EOF_MARK_LEN - 1`
//!    bytes until it knows they are not the start of the mark.
//! 3. The command stream: RESP multibulk arrays. Each command's byte count
//!    advances the replication offset, which starts at the `+FULLRESYNC`
//!    offset, or for `+CONTINUE` at the offset the replica asked for. The
//!    master's `PING`s and `REPLCONF GETACK *` are ordinary commands here and
//!    count toward the offset. A bare `\n` between commands (a chained
//!    replica keeping its sub-replicas alive while it has no master) is out of
//!    band and does not.
//!
//! A `+CONTINUE` or `+FULLRESYNC` line where a command could start begins a
//! new session: a spool that appended a reconnect's reply to the stream it
//! already held reads back through this same decoder.
//!
//! Memory: RDB bytes pass through in pieces of whatever size arrived; a
//! command is yielded whole, so the largest command the master sends (up to
//! `proto-max-bulk-len`, 512 MB by default) is held once. Nothing is ever
//! allocated from a length the peer announced.
//!
//! Also here: the bytes of the commands a replica sends once the socket
//! leaves the request/reply world (`PSYNC`, `REPLCONF ACK`).

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use thiserror::Error;

use crate::resp::{ArgSpans, Cmd};

/// Size of the diskless end-of-RDB mark (`RDB_EOF_MARK_SIZE`); masters use
/// `$EOF:` since 2.8.18, for replicas that announced `capa eof`.
pub const EOF_MARK_LEN: usize = 40;

/// Length of a replication ID (`CONFIG_RUN_ID_SIZE`): 40 hex characters
/// (the run ID before Redis 4.0's PSYNC2, the replid since).
pub const REPLID_LEN: usize = 40;

/// Longest reply or RDB header line accepted. The legitimate ones are under
/// 80 bytes; error texts are longer but not this long.
const LINE_MAX: usize = 4096;

/// Longest `*<count>\r\n` or `$<len>\r\n` line inside a command: a sign, 19
/// digits and CRLF fit.
const HEADER_MAX: usize = 32;

/// Redis refuses multibulk counts above `INT_MAX` (networking.c).
const MAX_ARGS: u64 = i32::MAX as u64;

/// Argument slots reserved up front; a bigger command grows the vector as
/// its arguments actually arrive, never from the announced count.
const ARGS_PREALLOC: usize = 16;

/// Argument slots the framer keeps between commands; a command with more
/// gives the room back when the next one starts.
const ARGS_KEEP: usize = 1024;

/// Where a replica asks to continue: the replication ID and the offset after
/// the last command it has (what [`ReplCommand::offset`] reports). `PSYNC`
/// itself names the next byte wanted, one more (replication.c sends
/// `reploff+1`); [`psync_request`] adds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PsyncPosition {
    pub replid: String,
    pub offset: u64,
}

/// One thing the master said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PsyncEvent {
    /// A bare `\n` the master sends to keep the link alive.
    KeepAlive,
    /// The master will send a snapshot; the command stream after it starts
    /// at `offset`.
    FullResync {
        replid: String,
        offset: u64,
    },
    /// The master continues from the offset asked for. PSYNC2 masters name
    /// their replication ID when it differs from the one asked for (after a
    /// failover).
    Continue {
        new_replid: Option<String>,
    },
    /// An error reply instead of a sync (text without the leading `-`), e.g.
    /// `NOMASTERLINK ...`, `LOADING ...`, `ERR unknown command 'PSYNC'`. The
    /// decoder accepts nothing after it.
    MasterError {
        message: String,
    },
    /// The snapshot starts: `Some(len)` for `$<len>` (disk-based), `None`
    /// for `$EOF:<mark>` (diskless, length unknown until the mark).
    RdbBegin {
        len: Option<u64>,
    },
    /// A piece of the snapshot, in order, with no framing bytes.
    RdbData(Bytes),
    /// The snapshot is complete; commands follow.
    RdbEnd,
    Command(ReplCommand),
}

/// A command from the replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplCommand {
    /// The command as it came ([`Cmd::framed`]): its arguments, name
    /// first, as sent (not case-folded), are slices of its bytes.
    pub cmd: Cmd,
    /// The replication offset after this command.
    pub offset: u64,
}

impl ReplCommand {
    /// The arguments as handles (see [`Cmd::args`]).
    pub fn args(&self) -> std::borrow::Cow<'_, [Bytes]> {
        self.cmd.args()
    }

    /// The command as it came: its size is what it added to the offset.
    pub fn frame(&self) -> &[u8] {
        self.cmd.wire().map_or(&[], |w| w.as_ref())
    }

    /// Whether the command's name is `name` (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.cmd.arg_at(0).is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// `REPLCONF GETACK *`: the master wants an ACK now (sent for `WAIT`).
    pub fn is_getack(&self) -> bool {
        matches!((self.cmd.arg_at(0), self.cmd.arg_at(1)), (Some(name), Some(sub)) if is_getack(name, sub))
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PsyncError {
    #[error("unexpected reply to PSYNC at byte {at} of the replication stream: \"{line}\"")]
    UnexpectedReply { at: u64, line: String },
    #[error("malformed {what} at byte {at} of the replication stream: \"{line}\"")]
    Malformed { at: u64, what: &'static str, line: String },
    #[error("no line end within {limit} bytes at byte {at} of the replication stream (expected {expected})")]
    LineTooLong { at: u64, limit: usize, expected: &'static str },
    #[error("unexpected byte {byte:#04x} at byte {at} of the replication stream (expected {expected})")]
    UnexpectedByte { at: u64, byte: u8, expected: &'static str },
    #[error(
        "+CONTINUE at byte {at} of the replication stream, but no offset was requested \
         (the decoder was created for `PSYNC ? -1`)"
    )]
    ContinueWithoutOffset { at: u64 },
    #[error("data at byte {at} of the replication stream after the master's error reply")]
    AfterError { at: u64 },
}

#[derive(Clone, Debug)]
enum Phase {
    /// Waiting for the reply to `PSYNC`.
    Reply,
    /// After `+FULLRESYNC`, waiting for `$<len>` or `$EOF:<mark>`.
    BulkHeader,
    RdbSized {
        remaining: u64,
    },
    RdbMarked {
        mark: [u8; EOF_MARK_LEN],
    },
    Commands,
    /// After an error reply.
    Refused,
}

/// Progress through the command at the front of the buffer, so a command
/// arriving in many reads is not re-scanned from its start each time.
#[derive(Debug, Default)]
struct CommandScan {
    argc: Option<u64>,
    /// Where the next argument header starts, relative to the buffer start
    /// (which does not move until the command is complete).
    pos: usize,
    /// (start, len) of each argument found so far; after a command is
    /// returned, its arguments, until the next command starts (the vector
    /// is reused, not reallocated per command).
    args: Vec<(usize, usize)>,
}

/// What [`PsyncFramer::next_frame`] found at the front of the bytes it was
/// given: a [`PsyncEvent`] without its bytes, which stay where they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    KeepAlive,
    FullResync {
        replid: String,
        offset: u64,
    },
    Continue {
        new_replid: Option<String>,
    },
    MasterError {
        message: String,
    },
    RdbBegin {
        len: Option<u64>,
    },
    /// RDB bytes: all of the frame.
    RdbData,
    RdbEnd,
    /// A command; its arguments are [`PsyncFramer::command_args`].
    Command {
        /// The replication offset after it.
        offset: u64,
        /// `REPLCONF GETACK`: the master wants an ACK now.
        getack: bool,
    },
}

/// A frame the source link framed already, described for the reader of
/// the spool so that it need not frame those bytes again (see
/// [`PsyncDecoder::take_known`]): only frames of the command stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownFrame {
    /// A keep-alive newline of this many bytes.
    KeepAlive(u32),
    /// A command of `len` bytes, its arguments where `args` says.
    Command { len: u32, args: ArgSpans },
}

impl KnownFrame {
    /// The frame just returned by `framer`, `len` bytes; `None` for frames
    /// that are not part of the command stream or too long to describe.
    pub fn of(frame: &Frame, len: usize, framer: &PsyncFramer) -> Option<KnownFrame> {
        let len = u32::try_from(len).ok()?;
        match frame {
            Frame::KeepAlive if framer.in_command_stream() => Some(KnownFrame::KeepAlive(len)),
            Frame::Command { .. } => Some(KnownFrame::Command { len, args: ArgSpans::of(framer.command_args())? }),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match *self {
            KnownFrame::KeepAlive(len) | KnownFrame::Command { len, .. } => len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The stream's framing alone: where each event ends, read from bytes the
/// caller keeps (nothing is copied or allocated per command). The source
/// link uses it to spool whole frames and know its offsets without a copy
/// of the stream; [`PsyncDecoder`] adds a buffer and hands out the bytes.
///
/// After an error the framer's state is unspecified: drop it.
#[derive(Debug)]
pub struct PsyncFramer {
    phase: Phase,
    /// Bytes consumed by the frames returned so far.
    position: u64,
    /// The replication offset at the current command boundary, once known.
    offset: Option<u64>,
    /// The offset a `+CONTINUE` reply continues from.
    requested: Option<u64>,
    scan: CommandScan,
}

impl PsyncFramer {
    /// A framer for the reply to `PSYNC ? -1` (`requested = None`) or to
    /// `PSYNC <replid> <offset+1>` (`requested = Some(offset)`, see
    /// [`PsyncPosition`]).
    pub fn new(requested: Option<u64>) -> Self {
        let scan = CommandScan { args: Vec::with_capacity(ARGS_PREALLOC), ..CommandScan::default() };
        PsyncFramer { phase: Phase::Reply, position: 0, offset: None, requested, scan }
    }

    /// A framer that starts inside the command stream, at a command
    /// boundary whose replication offset is `offset`.
    pub fn in_commands(offset: u64) -> Self {
        PsyncFramer { phase: Phase::Commands, offset: Some(offset), ..PsyncFramer::new(None) }
    }

    /// Bytes consumed by the frames returned so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The replication offset after the last command returned (or where the
    /// command stream will start), once the reply has been read.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// Inside the RDB snapshot's bytes.
    pub fn in_rdb(&self) -> bool {
        matches!(self.phase, Phase::RdbSized { .. } | Phase::RdbMarked { .. })
    }

    /// Whether the command stream has started.
    pub fn in_command_stream(&self) -> bool {
        matches!(self.phase, Phase::Commands)
    }

    /// The phase, for messages: "waiting for the PSYNC reply", ...
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Reply => "waiting for the PSYNC reply",
            Phase::BulkHeader => "waiting for the RDB snapshot",
            Phase::RdbSized { .. } | Phase::RdbMarked { .. } => "reading the RDB snapshot",
            Phase::Commands => "reading the command stream",
            Phase::Refused => "after the master's error reply",
        }
    }

    /// The arguments of the command just returned, as (start, len) within
    /// the bytes that [`next_frame`](Self::next_frame) was given.
    pub fn command_args(&self) -> &[(usize, usize)] {
        &self.scan.args
    }

    /// The frame at the front of `buf` (the bytes after everything framed
    /// so far) and its length, which the caller must drop from the front
    /// before the next call; `Ok(None)` if `buf` does not hold it whole yet
    /// (call again with the same bytes and more).
    #[inline]
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, PsyncError> {
        if let (Phase::Commands, Some(b'*')) = (&self.phase, buf.first()) {
            // A command, nearly every call: framed inline in the caller.
            // Returned through calls, the result was stored in pieces and
            // read back whole, a stall on every command.
            let len = match scan_command(&mut self.scan, buf) {
                Scanned::Done(len) => len,
                Scanned::Partial => return Ok(None),
                Scanned::Bad(fault) => return Err(self.command_fault(buf, fault)),
            };
            self.position += len as u64;
            return Ok(Some((self.command_framed(buf, len), len)));
        }
        self.next_other_frame(buf)
    }

    /// [`next_frame`](Self::next_frame) for all but the commands of the
    /// stream.
    fn next_other_frame(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, PsyncError> {
        let found = match self.phase {
            Phase::Reply => self.reply(buf)?,
            Phase::BulkHeader => self.bulk_header(buf)?,
            Phase::RdbSized { remaining } => self.rdb_sized(buf, remaining),
            Phase::RdbMarked { mark } => self.rdb_marked(buf, &mark),
            Phase::Commands => self.command(buf)?,
            Phase::Refused if buf.is_empty() => None,
            Phase::Refused => return Err(PsyncError::AfterError { at: self.position }),
        };
        if let Some((_, n)) = &found {
            self.position += *n as u64;
        }
        Ok(found)
    }

    /// The `\n`-terminated line at the front without its `\r\n` / `\n`, and
    /// its length with the line end.
    fn line(&self, buf: &[u8], expected: &'static str) -> Result<Option<(String, usize)>, PsyncError> {
        let Some(end) = memchr::memchr(b'\n', buf) else {
            if buf.len() > LINE_MAX {
                return Err(PsyncError::LineTooLong { at: self.position, limit: LINE_MAX, expected });
            }
            return Ok(None);
        };
        if end > LINE_MAX {
            return Err(PsyncError::LineTooLong { at: self.position, limit: LINE_MAX, expected });
        }
        let text = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
        Ok(Some((String::from_utf8_lossy(text).into_owned(), end + 1)))
    }

    fn reply(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, PsyncError> {
        let Some((line, n)) = self.line(buf, "a reply to PSYNC")? else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some((Frame::KeepAlive, n)));
        }
        if let Some(message) = line.strip_prefix('-') {
            self.phase = Phase::Refused;
            return Ok(Some((Frame::MasterError { message: message.to_owned() }, n)));
        }
        Ok(Some((self.session_reply(line)?, n)))
    }

    /// `+FULLRESYNC` / `+CONTINUE`, at the start or where a command could be.
    fn session_reply(&mut self, line: String) -> Result<Frame, PsyncError> {
        let at = self.position;
        if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
            let mut words = rest.split_ascii_whitespace();
            let (Some(replid), Some(offset), None) = (words.next(), words.next(), words.next()) else {
                return Err(PsyncError::Malformed { at, what: "+FULLRESYNC reply", line });
            };
            let (Some(offset), true) = (parse_digits(offset.as_bytes()), valid_replid(replid)) else {
                return Err(PsyncError::Malformed { at, what: "+FULLRESYNC reply", line });
            };
            self.offset = Some(offset);
            self.phase = Phase::BulkHeader;
            return Ok(Frame::FullResync { replid: replid.to_owned(), offset });
        }
        if let Some(rest) = line.strip_prefix("+CONTINUE") {
            let new_replid = match rest.trim() {
                "" => None,
                id if valid_replid(id) && rest.starts_with(' ') => Some(id.to_owned()),
                _ => return Err(PsyncError::Malformed { at, what: "+CONTINUE reply", line }),
            };
            // Mid-stream, a reconnect continued from where the stream was.
            if self.offset.is_none() {
                self.offset = Some(self.requested.ok_or(PsyncError::ContinueWithoutOffset { at })?);
            }
            self.phase = Phase::Commands;
            return Ok(Frame::Continue { new_replid });
        }
        Err(PsyncError::UnexpectedReply { at, line })
    }

    fn bulk_header(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, PsyncError> {
        let at = self.position;
        let Some((line, n)) = self.line(buf, "the RDB header `$<len>` or `$EOF:<mark>`")? else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some((Frame::KeepAlive, n)));
        }
        // A master whose snapshot failed says so here (e.g. "BGSAVE failed").
        if let Some(message) = line.strip_prefix('-') {
            self.phase = Phase::Refused;
            return Ok(Some((Frame::MasterError { message: message.to_owned() }, n)));
        }
        let malformed = |line: String| PsyncError::Malformed { at, what: "RDB header", line };
        let Some(spec) = line.strip_prefix('$') else {
            return Err(malformed(line));
        };
        if let Some(mark) = spec.strip_prefix("EOF:") {
            let Ok(mark) = <[u8; EOF_MARK_LEN]>::try_from(mark.as_bytes()) else {
                return Err(malformed(line));
            };
            self.phase = Phase::RdbMarked { mark };
            return Ok(Some((Frame::RdbBegin { len: None }, n)));
        }
        let Some(len) = parse_digits(spec.as_bytes()) else {
            return Err(malformed(line));
        };
        self.phase = Phase::RdbSized { remaining: len };
        Ok(Some((Frame::RdbBegin { len: Some(len) }, n)))
    }

    fn rdb_sized(&mut self, buf: &[u8], remaining: u64) -> Option<(Frame, usize)> {
        if remaining == 0 {
            self.phase = Phase::Commands;
            return Some((Frame::RdbEnd, 0));
        }
        if buf.is_empty() {
            return None;
        }
        let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        self.phase = Phase::RdbSized { remaining: remaining - n as u64 };
        Some((Frame::RdbData, n))
    }

    fn rdb_marked(&mut self, buf: &[u8], mark: &[u8; EOF_MARK_LEN]) -> Option<(Frame, usize)> {
        // The payload ends at the first occurrence of the mark, which is
        // what Redis's own replica assumes too (the mark is 160 random bits).
        let data_len = match memmem::find(buf, mark) {
            Some(0) => {
                self.phase = Phase::Commands;
                return Some((Frame::RdbEnd, EOF_MARK_LEN));
            }
            Some(at) => at,
            // Without the whole mark in the buffer, its first bytes can only
            // be among the last EOF_MARK_LEN - 1.
            None => buf.len().saturating_sub(EOF_MARK_LEN - 1),
        };
        (data_len > 0).then_some((Frame::RdbData, data_len))
    }

    fn command(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, PsyncError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        match first {
            b'*' => self.multibulk(buf),
            b'\n' => Ok(Some((Frame::KeepAlive, 1))),
            b'+' => match self.line(buf, "a PSYNC reply")? {
                Some((line, n)) => Ok(Some((self.session_reply(line)?, n))),
                None => Ok(None),
            },
            byte => Err(PsyncError::UnexpectedByte { at: self.position, byte, expected: "a command (`*`)" }),
        }
    }

    fn multibulk(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, PsyncError> {
        match scan_command(&mut self.scan, buf) {
            Scanned::Done(len) => Ok(Some((self.command_framed(buf, len), len))),
            Scanned::Partial => Ok(None),
            Scanned::Bad(fault) => Err(self.command_fault(buf, fault)),
        }
    }

    /// The frame of the command [`scan_command`] just found, `len` bytes
    /// long; moves the offset past it.
    #[inline(always)]
    fn command_framed(&mut self, buf: &[u8], len: usize) -> Frame {
        let arg = |i: usize| self.scan.args.get(i).map(|&(start, len)| &buf[start..start + len]);
        let getack = matches!((arg(0), arg(1)), (Some(name), Some(sub)) if is_getack(name, sub));
        let offset = self.offset.unwrap_or(0) + len as u64;
        self.offset = Some(offset);
        Frame::Command { offset, getack }
    }

    /// The error for what [`scan_command`] found wrong.
    #[cold]
    #[inline(never)]
    fn command_fault(&self, buf: &[u8], fault: Fault) -> PsyncError {
        const COUNT: &str = "command header `*<count>`";
        match fault {
            Fault::CountHeader => self.bad_header(buf, 0, b'*', COUNT),
            Fault::Count => self.malformed_header(buf, 0, COUNT),
            Fault::ArgHeader { pos } => self.bad_header(buf, pos, b'$', "argument header `$<len>`"),
            Fault::NoCrlf { end } => PsyncError::Malformed {
                at: self.position + end as u64,
                what: "argument (no CRLF after its bytes)",
                line: preview(&buf[end..end + 2]),
            },
        }
    }

    /// The error for a header [`scan_header`] found bad.
    #[cold]
    #[inline(never)]
    fn bad_header(&self, buf: &[u8], pos: usize, sigil: u8, what: &'static str) -> PsyncError {
        match buf.get(pos) {
            Some(&byte) if byte != sigil => {
                PsyncError::UnexpectedByte { at: self.position + pos as u64, byte, expected: what }
            }
            _ => self.malformed_header(buf, pos, what),
        }
    }

    fn malformed_header(&self, buf: &[u8], pos: usize, what: &'static str) -> PsyncError {
        let rest = &buf[pos..];
        PsyncError::Malformed {
            at: self.position + pos as u64,
            what,
            line: preview(&rest[..rest.len().min(HEADER_MAX)]),
        }
    }
}

/// Where [`scan_command`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scanned {
    /// A whole command, this many bytes long; its arguments are in the scan.
    Done(usize),
    /// Not whole yet: the scan keeps what it found for the next call.
    Partial,
    Bad(Fault),
}

/// What is wrong with a command, for [`PsyncFramer::command_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    CountHeader,
    /// No arguments, or more than a command may have.
    Count,
    ArgHeader {
        pos: usize,
    },
    NoCrlf {
        end: usize,
    },
}

/// Frames the multibulk command at the front of `buf`, going on from where
/// `scan` stopped. This runs for every streamed command, twice when a
/// catch-up reads it back from the spool: it builds no error and returns
/// a small value (results carrying a `PsyncError` went through memory on
/// every call, the framing's largest cost).
#[inline(always)]
fn scan_command(scan: &mut CommandScan, buf: &[u8]) -> Scanned {
    let argc = match scan.argc {
        Some(argc) => argc,
        None => {
            let (argc, next) = match scan_header(buf, b'*') {
                Header::Done(argc, next) => (argc, next),
                Header::Partial => return Scanned::Partial,
                Header::Bad => return Scanned::Bad(Fault::CountHeader),
            };
            if argc == 0 || argc > MAX_ARGS {
                return Scanned::Bad(Fault::Count);
            }
            scan.argc = Some(argc);
            scan.pos = next;
            scan.args.clear();
            // A huge command's vector is not kept for all that follow
            // (commands of a few dozen arguments keep theirs).
            if scan.args.capacity() > ARGS_KEEP {
                scan.args.shrink_to(ARGS_PREALLOC);
            }
            argc
        }
    };
    while (scan.args.len() as u64) < argc {
        let pos = scan.pos;
        let (len, start) = match scan_header(&buf[pos..], b'$') {
            Header::Done(len, header) => (len, pos + header),
            Header::Partial => return Scanned::Partial,
            Header::Bad => return Scanned::Bad(Fault::ArgHeader { pos }),
        };
        // Compare without computing `start + len`, which a hostile length
        // could overflow.
        let available = (buf.len() - start) as u64;
        if available < len.saturating_add(2) {
            return Scanned::Partial;
        }
        let end = start + len as usize;
        if &buf[end..end + 2] != b"\r\n" {
            return Scanned::Bad(Fault::NoCrlf { end });
        }
        scan.args.push((start, len as usize));
        scan.pos = end + 2;
    }
    let len = scan.pos;
    scan.argc = None;
    scan.pos = 0;
    Scanned::Done(len)
}

/// A header `<sigil><digits>\r\n` at the front of `rest`, as
/// [`scan_header`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    /// The number and the header's length.
    Done(u64, usize),
    /// Not whole yet.
    Partial,
    /// Another sigil, no digits, a byte that is not a digit, a number
    /// beyond `u64`, or no line end within [`HEADER_MAX`] bytes.
    Bad,
}

/// Reads the header at the front of `rest` byte by byte (headers are a few
/// bytes long); inlined, as [`scan_command`] is, into every caller.
#[inline(always)]
fn scan_header(rest: &[u8], sigil: u8) -> Header {
    // The headers of nearly every command, a count or a length of one or
    // two digits, read without the loop below (what the loop would find).
    if let [first, a, b, c, d, ..] = *rest {
        if first == sigil && a.is_ascii_digit() {
            let a = u64::from(a - b'0');
            if b == b'\r' && c == b'\n' {
                return Header::Done(a, 4);
            }
            if b.is_ascii_digit() && c == b'\r' && d == b'\n' {
                return Header::Done(a * 10 + u64::from(b - b'0'), 5);
            }
        }
    }
    scan_header_loop(rest, sigil)
}

/// [`scan_header`] for any header, digit by digit.
#[inline(always)]
fn scan_header_loop(rest: &[u8], sigil: u8) -> Header {
    let Some(&first) = rest.first() else {
        return Header::Partial;
    };
    if first != sigil {
        return Header::Bad;
    }
    let window = &rest[..rest.len().min(HEADER_MAX)];
    let mut n: u64 = 0;
    let mut i = 1;
    while i < window.len() {
        let byte = window[i];
        if byte.is_ascii_digit() {
            match n.checked_mul(10).and_then(|n| n.checked_add(u64::from(byte - b'0'))) {
                Some(next) => n = next,
                None => return Header::Bad,
            }
        } else if byte == b'\r' && i > 1 {
            return match rest.get(i + 1) {
                Some(b'\n') => Header::Done(n, i + 2),
                Some(_) => Header::Bad,
                None => Header::Partial,
            };
        } else {
            return Header::Bad;
        }
        i += 1;
    }
    if rest.len() >= HEADER_MAX {
        return Header::Bad;
    }
    Header::Partial
}

/// `REPLCONF GETACK`, from its first two arguments.
fn is_getack(name: &[u8], sub: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"REPLCONF") && sub.eq_ignore_ascii_case(b"GETACK")
}

/// Decodes what a master sends after `PSYNC`; see the module docs. A
/// [`PsyncFramer`] over a buffer of its own, handing out each event's bytes
/// (slices of that buffer, not copies).
///
/// After an error the decoder's state is unspecified: drop it.
#[derive(Debug)]
pub struct PsyncDecoder {
    buf: BytesMut,
    framer: PsyncFramer,
}

impl PsyncDecoder {
    /// A decoder for the reply to `PSYNC ? -1` (`requested = None`) or to
    /// `PSYNC <replid> <offset+1>` (`requested = Some(offset)`, see
    /// [`PsyncPosition`]).
    pub fn new(requested: Option<u64>) -> Self {
        PsyncDecoder { buf: BytesMut::new(), framer: PsyncFramer::new(requested) }
    }

    /// A decoder that starts inside the command stream, at a command
    /// boundary whose replication offset is `offset` (to read a spool from
    /// a point other than its start).
    pub fn in_commands(offset: u64) -> Self {
        PsyncDecoder { buf: BytesMut::new(), framer: PsyncFramer::in_commands(offset) }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends what `fill` appends to the buffer it is given (the decoder's
    /// own): received bytes read straight where they are decoded, rather
    /// than read elsewhere and [fed](Self::feed). `fill` must only append.
    pub fn feed_with<T, E>(&mut self, fill: impl FnOnce(&mut BytesMut) -> Result<T, E>) -> Result<T, E> {
        let before = self.buf.len();
        let result = fill(&mut self.buf);
        debug_assert!(self.buf.len() >= before, "feed_with's buffer shrank");
        result
    }

    /// Bytes consumed by the events returned so far.
    pub fn position(&self) -> u64 {
        self.framer.position()
    }

    /// The replication offset after the last command returned (or where the
    /// command stream will start), once the reply has been read.
    pub fn offset(&self) -> Option<u64> {
        self.framer.offset()
    }

    /// Bytes fed but not yet returned as events.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Inside the RDB snapshot's bytes.
    pub fn in_rdb(&self) -> bool {
        self.framer.in_rdb()
    }

    /// Whether the command stream has started.
    pub fn in_command_stream(&self) -> bool {
        self.framer.in_command_stream()
    }

    /// The phase, for messages: "waiting for the PSYNC reply", ...
    pub fn phase_name(&self) -> &'static str {
        self.framer.phase_name()
    }

    /// The event of a frame that was framed elsewhere ([`KnownFrame`]),
    /// `raw` its bytes, which come next in the stream: the decoder moves
    /// past them as if it had framed them. `None` (and nothing moves)
    /// unless the decoder is in the command stream with nothing buffered.
    pub fn take_known(&mut self, frame: KnownFrame, raw: Bytes) -> Option<PsyncEvent> {
        if !self.buf.is_empty() || !self.framer.in_command_stream() || raw.len() != frame.len() {
            return None;
        }
        self.framer.position += raw.len() as u64;
        Some(match frame {
            KnownFrame::KeepAlive(_) => PsyncEvent::KeepAlive,
            KnownFrame::Command { args, .. } => {
                let offset = self.framer.offset.unwrap_or(0) + raw.len() as u64;
                self.framer.offset = Some(offset);
                PsyncEvent::Command(ReplCommand { cmd: Cmd::with_spans(raw, args), offset })
            }
        })
    }

    /// The next event, `Ok(None)` if more bytes are needed.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<PsyncEvent>, PsyncError> {
        let Some((frame, n)) = self.framer.next_frame(&self.buf)? else {
            return Ok(None);
        };
        let raw = self.buf.split_to(n);
        Ok(Some(match frame {
            Frame::KeepAlive => PsyncEvent::KeepAlive,
            Frame::FullResync { replid, offset } => PsyncEvent::FullResync { replid, offset },
            Frame::Continue { new_replid } => PsyncEvent::Continue { new_replid },
            Frame::MasterError { message } => PsyncEvent::MasterError { message },
            Frame::RdbBegin { len } => PsyncEvent::RdbBegin { len },
            Frame::RdbData => PsyncEvent::RdbData(raw.freeze()),
            Frame::RdbEnd => PsyncEvent::RdbEnd,
            Frame::Command { offset, .. } => {
                PsyncEvent::Command(ReplCommand { cmd: Cmd::framed(raw.freeze(), self.framer.command_args()), offset })
            }
        }))
    }
}

/// ASCII digits only (no sign, unlike `u64::from_str`), no overflow.
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &byte| {
        let digit = byte.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Replication IDs are 40 hex characters; anything printable without
/// spaces is accepted so a Redis-compatible server with another alphabet
/// still works.
fn valid_replid(id: &str) -> bool {
    id.len() == REPLID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

fn preview(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// `PSYNC ? -1`, or `PSYNC <replid> <offset+1>` to continue after `from`.
pub fn psync_request(from: Option<&PsyncPosition>) -> Vec<u8> {
    match from {
        Some(p) => encode_command(&[b"PSYNC", p.replid.as_bytes(), (p.offset + 1).to_string().as_bytes()]),
        None => encode_command(&[b"PSYNC", b"?", b"-1"]),
    }
}

/// `REPLCONF ACK <offset>`: the replica has the stream up to `offset`. The
/// master does not reply.
pub fn ack_request(offset: u64) -> Vec<u8> {
    encode_command(&[b"REPLCONF", b"ACK", offset.to_string().as_bytes()])
}

fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLID: &str = "8c6a3d0cfd7e4e2e8a6e1b0a9c2f4d5e6f708192";
    const MARK: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

    fn cmd(args: &[&str]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        encode_command(&args)
    }

    /// An RDB-like payload that contains a near miss of the mark (its first
    /// 39 bytes, then a different byte), CRLFs and `$`.
    fn rdb_payload() -> Vec<u8> {
        let mut p = b"REDIS0011\xfa\x09redis-ver\x057.0.0$\r\n\n*1\r\n".to_vec();
        p.extend_from_slice(&MARK[..39]);
        p.push(b'X');
        p.extend_from_slice(b"\xfe\x00\xfb\x01\x00\x00\x03key\x05value\xff\x00\x01\x02\x03\x04\x05\x06\x07");
        p
    }

    fn commands() -> Vec<u8> {
        let mut c = cmd(&["SELECT", "0"]);
        c.extend(cmd(&["SET", "key", "va\r\nlue"]));
        c.extend(cmd(&["PING"]));
        c.push(b'\n');
        c.extend(cmd(&["REPLCONF", "GETACK", "*"]));
        c.extend(cmd(&["MULTI"]));
        c.extend(cmd(&["INCR", "n"]));
        c.extend(cmd(&["EXEC"]));
        c
    }

    fn diskless_transcript() -> Vec<u8> {
        let mut t = format!("\n\n+FULLRESYNC {REPLID} 1000\r\n\n\n$EOF:").into_bytes();
        t.extend_from_slice(MARK);
        t.extend_from_slice(b"\r\n");
        t.extend(rdb_payload());
        t.extend_from_slice(MARK);
        t.extend(commands());
        t
    }

    fn disk_transcript() -> Vec<u8> {
        let payload = rdb_payload();
        let mut t = format!("+FULLRESYNC {REPLID} 1000\r\n\n${}\r\n", payload.len()).into_bytes();
        t.extend(payload);
        t.extend(commands());
        t
    }

    /// Feeds `parts` one after another, collecting every event, merging
    /// adjacent RDB pieces, and checking `position` against the bytes fed.
    fn decode_parts(dec: &mut PsyncDecoder, parts: &[&[u8]]) -> Result<Vec<PsyncEvent>, PsyncError> {
        let mut events: Vec<PsyncEvent> = Vec::new();
        let mut fed = 0u64;
        for part in parts {
            dec.feed(part);
            fed += part.len() as u64;
            while let Some(ev) = dec.next_event()? {
                match (events.last_mut(), ev) {
                    (Some(PsyncEvent::RdbData(prev)), PsyncEvent::RdbData(more)) => {
                        let mut joined = prev.to_vec();
                        joined.extend_from_slice(&more);
                        *prev = Bytes::from(joined);
                    }
                    (_, ev) => events.push(ev),
                }
                assert_eq!(dec.position() + dec.buffered() as u64, fed);
            }
        }
        Ok(events)
    }

    fn expected_commands(start: u64) -> Vec<PsyncEvent> {
        let mut offset = start;
        let mut command = |args: &[&str]| {
            let frame = Bytes::from(cmd(args));
            offset += frame.len() as u64;
            let args = args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
            PsyncEvent::Command(ReplCommand { cmd: Cmd::as_sent(args, frame), offset })
        };
        vec![
            command(&["SELECT", "0"]),
            command(&["SET", "key", "va\r\nlue"]),
            command(&["PING"]),
            PsyncEvent::KeepAlive,
            command(&["REPLCONF", "GETACK", "*"]),
            command(&["MULTI"]),
            command(&["INCR", "n"]),
            command(&["EXEC"]),
        ]
    }

    fn expected_diskless() -> Vec<PsyncEvent> {
        let mut e = vec![
            PsyncEvent::KeepAlive,
            PsyncEvent::KeepAlive,
            PsyncEvent::FullResync { replid: REPLID.into(), offset: 1000 },
            PsyncEvent::KeepAlive,
            PsyncEvent::KeepAlive,
            PsyncEvent::RdbBegin { len: None },
            PsyncEvent::RdbData(rdb_payload().into()),
            PsyncEvent::RdbEnd,
        ];
        e.extend(expected_commands(1000));
        e
    }

    fn expected_disk() -> Vec<PsyncEvent> {
        let mut e = vec![
            PsyncEvent::FullResync { replid: REPLID.into(), offset: 1000 },
            PsyncEvent::KeepAlive,
            PsyncEvent::RdbBegin { len: Some(rdb_payload().len() as u64) },
            PsyncEvent::RdbData(rdb_payload().into()),
            PsyncEvent::RdbEnd,
        ];
        e.extend(expected_commands(1000));
        e
    }

    #[test]
    fn diskless_transcript_in_one_piece() {
        let t = diskless_transcript();
        let mut dec = PsyncDecoder::new(None);
        assert_eq!(decode_parts(&mut dec, &[&t]).unwrap(), expected_diskless());
        assert_eq!(dec.position(), t.len() as u64);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn diskless_transcript_split_at_every_point() {
        let t = diskless_transcript();
        for cut in 0..=t.len() {
            let mut dec = PsyncDecoder::new(None);
            let events = decode_parts(&mut dec, &[&t[..cut], &t[cut..]]).unwrap();
            assert_eq!(events, expected_diskless(), "split at {cut}");
            assert_eq!(dec.position(), t.len() as u64, "split at {cut}");
        }
    }

    #[test]
    fn diskless_mark_split_at_every_pair_of_points_around_it() {
        // Three pieces, both cuts anywhere in the closing mark's
        // neighbourhood: the mark can arrive in three reads.
        let t = diskless_transcript();
        let mark_at = t.len() - commands().len() - EOF_MARK_LEN;
        for a in mark_at - 45..=mark_at + EOF_MARK_LEN + 5 {
            for b in a..=mark_at + EOF_MARK_LEN + 5 {
                let mut dec = PsyncDecoder::new(None);
                let events = decode_parts(&mut dec, &[&t[..a], &t[a..b], &t[b..]]).unwrap();
                assert_eq!(events, expected_diskless(), "cuts at {a}, {b}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        for (t, expected) in [(diskless_transcript(), expected_diskless()), (disk_transcript(), expected_disk())] {
            let parts: Vec<&[u8]> = t.chunks(1).collect();
            let mut dec = PsyncDecoder::new(None);
            assert_eq!(decode_parts(&mut dec, &parts).unwrap(), expected);
        }
    }

    #[test]
    fn disk_transcript_split_at_every_point() {
        let t = disk_transcript();
        for cut in 0..=t.len() {
            let mut dec = PsyncDecoder::new(None);
            let events = decode_parts(&mut dec, &[&t[..cut], &t[cut..]]).unwrap();
            assert_eq!(events, expected_disk(), "split at {cut}");
        }
    }

    #[test]
    fn rdb_data_never_includes_the_mark() {
        // Whatever the pieces, no RdbData event carries a byte past the
        // payload, even transiently.
        let t = diskless_transcript();
        let payload_len = rdb_payload().len();
        for size in 1..=64 {
            let mut dec = PsyncDecoder::new(None);
            let mut rdb = 0;
            for piece in t.chunks(size) {
                dec.feed(piece);
                while let Some(ev) = dec.next_event().unwrap() {
                    if let PsyncEvent::RdbData(b) = ev {
                        rdb += b.len();
                        assert!(rdb <= payload_len, "chunk size {size}");
                    }
                }
            }
            assert_eq!(rdb, payload_len);
        }
    }

    #[test]
    fn empty_sized_rdb() {
        let mut t = format!("+FULLRESYNC {REPLID} 7\r\n$0\r\n").into_bytes();
        t.extend(cmd(&["PING"]));
        let mut dec = PsyncDecoder::new(None);
        let events = decode_parts(&mut dec, &[&t]).unwrap();
        assert_eq!(events[1..3], [PsyncEvent::RdbBegin { len: Some(0) }, PsyncEvent::RdbEnd]);
        assert!(matches!(&events[3], PsyncEvent::Command(c) if c.offset == 7 + 14));
    }

    /// A decoder taking frames a framer described (as the consumer takes
    /// what the link framed) returns what it returns framing them itself,
    /// with the same positions and offsets, whichever frames it is given.
    #[test]
    fn frames_framed_elsewhere_decode_as_framed_here() {
        let stream = commands();
        // The link's side: every frame and its description.
        let mut framer = PsyncFramer::in_commands(700);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some((frame, len)) = framer.next_frame(&stream[at..]).unwrap() {
            frames.push((KnownFrame::of(&frame, len, &framer).expect("a command-stream frame"), at));
            at += len;
        }
        assert_eq!(at, stream.len());
        let mut expected = expected_commands(700);
        expected.retain(|e| *e != PsyncEvent::KeepAlive);
        for taken in 0..=frames.len() {
            // The first `taken` frames handed over, the rest fed as bytes.
            let mut dec = PsyncDecoder::in_commands(700);
            let mut events = Vec::new();
            for &(frame, start) in &frames[..taken] {
                let raw = Bytes::copy_from_slice(&stream[start..start + frame.len()]);
                match dec.take_known(frame, raw).expect("taken between frames") {
                    PsyncEvent::KeepAlive => {}
                    event => events.push(event),
                }
                assert_eq!(dec.position(), (start + frame.len()) as u64);
            }
            let rest = frames.get(taken).map_or(stream.len(), |&(_, start)| start);
            dec.feed(&stream[rest..]);
            while let Some(event) = dec.next_event().unwrap() {
                if event != PsyncEvent::KeepAlive {
                    events.push(event);
                }
            }
            assert_eq!(events, expected, "{taken} frames handed over");
            assert_eq!(dec.offset(), Some(700 + stream.len() as u64 - 1), "the keep-alive adds no offset");
        }
        // Not between frames, or not in the command stream: refused, nothing moves.
        let (first, _) = frames[0];
        let raw = Bytes::copy_from_slice(&stream[..first.len()]);
        let mut dec = PsyncDecoder::in_commands(700);
        dec.feed(b"*");
        assert_eq!(dec.take_known(first, raw.clone()), None);
        let mut dec = PsyncDecoder::new(None);
        assert_eq!(dec.take_known(first, raw), None);
        assert_eq!(dec.position(), 0);
    }

    #[test]
    fn continue_starts_at_the_requested_offset() {
        let mut t = b"\n+CONTINUE\r\n".to_vec();
        t.extend(commands());
        let mut dec = PsyncDecoder::new(Some(5000));
        let events = decode_parts(&mut dec, &[&t]).unwrap();
        let mut expected = vec![PsyncEvent::KeepAlive, PsyncEvent::Continue { new_replid: None }];
        expected.extend(expected_commands(5000));
        assert_eq!(events, expected);

        let t = format!("+CONTINUE {REPLID}\r\n");
        let mut dec = PsyncDecoder::new(Some(1));
        let events = decode_parts(&mut dec, &[t.as_bytes()]).unwrap();
        assert_eq!(events, [PsyncEvent::Continue { new_replid: Some(REPLID.into()) }]);
        assert_eq!(dec.offset(), Some(1));
        assert!(dec.in_command_stream());
    }

    #[test]
    fn continue_needs_a_requested_offset() {
        let mut dec = PsyncDecoder::new(None);
        dec.feed(b"+CONTINUE\r\n");
        assert_eq!(dec.next_event(), Err(PsyncError::ContinueWithoutOffset { at: 0 }));
    }

    #[test]
    fn a_reconnect_reply_inside_the_stream_continues_it() {
        // What a spool holds after a reconnect: the first session, then the
        // second reply appended at a command boundary.
        let mut t = disk_transcript();
        t.extend_from_slice(format!("+CONTINUE {REPLID}\r\n").as_bytes());
        t.extend(cmd(&["DEL", "key"]));
        let mut dec = PsyncDecoder::new(None);
        let events = decode_parts(&mut dec, &[&t]).unwrap();
        let end = expected_commands(1000).len();
        let before = match &events[events.len() - 3] {
            PsyncEvent::Command(c) => c.offset,
            other => panic!("{other:?}"),
        };
        assert_eq!(events.len(), 5 + end + 2);
        assert_eq!(events[events.len() - 2], PsyncEvent::Continue { new_replid: Some(REPLID.into()) });
        let PsyncEvent::Command(del) = &events[events.len() - 1] else { panic!() };
        assert_eq!(del.offset, before + cmd(&["DEL", "key"]).len() as u64);
    }

    #[test]
    fn error_replies_are_events() {
        for reply in [
            "-NOMASTERLINK Can't SYNC while not connected with my master",
            "-LOADING Redis is loading the dataset in memory",
            "-ERR unknown command `PSYNC`, with args beginning with: `?`, `-1`, ",
        ] {
            let mut dec = PsyncDecoder::new(None);
            dec.feed(format!("\n{reply}\r\n").as_bytes());
            assert_eq!(dec.next_event(), Ok(Some(PsyncEvent::KeepAlive)));
            assert_eq!(dec.next_event(), Ok(Some(PsyncEvent::MasterError { message: reply[1..].to_owned() })));
            assert_eq!(dec.next_event(), Ok(None));
            dec.feed(b"x");
            assert!(matches!(dec.next_event(), Err(PsyncError::AfterError { .. })));
        }
        // An error instead of the RDB (a failed BGSAVE).
        let mut dec = PsyncDecoder::new(None);
        let t = format!("+FULLRESYNC {REPLID} 1\r\n\n-ERR BGSAVE failed\r\n");
        let events = decode_parts(&mut dec, &[t.as_bytes()]).unwrap();
        assert_eq!(events[2], PsyncEvent::MasterError { message: "ERR BGSAVE failed".into() });
    }

    #[test]
    fn malformed_input_is_an_error_with_its_position() {
        let case = |input: &[u8]| {
            let mut dec = PsyncDecoder::new(None);
            dec.feed(input);
            loop {
                match dec.next_event() {
                    Ok(Some(_)) => continue,
                    Ok(None) => return None,
                    Err(e) => return Some(e),
                }
            }
        };
        assert!(matches!(case(b"+OK\r\n"), Some(PsyncError::UnexpectedReply { at: 0, .. })));
        assert!(matches!(case(b"+FULLRESYNC abc 1\r\n"), Some(PsyncError::Malformed { .. })));
        let full = format!("+FULLRESYNC {REPLID} 1\r\n");
        let at = full.len() as u64;
        let with = |rest: &[u8]| [full.as_bytes(), rest].concat();
        assert!(matches!(case(&with(b"$-1\r\n")), Some(PsyncError::Malformed { at: a, .. }) if a == at));
        assert!(matches!(case(&with(b"$EOF:short\r\n")), Some(PsyncError::Malformed { .. })));
        assert!(matches!(case(&with(b"hello\r\n")), Some(PsyncError::Malformed { .. })));
        assert!(matches!(case(&with(&[b'a'; LINE_MAX + 2])), Some(PsyncError::LineTooLong { .. })));
        let cmds = |rest: &[u8]| [full.as_bytes(), b"$0\r\n", rest].concat();
        let at = at + 4;
        assert!(
            matches!(case(&cmds(b"GET x\r\n")), Some(PsyncError::UnexpectedByte { at: a, byte: b'G', .. }) if a == at)
        );
        assert!(matches!(case(&cmds(b"*0\r\n")), Some(PsyncError::Malformed { .. })));
        assert!(matches!(case(&cmds(b"*+1\r\n")), Some(PsyncError::Malformed { .. })));
        assert!(matches!(case(&cmds(b"*1\r\n:1\r\n")), Some(PsyncError::UnexpectedByte { byte: b':', .. })));
        assert!(matches!(case(&cmds(b"*1\r\n$3\r\nabcXY")), Some(PsyncError::Malformed { .. })));
        assert!(matches!(case(&cmds(&[b'*'; 40])), Some(PsyncError::Malformed { .. })));
        assert!(matches!(case(&cmds(b"*99999999999\r\n")), Some(PsyncError::Malformed { .. })));
    }

    /// What the source link does: the bytes stay in the caller's buffer,
    /// which drops each frame once it is framed; returns every frame with
    /// its bytes and the framer's position after it.
    fn frame_parts(framer: &mut PsyncFramer, parts: &[&[u8]]) -> Vec<(Frame, Vec<u8>, u64)> {
        let mut pending = Vec::new();
        let mut out = Vec::new();
        for part in parts {
            pending.extend_from_slice(part);
            while let Some((frame, n)) = framer.next_frame(&pending).expect("frames") {
                out.push((frame, pending[..n].to_vec(), framer.position()));
                pending.drain(..n);
            }
        }
        out
    }

    #[test]
    fn the_framer_ends_frames_where_the_decoder_ends_events() {
        for transcript in [diskless_transcript(), disk_transcript()] {
            let mut dec = PsyncDecoder::new(None);
            dec.feed(&transcript);
            let mut events = Vec::new();
            while let Some(event) = dec.next_event().unwrap() {
                events.push((event, dec.position()));
            }
            for cut in 0..=transcript.len() {
                let mut framer = PsyncFramer::new(None);
                let frames = frame_parts(&mut framer, &[&transcript[..cut], &transcript[cut..]]);
                // RDB bytes may come in other pieces; everything else frame for event.
                let joined: Vec<u8> = frames.iter().flat_map(|(_, bytes, _)| bytes.clone()).collect();
                let tail = transcript.len() - joined.len();
                assert_eq!(tail, 0, "cut at {cut}: {tail} bytes never framed");
                let not_rdb = |e: &&(PsyncEvent, u64)| !matches!(e.0, PsyncEvent::RdbData(_));
                let whole: Vec<&(PsyncEvent, u64)> = events.iter().filter(not_rdb).collect();
                let framed: Vec<&(Frame, Vec<u8>, u64)> = frames.iter().filter(|f| f.0 != Frame::RdbData).collect();
                assert_eq!(whole.len(), framed.len(), "cut at {cut}");
                for ((event, at), (frame, bytes, end)) in whole.iter().zip(framed) {
                    assert_eq!(at, end, "cut at {cut}: {event:?} / {frame:?}");
                    match (event, frame) {
                        (PsyncEvent::Command(c), Frame::Command { offset, getack }) => {
                            assert_eq!((c.offset, c.frame(), c.is_getack()), (*offset, &bytes[..], *getack));
                        }
                        (PsyncEvent::Command(_), other) | (_, other @ Frame::Command { .. }) => {
                            panic!("cut at {cut}: {event:?} framed as {other:?}")
                        }
                        _ => {}
                    }
                }
                assert_eq!(framer.offset(), dec.offset());
                assert!(framer.in_command_stream());
            }
        }
    }

    #[test]
    fn the_framer_names_the_arguments_in_the_callers_bytes() {
        let mut framer = PsyncFramer::in_commands(7);
        let stream = [cmd(&["SET", "k", "v\r\n"]), cmd(&["replconf", "GETACK", "*"])].concat();
        let (frame, n) = framer.next_frame(&stream).unwrap().unwrap();
        assert_eq!(frame, Frame::Command { offset: 7 + n as u64, getack: false });
        let args: Vec<&[u8]> = framer.command_args().iter().map(|&(at, len)| &stream[at..at + len]).collect();
        assert_eq!(args, [&b"SET"[..], b"k", b"v\r\n"]);
        let rest = &stream[n..];
        let (frame, m) = framer.next_frame(rest).unwrap().unwrap();
        assert_eq!(frame, Frame::Command { offset: 7 + (n + m) as u64, getack: true });
        assert_eq!(framer.command_args().len(), 3);
        assert_eq!(framer.next_frame(&rest[m..]), Ok(None));
        // A command of 2,000 arguments, then small ones: its room goes back.
        let many: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        let many: Vec<&str> = std::iter::once("SADD").chain(many.iter().map(String::as_str)).collect();
        let stream = [cmd(&many), cmd(&["GET", "k"])].concat();
        let (_, n) = framer.next_frame(&stream).unwrap().unwrap();
        assert_eq!(framer.command_args().len(), 2001);
        framer.next_frame(&stream[n..]).unwrap().unwrap();
        assert!(framer.scan.args.capacity() <= ARGS_PREALLOC);
    }

    #[test]
    fn headers_wait_for_their_end_and_refuse_what_is_not_a_number() {
        let framer = PsyncFramer::in_commands(0);
        let header = |bytes: &[u8]| match scan_header(bytes, b'$') {
            Header::Done(n, len) => Ok(Some((n, len))),
            Header::Partial => Ok(None),
            Header::Bad => Err(framer.bad_header(bytes, 0, b'$', "test")),
        };
        assert_eq!(header(b"$12\r\nxy"), Ok(Some((12, 5))));
        assert_eq!(header(b"$18446744073709551615\r\n"), Ok(Some((u64::MAX, 23))));
        for partial in [&b"$"[..], b"$1", b"$12", b"$12\r"] {
            assert_eq!(header(partial), Ok(None), "{partial:?}");
        }
        for bad in [&b"$\r\n"[..], b"$1x", b"$-1\r\n", b"$12\r\r", b"$12\n", b"$18446744073709551616\r\n"] {
            assert!(matches!(header(bad), Err(PsyncError::Malformed { at: 0, .. })), "{bad:?}");
        }
        assert!(matches!(header(&[b'$'; 40]), Err(PsyncError::Malformed { .. })));
        assert!(matches!(header(&[b'1'; 40]), Err(PsyncError::UnexpectedByte { byte: b'1', .. })));
        assert_eq!(parse_digits(b"1000"), Some(1000));
        assert_eq!(parse_digits(b""), None);
        assert_eq!(parse_digits(b"+1"), None);
        assert_eq!(parse_digits(b"99999999999999999999"), None);
    }

    /// The short cut for one- and two-digit headers finds what the loop
    /// finds, for every string of up to six bytes from the bytes that
    /// matter.
    #[test]
    fn short_headers_read_as_the_loop_reads_them() {
        let alphabet = [b'$', b'*', b'0', b'1', b'9', b'\r', b'\n', b'x'];
        let mut input = Vec::new();
        for len in 0..=6u32 {
            for mut code in 0..alphabet.len().pow(len) {
                input.clear();
                for _ in 0..len {
                    input.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                for sigil in [b'$', b'*'] {
                    assert_eq!(scan_header(&input, sigil), scan_header_loop(&input, sigil), "{input:?}");
                }
            }
        }
        assert_eq!(scan_header(b"$7\r\n$3", b'$'), Header::Done(7, 4));
        assert_eq!(scan_header(b"*42\r\n", b'*'), Header::Done(42, 5));
    }

    #[test]
    fn huge_announced_lengths_allocate_nothing() {
        let mut dec = PsyncDecoder::in_commands(0);
        dec.feed(b"*999999999\r\n$3\r\nSET\r\n$999999999999\r\nab");
        assert_eq!(dec.next_event(), Ok(None));
        assert!(dec.framer.scan.args.capacity() <= ARGS_PREALLOC);
        assert!(dec.buf.capacity() < 4096);
        // A bulk length near u64::MAX must not overflow the arithmetic.
        let mut dec = PsyncDecoder::in_commands(0);
        dec.feed(b"*1\r\n$18446744073709551615\r\nab");
        assert_eq!(dec.next_event(), Ok(None));
    }

    #[test]
    fn a_command_in_many_pieces_is_scanned_once() {
        let args: Vec<String> = (0..2000).map(|i| format!("member-{i}")).collect();
        let mut all = vec!["RPUSH", "list"];
        all.extend(args.iter().map(String::as_str));
        let raw = cmd(&all);
        let mut dec = PsyncDecoder::in_commands(10);
        for piece in raw.chunks(7) {
            dec.feed(piece);
            if let Some(PsyncEvent::Command(c)) = dec.next_event().unwrap() {
                assert_eq!(c.args().len(), 2002);
                assert_eq!(c.offset, 10 + raw.len() as u64);
                assert_eq!(c.frame(), &raw[..]);
                return;
            }
        }
        panic!("command not decoded");
    }

    #[test]
    fn command_helpers() {
        let c = |args: &[&str]| ReplCommand { cmd: Cmd::from_args(args), offset: 0 };
        assert!(c(&["replconf", "getack", "*"]).is_getack());
        assert!(!c(&["REPLCONF", "ACK", "1"]).is_getack());
        assert!(c(&["ping"]).is("PING"));
    }

    #[test]
    fn requests_encode_the_next_byte_wanted() {
        assert_eq!(psync_request(None), b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n");
        let from = PsyncPosition { replid: REPLID.into(), offset: 99 };
        let expected = format!("*3\r\n$5\r\nPSYNC\r\n$40\r\n{REPLID}\r\n$3\r\n100\r\n");
        assert_eq!(psync_request(Some(&from)), expected.as_bytes());
        assert_eq!(ack_request(42), b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$2\r\n42\r\n");
    }
}
