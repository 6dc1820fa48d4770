//! `Connection`: one TCP connection to a Redis server (or twemproxy), with
//! connect and reply timeouts, authentication, and pipelining.
//!
//! Commands are written as RESP2 arrays into a write buffer; replies are
//! read into a read buffer, cut into frames by [`FrameScan`] and decoded
//! into [`Value`]s (`Value::parse`). A pipeline writes and
//! reads at the same time, so neither side's socket buffer can fill up and
//! stall the other, and it encodes lazily so a huge batch never sits in
//! memory twice.

use std::{fmt, io, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use super::{
    auth::{classify_rejection, AuthRejection, Credentials},
    cmd::Cmd,
    error::RespError,
    scan::{FrameScan, ScanError},
    value::Value,
};
use crate::display::escape_preview;

/// Free space ensured before each read: big enough that a bulk reply does
/// not arrive in tiny pieces, small enough to keep idle connections cheap.
const READ_CHUNK: usize = 64 * 1024;

/// Encoded-but-unsent bytes kept ahead of the socket; encoding stops there
/// and resumes as the socket drains.
const WRITE_AHEAD: usize = 64 * 1024;

/// Replies due from which a wait raises the receive low-water mark (see
/// `Connection::expect_replies`).
const LOW_WATER_FROM: usize = 64;

/// After a wait under a raised low-water mark timed out: how long the
/// lowered mark has to show replies that had come (they are readable at
/// once) before the wait times out after all.
const LOWERED_GRACE: Duration = Duration::from_millis(200);

/// How many bytes of a non-RESP greeting to quote in the error.
const FOREIGN_PREVIEW: usize = 48;

/// How to connect. `Default`: 5 s to connect, 30 s per reply, no password.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Bounds the TCP connect, and separately the AUTH (or PING) reply.
    pub connect_timeout: Duration,
    /// Longest wait with no bytes moving in either direction while replies
    /// are outstanding; `None` waits forever.
    pub read_timeout: Option<Duration>,
    pub credentials: Option<Credentials>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Some(Duration::from_secs(30)),
            credentials: None,
        }
    }
}

/// An authenticated RESP2 connection.
///
/// After any I/O or protocol error, or if a pipeline future is dropped before
/// it finishes, replies may still be in flight; the connection then refuses
/// further commands with [`RespError::Unusable`] instead of handing out the
/// wrong command's reply.
pub struct Connection {
    stream: TcpStream,
    addr: String,
    read_buf: BytesMut,
    write_buf: BytesMut,
    scan: FrameScan,
    read_timeout: Option<Duration>,
    /// Whether the peer has sent at least one valid frame: bad bytes before
    /// that mean "not a Redis server", after it a protocol error.
    spoke_resp: bool,
    unusable: Option<String>,
    /// The socket's receive low-water mark as last set (see
    /// [`super::low_water`]); 1, the kernel's default, when not raised.
    low_water: usize,
}

enum Progress {
    Read(usize),
    Wrote(usize),
}

