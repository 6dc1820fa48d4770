//! A command to send: an argument vector of binary-safe byte strings, encoded
//! as a RESP2 array of bulk strings by the connection. A command replicated
//! by a master and sent on as it came keeps the bytes it came in, which the
//! connection writes instead of encoding it again: with its argument handles
//! ([`Cmd::as_sent`]), or as only those bytes and where its arguments are
//! ([`Cmd::framed`], how the command stream carries them), its arguments
//! then read in place ([`Cmd::arg_at`]). A `RESTORE` built from a snapshot may carry a DUMP payload whose
//! CRC-64 the connection computes as it writes it
//! ([`Cmd::arg_dump_payload`]), on the destination's writer rather than on
//! the snapshot's parser; a snapshot key's plain `RESTORE` (no TTL) is held
//! as its key and payload alone ([`Cmd::restore`]).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// Commands whose first argument alone does not say what is being waited on
/// (`CONFIG GET` vs `CONFIG SET`), so messages name the subcommand too.
const CONTAINER_COMMANDS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "MEMORY", "MODULE", "OBJECT", "REPLCONF",
    "SCRIPT", "XGROUP", "XINFO",
];

/// Commands whose arguments are secrets and must never reach a log line.
const SECRET_COMMANDS: &[&str] = &["AUTH", "HELLO", "MIGRATE", "ACL"];

/// Longest command name kept in messages; a garbage first argument must not
/// make an error message megabytes long.
const NAME_MAX: usize = 32;

/// One command: `Cmd::new("SET").arg(key).arg(value)`.
#[derive(Clone)]
pub struct Cmd {
    form: Form,
}

#[derive(Clone)]
enum Form {
    /// Argument handles, and the RESP array they are exactly (`wire`) when
    /// they arrived that way. `dump_payload`: the argument that is a DUMP
    /// payload whose last 8 bytes (its CRC-64) are computed when the
    /// command is encoded, whatever they hold here.
    Args { args: Vec<Bytes>, wire: Option<Bytes>, dump_payload: Option<u32> },
    /// A replicated command as it came ([`Cmd::framed`]): its bytes and
    /// where its arguments are, no handle per argument. A streamed command
    /// is looked at by name and key, then written as its bytes; a vector of
    /// handles per command (an allocation, and an atomic increment and
    /// decrement per argument, across threads) was a tenth of the stream's
    /// cost. Handles are made only if something asks for all of them. As
    /// small as the other forms: commands are moved several times on their
    /// way to the socket.
    Framed(Framed),
    /// A snapshot key's `RESTORE key 0 payload [REPLACE]` ([`Cmd::restore`]):
    /// no TTL, the payload a DUMP payload sealed at encoding. The form of
    /// nearly every key of a full copy, held without an argument vector:
    /// building and dropping a vector of five handles per key cost about
    /// 90 ns against 22 for the two handles it needs. As small as the other
    /// forms (the flag leaves room for the form's tag).
    Restore { key: Bytes, payload: Bytes, replace: bool },
}

/// The arguments of [`Form::Restore`] that are always the same.
const RESTORE: &[u8] = b"RESTORE";
const NO_TTL: &[u8] = b"0";
const REPLACE: &[u8] = b"REPLACE";
/// Where [`Form::Restore`]'s payload is.
const RESTORE_PAYLOAD: usize = 3;

/// A command name upper-cased on the stack, for the checks every
/// replicated command goes through (the stream filter, the destination's
/// translations, cluster routing): a heap string per command showed in
/// profiles. A name that is upper case already (what most clients send) is
/// only looked at and borrowed; any other is copied and upper-cased in one
/// loop: copying first and upper-casing the copy read back what a call had
/// just written, a stall (12 ns a `translate` against 17-19). Names longer
/// than any command (24 bytes) read as empty.
pub struct UpperName<'a> {
    form: NameForm<'a>,
}

