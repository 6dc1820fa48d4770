//! Where a replicated command goes in a cluster: which of its arguments
//! are keys, and so which slot (or slots) it touches.
//!
//! A command whose keys share one slot goes to that slot's master. One
//! that spans slots is split per slot when the parts together do the same
//! (`MSET`, `DEL`, `UNLINK`, `TOUCH`); anything else cannot be applied in a
//! cluster as it is, and the shard pauses before it. Commands without keys
//! are sent to every master when repeating them is harmless (`SCRIPT
//! LOAD`, `FUNCTION LOAD`), left out when they only matter to clients
//! (`PUBLISH`, `PING`), and pause the shard when they would wipe or swap
//! data across the cluster (`FLUSHALL`, `SWAPDB`, …): a resumed stream
//! could not tell whether such a command already ran on every master.

use bytes::Bytes;

use super::slot::slot_of;
use crate::resp::Cmd;

/// Where a command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Every key is in this slot; `key` is one of them (the command's
    /// routing key).
    Slot { slot: u16, key: Bytes },
    /// The keys span slots, and the command splits: one command per slot.
    Split(Vec<(u16, Vec<Bytes>)>),
    /// The keys span slots and the parts would not do the same.
    CrossSlot { keys: Vec<(Bytes, u16)> },
    /// No keys: to every master.
    Broadcast,
    /// No keys and nothing to apply on a data store.
    Drop,
    /// No keys, and not safe to apply in a cluster (see the module docs).
    Unsafe,
}

/// The key a one-key command is about: its first argument, or the one after
/// its subcommand (`XGROUP CREATE key …`, `XINFO STREAM key`), read in place
/// (a streamed command is not taken apart for it), as a handle of its own.
/// For messages and reports of replicated commands.
pub fn key_of(cmd: &Cmd) -> Option<Bytes> {
    cmd.shared_arg(key_index(cmd.arg_at(0)?))
}

/// [`key_of`], borrowed: for routing `verify`'s reads.
pub fn key_in(cmd: &Cmd) -> Option<&[u8]> {
    cmd.arg_at(key_index(cmd.arg_at(0)?))
}

/// Which argument [`key_of`] is, for a command named `name`.
fn key_index(name: &[u8]) -> usize {
    let subcommand_first = name.eq_ignore_ascii_case(b"XGROUP") || name.eq_ignore_ascii_case(b"XINFO");
    if subcommand_first {
        2
    } else {
        1
    }
}