impl Connection {
    /// Connects to `addr` (`host:port`) and authenticates. Without
    /// credentials it sends `PING`, so a server that needs a password or a
    /// peer that is not Redis is reported here rather than on first use.
    pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Connection, RespError> {
        let stream = match timeout(opts.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(RespError::ConnectTimeout { addr: addr.to_owned(), timeout: opts.connect_timeout }),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(RespError::ConnectRefused { addr: addr.to_owned() })
            }
            Ok(Err(source)) => return Err(RespError::Connect { addr: addr.to_owned(), source }),
            Ok(Ok(stream)) => stream,
        };
        // Callers batch commands themselves; Nagle would only hold back the
        // tail of each batch. Failing to set it costs latency, not
        // correctness, so the error is not worth failing the connect for.
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            addr: addr.to_owned(),
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::new(),
            scan: FrameScan::default(),
            // A peer that accepts and then stays silent is as unreachable as
            // one that never accepts, so the handshake shares the bound.
            read_timeout: Some(opts.connect_timeout),
            spoke_resp: false,
            unusable: None,
            low_water: 1,
        };
        match &opts.credentials {
            Some(creds) => conn.authenticate(creds).await?,
            None => conn.probe().await?,
        }
        conn.read_timeout = opts.read_timeout;
        Ok(conn)
    }

    async fn authenticate(&mut self, creds: &Credentials) -> Result<(), RespError> {
        let Value::Error(reply) = self.send(&creds.auth_cmd()).await? else {
            return Ok(());
        };
        match classify_rejection(&self.addr, creds, &reply) {
            AuthRejection::Fatal(e) => Err(e),
            AuthRejection::RetryPasswordOnly => {
                let Value::Error(reply) = self.send(&creds.password_only_cmd()).await? else {
                    return Ok(());
                };
                let bare = Credentials::new(None, creds.password());
                match classify_rejection(&self.addr, &bare, &reply) {
                    AuthRejection::Fatal(e) => Err(e),
                    AuthRejection::RetryPasswordOnly => {
                        Err(RespError::AuthFailed { addr: self.addr.clone(), server: reply })
                    }
                }
            }
        }
    }

    async fn probe(&mut self) -> Result<(), RespError> {
        let ping = Cmd::new("PING");
        match self.send(&ping).await? {
            Value::Error(msg) if is_noauth(&msg) => Err(RespError::AuthRequired { addr: self.addr.clone() }),
            // PING renamed away with rename-command: the server still works.
            Value::Error(msg) if msg.starts_with("ERR unknown command") => Ok(()),
            Value::Error(message) => Err(RespError::Server { addr: self.addr.clone(), command: ping.name(), message }),
            _ => Ok(()),
        }
    }

    /// Sends one command and returns its reply; an error reply is returned
    /// as [`Value::Error`].
    pub async fn send(&mut self, cmd: &Cmd) -> Result<Value, RespError> {
        let mut replies = self.pipeline(std::slice::from_ref(cmd)).await?;
        replies.pop().ok_or_else(|| RespError::Protocol {
            addr: self.addr.clone(),
            command: cmd.name(),
            detail: "no reply decoded".to_owned(),
        })
    }

    /// Like [`send`](Self::send), but an error reply becomes
    /// [`RespError::Server`] naming the command (or
    /// [`RespError::AuthRequired`] for `NOAUTH`).
    pub async fn query(&mut self, cmd: &Cmd) -> Result<Value, RespError> {
        match self.send(cmd).await? {
            Value::Error(msg) if is_noauth(&msg) => Err(RespError::AuthRequired { addr: self.addr.clone() }),
            Value::Error(message) => Err(RespError::Server { addr: self.addr.clone(), command: cmd.name(), message }),
            reply => Ok(reply),
        }
    }

    /// Sends all commands without waiting between them and returns one
    /// reply per command, in order. Error replies are values; only I/O and
    /// protocol failures fail the call.
    pub async fn pipeline(&mut self, cmds: &[Cmd]) -> Result<Vec<Value>, RespError> {
        if let Some(reason) = &self.unusable {
            return Err(RespError::Unusable { addr: self.addr.clone(), reason: reason.clone() });
        }
        // Redis never answers an empty command, so sending one would hang
        // the pipeline; refuse before anything is written.
        if cmds.iter().any(|c| c.arg_count() == 0) {
            return Err(RespError::EmptyCommand { addr: self.addr.clone() });
        }
        // Stays set if this future is dropped half-way.
        self.unusable = Some("an earlier pipeline was cancelled before its replies arrived".into());
        let result = self.exchange(cmds).await;
        self.unusable = result.as_ref().err().map(ToString::to_string);
        result
    }

    async fn exchange(&mut self, cmds: &[Cmd]) -> Result<Vec<Value>, RespError> {
        let mut replies = Vec::with_capacity(cmds.len());
        let mut encoded = 0;
        while replies.len() < cmds.len() {
            while encoded < cmds.len() && self.write_buf.len() < WRITE_AHEAD {
                self.encode(&cmds[encoded]);
                encoded += 1;
            }
            while let Some(cmd) = cmds.get(replies.len()) {
                match self.decode(cmd)? {
                    Some(reply) => replies.push(reply),
                    None => break,
                }
            }
            if let Some(cmd) = cmds.get(replies.len()) {
                self.expect_replies(cmds.len() - replies.len());
                self.make_progress(cmd).await?;
            }
        }
        if encoded < cmds.len() || !self.write_buf.is_empty() {
            // A server that refuses a client writes its error at once and
            // closes (protected mode's `DENIED`, `max number of clients`):
            // that error, not the timing, is what the caller must see.
            if let Some(Value::Error(message)) = replies.first() {
                return Err(RespError::Server {
                    addr: self.addr.clone(),
                    command: cmds[0].name(),
                    message: message.clone(),
                });
            }
            return Err(RespError::Protocol {
                addr: self.addr.clone(),
                command: cmds[encoded.min(cmds.len() - 1)].name(),
                detail: "replies arrived for commands not yet sent".to_owned(),
            });
        }
        Ok(replies)
    }

    /// Before waiting for `due` more replies: raises the socket's receive
    /// low-water mark to the fewest bytes they can take, so the kernel
    /// wakes this task once per large share of them instead of once per
    /// piece the server writes. Every RESP frame is at least 3 bytes
    /// (`+\r\n`), and the bytes already in the read buffer are the start of
    /// the next reply, so `3 * due - buffered` more bytes must arrive before
    /// the last reply can: the mark is never more than what is coming, and
    /// a wait can never be held back past its last reply. Below
    /// [`LOW_WATER_FROM`] replies it is 1 again (a system call saved per
    /// small exchange). A server answering very slowly (fewer reply bytes
    /// than the mark within the read timeout) is not taken for a silent one:
    /// the timed-out wait lowers the mark and looks again (see
    /// `make_progress`). Setting it fails only for a closed or foreign
    /// descriptor, which the wait reports anyway; the mark is then left as
    /// the kernel has it.
    fn expect_replies(&mut self, due: usize) {
        let want = if due >= LOW_WATER_FROM { (3 * due).saturating_sub(self.read_buf.len()).max(1) } else { 1 };
        let want = want.min(super::low_water::MAX_LOW_WATER);
        if want == self.low_water {
            return;
        }
        match super::low_water::set_low_water(&self.stream, want) {
            Ok(()) => self.low_water = want,
            Err(e) => tracing::debug!(addr = %self.addr, error = %e, "cannot set the receive low-water mark"),
        }
    }

    /// Appends `cmd` as a RESP2 array of bulk strings. Written by hand
    /// rather than through the codec's encoder: that one builds a frame
    /// vector and measures every length with a logarithm first, which was a
    /// sixth of `shardsync verify`'s CPU (perf, 1M-key dataset); the bytes
    /// are the same.
    fn encode(&mut self, cmd: &Cmd) {
        encode_cmd(&mut self.write_buf, cmd);
    }

    /// Decodes the next reply if it has fully arrived.
    fn decode(&mut self, cmd: &Cmd) -> Result<Option<Value>, RespError> {
        // The reply of almost every write, and of every command inside a
        // transaction, taken without framing it first.
        for (reply, text) in [(&b"+OK\r\n"[..], "OK"), (b"+QUEUED\r\n", "QUEUED")] {
            if self.read_buf.starts_with(reply) {
                self.read_buf.advance(reply.len());
                // It may have seen part of this frame before: it starts afresh.
                self.scan = FrameScan::default();
                self.spoke_resp = true;
                return Ok(Some(Value::Simple(text.into())));
            }
        }
        let len = match self.scan.complete_len(&self.read_buf) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.bad_bytes(cmd, e)),
        };
        let frame = self.read_buf.split_to(len).freeze();
        match Value::parse(&frame) {
            Some(reply) => {
                self.spoke_resp = true;
                Ok(Some(reply))
            }
            None => Err(RespError::Protocol {
                addr: self.addr.clone(),
                command: cmd.name(),
                detail: format!("cannot decode the {len}-byte reply \"{}\"", escape_preview(&frame, FOREIGN_PREVIEW)),
            }),
        }
    }

    fn bad_bytes(&self, cmd: &Cmd, e: ScanError) -> RespError {
        if self.spoke_resp {
            RespError::Protocol {
                addr: self.addr.clone(),
                command: cmd.name(),
                detail: format!(
                    "{} at byte {} of the reply: \"{}\"",
                    e.reason,
                    e.offset,
                    escape_preview(&self.read_buf, FOREIGN_PREVIEW)
                ),
            }
        } else {
            RespError::NotResp { addr: self.addr.clone(), got: escape_preview(&self.read_buf, FOREIGN_PREVIEW) }
        }
    }

    /// Waits until some bytes are written or read; `waiting_on` is the
    /// command whose reply is due next, for messages.
    async fn make_progress(&mut self, waiting_on: &Cmd) -> Result<(), RespError> {
        let Connection { stream, read_buf, write_buf, read_timeout, addr, low_water, .. } = self;
        let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
        if read_buf.capacity() - read_buf.len() < READ_CHUNK / 4 {
            read_buf.reserve(READ_CHUNK);
        }
        let (mut rd, mut wr) = stream.split();
        let io = async {
            if write_buf.is_empty() {
                rd.read_buf(read_buf).await.map(Progress::Read)
            } else {
                // Both halves are cancel-safe: a branch that loses moved no
                // bytes.
                tokio::select! {
                    r = rd.read_buf(read_buf) => r.map(Progress::Read),
                    w = wr.write_buf(write_buf) => w.map(Progress::Wrote),
                }
            }
        };
        tokio::pin!(io);
        // Most steps are ready at once (the socket takes the bytes, or the
        // replies are there): those cost no timer.
        let step = match futures::FutureExt::now_or_never(&mut io) {
            Some(step) => step,
            None => match *read_timeout {
                Some(limit) => {
                    let timed_out =
                        || RespError::Timeout { addr: addr.clone(), command: waiting_on.name(), timeout: limit };
                    match timeout(limit, &mut io).await {
                        Ok(step) => step,
                        // Replies below a raised low-water mark wake no one:
                        // a server answering very slowly sent some, which
                        // are readable at once with the mark lowered; only
                        // a silent one times out.
                        Err(_) if *low_water > 1 => {
                            super::low_water::set_low_water(&fd, 1).map_err(|_| timed_out())?;
                            *low_water = 1;
                            timeout(LOWERED_GRACE, io).await.map_err(|_| timed_out())?
                        }
                        Err(_) => return Err(timed_out()),
                    }
                }
                None => io.await,
            },
        };
        let closed = || RespError::Closed { addr: addr.clone(), command: waiting_on.name() };
        match step {
            Ok(Progress::Read(0) | Progress::Wrote(0)) => Err(closed()),
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Err(closed())
            }
            Err(source) => Err(RespError::Io { addr: addr.clone(), command: waiting_on.name(), source }),
        }
    }

    /// The address this connection was opened with.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    pub fn set_read_timeout(&mut self, limit: Option<Duration>) {
        self.read_timeout = limit;
    }

    /// False after an error or a cancelled pipeline (see the type docs).
    pub fn is_usable(&self) -> bool {
        self.unusable.is_none()
    }

    /// Gives up the socket, for a caller that speaks a different framing
    /// from here on (the replication stream after `PSYNC`). The bytes are
    /// whatever was read but not yet decoded; they come first.
    pub fn into_inner(mut self) -> (TcpStream, BytesMut) {
        // The new reader waits for any byte.
        self.expect_replies(0);
        (self.stream, self.read_buf)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("usable", &self.unusable.is_none())
            .finish_non_exhaustive()
    }
}