enum NameForm<'a> {
    /// ASCII without lower-case letters: the name as it came.
    AsIs(&'a str),
    Upper {
        buf: [u8; 24],
        len: usize,
    },
}

impl<'a> UpperName<'a> {
    #[allow(unsafe_code)]
    pub fn of(name: &'a [u8]) -> Self {
        const MAX: usize = 24;
        if name.len() <= MAX && name.iter().all(|b| b.is_ascii() && !b.is_ascii_lowercase()) {
            // SAFETY: every byte is ASCII (checked just above), and ASCII
            // is UTF-8. Validating it again with `from_utf8` took more
            // instructions than all else here, three times per streamed
            // command (callgrind).
            let text = unsafe { std::str::from_utf8_unchecked(name) };
            return UpperName { form: NameForm::AsIs(text) };
        }
        let mut buf = [0u8; MAX];
        let len = if name.len() <= buf.len() { name.len() } else { 0 };
        for (d, s) in buf.iter_mut().zip(&name[..len]) {
            *d = s.to_ascii_uppercase();
        }
        UpperName { form: NameForm::Upper { buf, len } }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.form {
            NameForm::AsIs(text) => text.as_bytes(),
            NameForm::Upper { buf, len } => &buf[..*len],
        }
    }

    /// The name as text; a name that is not UTF-8 reads as empty.
    pub fn as_str(&self) -> &str {
        match &self.form {
            NameForm::AsIs(text) => text,
            NameForm::Upper { buf, len } => std::str::from_utf8(&buf[..*len]).unwrap_or(""),
        }
    }
}

/// Arguments of a [`Form::Framed`] whose place is kept; the others are
/// found by reading the headers after them.
const FRAMED_HEAD: usize = 3;

#[derive(Clone)]
struct Framed {
    /// A RESP array of bulk strings, checked by whoever framed it.
    wire: Bytes,
    spans: ArgSpans,
}

/// Where the arguments of a command's RESP array are, as a framer found
/// them: their count, their lengths added up, and (start, len) of the first
/// few (the others are found by reading the headers after them). Small and
/// `Copy`, so a framer can hand it on with the frame's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgSpans {
    count: u32,
    payload: u32,
    head: [(u32, u32); FRAMED_HEAD],
}

impl ArgSpans {
    /// From the (start, len) of every argument; `None` for no arguments or
    /// a frame too long to describe in 32 bits.
    #[inline]
    pub fn of(spans: &[(usize, usize)]) -> Option<ArgSpans> {
        let last = spans.last()?;
        let end = u32::try_from(last.0 + last.1).ok()?;
        let count = u32::try_from(spans.len()).ok()?;
        let payload: usize = spans.iter().map(|&(_, len)| len).sum();
        let mut head = [(0u32, 0u32); FRAMED_HEAD];
        for (h, &(start, len)) in head.iter_mut().zip(spans) {
            // Both within the first `end` bytes, which fit.
            *h = (start as u32, len as u32);
        }
        // The arguments do not overlap, so they add up to less than `end`.
        Some(ArgSpans { count, payload: payload.min(end as usize) as u32, head })
    }
}

impl Framed {
    /// (start, len) of argument `i`. A header that does not parse (which
    /// the framer rules out) reads as a missing argument. Inlined: a
    /// streamed command's name and key are asked for about seven times on
    /// its way, and each call cost more than the look-up it makes.
    #[inline]
    fn span(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.spans.count as usize {
            return None;
        }
        if i < FRAMED_HEAD {
            let (start, len) = self.spans.head[i];
            return Some((start as usize, len as usize));
        }
        self.span_past_head(i)
    }

    /// [`span`](Self::span) of an argument past the first few: read from
    /// the headers after them.
    #[inline(never)]
    fn span_past_head(&self, i: usize) -> Option<(usize, usize)> {
        let at = |(start, len): (u32, u32)| (start as usize, len as usize);
        let (start, len) = at(self.spans.head[FRAMED_HEAD - 1]);
        let mut next = start + len + 2;
        let mut found = None;
        for _ in FRAMED_HEAD..=i {
            let (start, len) = bulk_at(&self.wire, next)?;
            found = Some((start, len));
            next = start + len + 2;
        }
        found
    }

