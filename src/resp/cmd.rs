//! A command to send: an argument vector of binary-safe byte strings, encoded
//! as a RESP2 array of bulk strings by the connection. A command replicated
//! by a master and sent on as it came also keeps the bytes it came in
//! ([`Cmd::as_sent`]), which the connection writes instead of encoding it
//! again. A `RESTORE` built from a snapshot may carry a DUMP payload whose
//! CRC-64 the connection computes as it writes it
//! ([`Cmd::arg_dump_payload`]), on the destination's writer rather than on
//! the snapshot's parser.

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
    args: Vec<Bytes>,
    /// The RESP array of `args`, exactly, when it arrived that way; dropped
    /// by anything that changes the arguments.
    wire: Option<Bytes>,
    /// The argument that is a DUMP payload whose last 8 bytes (its CRC-64)
    /// are computed when the command is encoded, whatever they hold here.
    dump_payload: Option<usize>,
}

/// Two commands are equal when their arguments are, however they were made.
impl PartialEq for Cmd {
    fn eq(&self, other: &Cmd) -> bool {
        self.args == other.args
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
        Cmd { args: v, wire: None, dump_payload: None }
    }

    /// A command from argument handles as they are, name first (no copy).
    pub fn from_bytes(args: Vec<Bytes>) -> Cmd {
        Cmd { args, wire: None, dump_payload: None }
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
        Cmd { args, wire: Some(wire), dump_payload: None }
    }

    /// The bytes the command arrived in, when it is sent as it came.
    pub fn wire(&self) -> Option<&Bytes> {
        self.wire.as_ref()
    }

    /// A command from a whole argument vector, name first.
    pub fn from_args<I, A>(args: I) -> Cmd
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        Cmd {
            args: args.into_iter().map(|a| Bytes::copy_from_slice(a.as_ref())).collect(),
            wire: None,
            dump_payload: None,
        }
    }

    /// Appends an argument (copied).
    pub fn arg(mut self, arg: impl AsRef<[u8]>) -> Cmd {
        self.push_arg(arg);
        self
    }

    /// Appends an argument without copying it, for large values already in
    /// a `Bytes` (e.g. a RESTORE payload).
    pub fn arg_bytes(mut self, arg: Bytes) -> Cmd {
        self.wire = None;
        self.args.push(arg);
        self
    }

    /// Appends a DUMP payload (type, value, RDB version, CRC-64) without
    /// copying it; its CRC-64 is computed when the command is encoded, so
    /// the parser can leave it zero (`ParserOptions::seal_payloads`). One
    /// per command.
    pub fn arg_dump_payload(mut self, payload: Bytes) -> Cmd {
        self.wire = None;
        self.dump_payload = Some(self.args.len());
        self.args.push(payload);
        self
    }

    /// The argument whose CRC-64 is computed at encoding (see
    /// [`Cmd::arg_dump_payload`]).
    pub fn dump_payload(&self) -> Option<usize> {
        self.dump_payload
    }

    /// Appends an argument in place, for building commands in a loop.
    pub fn push_arg(&mut self, arg: impl AsRef<[u8]>) {
        self.wire = None;
        self.args.push(Bytes::copy_from_slice(arg.as_ref()));
    }

    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// The command's name for messages, upper-cased, with the subcommand for
    /// container commands (`CONFIG GET`). Never includes keys or values.
    pub fn name(&self) -> String {
        let word = |i: usize| {
            self.args.get(i).map(|a| {
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
        let first = self.args.first().map(|a| String::from_utf8_lossy(a).to_ascii_uppercase());
        if first.as_deref().is_some_and(|name| SECRET_COMMANDS.contains(&name)) {
            return write!(f, "Cmd({} <{} args redacted>)", self.name(), self.args.len() - 1);
        }
        let mut list = f.debug_list();
        for arg in &self.args {
            list.entry(&crate::display::escape_preview(arg, 64));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