/// Where `args` (a replicated command) goes.
pub fn route(args: &[Bytes]) -> Route {
    let Some(name) = args.first() else { return Route::Drop };
    // A name longer than any listed below is none of them.
    let upper = crate::resp::UpperName::of(name);
    let name = upper.as_bytes();
    let keys: Vec<usize> = match name {
        b"PING" | b"PUBLISH" | b"SPUBLISH" | b"SELECT" | b"MULTI" | b"EXEC" | b"REPLCONF" => return Route::Drop,
        b"FLUSHALL" | b"FLUSHDB" | b"SWAPDB" | b"MOVE" => return Route::Unsafe,
        b"SCRIPT" | b"FUNCTION" => {
            let sub = args.get(1).map(|a| a.to_ascii_uppercase()).unwrap_or_default();
            return if sub == b"LOAD" { Route::Broadcast } else { Route::Unsafe };
        }
        b"DEL" | b"UNLINK" | b"TOUCH" | b"EXISTS" | b"WATCH" => (1..args.len()).collect(),
        b"MSET" => return split_pairs(args),
        b"MSETNX" => (1..args.len()).step_by(2).collect(),
        b"RENAME" | b"RENAMENX" | b"SMOVE" | b"RPOPLPUSH" | b"BRPOPLPUSH" | b"LMOVE" | b"BLMOVE" | b"COPY"
        | b"GEOSEARCHSTORE" | b"ZRANGESTORE" => vec![1, 2],
        b"SUNIONSTORE" | b"SINTERSTORE" | b"SDIFFSTORE" | b"PFMERGE" => (1..args.len()).collect(),
        b"BITOP" => (2..args.len()).collect(),
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => {
            let n = numkeys(args, 2);
            std::iter::once(1).chain(3..3 + n).collect()
        }
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let n = numkeys(args, 2);
            if n == 0 {
                // A script without keys: nothing tells where it writes.
                return Route::Unsafe;
            }
            (3..3 + n).collect()
        }
        b"LMPOP" | b"ZMPOP" | b"SINTERCARD" => {
            let n = numkeys(args, 1);
            (2..2 + n).collect()
        }
        // A subcommand first (see `key_of`): `XGROUP CREATE key group …`
        // (and SETID, DESTROY, CREATECONSUMER, DELCONSUMER; what a source
        // replicates for `XREADGROUP` too). Routed by its subcommand, it went
        // to the wrong master for ever (`MOVED`, map read again, same master).
        b"XGROUP" => vec![2],
        // The key read, and the one `STORE` (or `STOREDIST`) writes.
        b"SORT" | b"GEORADIUS" | b"GEORADIUSBYMEMBER" => std::iter::once(1).chain(store_target(args)).collect(),
        _ if args.len() >= 2 => vec![1],
        _ => return Route::Drop,
    };
    let keys: Vec<&Bytes> = keys.into_iter().filter_map(|i| args.get(i)).collect();
    let Some(first) = keys.first() else { return Route::Drop };
    let slot = slot_of(first);
    if keys.iter().all(|k| slot_of(k) == slot) {
        return Route::Slot { slot, key: (*first).clone() };
    }
    if matches!(name, b"DEL" | b"UNLINK" | b"TOUCH") {
        let mut parts: Vec<(u16, Vec<Bytes>)> = Vec::new();
        for k in keys {
            let s = slot_of(k);
            match parts.iter_mut().find(|(p, _)| *p == s) {
                Some((_, part)) => part.push(k.clone()),
                None => parts.push((s, vec![args[0].clone(), k.clone()])),
            }
        }
        return Route::Split(parts);
    }
    Route::CrossSlot { keys: keys.into_iter().map(|k| (k.clone(), slot_of(k))).collect() }
}

/// `MSET k v k v …`: one `MSET` per slot, pairs in their order.
fn split_pairs(args: &[Bytes]) -> Route {
    let mut parts: Vec<(u16, Vec<Bytes>)> = Vec::new();
    for pair in args[1..].chunks(2) {
        let [k, v] = pair else { return Route::Drop };
        let s = slot_of(k);
        match parts.iter_mut().find(|(p, _)| *p == s) {
            Some((_, part)) => part.extend([k.clone(), v.clone()]),
            None => parts.push((s, vec![args[0].clone(), k.clone(), v.clone()])),
        }
    }
    match parts.len() {
        0 => Route::Drop,
        1 => Route::Slot { slot: parts[0].0, key: args[1].clone() },
        _ => Route::Split(parts),
    }
}

/// The index of the key after `STORE` or `STOREDIST`, if any (`SORT`,
/// `GEORADIUS…`; the last one counts, as for the server).
fn store_target(args: &[Bytes]) -> Option<usize> {
    let at =
        args.iter().skip(2).rposition(|a| a.eq_ignore_ascii_case(b"STORE") || a.eq_ignore_ascii_case(b"STOREDIST"));
    at.map(|i| i + 3).filter(|&i| i < args.len())
}

