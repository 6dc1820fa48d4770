//! What the rewrite hands the writer: destination commands, each tagged with
//! where it came from and how to judge its reply, collected in an
//! [`ApplyBatch`].
//!
//! The tags carry everything the writer needs to apply commands safely
//! without knowing what they mean:
//!
//! * [`Origin`]: destination DB, key and source offset, for error messages
//!   and collision reports;
//! * [`ReplyRule`]: what a good reply is, and which replies mean "the key
//!   already existed" (a conflict, handled per [`Conflict`] mode);
//! * [`Build`] and `free`: big keys are built in pieces under a temporary
//!   name (a *build*); the writer uses these to tell a harmless re-send from
//!   one that would break the order of a build's pieces;
//! * [`Guard`]: how to find out, after the connection dropped, whether a
//!   command that is not safe to repeat was already applied.
//!
//! A batch is also the retry state: the writer removes commands as their
//! replies confirm them, so after a failure the batch holds exactly the
//! commands still to send, in order, and the engine passes it again.

use bytes::Bytes;

use crate::resp::Cmd;

/// What to do when a key being copied already exists on the destination.
///
/// A local stand-in for the task file's `sync.conflict` until the config
/// module lands; the names match its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conflict {
    /// The destination must not have the key: an existing key is a
    /// collision (two shards hold it), reported and never overwritten.
    #[default]
    Intercept,
    /// The source wins: existing keys are replaced.
    Overwrite,
    /// The destination wins: existing keys are kept and counted.
    Skip,
}

/// Where a command comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The destination DB the command must run in.
    pub db: u32,
    /// The source key (empty for commands not about one key, like `SELECT`).
    pub key: Bytes,
    /// The source offset: RDB bytes read at the key's start in a full copy,
    /// the replication offset in the command stream.
    pub offset: u64,
}

/// How the writer judges a command's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyRule {
    /// Any reply that is not an error.
    Ok,
    /// `SELECT`: the writer tracks the connection's DB from it.
    Select,
    /// `MULTI`: the commands up to the next `EXEC` form an atomic unit; their
    /// own rules are applied to the elements of `EXEC`'s reply.
    Multi,
    /// `MULTI` of a unit that must not be applied twice (the command stream
    /// with its checkpoint): once `EXEC` ran, the unit is never re-sent
    /// whole; only inner commands that failed stay to be sent again, alone.
    MultiOnce,
    Exec,
    /// A write that happens only if the key is absent (`RESTORE` without
    /// `REPLACE`, `SET ... NX`, `RENAMENX`). `BUSYKEY`, a nil reply or `:0`
    /// mean the key existed. `temp`: the temporary key that is then left
    /// behind, which the writer deletes.
    IfAbsent {
        temp: Option<Bytes>,
    },
    /// `XADD` with an explicit ID: when re-sent after a lost reply, "ID equal
    /// or smaller than the top item" means the first send was applied.
    StreamAdd,
    /// `XGROUP CREATE`: when re-sent after a lost reply, `BUSYGROUP` means the
    /// first send was applied.
    GroupCreate,
}

impl ReplyRule {
    /// Opens a `MULTI` unit.
    pub fn is_multi(&self) -> bool {
        matches!(self, ReplyRule::Multi | ReplyRule::MultiOnce)
    }

    /// Opens or closes a `MULTI` unit.
    pub fn is_marker(&self) -> bool {
        self.is_multi() || *self == ReplyRule::Exec
    }
}

/// A piece of a big key built under a temporary name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    pub id: u64,
    pub step: BuildStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStep {
    /// `DEL temp`: clears a leftover of an earlier attempt.
    Start,
    /// Writes part of the value to the temporary key.
    Part,
    /// Sets the TTL and renames the temporary key into place.
    Finish,
}