    #[inline]
    fn arg(&self, i: usize) -> Option<&[u8]> {
        self.span(i).and_then(|(start, len)| self.wire.get(start..start + len))
    }

    fn shared(&self, i: usize) -> Option<Bytes> {
        self.span(i)
            .filter(|(start, len)| start + len <= self.wire.len())
            .map(|(start, len)| self.wire.slice(start..start + len))
    }

    fn all(&self) -> Vec<Bytes> {
        (0..self.spans.count as usize).map_while(|i| self.shared(i)).collect()
    }
}

/// The bulk string whose `$<len>\r\n` header starts at `at`: (start, len).
fn bulk_at(wire: &[u8], at: usize) -> Option<(usize, usize)> {
    let rest = wire.get(at..)?;
    let (&b'$', rest) = rest.split_first()? else { return None };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let len = std::str::from_utf8(&rest[..digits]).ok()?.parse::<usize>().ok()?;
    (rest.get(digits..digits + 2)? == b"\r\n").then_some((at + 1 + digits + 2, len))
}

/// Two commands are equal when their arguments are, however they were made.
impl PartialEq for Cmd {
    fn eq(&self, other: &Cmd) -> bool {
        self.arg_count() == other.arg_count() && (0..self.arg_count()).all(|i| self.arg_at(i) == other.arg_at(i))
    }
}

impl Eq for Cmd {}

impl Cmd {
    /// Starts a command with its name, which is not copied (a command per
    /// key of a snapshot must not cost an allocation for its name), with
    /// room for a few arguments.
    pub fn new(name: &'static str) -> Cmd {
        Cmd::with_capacity(name, 3)
    }

    /// A command with room for `args` more arguments: a big command built
    /// argument by argument then never holds twice its size.
    pub fn with_capacity(name: &'static str, args: usize) -> Cmd {
        let mut v = Vec::with_capacity(args + 1);
        v.push(Bytes::from_static(name.as_bytes()));
        Cmd::from_bytes(v)
    }

    /// A command from argument handles as they are, name first (no copy).
    pub fn from_bytes(args: Vec<Bytes>) -> Cmd {
        Cmd { form: Form::Args { args, wire: None, dump_payload: None } }
    }

    /// A command as a master replicated it: `args` and `wire`, the RESP
    /// array they were read from (a multibulk of exactly these arguments,
    /// as [`crate::source::PsyncDecoder`] frames it). Sent as those bytes.
    pub fn as_sent(args: Vec<Bytes>, wire: Bytes) -> Cmd {
        #[cfg(debug_assertions)]
        {
            let mut encoded = bytes::BytesMut::new();
            super::connection::encode_args(&mut encoded, &args);
            assert_eq!(wire, encoded, "the wire bytes are not these arguments");
        }
        Cmd { form: Form::Args { args, wire: Some(wire), dump_payload: None } }
    }

    /// A command as a master replicated it, from its bytes and the
    /// (start, len) of each argument in them, as a framer found them (a
    /// multibulk of exactly these arguments). No handle per argument is
    /// made; it is sent as those bytes.
    #[inline]
    pub fn framed(wire: Bytes, spans: &[(usize, usize)]) -> Cmd {
        match ArgSpans::of(spans) {
            Some(found) => Cmd::with_spans(wire, found),
            None => {
                let args = spans.iter().map(|&(start, len)| wire.slice(start..start + len)).collect();
                Cmd::as_sent(args, wire)
            }
        }
    }