/// Longest `*<n>\r\n` or `$<n>\r\n`: a prefix, 20 digits, CRLF.
const HEADER_MAX: usize = 23;

/// Appends `cmd` to `buf` as a RESP2 array of bulk strings.
fn encode_cmd(buf: &mut BytesMut, cmd: &Cmd) {
    // A replicated command sent on as it came is already encoded.
    if let Some(wire) = cmd.wire() {
        buf.extend_from_slice(wire);
        return;
    }
    if let Some((key, payload, replace)) = cmd.restore_parts() {
        return encode_restore(buf, key, payload, replace);
    }
    encode_sealing(buf, &cmd.args(), cmd.dump_payload());
}

/// A [`Cmd::restore`]: `RESTORE key 0 payload [REPLACE]`, its fixed parts
/// copied whole.
fn encode_restore(buf: &mut BytesMut, key: &[u8], payload: &[u8], replace: bool) {
    const HEAD_4: &[u8] = b"*4\r\n$7\r\nRESTORE\r\n";
    const HEAD_5: &[u8] = b"*5\r\n$7\r\nRESTORE\r\n";
    const NO_TTL: &[u8] = b"\r\n$1\r\n0\r\n";
    const REPLACE: &[u8] = b"$7\r\nREPLACE\r\n";
    buf.reserve(HEAD_5.len() + key.len() + NO_TTL.len() + payload.len() + REPLACE.len() + 2 * HEADER_MAX + 2);
    buf.extend_from_slice(if replace { HEAD_5 } else { HEAD_4 });
    put_header(buf, b'$', key.len());
    buf.extend_from_slice(key);
    buf.extend_from_slice(NO_TTL);
    put_header(buf, b'$', payload.len());
    put_sealed(buf, payload);
    buf.extend_from_slice(b"\r\n");
    if replace {
        buf.extend_from_slice(REPLACE);
    }
}