/// How to tell, after a lost reply, whether a command that must not be
/// applied twice already was. Commands without a guard are safe to repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// `RPUSH temp ...` that makes the list `after` elements long: applied
    /// if `LLEN temp >= after`.
    ListLen { temp: Bytes, after: u64 },
    /// The final rename of a build: applied if `temp` no longer exists.
    /// The writer sends the rename only once every piece before it is
    /// confirmed (a window of its own), so `temp` existed when it was sent.
    Renamed { temp: Bytes },
    /// A [`ReplyRule::MultiOnce`] unit that moves the shard's checkpoint
    /// `key` (in [`CHECKPOINT_DB`](super::checkpoint::CHECKPOINT_DB)) from
    /// `before` to `after` on `replid`: applied if the checkpoint is at
    /// `after`, not applied if at `before` (`None`: the key did not exist,
    /// a cluster slot's first checkpoint); anything else means the
    /// destination lost writes it had confirmed (`ROLLBACK`).
    Checkpoint { key: Bytes, replid: String, before: Option<u64>, after: u64 },
}

/// One destination command with its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyCmd {
    pub cmd: Cmd,
    pub origin: Origin,
    pub rule: ReplyRule,
    pub build: Option<Build>,
    /// Commutes with the other `free` commands of its build (`SADD`, `HSET`,
    /// `ZADD`, `SETRANGE`): if it failed while a later one succeeded,
    /// sending it again is still correct.
    pub free: bool,
    /// Boxed: few commands have one, and every command is moved several
    /// times on its way to the socket.
    pub guard: Option<Box<Guard>>,
    /// The last command of a snapshot key (its `RESTORE`, `SET`, its unit's
    /// `EXEC`, or its build's final rename): once confirmed, the key is
    /// written; the writer counts it ([`ApplyReport::keys_written`]), which
    /// is what the engine's key accounting adds up.
    ///
    /// [`ApplyReport::keys_written`]: super::ApplyReport::keys_written
    pub ends_key: bool,
}

impl ApplyCmd {
    /// A plain command: any non-error reply is success.
    pub fn new(cmd: Cmd, origin: Origin) -> Self {
        ApplyCmd { cmd, origin, rule: ReplyRule::Ok, build: None, free: false, guard: None, ends_key: false }
    }

    pub fn rule(mut self, rule: ReplyRule) -> Self {
        self.rule = rule;
        self
    }

    /// Marks the last command of a snapshot key (see `ends_key`).
    pub fn ends_key(mut self) -> Self {
        self.ends_key = true;
        self
    }

    /// A command of a batch again (see [`ApplyBatch::into_cmds`]).
    fn from_parts((cmd, m): (Cmd, Meta)) -> Self {
        ApplyCmd {
            cmd,
            origin: m.origin,
            rule: m.rule,
            build: m.build,
            free: m.free,
            guard: m.guard,
            ends_key: m.ends_key,
        }
    }

    /// Bytes this command takes on the wire (close enough for budgeting).
    pub fn wire_len(&self) -> usize {
        wire_len(&self.cmd)
    }
}

pub(crate) fn wire_len(cmd: &Cmd) -> usize {
    // `*N\r\n` plus `$len\r\n...\r\n` per argument, and then some: the
    // batch limits count this, and a queued command holds more than its
    // bytes (so a command sent as it came is counted the same way).
    16 + cmd.payload_len() + 16 * cmd.arg_count()
}

/// Everything about a queued command except the command itself, which is
/// kept in a separate vector so a window of commands is one slice.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub origin: Origin,
    pub rule: ReplyRule,
    pub build: Option<Build>,
    pub free: bool,
    pub guard: Option<Box<Guard>>,
    pub ends_key: bool,
    /// Sent before without a confirming reply: it may have been applied.
    pub uncertain: bool,
    /// `wire_len` of the command.
    pub len: usize,
}

/// Commands waiting to be applied, in order.
#[derive(Debug, Default, Clone)]
pub struct ApplyBatch {
    pub(crate) cmds: Vec<Cmd>,
    pub(crate) meta: Vec<Meta>,
    pub(crate) bytes: usize,
}

