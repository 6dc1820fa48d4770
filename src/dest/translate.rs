//! The command stream rewritten for a destination older than its source:
//! every form a newer Redis (or Valkey) replicates that an older
//! destination would refuse, what it becomes there, and the release that
//! introduced it — the translation table, [`FORMS`], in one place.
//!
//! [`translate`] looks at one replicated command and answers:
//!
//! * [`Translation::AsIs`]: the destination takes it (by far the most).
//! * [`Translation::Commands`]: send these instead. Options that only shape
//!   the reply (`SET … GET`) or that the source has already decided (a
//!   replicated `PEXPIREAT … NX` or `XADD … NOMKSTREAM` did apply there,
//!   and the destination mirrors the source) are dropped; absolute forms
//!   the destination lacks become a command pair (`SET` + `PEXPIREAT`); what
//!   needs a read and a write becomes a Lua script (`EVAL`, Redis 2.6), which
//!   the destination runs atomically. Several commands are applied as one
//!   unit: inside the stream batch's `MULTI`/`EXEC`, or a `MULTI` of their
//!   own without checkpoints in the destination.
//! * [`Translation::Unsupported`]: nothing the destination accepts has the
//!   same effect (a stream on a destination before 5.0, hash field TTLs
//!   before 7.4): the shard pauses before it, naming the form and the
//!   lowest destination version that takes it.
//!
//! Forms were read off the replication streams of Redis 6.2, 7.0, 7.4 and
//! Valkey 9.1 (since 7.0 `SET … EX` arrives as `SET … PXAT`, `EXPIRE` as
//! `PEXPIREAT` with its `NX`/`XX`/`GT`/`LT`, `INCRBYFLOAT` as `SET …
//! KEEPTTL`, `LMPOP` as `LPOP key n`, `XADD … MAXLEN ~` as `MAXLEN =`), and
//! from each command's history in the Redis documentation.

use bytes::Bytes;

use super::caps::{DestCaps, RedisVersion};
use crate::resp::Cmd;

/// A replicated command form and the release that introduced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Form {
    /// The command, upper case, as `INFO commandstats` names it (lower
    /// case there, `|` before a subcommand).
    pub command: &'static str,
    /// The form, for messages (`SET … PXAT`).
    pub form: &'static str,
    pub since: RedisVersion,
    /// What an older destination gets; `None`: nothing (the shard pauses).
    pub older: Option<&'static str>,
    /// The client commands (as `INFO commandstats` names them) after which
    /// a source of at least `since` may replicate this form; empty for an
    /// option that command counts cannot reveal (the precheck then cannot
    /// warn of it, and the shard pauses only if it comes).
    pub used_by: &'static [&'static str],
}

const fn v(major: u16, minor: u16) -> RedisVersion {
    RedisVersion::new(major, minor, 0)
}

/// The `since` of forms only Valkey replicates (its own commands and
/// options, which no Redis release takes): above every Redis version.
pub const VALKEY_ONLY: RedisVersion = v(99, 0);