/// Appends DUMP payload `arg` with its CRC-64 computed over what precedes
/// it, from the bytes just written (they are in this core's cache; the
/// payload was built on the parser's); one too short to be a payload as it
/// is (RESTORE refuses it).
fn put_sealed(buf: &mut BytesMut, arg: &[u8]) {
    match arg.len().checked_sub(8) {
        Some(body) => {
            let start = buf.len();
            buf.extend_from_slice(&arg[..body]);
            let crc = crate::crc64::crc64(&buf[start..]);
            buf.extend_from_slice(&crc.to_le_bytes());
        }
        None => buf.extend_from_slice(arg),
    }
}

/// Appends `args` as a RESP2 array of bulk strings (also what
/// [`Cmd::as_sent`] checks its bytes against in debug builds).
// Only the debug builds' checks of `Cmd::as_sent` call it.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub(super) fn encode_args(buf: &mut BytesMut, args: &[Bytes]) {
    encode_sealing(buf, args, None);
}

/// As [`encode_args`]; argument `payload` (a DUMP payload, see
/// [`Cmd::arg_dump_payload`]) is sealed ([`put_sealed`]).
fn encode_sealing(buf: &mut BytesMut, args: &[Bytes], payload: Option<usize>) {
    buf.reserve(args.iter().map(|a| a.len() + HEADER_MAX).sum::<usize>() + HEADER_MAX);
    put_header(buf, b'*', args.len());
    for (i, arg) in args.iter().enumerate() {
        put_header(buf, b'$', arg.len());
        if payload == Some(i) {
            put_sealed(buf, arg);
        } else {
            buf.extend_from_slice(arg);
        }
        buf.extend_from_slice(b"\r\n");
    }
}