    /// As [`Cmd::framed`], from the spans a framer described earlier
    /// ([`ArgSpans::of`]).
    #[inline]
    pub fn with_spans(wire: Bytes, spans: ArgSpans) -> Cmd {
        let framed = Framed { wire, spans };
        #[cfg(debug_assertions)]
        {
            let args = framed.all();
            let mut encoded = bytes::BytesMut::new();
            super::connection::encode_args(&mut encoded, &args);
            assert_eq!(args.len(), spans.count as usize, "the spans are not these arguments");
            assert_eq!(framed.wire, encoded, "the wire bytes are not these arguments");
        }
        Cmd { form: Form::Framed(framed) }
    }

    /// `RESTORE key 0 payload [REPLACE]`: `payload` a DUMP payload whose
    /// CRC-64 is computed when the command is encoded (as
    /// [`Cmd::arg_dump_payload`]), `key` with no TTL. Built without an
    /// argument vector: see [`Form::Restore`].
    pub fn restore(key: Bytes, payload: Bytes, replace: bool) -> Cmd {
        Cmd { form: Form::Restore { key, payload, replace } }
    }

    /// A [`Cmd::restore`]'s key, payload and `REPLACE`, for the encoder.
    pub(super) fn restore_parts(&self) -> Option<(&[u8], &[u8], bool)> {
        match &self.form {
            Form::Restore { key, payload, replace } => Some((key, payload, *replace)),
            _ => None,
        }
    }

    /// The bytes the command arrived in, when it is sent as it came.
    pub fn wire(&self) -> Option<&Bytes> {
        match &self.form {
            Form::Args { wire, .. } => wire.as_ref(),
            Form::Framed(f) => Some(&f.wire),
            Form::Restore { .. } => None,
        }
    }

