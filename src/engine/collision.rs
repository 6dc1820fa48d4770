//! Cross-shard collisions: when a key the copy writes already exists on the
//! destination (conflict = "intercept"), which sources hold it, and the
//! alert that names them.
//!
//! In a merged destination the usual cause is the same key on two shards
//! (twemproxy never put it on both, but a client writing to the masters
//! directly, or a resharding, did). The writer only sees "the key exists";
//! naming every shard that holds it is what lets the operator decide which
//! value is right, so the sources are asked directly, at the time of the
//! collision.

use std::time::Duration;

use crate::config::{SourceConfig, SyncConfig, TaskConfig};
use crate::resp::ConnectOptions;

/// A collision is rare and the applier waits for the answer: a source that
/// does not answer quickly is reported as not asked rather than holding up
/// the copy.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the sources said about one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Sources holding the key in a DB that maps to the destination DB, in
    /// task order.
    pub holders: Vec<String>,
    /// Sources that could not be asked, with the reason.
    pub unreachable: Vec<(String, String)>,
}

impl Survey {
    /// [`collision_message`], plus the sources that could not be asked
    /// (they may hold the key too).
    pub fn message(&self, key_shown: &str, db: u32, this_shard: &str, uncertain: bool) -> String {
        let mut m = collision_message(key_shown, db, this_shard, &self.holders, uncertain);
        if !self.unreachable.is_empty() {
            let who: Vec<String> = self.unreachable.iter().map(|(s, e)| format!("{s} ({e})")).collect();
            m.push_str(&format!("; not asked whether they hold it: {}", who.join(", ")));
        }
        m
    }
}

/// The source DBs whose keys land in destination DB `dest_db`, honouring
/// `databases` (which source DBs are copied) and `db_map`.
pub fn source_dbs_for(sync: &SyncConfig, dest_db: u32) -> Vec<u32> {
    // Without a `databases` list every DB is copied: the candidates are
    // `dest_db` itself (unless it is mapped away) and whatever maps onto it.
    let candidates: Vec<u32> = match &sync.databases {
        Some(dbs) => dbs.clone(),
        None => std::iter::once(dest_db).chain(sync.db_map.keys().copied()).collect(),
    };
    let mut dbs: Vec<u32> =
        candidates.into_iter().filter(|&d| sync.copies_db(d) && sync.target_db(d) == dest_db).collect();
    dbs.sort_unstable();
    dbs.dedup();
    dbs
}

/// Asks every source whether it holds `key` in a DB that maps to `dest_db`.
pub async fn survey(task: &TaskConfig, dest_db: u32, key: &[u8]) -> Survey {
    surveys(task, &[(dest_db, key)]).await.pop().unwrap_or_default()
}

/// [`survey`] for many keys (destination DB, key) at once: one connection
/// and one pipeline per source, so a batch with many collisions costs one
/// round trip per source, not one per key.
pub async fn surveys(task: &TaskConfig, keys: &[(u32, &[u8])]) -> Vec<Survey> {
    let dbs: Vec<Vec<u32>> = keys.iter().map(|(db, _)| source_dbs_for(&task.sync, *db)).collect();
    let asks = task.sources.iter().map(|s| {
        let dbs = &dbs;
        async move {
            let r = tokio::time::timeout(ASK_TIMEOUT, holds(s, keys, dbs)).await;
            (s.name.clone(), r.unwrap_or_else(|_| Err(format!("no answer within {ASK_TIMEOUT:?}"))))
        }
    });
    let answers = futures::future::join_all(asks).await;
    (0..keys.len())
        .map(|i| {
            let mut out = Survey::default();
            for (name, r) in &answers {
                match r {
                    Ok(held) if held[i] => out.holders.push(name.clone()),
                    Ok(_) => {}
                    Err(e) => out.unreachable.push((name.clone(), e.clone())),
                }
            }
            out
        })
        .collect()
}

/// The names of the sources holding `key` in a DB that maps to `dest_db`,
/// in task order. Sources that cannot be asked are left out; [`survey`]
/// lists them.
pub async fn holders(task: &TaskConfig, dest_db: u32, key: &[u8]) -> Vec<String> {
    survey(task, dest_db, key).await.holders
}

/// Whether `source` holds each of `keys`, in any of its DBs in `dbs` (one
/// list per key).
async fn holds(source: &SourceConfig, keys: &[(u32, &[u8])], dbs: &[Vec<u32>]) -> Result<Vec<bool>, String> {
    let opts = ConnectOptions {
        credentials: source.password.credentials(),
        connect_timeout: ASK_TIMEOUT,
        read_timeout: Some(ASK_TIMEOUT),
    };
    let keys: Vec<&[u8]> = keys.iter().map(|(_, k)| *k).collect();
    crate::source::side::holds(&source.addr.to_string(), &opts, &keys, dbs).await.map_err(|e| e.to_string())
}