/// Appends `<prefix><n>\r\n`, built on the stack and copied once (three
/// small copies per argument showed in a full copy's profile).
fn put_header(buf: &mut BytesMut, prefix: u8, n: usize) {
    // Fixed-size copies for the headers of most arguments (a RESTORE's
    // name, key and TTL): no call to copy a few bytes.
    if n < 10 {
        return buf.extend_from_slice(&[prefix, b'0' + n as u8, b'\r', b'\n']);
    }
    if n < 100 {
        return buf.extend_from_slice(&[prefix, b'0' + (n / 10) as u8, b'0' + (n % 10) as u8, b'\r', b'\n']);
    }
    put_header_any(buf, prefix, n)
}

fn put_header_any(buf: &mut BytesMut, prefix: u8, n: usize) {
    let mut out = [0u8; HEADER_MAX];
    let mut i = HEADER_MAX - 2;
    out[i..].copy_from_slice(b"\r\n");
    let mut rest = n;
    loop {
        i -= 1;
        out[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    i -= 1;
    out[i] = prefix;
    buf.extend_from_slice(&out[i..]);
}

/// `NOAUTH Authentication required.`; Redis before 2.8 said `ERR operation
/// not permitted`.
fn is_noauth(msg: &str) -> bool {
    msg.starts_with("NOAUTH") || msg.contains("operation not permitted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::{codec::Resp2, resp2::types::BorrowedFrame};
    use tokio_util::codec::Encoder;

    #[test]
    fn headers_are_written_whole_on_both_sides_of_each_short_form() {
        for n in [0usize, 9, 10, 99, 100, 12345, usize::MAX] {
            let mut buf = BytesMut::new();
            put_header(&mut buf, b'$', n);
            assert_eq!(buf, format!("${n}\r\n").as_bytes(), "{n}");
        }
    }

    /// The hand-written encoder writes exactly what the codec writes.
    #[test]
    fn commands_encode_as_the_codec_does() {
        let cmds = [
            Cmd::new("PING"),
            Cmd::new("SET").arg("k").arg(""),
            Cmd::new("SET").arg([0u8, 255, b'\r', b'\n']).arg(vec![b'x'; 12345]),
            Cmd::from_args((0..1000).map(|i| i.to_string())),
        ];
        for cmd in &cmds {
            let mut ours = BytesMut::new();
            encode_cmd(&mut ours, cmd);
            let all = cmd.args();
            let args: Vec<BorrowedFrame<'_>> = all.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
            let mut theirs = BytesMut::new();
            Resp2::default().encode(BorrowedFrame::Array(&args), &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{cmd:?}");
        }
        let mut b = BytesMut::new();
        put_header(&mut b, b'$', 0);
        put_header(&mut b, b'*', usize::MAX);
        assert_eq!(&b[..], format!("$0\r\n*{}\r\n", usize::MAX).as_bytes());
    }

    /// A payload whose CRC-64 was left to the sender goes out as Redis 7.0
    /// `DUMP`s it (these bytes are its answer for "abc" and for a list of
    /// a and b), whatever its last 8 bytes held; what is too short to be a
    /// payload goes out as it is.
    #[test]
    fn a_dump_payload_is_sealed_as_it_is_encoded() {
        let dumps: [&[u8]; 2] = [
            b"\x00\x03abc\n\x00\xd9\xac0=Ar\xa2\xe2",
            b"\x12\x01\x02\r\r\x00\x00\x00\x02\x00\x81a\x02\x81b\x02\xff\n\x00h\xeb\n\x89\x13A\xbb\xb1",
        ];
        for dump in dumps {
            let sealed = Cmd::new("RESTORE").arg("k").arg("0").arg(dump).arg("REPLACE");
            let mut expected = BytesMut::new();
            encode_cmd(&mut expected, &sealed);
            for filler in [0u8, 0xaa] {
                let mut open = dump.to_vec();
                let n = open.len();
                open[n - 8..].fill(filler);
                let cmd = Cmd::new("RESTORE")
                    .arg("k")
                    .arg("0")
                    .arg_dump_payload(Bytes::from(open.clone()))
                    .arg_bytes("REPLACE".into());
                assert_eq!(cmd.dump_payload(), Some(3));
                let mut ours = BytesMut::new();
                encode_cmd(&mut ours, &cmd);
                assert_eq!(ours, expected, "filler {filler:#x}");
                // The same command without an argument vector.
                let compact = Cmd::restore(Bytes::from_static(b"k"), Bytes::from(open), true);
                let mut ours = BytesMut::new();
                encode_cmd(&mut ours, &compact);
                assert_eq!(ours, expected, "filler {filler:#x}, Cmd::restore");
            }
        }
        let short = Cmd::new("RESTORE").arg("k").arg("0").arg_dump_payload(Bytes::from_static(b"1234567"));
        let mut ours = BytesMut::new();
        encode_cmd(&mut ours, &short);
        assert_eq!(&ours[..], b"*4\r\n$7\r\nRESTORE\r\n$1\r\nk\r\n$1\r\n0\r\n$7\r\n1234567\r\n");
        let short = Cmd::restore(Bytes::from_static(b"k"), Bytes::from_static(b"1234567"), false);
        let mut compact = BytesMut::new();
        encode_cmd(&mut compact, &short);
        assert_eq!(compact, ours);
        // A key of 10+ bytes and a payload of 100+: headers of any length.
        let (key, payload) = (Bytes::from(vec![b'k'; 12]), Bytes::from(vec![7u8; 300]));
        let compact = Cmd::restore(key.clone(), payload.clone(), true);
        let built = Cmd::new("RESTORE").arg_bytes(key).arg("0").arg_dump_payload(payload).arg("REPLACE");
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        encode_cmd(&mut a, &compact);
        encode_cmd(&mut b, &built);
        assert_eq!(a, b);
    }
}