    /// A command from a whole argument vector, name first.
    pub fn from_args<I, A>(args: I) -> Cmd
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        Cmd::from_bytes(args.into_iter().map(|a| Bytes::copy_from_slice(a.as_ref())).collect())
    }

    /// Appends an argument (copied).
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Cmd {
        self.push_arg(arg);
        self
    }

    /// Appends an argument without copying it, for large values already in
    /// a `Bytes` (e.g. a RESTORE payload).
    pub fn arg_bytes(mut self, arg: Bytes) -> Cmd {
        self.args_mut().push(arg);
        self
    }

    /// Appends a DUMP payload (type, value, RDB version, CRC-64) without
    /// copying it; its CRC-64 is computed when the command is encoded, so
    /// the parser can leave it zero (`ParserOptions::seal_payloads`). One
    /// per command.
    pub fn arg_dump_payload(mut self, payload: Bytes) -> Cmd {
        let args = self.args_mut();
        let at = u32::try_from(args.len()).ok();
        args.push(payload);
        if let Form::Args { dump_payload, .. } = &mut self.form {
            *dump_payload = at;
        }
        self
    }

    /// The argument whose CRC-64 is computed at encoding (see
    /// [`Cmd::arg_dump_payload`]).
    pub fn dump_payload(&self) -> Option<usize> {
        match &self.form {
            Form::Args { dump_payload, .. } => dump_payload.map(|i| i as usize),
            Form::Framed(_) => None,
            Form::Restore { .. } => Some(RESTORE_PAYLOAD),
        }
    }

    /// Appends an argument in place, for building commands in a loop.
    pub fn push_arg(&mut self, arg: impl AsRef<[u8]>) {
        self.args_mut().push(Bytes::copy_from_slice(arg.as_ref()));
    }

    /// The argument vector, to change: the bytes it came in no longer
    /// apply.
    fn args_mut(&mut self) -> &mut Vec<Bytes> {
        match &self.form {
            Form::Framed(f) => self.form = Form::Args { args: f.all(), wire: None, dump_payload: None },
            Form::Restore { .. } => {
                let dump_payload = Some(RESTORE_PAYLOAD as u32);
                self.form = Form::Args { args: self.args().into_owned(), wire: None, dump_payload };
            }
            Form::Args { .. } => {}
        }
        match &mut self.form {
            Form::Args { args, wire, .. } => {
                *wire = None;
                args
            }
            Form::Framed(_) | Form::Restore { .. } => unreachable!("turned into arguments above"),
        }
    }

    /// Every argument as a handle. A command as it came makes them (a
    /// vector of handles) on each call: where only a few are looked at,
    /// [`Cmd::arg_at`] does not.
    pub fn args(&self) -> Cow<'_, [Bytes]> {
        match &self.form {
            Form::Args { args, .. } => Cow::Borrowed(args),
            Form::Framed(f) => Cow::Owned(f.all()),
            Form::Restore { .. } => Cow::Owned((0..self.arg_count()).filter_map(|i| self.shared_arg(i)).collect()),
        }
    }

    /// How many arguments, the name included.
    pub fn arg_count(&self) -> usize {
        match &self.form {
            Form::Args { args, .. } => args.len(),
            Form::Framed(f) => f.spans.count as usize,
            Form::Restore { replace, .. } => 4 + usize::from(*replace),
        }
    }

    /// Argument `i` (0 is the name).
    pub fn arg_at(&self, i: usize) -> Option<&[u8]> {
        match &self.form {
            Form::Args { args, .. } => args.get(i).map(|a| a.as_ref()),
            Form::Framed(f) => f.arg(i),
            Form::Restore { key, payload, replace } => match i {
                0 => Some(RESTORE),
                1 => Some(key),
                2 => Some(NO_TTL),
                RESTORE_PAYLOAD => Some(payload),
                4 if *replace => Some(REPLACE),
                _ => None,
            },
        }
    }

    /// Argument `i` as a handle of its own (no copy).
    pub fn shared_arg(&self, i: usize) -> Option<Bytes> {
        match &self.form {
            Form::Args { args, .. } => args.get(i).cloned(),
            Form::Framed(f) => f.shared(i),
            Form::Restore { key, payload, replace } => match i {
                0 => Some(Bytes::from_static(RESTORE)),
                1 => Some(key.clone()),
                2 => Some(Bytes::from_static(NO_TTL)),
                RESTORE_PAYLOAD => Some(payload.clone()),
                4 if *replace => Some(Bytes::from_static(REPLACE)),
                _ => None,
            },
        }
    }

    /// The arguments' lengths added up.
    pub fn payload_len(&self) -> usize {
        match &self.form {
            Form::Args { args, .. } => args.iter().map(|a| a.len()).sum(),
            Form::Framed(f) => f.spans.payload as usize,
            Form::Restore { key, payload, replace } => {
                RESTORE.len() + key.len() + NO_TTL.len() + payload.len() + if *replace { REPLACE.len() } else { 0 }
            }
        }
    }

    /// The command's name for messages, upper-cased, with the subcommand for
    /// container commands (`CONFIG GET`). Never includes keys or values.
    pub fn name(&self) -> String {
        let word = |i: usize| {
            self.arg_at(i).map(|a| {
                let cut = &a[..a.len().min(NAME_MAX)];
                String::from_utf8_lossy(cut).to_ascii_uppercase()
            })
        };
        let Some(first) = word(0) else {
            return "(empty command)".to_string();
        };
        match word(1) {
            Some(sub) if CONTAINER_COMMANDS.contains(&first.as_str()) => format!("{first} {sub}"),
            _ => first,
        }
    }
}