impl ApplyBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a plain command with its `rule` (what [`ApplyCmd::new`] and
    /// [`ApplyCmd::rule`] make, then [`ApplyBatch::push`]) without
    /// assembling the command first, and returns its [`ApplyCmd::wire_len`]:
    /// the path of nearly every streamed command, where the assembled
    /// command, moved in and taken apart again, showed in profiles.
    pub fn push_plain(&mut self, cmd: Cmd, origin: Origin, rule: ReplyRule) -> usize {
        let len = wire_len(&cmd);
        let meta = Meta { origin, rule, build: None, free: false, guard: None, ends_key: false, uncertain: false, len };
        self.push_one(cmd, meta);
        len
    }

    pub fn push(&mut self, c: ApplyCmd) {
        let len = wire_len(&c.cmd);
        let meta = Meta {
            origin: c.origin,
            rule: c.rule,
            build: c.build,
            free: c.free,
            guard: c.guard,
            ends_key: c.ends_key,
            uncertain: false,
            len,
        };
        self.push_one(c.cmd, meta);
    }

    /// Room for `n` more commands.
    pub fn reserve(&mut self, n: usize) {
        self.cmds.reserve(n);
        self.meta.reserve(n);
    }

    /// An empty batch with room for `n` commands.
    pub fn with_capacity(n: usize) -> Self {
        ApplyBatch { cmds: Vec::with_capacity(n), meta: Vec::with_capacity(n), bytes: 0 }
    }

    /// Moves every command of `cmds` into the batch.
    pub fn extend(&mut self, cmds: impl IntoIterator<Item = ApplyCmd>) {
        for c in cmds {
            self.push(c);
        }
    }

    /// Keeps the first `len` commands.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.bytes -= self.meta[len..].iter().map(|m| m.len).sum::<usize>();
        self.cmds.truncate(len);
        self.meta.truncate(len);
    }

    /// Gives back memory beyond room for `n` commands.
    pub fn shrink_to(&mut self, n: usize) {
        self.cmds.shrink_to(n);
        self.meta.shrink_to(n);
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// As [`ApplyBatch::append`], leaving `other` empty with its memory.
    pub fn move_from(&mut self, other: &mut ApplyBatch) {
        self.bytes += std::mem::take(&mut other.bytes);
        self.cmds.append(&mut other.cmds);
        self.meta.append(&mut other.meta);
    }

    /// As [`ApplyBatch::into_cmds`], leaving the batch empty with its memory.
    pub fn drain_cmds(&mut self) -> impl Iterator<Item = ApplyCmd> + '_ {
        self.bytes = 0;
        self.cmds.drain(..).zip(self.meta.drain(..)).map(ApplyCmd::from_parts)
    }

    /// The commands as they were pushed, for a batch not sent yet (whether
    /// a send left a command uncertain is not part of an [`ApplyCmd`]).
    pub fn into_cmds(self) -> impl Iterator<Item = ApplyCmd> {
        self.cmds.into_iter().zip(self.meta).map(ApplyCmd::from_parts)
    }

    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Approximate wire size of the queued commands.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The queued commands, for tests and diagnostics.
    pub fn commands(&self) -> &[Cmd] {
        &self.cmds
    }

    /// Keeps the commands whose flag is true (in order).
    pub(crate) fn retain_mask(&mut self, keep: &[bool]) {
        let mut i = 0;
        self.cmds.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut j = 0;
        self.meta.retain(|_| {
            j += 1;
            keep[j - 1]
        });
        self.bytes = self.meta.iter().map(|m| m.len).sum();
    }

    /// Marks every command as sent without a confirming reply: each is
    /// judged by its guard, or sent again where that is safe.
    pub(crate) fn mark_uncertain(&mut self) {
        for m in &mut self.meta {
            m.uncertain = true;
        }
    }

    /// Drops the first `n` commands (confirmed).
    pub(crate) fn drop_front(&mut self, n: usize) {
        // Nearly always the whole batch, whose metadata need not be read
        // again to know that nothing is left.
        self.bytes =
            if n == self.meta.len() { 0 } else { self.bytes - self.meta[..n].iter().map(|m| m.len).sum::<usize>() };
        self.cmds.drain(..n);
        self.meta.drain(..n);
    }

    /// Puts commands at the front (follow-ups that must go next).
    pub(crate) fn push_front(&mut self, cmds: Vec<(Cmd, Meta)>) {
        if cmds.is_empty() {
            return;
        }
        self.bytes += cmds.iter().map(|(_, m)| m.len).sum::<usize>();
        let (c, m): (Vec<Cmd>, Vec<Meta>) = cmds.into_iter().unzip();
        self.cmds.splice(0..0, c);
        self.meta.splice(0..0, m);
    }
}