fn numkeys(args: &[Bytes], at: usize) -> usize {
    let n = args.get(at).and_then(|a| std::str::from_utf8(a).ok()).and_then(|s| s.parse().ok()).unwrap_or(0);
    n.min(args.len().saturating_sub(at + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    #[test]
    fn single_key_and_same_tag_commands_go_to_their_slot() {
        assert_eq!(route(&args("SET foo 1")), Route::Slot { slot: 12182, key: Bytes::from_static(b"foo") });
        let r = route(&args("RENAME {u}a {u}b"));
        assert!(matches!(r, Route::Slot { slot, .. } if slot == slot_of(b"u")), "{r:?}");
        let r = route(&args("BITOP AND {t}d {t}a {t}b"));
        assert!(matches!(r, Route::Slot { slot, .. } if slot == slot_of(b"t")), "{r:?}");
    }

    #[test]
    fn mset_and_del_split_per_slot_keeping_order() {
        let Route::Split(parts) = route(&args("MSET foo 1 bar 2 {foo}x 3")) else { panic!() };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, 12182);
        assert_eq!(parts[0].1, args("MSET foo 1 {foo}x 3"));
        assert_eq!(parts[1].1, args("MSET bar 2"));
        let Route::Split(parts) = route(&args("DEL foo bar")) else { panic!() };
        assert_eq!(parts, [(12182, args("DEL foo")), (5061, args("DEL bar"))]);
    }

    #[test]
    fn cross_slot_commands_that_do_not_split_name_their_keys_and_slots() {
        let r = route(&args("RENAME foo bar"));
        assert_eq!(
            r,
            Route::CrossSlot { keys: vec![(Bytes::from_static(b"foo"), 12182), (Bytes::from_static(b"bar"), 5061)] }
        );
        assert!(matches!(route(&args("ZUNIONSTORE d 2 foo bar")), Route::CrossSlot { .. }));
        assert!(matches!(route(&args("EVAL s 2 foo bar")), Route::CrossSlot { .. }));
        assert!(matches!(route(&args("EVAL s 2 {a}x {a}y")), Route::Slot { .. }));
    }

    #[test]
    fn a_subcommand_or_a_store_target_is_not_taken_for_the_key() {
        for sub in ["CREATE k g $ MKSTREAM", "SETID k g 0-1 ENTRIESREAD 3", "DESTROY k g", "CREATECONSUMER k g c"] {
            let r = route(&args(&format!("XGROUP {sub}")));
            assert_eq!(r, Route::Slot { slot: slot_of(b"k"), key: Bytes::from_static(b"k") }, "XGROUP {sub}");
        }
        assert_eq!(route(&args("XGROUP HELP")), Route::Drop);
        assert_eq!(key_of(&Cmd::from_bytes(args("XGROUP SETID k g 0"))), Some(Bytes::from_static(b"k")));
        assert_eq!(key_of(&Cmd::from_bytes(args("SET k v"))), Some(Bytes::from_static(b"k")));
        assert_eq!(route(&args("SORT {a}l BY w* STORE {a}d")), Route::Slot { slot: slot_of(b"a"), key: "{a}l".into() });
        let r = route(&args("SORT foo LIMIT 0 5 STORE bar"));
        assert!(matches!(&r, Route::CrossSlot { keys } if keys.len() == 2), "{r:?}");
        let r = route(&args("GEORADIUS foo 0 0 5 km STOREDIST bar"));
        assert!(matches!(&r, Route::CrossSlot { keys } if keys.len() == 2), "{r:?}");
        assert!(matches!(route(&args("SORT foo")), Route::Slot { slot: 12182, .. }));
    }

    #[test]
    fn keyless_commands() {
        assert_eq!(route(&args("SCRIPT LOAD return")), Route::Broadcast);
        assert_eq!(route(&args("FUNCTION LOAD code")), Route::Broadcast);
        assert_eq!(route(&args("FUNCTION FLUSH")), Route::Unsafe);
        assert_eq!(route(&args("FLUSHALL")), Route::Unsafe);
        assert_eq!(route(&args("PUBLISH ch m")), Route::Drop);
        assert_eq!(route(&args("EVAL s 0")), Route::Unsafe);
    }
}