/// The translation table. Each row is a form a source may replicate; a
/// destination older than `since` gets `older` instead, or pauses the shard.
pub const FORMS: &[Form] = &[
    Form {
        command: "SET",
        form: "SET … GET",
        since: v(6, 2),
        older: Some("SET without GET (GET only shapes the reply)"),
        used_by: &["set"],
    },
    Form {
        command: "SET",
        form: "SET … PXAT/EXAT",
        since: v(6, 2),
        older: Some("SET, then PEXPIREAT"),
        used_by: &["set", "setex", "psetex", "getex"],
    },
    Form {
        command: "SET",
        form: "SET … KEEPTTL",
        since: v(6, 0),
        older: Some("a script: SET, keeping the key's PTTL"),
        used_by: &["set", "incrbyfloat"],
    },
    Form {
        command: "SET",
        form: "SET … IFEQ (Valkey 8.1)",
        since: VALKEY_ONLY,
        older: Some("SET (the source applied it)"),
        used_by: &["set"],
    },
    Form {
        command: "PEXPIREAT",
        form: "PEXPIREAT … NX/XX/GT/LT",
        since: v(7, 0),
        older: Some("PEXPIREAT (the source applied it)"),
        used_by: &["expire", "pexpire", "expireat", "pexpireat"],
    },
    Form {
        command: "LMOVE",
        form: "LMOVE",
        since: v(6, 2),
        older: Some("RPOPLPUSH, or a script for the other sides"),
        used_by: &["lmove", "blmove"],
    },
    Form {
        command: "COPY",
        form: "COPY",
        since: v(6, 2),
        older: Some("a script: DUMP, PTTL, RESTORE"),
        used_by: &["copy"],
    },
    Form {
        command: "LPOP",
        form: "LPOP/RPOP key count",
        since: v(6, 2),
        older: Some("a script popping count times"),
        used_by: &["lpop", "rpop", "lmpop", "blmpop"],
    },
    Form {
        command: "ZPOPMIN",
        form: "ZPOPMIN/ZPOPMAX",
        since: v(5, 0),
        older: Some("a script: ZRANGE, then ZREM"),
        used_by: &["zpopmin", "zpopmax", "bzpopmin", "bzpopmax", "zmpop", "bzmpop"],
    },
    Form {
        command: "ZADD",
        form: "ZADD … GT/LT",
        since: v(6, 2),
        older: Some("a script comparing each member's score"),
        used_by: &["zadd"],
    },
    Form {
        command: "HSET",
        form: "HSET with several fields",
        since: v(4, 0),
        older: Some("HMSET"),
        used_by: &["hset"],
    },
    Form { command: "UNLINK", form: "UNLINK", since: v(4, 0), older: Some("DEL"), used_by: &["unlink"] },
    Form {
        command: "XADD",
        form: "streams (XADD, XTRIM, XGROUP…)",
        since: v(5, 0),
        older: None,
        used_by: &["xadd", "xtrim", "xgroup|create", "xsetid", "xclaim", "xautoclaim", "xack", "xdel"],
    },
    Form {
        command: "XADD",
        form: "XADD/XTRIM … MAXLEN = n",
        since: v(6, 2),
        older: Some("MAXLEN n (exact)"),
        used_by: &["xadd", "xtrim"],
    },
    Form { command: "XADD", form: "XADD/XTRIM … MINID", since: v(6, 2), older: None, used_by: &[] },
    Form {
        command: "XADD",
        form: "XADD … NOMKSTREAM",
        since: v(6, 2),
        older: Some("XADD (the stream existed)"),
        used_by: &["xadd"],
    },
    Form {
        command: "XSETID",
        form: "XSETID … ENTRIESADDED/MAXDELETEDID",
        since: v(7, 0),
        older: Some("XSETID"),
        used_by: &["xsetid"],
    },
    Form {
        command: "XGROUP",
        form: "XGROUP CREATE … ENTRIESREAD",
        since: v(7, 0),
        older: Some("XGROUP CREATE"),
        used_by: &["xgroup|create"],
    },
    Form {
        command: "XGROUP",
        form: "XGROUP CREATECONSUMER",
        since: v(6, 2),
        older: None,
        used_by: &["xgroup|createconsumer"],
    },
    Form { command: "GEOADD", form: "GEOADD … NX/XX", since: v(6, 2), older: None, used_by: &[] },
    Form {
        command: "GEOADD",
        form: "GEOADD … CH",
        since: v(6, 2),
        older: Some("GEOADD (CH only shapes the reply)"),
        used_by: &["geoadd"],
    },
    Form {
        command: "HPEXPIREAT",
        form: "hash field TTLs (HPEXPIREAT, HSETEX…)",
        since: v(7, 4),
        older: None,
        used_by: &["hexpire", "hpexpire", "hexpireat", "hpexpireat", "hpersist", "hsetex", "hgetex", "hgetdel"],
    },
    Form {
        command: "FUNCTION",
        form: "FUNCTION LOAD/DELETE/FLUSH/RESTORE",
        since: v(7, 0),
        older: None,
        used_by: &["function|load", "function|delete", "function|flush", "function|restore"],
    },
    Form {
        command: "RESTORE",
        form: "RESTORE … ABSTTL/IDLETIME/FREQ",
        since: v(5, 0),
        older: Some("RESTORE with a relative TTL"),
        used_by: &["restore"],
    },
    Form {
        command: "RESTORE",
        form: "RESTORE of a newer RDB version",
        since: v(2, 6),
        older: Some("native commands"),
        used_by: &["restore"],
    },
    Form { command: "SPUBLISH", form: "SPUBLISH", since: v(7, 0), older: Some("PUBLISH"), used_by: &["spublish"] },
    Form {
        command: "DELIFEQ",
        form: "DELIFEQ (Valkey 9.0)",
        since: VALKEY_ONLY,
        older: Some("DEL (the source applied it)"),
        used_by: &["delifeq"],
    },
];