impl FromIterator<ApplyCmd> for ApplyBatch {
    fn from_iter<I: IntoIterator<Item = ApplyCmd>>(cmds: I) -> Self {
        let mut batch = ApplyBatch::new();
        batch.extend(cmds);
        batch
    }
}

/// A unit (`MULTI` … `EXEC`) or one command outside a unit, as
/// [`ApplyBatch::split`] shows it to its router: its commands' metadata.
pub(crate) struct Unit<'a>(&'a [Meta]);

impl Unit<'_> {
    /// The key that routes the unit: its first command with a key (empty
    /// when none has one).
    pub fn key(&self) -> &[u8] {
        self.keys().find(|k| !k.is_empty()).unwrap_or_default()
    }

    /// The key of every command (empty for commands without one).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|m| m.origin.key.as_ref())
    }
}

/// Where one command (or unit) of a batch goes in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The part of this index.
    Part(usize),
    /// Every one of the first `broadcast` parts (see [`ApplyBatch::split`]).
    All,
}

impl ApplyBatch {
    /// Splits the batch into `parts` batches: each unit (`MULTI` … `EXEC`)
    /// whole, each other command alone; `target` says where each goes.
    /// [`Target::All`] goes to each of the first `broadcast` parts. Order is
    /// kept within every part.
    pub(crate) fn split(self, parts: usize, broadcast: usize, target: impl Fn(&Unit<'_>) -> Target) -> Vec<ApplyBatch> {
        let mut out: Vec<ApplyBatch> = (0..parts).map(|_| ApplyBatch::new()).collect();
        // Where each unit goes (its length, its target), decided on the
        // metadata before anything moves: a command is moved once, not
        // gathered into a unit of its own first (this runs per key).
        let mut plan = Vec::new();
        let mut start = 0;
        while start < self.meta.len() {
            let mut end = start + 1;
            if self.meta[start].rule.is_multi() {
                while end < self.meta.len() {
                    end += 1;
                    if self.meta[end - 1].rule == ReplyRule::Exec {
                        break;
                    }
                }
            }
            plan.push((end - start, target(&Unit(&self.meta[start..end]))));
            start = end;
        }
        let mut commands = self.cmds.into_iter().zip(self.meta);
        for (len, to) in plan {
            match to {
                Target::Part(i) => {
                    let part = &mut out[i.min(parts - 1)];
                    for (c, m) in commands.by_ref().take(len) {
                        part.push_one(c, m);
                    }
                }
                Target::All => {
                    let unit: Vec<(Cmd, Meta)> = commands.by_ref().take(len).collect();
                    for part in out.iter_mut().take(broadcast) {
                        part.push_meta(unit.clone());
                    }
                }
            }
        }
        out
    }

    /// Moves every command of `other` to the end of this batch, in two
    /// copies of contiguous memory: a stream run under load is thousands of
    /// commands, and moving them one by one showed in profiles.
    pub fn append(&mut self, mut other: ApplyBatch) {
        self.move_from(&mut other);
    }

    fn push_meta(&mut self, unit: Vec<(Cmd, Meta)>) {
        for (c, m) in unit {
            self.push_one(c, m);
        }
    }

    fn push_one(&mut self, c: Cmd, m: Meta) {
        self.bytes += m.len;
        self.cmds.push(c);
        self.meta.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_push_queues_what_an_assembled_command_would() {
        let origin = Origin { db: 3, key: Bytes::from_static(b"k"), offset: 42 };
        let (mut plain, mut assembled) = (ApplyBatch::new(), ApplyBatch::new());
        for (args, rule) in [("SET k 1", ReplyRule::Ok), ("MULTI", ReplyRule::Multi), ("EXEC", ReplyRule::Exec)] {
            let cmd = Cmd::from_args(args.split(' '));
            let c = ApplyCmd::new(cmd.clone(), origin.clone()).rule(rule.clone());
            let len = c.wire_len();
            assembled.push(c);
            assert_eq!(plain.push_plain(cmd, origin.clone(), rule), len);
        }
        assert_eq!(plain.bytes(), assembled.bytes());
        assert_eq!(plain.into_cmds().collect::<Vec<_>>(), assembled.into_cmds().collect::<Vec<_>>());
    }

    #[test]
    fn a_truncated_batch_counts_only_the_bytes_it_keeps() {
        let plain = |args: &str| ApplyCmd::new(Cmd::from_args(args.split(' ')), Origin::default());
        let mut b: ApplyBatch = ["SET a 1", "SET bb 22", "DEL ccc"].into_iter().map(plain).collect();
        let first = wire_len(&b.commands()[0]);
        b.truncate(5);
        assert_eq!(b.len(), 3);
        b.truncate(1);
        assert_eq!((b.len(), b.bytes()), (1, first));
        b.clear();
        assert_eq!((b.len(), b.bytes()), (0, 0));
        let kept: Vec<ApplyCmd> = ["INCR x"]
            .into_iter()
            .map(|a| plain(a).rule(ReplyRule::Multi))
            .collect::<ApplyBatch>()
            .into_cmds()
            .collect();
        assert_eq!(kept[0].rule, ReplyRule::Multi);
    }

    fn batch(cmds: &[&str]) -> ApplyBatch {
        let mut b = ApplyBatch::new();
        for args in cmds {
            let cmd = Cmd::from_args(args.split(' '));
            let words: Vec<&str> = args.split(' ').collect();
            let key = words.get(1).copied().filter(|_| !matches!(words[0], "MULTI" | "EXEC" | "SCRIPT"));
            let origin = Origin { db: 0, key: Bytes::copy_from_slice(key.unwrap_or_default().as_bytes()), offset: 0 };
            let rule = match words[0] {
                "MULTI" => ReplyRule::Multi,
                "EXEC" => ReplyRule::Exec,
                _ => ReplyRule::Ok,
            };
            b.push(ApplyCmd::new(cmd, origin).rule(rule));
        }
        b
    }

    fn shown(b: &ApplyBatch) -> Vec<String> {
        b.cmds
            .iter()
            .map(|c| c.args().iter().map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[test]
    fn a_split_keeps_units_whole_and_in_order_and_broadcasts_to_the_first_parts_only() {
        let b = batch(&["SET a 1", "MULTI", "SET b 1", "SET a 2", "EXEC", "SCRIPT LOAD x", "SET b 3", "SET a 4"]);
        // Keys starting with `a` to part 0, `b` to part 1; part 2 only by name.
        let parts = b.split(3, 2, |unit| match unit.key() {
            [] => Target::All,
            [b'a', ..] => Target::Part(0),
            _ => Target::Part(1),
        });
        assert_eq!(shown(&parts[0]), ["SET a 1", "SCRIPT LOAD x", "SET a 4"]);
        // The unit goes whole where its first key does.
        assert_eq!(shown(&parts[1]), ["MULTI", "SET b 1", "SET a 2", "EXEC", "SCRIPT LOAD x", "SET b 3"]);
        assert!(parts[2].is_empty());
        let bytes: usize = parts.iter().map(|p| p.bytes()).sum();
        assert_eq!(bytes, parts.iter().flat_map(|p| &p.meta).map(|m| m.len).sum::<usize>());
    }
}