/// Shows arguments escaped, except that commands carrying secrets show only
/// their name, so a `{:?}` in a log never leaks a password.
impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.arg_at(0).map(|a| String::from_utf8_lossy(a).to_ascii_uppercase());
        if first.as_deref().is_some_and(|name| SECRET_COMMANDS.contains(&name)) {
            return write!(f, "Cmd({} <{} args redacted>)", self.name(), self.arg_count() - 1);
        }
        let mut list = f.debug_list();
        for arg in (0..self.arg_count()).map_while(|i| self.arg_at(i)) {
            list.entry(&crate::display::escape_preview(arg, 64));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_upper_case_on_the_stack_up_to_24_bytes() {
        assert_eq!(UpperName::of(b"hSet").as_str(), "HSET");
        assert_eq!(UpperName::of(&[b'x'; 24]).as_str(), "X".repeat(24));
        assert_eq!(UpperName::of(&[b'x'; 25]).as_bytes(), b"");
        let odd = UpperName::of(b"s\xffx");
        assert_eq!((odd.as_bytes(), odd.as_str()), (&b"S\xffX"[..], ""));
        // Upper case already: borrowed, with the same limits.
        assert_eq!(UpperName::of(b"LPUSH").as_str(), "LPUSH");
        assert_eq!(UpperName::of(b"ZADD_2").as_bytes(), b"ZADD_2");
        assert_eq!(UpperName::of(&[b'X'; 24]).as_str(), "X".repeat(24));
        assert_eq!(UpperName::of(&[b'X'; 25]).as_bytes(), b"");
        let odd = UpperName::of(b"S\xffX");
        assert_eq!((odd.as_bytes(), odd.as_str()), (&b"S\xffX"[..], ""));
        assert_eq!(UpperName::of(b"").as_str(), "");
    }

    #[test]
    fn a_compact_restore_reads_as_its_argument_vector() {
        let (key, payload) = (Bytes::from_static(b"user:1"), Bytes::from_static(b"\x00\x01a\x0b\x00\0\0\0\0\0\0\0\0"));
        for replace in [false, true] {
            let compact = Cmd::restore(key.clone(), payload.clone(), replace);
            let mut built = Cmd::new("RESTORE").arg_bytes(key.clone()).arg("0").arg_dump_payload(payload.clone());
            if replace {
                built = built.arg("REPLACE");
            }
            assert_eq!(compact, built);
            assert_eq!(compact.args(), built.args());
            assert_eq!(compact.arg_count(), built.arg_count());
            assert_eq!(compact.payload_len(), built.payload_len());
            assert_eq!(compact.dump_payload(), Some(3));
            assert_eq!(compact.wire(), None);
            assert_eq!(compact.name(), "RESTORE");
            for i in 0..6 {
                assert_eq!(compact.shared_arg(i), built.shared_arg(i), "argument {i}");
            }
            // Changed, it becomes an argument vector that still seals its payload.
            let changed = compact.clone().arg("ABSTTL");
            assert_eq!(changed.dump_payload(), Some(3));
            assert_eq!(changed.arg_at(changed.arg_count() - 1), Some(&b"ABSTTL"[..]));
            assert_eq!(changed.arg_count(), built.arg_count() + 1);
        }
        // The form leaves a command as small as before: commands are moved
        // several times on their way to the socket.
        assert!(std::mem::size_of::<Cmd>() <= 72, "{}", std::mem::size_of::<Cmd>());
    }

    #[test]
    fn a_command_sent_as_it_came_keeps_its_bytes_until_it_changes() {
        let wire = Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let came = Cmd::as_sent(vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")], wire.clone());
        assert_eq!(came.wire(), Some(&wire));
        assert_eq!(came, Cmd::from_args(["GET", "k"]), "equal by arguments");
        assert_eq!(came.clone().arg("x").wire(), None);
        assert_eq!(came.clone().arg_bytes(Bytes::new()).wire(), None);
        let mut pushed = came;
        pushed.push_arg("x");
        assert_eq!(pushed.wire(), None);
    }

    /// A RESP array of `args` and the (start, len) of each argument in it,
    /// as a framer finds them.
    fn framed_parts(args: &[&[u8]]) -> (Bytes, Vec<(usize, usize)>) {
        let mut wire = format!("*{}\r\n", args.len()).into_bytes();
        let mut spans = Vec::new();
        for a in args {
            wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            spans.push((wire.len(), a.len()));
            wire.extend_from_slice(a);
            wire.extend_from_slice(b"\r\n");
        }
        (Bytes::from(wire), spans)
    }

    #[test]
    fn a_framed_command_reads_every_argument_in_place() {
        let big = vec![b'v'; 1000];
        let shapes: [&[&[u8]]; 4] = [
            &[b"PING"],
            &[b"SET", b"k", b"va\r\nlue"],
            &[b"set", b"k", b"", b"PXAT", b"1700000000000"],
            &[b"HSET", b"h", b"f1", &big, b"f2", b"$3\r\n", b"f3", b"*1"],
        ];
        for args in shapes {
            let (wire, spans) = framed_parts(args);
            let framed = Cmd::framed(wire.clone(), &spans);
            let built = Cmd::from_args(args);
            assert_eq!(framed, built, "equal by arguments");
            assert_eq!(framed.arg_count(), args.len());
            for (i, a) in args.iter().enumerate() {
                assert_eq!(framed.arg_at(i), Some(*a), "argument {i} of {built:?}");
                assert_eq!(framed.shared_arg(i).as_deref(), Some(*a));
            }
            assert_eq!(framed.arg_at(args.len()), None);
            assert_eq!(framed.shared_arg(args.len() + 3), None);
            assert_eq!(framed.payload_len(), built.payload_len());
            assert_eq!(framed.wire(), Some(&wire), "sent as it came");
            assert_eq!(framed.args(), built.args(), "handles made on request");
            assert_eq!(framed.name(), built.name());
            assert_eq!(format!("{framed:?}"), format!("{built:?}"));
        }
    }

    #[test]
    fn a_framed_command_changed_is_encoded_again() {
        let (wire, spans) = framed_parts(&[b"SET", b"k", b"v", b"EX", b"10"]);
        let framed = Cmd::framed(wire, &spans);
        let changed = framed.clone().arg("GET");
        assert_eq!(changed.wire(), None);
        assert_eq!(changed, Cmd::from_args(["SET", "k", "v", "EX", "10", "GET"]));
        let mut pushed = framed.clone();
        let _ = pushed.args();
        pushed.push_arg("x");
        assert_eq!(pushed.wire(), None);
        assert_eq!(pushed.arg_at(5), Some(&b"x"[..]));
        assert_eq!(framed.clone().arg_bytes(Bytes::from_static(b"y")).arg_at(5), Some(&b"y"[..]));
        assert!(framed.wire().is_some(), "the original is untouched");
    }

    #[test]
    fn a_framed_secret_is_redacted() {
        let (wire, spans) = framed_parts(&[b"AUTH", b"alice", b"hunter2"]);
        let shown = format!("{:?}", Cmd::framed(wire, &spans));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn builder_and_arg_vector_agree() {
        let built = Cmd::new("SET").arg("k").arg([0u8, 255]);
        let vector = Cmd::from_args([&b"SET"[..], b"k", &[0, 255]]);
        assert_eq!(built, vector);
        assert_eq!(built.args().len(), 3);
    }

    #[test]
    fn names_include_subcommands_but_never_keys() {
        assert_eq!(Cmd::from_args(["get", "secret-key"]).name(), "GET");
        assert_eq!(Cmd::from_args(["config", "get", "maxmemory"]).name(), "CONFIG GET");
        assert_eq!(Cmd::from_args(Vec::<&str>::new()).name(), "(empty command)");
        assert_eq!(Cmd::from_args([[b'x'; 100]]).name().len(), NAME_MAX);
    }

    #[test]
    fn debug_redacts_secrets() {
        let auth = format!("{:?}", Cmd::from_args(["AUTH", "alice", "hunter2"]));
        assert!(!auth.contains("hunter2"), "{auth}");
        assert!(auth.contains("AUTH"));
        let get = format!("{:?}", Cmd::from_args(["GET", "k\r\n"]));
        assert_eq!(get, r#"["GET", "k\\r\\n"]"#);
    }
}