/// Whether the destination of `caps` lacks `f`, so a source that
/// replicates it needs its translation (or pauses).
pub fn lacks(caps: &DestCaps, f: &Form) -> bool {
    match f.command {
        "HPEXPIREAT" => !caps.hash_field_ttl(),
        "DELIFEQ" => !is_valkey_9(caps),
        "SET" if f.form.contains("IFEQ") => {
            !(caps.server.engine == super::caps::Engine::Valkey && caps.server.version >= v(8, 1))
        }
        _ => caps.version < f.since,
    }
}

/// The forms the commands `used` (calls per `INFO commandstats` name) of a
/// source of `source` may replicate that the destination of `caps` lacks,
/// each with the commands that bring it and their calls.
pub fn forms_used(
    used: &std::collections::BTreeMap<String, u64>,
    source: &super::caps::ServerVersion,
    caps: &DestCaps,
) -> Vec<(&'static Form, Vec<(&'static str, u64)>)> {
    FORMS
        .iter()
        .filter(|f| lacks(caps, f))
        .filter(|f| match f.command {
            "HPEXPIREAT" => DestCaps::of(*source).hash_field_ttl(),
            "DELIFEQ" | "SET" if f.since == VALKEY_ONLY => source.engine == super::caps::Engine::Valkey,
            _ => source.redis >= f.since,
        })
        .filter_map(|f| {
            let calls: Vec<(&'static str, u64)> =
                f.used_by.iter().filter_map(|c| used.get(*c).filter(|n| **n > 0).map(|n| (*c, *n))).collect();
            (!calls.is_empty()).then_some((f, calls))
        })
        .collect()
}

/// The form of `FORMS` called `form`.
fn form(form: &str) -> &'static Form {
    FORMS.iter().find(|f| f.form == form).unwrap_or(&FORMS[0])
}

/// What to send for one replicated command; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Translation {
    AsIs,
    /// One command, or several that must be applied as one unit.
    Commands(Vec<Vec<Bytes>>),
    Unsupported {
        form: &'static str,
        since: RedisVersion,
    },
}

fn unsupported(name: &str) -> Translation {
    let f = form(name);
    Translation::Unsupported { form: f.form, since: f.since }
}

fn word(w: &'static str) -> Bytes {
    Bytes::from_static(w.as_bytes())
}

fn is(arg: &[u8], w: &str) -> bool {
    arg.eq_ignore_ascii_case(w.as_bytes())
}

fn number(arg: &Bytes) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// `EVAL script numkeys keys… args…`.
fn eval(script: &'static str, keys: &[&Bytes], args: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = vec![word("EVAL"), word(script), Bytes::from(keys.len().to_string())];
    out.extend(keys.iter().map(|k| (*k).clone()));
    out.extend(args);
    out
}

/// `SET key value`, keeping the key's remaining TTL (what `KEEPTTL` does).
const KEEPTTL_SET: &str = "local t = redis.call('PTTL', KEYS[1]) \
     redis.call('SET', KEYS[1], ARGV[1]) \
     if t > 0 then redis.call('PEXPIRE', KEYS[1], t) end return 1";
/// `LMOVE`: pop with ARGV[1] (LPOP/RPOP), push with ARGV[2] (LPUSH/RPUSH).
const LMOVE: &str = "local v = redis.call(ARGV[1], KEYS[1]) \
     if v then redis.call(ARGV[2], KEYS[2], v) end return v";
/// `LPOP key count` / `RPOP key count`: pop ARGV[2] times with ARGV[1].
const POP_COUNT: &str = "for i = 1, tonumber(ARGV[2]) do \
     if not redis.call(ARGV[1], KEYS[1]) then break end end return 1";
/// `ZPOPMIN`/`ZPOPMAX key count`: ARGV[1] is MIN or MAX, ARGV[2] the count.
const ZPOP: &str = "local n = tonumber(ARGV[2]) local m \
     if ARGV[1] == 'MIN' then m = redis.call('ZRANGE', KEYS[1], 0, n - 1) \
     else m = redis.call('ZREVRANGE', KEYS[1], 0, n - 1) end \
     for i = 1, #m do redis.call('ZREM', KEYS[1], m[i]) end return #m";