/// The alert for a key that shard `this_shard` could not write because the
/// destination already held it, naming every shard in `holders` (from
/// [`holders`]). `uncertain`: the key was found on a re-send after a lost
/// reply, so the value kept may be this shard's own first write.
///
/// `collision: key dup in db 0 is held by shards server1 and server2; the
/// destination keeps the value written first (by server2), server1's was
/// not written (conflict = "intercept")`
pub fn collision_message(key_shown: &str, db: u32, this_shard: &str, holders: &[String], uncertain: bool) -> String {
    let others: Vec<&str> = holders.iter().map(String::as_str).filter(|h| *h != this_shard).collect();
    let mut m = if others.is_empty() {
        format!(
            "collision: key {key_shown} in db {db} already existed on the destination, and no other shard holds it \
             now (it was there before the task, or a shard wrote it and has since deleted or renamed it); \
             {this_shard}'s value was not written (conflict = \"intercept\")"
        )
    } else {
        // This shard held the key when it sent it, even if it no longer does.
        let mut named: Vec<&str> = holders.iter().map(String::as_str).collect();
        if !named.contains(&this_shard) {
            named.push(this_shard);
        }
        let first = if others.len() == 1 { others[0].to_owned() } else { format!("one of {}", and_list(&others)) };
        format!(
            "collision: key {key_shown} in db {db} is held by shards {}; the destination keeps the value written \
             first (by {first}), {this_shard}'s was not written (conflict = \"intercept\")",
            and_list(&named)
        )
    };
    if uncertain {
        m.push_str(&format!(
            "; the key was found on a re-send after a lost reply, so the value kept may be {this_shard}'s own first write"
        ));
    }
    m
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_message_names_the_key_and_both_shards() {
        let m = collision_message("dup", 0, "server1", &names(&["server1", "server2"]), false);
        assert_eq!(
            m,
            "collision: key dup in db 0 is held by shards server1 and server2; the destination keeps the value \
             written first (by server2), server1's was not written (conflict = \"intercept\")"
        );
    }

    #[test]
    fn this_shard_is_named_even_when_it_no_longer_holds_the_key() {
        let m = collision_message("k", 3, "a", &names(&["b"]), false);
        assert!(m.contains("held by shards b and a;") && m.contains("(by b), a's was not"), "{m}");
    }

    #[test]
    fn with_several_other_holders_the_first_writer_is_one_of_them() {
        let m = collision_message("k", 0, "b", &names(&["a", "b", "c"]), false);
        assert!(m.contains("held by shards a, b and c;") && m.contains("(by one of a and c), b's"), "{m}");
    }

    #[test]
    fn no_other_holder_says_so() {
        for holders in [names(&["a"]), Vec::new()] {
            let m = collision_message("k", 0, "a", &holders, false);
            assert!(m.contains("no other shard holds it") && m.contains("a's value was not written"), "{m}");
        }
    }

    #[test]
    fn uncertain_says_the_kept_value_may_be_our_own() {
        let m = collision_message("k", 0, "a", &names(&["a", "b"]), true);
        assert!(m.ends_with("may be a's own first write"), "{m}");
    }

    #[test]
    fn unreachable_sources_are_listed() {
        let s = Survey { holders: names(&["a", "b"]), unreachable: vec![("c".into(), "refused".into())] };
        assert!(s.message("k", 0, "a", false).ends_with("; not asked whether they hold it: c (refused)"));
    }

    #[test]
    fn source_dbs_follow_selection_and_mapping() {
        let all = SyncConfig::default();
        assert_eq!(source_dbs_for(&all, 0), vec![0]);
        assert_eq!(source_dbs_for(&all, 7), vec![7]);
        // Every DB copied, 3 and 5 mapped onto 0, 0 mapped away to 1.
        let mapped = SyncConfig { db_map: [(3, 0), (5, 0), (0, 1)].into(), ..SyncConfig::default() };
        assert_eq!(source_dbs_for(&mapped, 0), vec![3, 5]);
        assert_eq!(source_dbs_for(&mapped, 1), vec![0, 1]);
        // Only DBs 0 and 3 copied: 5 is not, though it maps onto 0.
        let selected =
            SyncConfig { databases: Some(vec![0, 3]), db_map: [(3, 0), (5, 0)].into(), ..SyncConfig::default() };
        assert_eq!(source_dbs_for(&selected, 0), vec![0, 3]);
        assert_eq!(source_dbs_for(&selected, 5), Vec::<u32>::new());
        assert_eq!(source_dbs_for(&selected, 3), Vec::<u32>::new());
    }
}