/// `ZADD key [NX|XX] GT|LT score member…`: ARGV[1] GT or LT, ARGV[2] '1'
/// for XX, then score/member pairs; a member is updated only when its new
/// score compares so, and added only without XX.
const ZADD_GT_LT: &str = "for i = 3, #ARGV, 2 do \
     local cur = redis.call('ZSCORE', KEYS[1], ARGV[i + 1]) \
     if cur then local c, n = tonumber(cur), tonumber(ARGV[i]) \
       if (ARGV[1] == 'GT' and n > c) or (ARGV[1] == 'LT' and n < c) then \
         redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end \
     elseif ARGV[2] ~= '1' then redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end end return 1";
/// `COPY src dst [DB n] [REPLACE]`: ARGV[1] '1' for REPLACE, ARGV[2] the
/// target DB or ''.
const COPY: &str = "local v = redis.call('DUMP', KEYS[1]) if not v then return 0 end \
     local t = redis.call('PTTL', KEYS[1]) if t < 0 then t = 0 end \
     if ARGV[2] ~= '' then redis.call('SELECT', ARGV[2]) end \
     if redis.call('EXISTS', KEYS[2]) == 1 then \
       if ARGV[1] == '1' then redis.call('DEL', KEYS[2]) else return 0 end end \
     redis.call('RESTORE', KEYS[2], t, v) return 1";

/// What `caps`' destination gets for the replicated command `cmd`. `now_ms` turns absolute TTLs relative where the
/// destination has no absolute form.
pub fn translate(cmd: &Cmd, caps: &DestCaps, now_ms: impl FnOnce() -> i64) -> Translation {
    let Some(name) = cmd.arg_at(0) else { return Translation::AsIs };
    // The guards below read the count and single arguments in place; the
    // argument handles are asked for only by a command that is rewritten
    // (or must be looked at whole), not by the stream's plain writes.
    let argc = cmd.arg_count();
    let all = std::cell::OnceCell::new();
    let args = || -> &[Bytes] { all.get_or_init(|| cmd.args()) };
    let at_least = |major, minor| caps.version >= v(major, minor);
    let upper = crate::resp::UpperName::of(name);
    let name = upper.as_str();
    match name {
        "SET" if argc > 3 => set(args(), caps),
        "PEXPIREAT" | "PEXPIRE" | "EXPIREAT" | "EXPIRE" if !at_least(7, 0) && argc > 3 => {
            Translation::Commands(vec![args()[..3].to_vec()])
        }
        "LMOVE" if !at_least(6, 2) && argc == 5 => {
            let left = |a: &Bytes| is(a, "LEFT");
            if !left(&args()[3]) && left(&args()[4]) {
                return Translation::Commands(vec![vec![word("RPOPLPUSH"), args()[1].clone(), args()[2].clone()]]);
            }
            let pop = if left(&args()[3]) { word("LPOP") } else { word("RPOP") };
            let push = if left(&args()[4]) { word("LPUSH") } else { word("RPUSH") };
            Translation::Commands(vec![eval(LMOVE, &[&args()[1], &args()[2]], vec![pop, push])])
        }
        "COPY" if !at_least(6, 2) && argc >= 3 => {
            let replace = args().iter().skip(3).any(|a| is(a, "REPLACE"));
            let db = args().iter().skip(3).position(|a| is(a, "DB")).and_then(|i| args().get(i + 4)).cloned();
            let flags = vec![word(if replace { "1" } else { "0" }), db.unwrap_or_default()];
            Translation::Commands(vec![eval(COPY, &[&args()[1], &args()[2]], flags)])
        }
        "LPOP" | "RPOP" if !at_least(6, 2) && argc == 3 => {
            let pop = if name == "LPOP" { word("LPOP") } else { word("RPOP") };
            Translation::Commands(vec![eval(POP_COUNT, &[&args()[1]], vec![pop, args()[2].clone()])])
        }
        "ZPOPMIN" | "ZPOPMAX" if !at_least(5, 0) && argc >= 2 => {
            let side = if name == "ZPOPMIN" { word("MIN") } else { word("MAX") };
            let count = args().get(2).cloned().unwrap_or_else(|| word("1"));
            Translation::Commands(vec![eval(ZPOP, &[&args()[1]], vec![side, count])])
        }
        "ZADD" if !at_least(6, 2) => zadd(args()),
        "HSET" if !at_least(4, 0) && argc > 4 => {
            let mut out = args().to_vec();
            out[0] = word("HMSET");
            Translation::Commands(vec![out])
        }
        "UNLINK" if !at_least(4, 0) => {
            let mut out = args().to_vec();
            out[0] = word("DEL");
            Translation::Commands(vec![out])
        }
        "XADD" | "XTRIM" | "XDEL" | "XGROUP" | "XSETID" | "XCLAIM" | "XACK" | "XAUTOCLAIM" if !caps.streams() => {
            unsupported("streams (XADD, XTRIM, XGROUP…)")
        }
        "XADD" | "XTRIM" if !at_least(6, 2) => stream_trim(args()),
        "XSETID" if !at_least(7, 0) && argc > 3 => Translation::Commands(vec![args()[..3].to_vec()]),
        "XGROUP" if cmd.arg_at(1).is_some_and(|a| is(a, "CREATECONSUMER")) && !at_least(6, 2) => {
            unsupported("XGROUP CREATECONSUMER")
        }
        "XGROUP" if cmd.arg_at(1).is_some_and(|a| is(a, "CREATE")) && !at_least(7, 0) => {
            match args().iter().position(|a| is(a, "ENTRIESREAD")) {
                Some(i) => {
                    let mut out = args().to_vec();
                    out.drain(i..(i + 2).min(out.len()));
                    Translation::Commands(vec![out])
                }
                None => Translation::AsIs,
            }
        }
        "GEOADD" if !at_least(6, 2) => geoadd(args()),
        "HPEXPIREAT" | "HEXPIREAT" | "HEXPIRE" | "HPEXPIRE" | "HPERSIST" | "HSETEX" | "HGETEX" | "HGETDEL"
            if !caps.hash_field_ttl() =>
        {
            unsupported("hash field TTLs (HPEXPIREAT, HSETEX…)")
        }
        "FUNCTION" if !at_least(7, 0) => unsupported("FUNCTION LOAD/DELETE/FLUSH/RESTORE"),
        "RESTORE" if !caps.abs_ttl() => restore_relative(args(), now_ms()),
        "SPUBLISH" if !at_least(7, 0) => {
            let mut out = args().to_vec();
            out[0] = word("PUBLISH");
            Translation::Commands(vec![out])
        }
        "DELIFEQ" if !is_valkey_9(caps) && argc >= 2 => {
            Translation::Commands(vec![vec![word("DEL"), args()[1].clone()]])
        }
        _ => Translation::AsIs,
    }
}

fn is_valkey_9(caps: &DestCaps) -> bool {
    caps.server.engine == super::caps::Engine::Valkey && caps.server.version >= v(9, 0)
}

/// `SET key value [NX|XX] [GET] [IFEQ v] [EX|PX|EXAT|PXAT n | KEEPTTL]`.
fn set(args: &[Bytes], caps: &DestCaps) -> Translation {
    if args.len() <= 3 {
        return Translation::AsIs;
    }
    let valkey_8_1 = caps.server.engine == super::caps::Engine::Valkey && caps.server.version >= v(8, 1);
    let (key, value) = (&args[1], &args[2]);
    let mut keep: Vec<Bytes> = vec![args[0].clone(), key.clone(), value.clone()];
    let mut expire_at: Option<i64> = None;
    let mut keepttl = false;
    let mut changed = false;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        let with_value = |keep: &mut Vec<Bytes>| {
            keep.push(a.clone());
            if let Some(n) = args.get(i + 1) {
                keep.push(n.clone());
            }
        };
        if is(a, "GET") && caps.version < v(6, 2) {
            changed = true;
        } else if is(a, "IFEQ") && !valkey_8_1 {
            changed = true;
            i += 1;
        } else if (is(a, "PXAT") || is(a, "EXAT")) && !caps.set_pxat() {
            let n = args.get(i + 1).and_then(number);
            expire_at = n.map(|n| if is(a, "EXAT") { n.saturating_mul(1000) } else { n });
            changed = true;
            i += 1;
        } else if is(a, "KEEPTTL") && caps.version < v(6, 0) {
            keepttl = true;
            changed = true;
        } else if is(a, "EX") || is(a, "PX") || is(a, "PXAT") || is(a, "EXAT") || is(a, "IFEQ") {
            with_value(&mut keep);
            i += 1;
        } else {
            keep.push(a.clone());
        }
        i += 1;
    }
    if !changed {
        return Translation::AsIs;
    }
    // The source applied it: NX/XX decided nothing more on the destination,
    // and would stop a second command of the pair from following the first.
    if expire_at.is_some() || keepttl {
        keep.retain(|a| !(is(a, "NX") || is(a, "XX")));
    }
    if keepttl {
        return Translation::Commands(vec![eval(KEEPTTL_SET, &[key], vec![value.clone()])]);
    }
    match expire_at {
        Some(at) => {
            Translation::Commands(vec![keep, vec![word("PEXPIREAT"), key.clone(), Bytes::from(at.to_string())]])
        }
        None => Translation::Commands(vec![keep]),
    }
}

/// `ZADD` on a destination before 6.2: `GT`/`LT` through a script.
fn zadd(args: &[Bytes]) -> Translation {
    let mut i = 2;
    let (mut gt_lt, mut xx, mut incr) = (None, false, false);
    while i < args.len() {
        let a = &args[i];
        if is(a, "GT") || is(a, "LT") {
            gt_lt = Some(if is(a, "GT") { word("GT") } else { word("LT") });
        } else if is(a, "XX") {
            xx = true;
        } else if is(a, "INCR") {
            incr = true;
        } else if !(is(a, "NX") || is(a, "CH")) {
            break;
        }
        i += 1;
    }
    let Some(mode) = gt_lt else { return Translation::AsIs };
    if incr {
        return unsupported("ZADD … GT/LT");
    }
    let mut script_args = vec![mode, word(if xx { "1" } else { "0" })];
    script_args.extend(args[i..].iter().cloned());
    Translation::Commands(vec![eval(ZADD_GT_LT, &[&args[1]], script_args)])
}

/// `XADD`/`XTRIM` on a 5.0–6.0 destination: `MAXLEN = n` is `MAXLEN n`,
/// `NOMKSTREAM` and `LIMIT` go; `MINID` has no older form.
fn stream_trim(args: &[Bytes]) -> Translation {
    if args.iter().any(|a| is(a, "MINID")) {
        return unsupported("XADD/XTRIM … MINID");
    }
    let mut out: Vec<Bytes> = Vec::with_capacity(args.len());
    let mut changed = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if i >= 2 && (is(a, "NOMKSTREAM") || a.as_ref() == b"=") {
            changed = true;
        } else if i >= 2 && is(a, "LIMIT") {
            changed = true;
            i += 1;
        } else {
            out.push(a.clone());
        }
        i += 1;
    }
    if changed {
        Translation::Commands(vec![out])
    } else {
        Translation::AsIs
    }
}

/// `GEOADD` on a destination before 6.2: `CH` goes; `NX`/`XX` cannot be
/// mirrored member by member.
fn geoadd(args: &[Bytes]) -> Translation {
    let opts: Vec<&Bytes> = args.iter().skip(2).take_while(|a| is(a, "NX") || is(a, "XX") || is(a, "CH")).collect();
    if opts.is_empty() {
        return Translation::AsIs;
    }
    if opts.iter().any(|a| is(a, "NX") || is(a, "XX")) {
        return unsupported("GEOADD … NX/XX");
    }
    let mut out = vec![args[0].clone(), args[1].clone()];
    out.extend(args.iter().skip(2 + opts.len()).cloned());
    Translation::Commands(vec![out])
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]` on a
/// destination before 5.0: an absolute TTL becomes relative to now, and
/// the LRU/LFU hints go.
fn restore_relative(args: &[Bytes], now_ms: i64) -> Translation {
    if args.len() <= 4 {
        return Translation::AsIs;
    }
    let abs = args.iter().skip(4).any(|a| is(a, "ABSTTL"));
    let mut out = args[..4].to_vec();
    if abs {
        if let Some(at) = number(&args[2]).filter(|&at| at > 0) {
            out[2] = Bytes::from((at - now_ms).max(1).to_string());
        }
    }
    let mut i = 4;
    while i < args.len() {
        let a = &args[i];
        if is(a, "IDLETIME") || is(a, "FREQ") {
            i += 1;
        } else if !is(a, "ABSTTL") {
            out.push(a.clone());
        }
        i += 1;
    }
    Translation::Commands(vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(version: &str) -> DestCaps {
        DestCaps::new(RedisVersion::parse(version).expect("version"))
    }

    fn cmd(s: &str) -> Cmd {
        Cmd::from_args(s.split(' '))
    }

    fn shown(t: Translation) -> Vec<String> {
        match t {
            Translation::AsIs => vec!["as is".into()],
            Translation::Commands(c) => c
                .into_iter()
                .map(|c| c.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" "))
                .collect(),
            Translation::Unsupported { form, since } => vec![format!("unsupported {form} {since}")],
        }
    }

    #[test]
    fn set_forms_become_what_an_older_destination_takes() {
        let t = |c: &str, v: &str| shown(translate(&cmd(c), &caps(v), || 0));
        assert_eq!(t("SET k v PXAT 4102444800000", "7.0.15"), ["as is"]);
        assert_eq!(t("SET k v PXAT 4102444800000", "6.0.9"), ["SET k v", "PEXPIREAT k 4102444800000"]);
        assert_eq!(t("SET k v NX EXAT 4102444800", "5.0.14"), ["SET k v", "PEXPIREAT k 4102444800000"]);
        assert_eq!(t("SET k v GET PX 100", "6.0.9"), ["SET k v PX 100"]);
        assert_eq!(t("set c 1 KEEPTTL", "6.0.9"), ["as is"]);
        let keep = t("set c 1 KEEPTTL", "5.0.14");
        assert!(keep[0].starts_with("EVAL ") && keep[0].ends_with(" 1 c 1"), "{keep:?}");
        assert_eq!(t("SET k v", "3.2.13"), ["as is"]);
    }

    #[test]
    fn newer_list_set_and_key_commands() {
        let t = |c: &str, v: &str| shown(translate(&cmd(c), &caps(v), || 0));
        assert_eq!(t("lmove a b RIGHT LEFT", "6.0.9"), ["RPOPLPUSH a b"]);
        assert_eq!(t("lmove a b LEFT RIGHT", "6.2.14"), ["as is"]);
        let lm = t("lmove a b LEFT RIGHT", "6.0.9");
        assert!(lm[0].starts_with("EVAL ") && lm[0].ends_with(" 2 a b LPOP RPUSH"), "{lm:?}");
        assert!(t("COPY a b DB 3 REPLACE", "6.0.9")[0].ends_with(" 2 a b 1 3"));
        assert!(t("LPOP l 2", "6.0.9")[0].ends_with(" 1 l LPOP 2"));
        assert_eq!(t("LPOP l", "6.0.9"), ["as is"]);
        assert!(t("ZPOPMIN z 1", "4.0.14")[0].ends_with(" 1 z MIN 1"));
        assert_eq!(t("HSET h f 1 g 2", "3.2.13"), ["HMSET h f 1 g 2"]);
        assert_eq!(t("HSET h f 1", "3.2.13"), ["as is"]);
        assert_eq!(t("UNLINK a b", "3.2.13"), ["DEL a b"]);
        assert_eq!(t("PEXPIREAT c 1796417572605 NX", "6.2.14"), ["PEXPIREAT c 1796417572605"]);
        assert_eq!(t("PEXPIREAT c 1796417572605 NX", "7.0.15"), ["as is"]);
        let z = t("zadd z GT 5 m", "6.0.9");
        assert!(z[0].starts_with("EVAL ") && z[0].ends_with(" 1 z GT 0 5 m"), "{z:?}");
        assert_eq!(t("zadd z NX 5 m", "6.0.9"), ["as is"]);
        assert_eq!(t("zadd z GT INCR 5 m", "6.0.9"), ["unsupported ZADD … GT/LT 6.2.0"]);
        assert_eq!(t("SPUBLISH ch m", "6.2.14"), ["PUBLISH ch m"]);
    }

    #[test]
    fn streams_and_field_ttls_name_the_version_that_takes_them() {
        let t = |c: &str, v: &str| shown(translate(&cmd(c), &caps(v), || 0));
        assert_eq!(t("xadd s MAXLEN = 1 1-0 f v", "4.0.14"), ["unsupported streams (XADD, XTRIM, XGROUP…) 5.0.0"]);
        assert_eq!(t("xadd s MAXLEN = 1 1-0 f v", "6.0.9"), ["xadd s MAXLEN 1 1-0 f v"]);
        assert_eq!(t("xadd s MAXLEN = 1 1-0 f v", "6.2.14"), ["as is"]);
        assert_eq!(t("XADD s NOMKSTREAM 1-0 f v", "5.0.14"), ["XADD s 1-0 f v"]);
        assert_eq!(t("XTRIM s MINID = 5", "6.0.9"), ["unsupported XADD/XTRIM … MINID 6.2.0"]);
        assert_eq!(t("XSETID s 5-0 ENTRIESADDED 9 MAXDELETEDID 3-0", "6.2.14"), ["XSETID s 5-0"]);
        assert_eq!(t("XGROUP CREATE s g 0 ENTRIESREAD 3", "6.2.14"), ["XGROUP CREATE s g 0"]);
        assert_eq!(t("XGROUP CREATECONSUMER s g c", "6.0.9"), ["unsupported XGROUP CREATECONSUMER 6.2.0"]);
        assert_eq!(
            t("HPEXPIREAT h 1796417569118 FIELDS 1 f", "7.2.4"),
            ["unsupported hash field TTLs (HPEXPIREAT, HSETEX…) 7.4.0"]
        );
        assert_eq!(t("HPEXPIREAT h 1796417569118 FIELDS 1 f", "7.4.1"), ["as is"]);
        assert_eq!(t("FUNCTION LOAD code", "6.2.14"), ["unsupported FUNCTION LOAD/DELETE/FLUSH/RESTORE 7.0.0"]);
        assert_eq!(t("GEOADD g CH 1 2 m", "6.0.9"), ["GEOADD g 1 2 m"]);
        assert_eq!(t("GEOADD g NX 1 2 m", "6.0.9"), ["unsupported GEOADD … NX/XX 6.2.0"]);
    }

    #[test]
    fn restore_with_an_absolute_ttl_becomes_relative_before_5_0() {
        let c = cmd("RESTORE k 5000 payload REPLACE ABSTTL IDLETIME 7");
        assert_eq!(shown(translate(&c, &caps("4.0.14"), || 1000)), ["RESTORE k 4000 payload REPLACE"]);
        assert_eq!(shown(translate(&c, &caps("5.0.14"), || 1000)), ["as is"]);
    }

    #[test]
    fn the_forms_a_source_used_that_the_destination_lacks() {
        use crate::dest::ServerVersion;
        let used: std::collections::BTreeMap<String, u64> =
            [("set", 100), ("lmove", 3), ("xadd", 7), ("hexpire", 2), ("get", 9)]
                .map(|(c, n)| (c.to_owned(), n))
                .into();
        let src = ServerVersion::redis(RedisVersion::new(7, 4, 1));
        let names =
            |dest: &str| -> Vec<&str> { forms_used(&used, &src, &caps(dest)).iter().map(|(f, _)| f.form).collect() };
        assert_eq!(names("7.4.1"), Vec::<&str>::new());
        assert_eq!(names("7.0.15"), ["hash field TTLs (HPEXPIREAT, HSETEX…)"]);
        assert!(names("6.0.9").contains(&"LMOVE") && names("6.0.9").contains(&"SET … PXAT/EXAT"));
        assert!(names("4.0.14").contains(&"streams (XADD, XTRIM, XGROUP…)"));
        // A source too old to replicate a form never brings it.
        let old = ServerVersion::redis(RedisVersion::new(5, 0, 14));
        assert!(forms_used(&used, &old, &caps("4.0.14")).iter().all(|(f, _)| f.since <= v(5, 0)));
    }

    /// The README's table of forms is this table: every row, with its
    /// version and what an older destination gets.
    #[test]
    fn the_readme_lists_every_form() {
        let readme = include_str!("../../README.md");
        for f in FORMS {
            let since = if f.since == VALKEY_ONLY {
                "Valkey only".to_owned()
            } else {
                format!("{}.{}", f.since.major, f.since.minor)
            };
            let older = f.older.unwrap_or("nothing: the shard pauses before it, naming the form and this version");
            let row = format!("| {} | {since} | {older} |", f.form);
            assert!(readme.contains(&row), "README.md lacks the row {row}");
        }
    }

    #[test]
    fn every_form_names_a_version() {
        for f in FORMS {
            assert!(f.since > v(2, 5), "{f:?}");
            assert_eq!(form(f.form), f);
        }
    }
}
