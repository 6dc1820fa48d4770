//! One owner for a shard's status. The parts of a shard (its loop, its
//! destination side, the replication progress mirror, the heartbeat and the
//! offset poll) send typed [`ShardEvent`]s on a bounded channel through a
//! [`StatusTx`]; one task per shard ([`own`]) folds them, in order, into the
//! shard's [`ShardSnapshot`] with the pure function [`fold`] and publishes
//! the result on a `watch`. Nothing else writes a shard's status.

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::snapshot::{Alert, KeysSkipped, ShardSnapshot, ShardState};
use crate::clock::now_ms;
use crate::source::{ReplicationProgress, ReplicationState};

/// Alerts kept in a snapshot (the log keeps them all).
const ALERTS_KEPT: usize = 200;

/// Events in flight per shard before a sender waits: status changes come a
/// few per batch and per second, so this only bounds a stalled owner.
const EVENTS_QUEUED: usize = 1024;

/// What a part of a shard reports.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ShardEvent {
    /// A line for the operator, at source `offset` when it concerns one.
    Alert { offset: Option<u64>, message: String },
    /// A link after the first one: counted as a reconnect.
    Reconnect,
    /// A link connects to the source.
    LinkStarting,
    /// Waiting for the host's full-copy slot (`Some`), or not any more.
    Waiting(Option<String>),
    /// What the replication reader has received.
    Progress(ReplicationProgress),
    /// The master's offset as polled.
    SourceOffset(u64),
    /// The source's key count in the copied DBs.
    SourceKeys(u64),
    /// The heartbeat key cannot be written: lag in ms is unavailable.
    HeartbeatRefused { message: String },
    /// A full copy begins at replication `offset`.
    FullSyncStarted { offset: u64 },
    /// RDB bytes applied so far.
    RdbApplied(u64),
    /// The destination confirmed everything up to replication `offset`.
    Applied { offset: u64 },
    /// The destination holds the stream up to `offset` (after it lost
    /// writes: where the shard goes on from).
    AppliedOffset(Option<u64>),
    /// The newest heartbeat (source clock, ms) the destination applied.
    HeartbeatApplied(i64),
    /// The full copy's key accounting so far.
    Keys { applied: u64, skipped: KeysSkipped, rdb_version: Option<u32> },
    /// A write failed (counted; `last_error`).
    WriteFailed { message: String },
    /// Retrying: the destination (`why` `None`) or a new link.
    Reconnecting { why: Option<String> },
    /// Writes are confirmed again after a retry.
    ApplyingAgain { copying: bool },
    /// Paused: by the operator (`on_error` false) or on an error the
    /// operator must fix (`why`, shown as the last error).
    Paused { on_error: bool, why: Option<String> },
    /// Resumed: back to `to`, or to the state before the pause.
    Resumed { to: Option<ShardState> },
    /// The shard ended: stopped, or failed with `error`.
    Ended { error: Option<String> },
}

/// What the owner knows: the snapshot, and the state a pause interrupted.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Status {
    pub snap: ShardSnapshot,
    before_pause: Option<ShardState>,
}

impl Status {
    pub fn new(shard: &str) -> Status {
        Status { snap: ShardSnapshot::new(shard), before_pause: None }
    }
}

/// Applies `ev` to `st`. Pure but for the alert's timestamp (`now_ms`).
pub(super) fn fold(st: &mut Status, ev: ShardEvent, now_ms: i64) {
    let s = &mut st.snap;
    match ev {
        ShardEvent::Alert { offset, message } => push_alert(s, Alert { ts_ms: now_ms, offset, message }),
        ShardEvent::Reconnect => s.reconnects += 1,
        ShardEvent::LinkStarting => s.state = ShardState::Connecting,
        ShardEvent::Waiting(note) => {
            if note.is_some() {
                s.state = ShardState::Connecting;
            }
            s.waiting = note;
        }
        ShardEvent::Progress(p) => {
            s.rdb_bytes = p.rdb_received;
            s.rdb_total = p.rdb_total;
            s.received_offset = p.received_offset;
            // What the master has sent is a lower bound of its offset that
            // is never stale, unlike the once-a-second poll.
            if let Some(r) = p.received_offset {
                s.source_offset = Some(s.source_offset.map_or(r, |o| o.max(r)));
                s.lag_bytes = s.applied_offset.map(|a| s.source_offset.unwrap_or(r).saturating_sub(a));
            }
            let state = match p.state {
                ReplicationState::Connecting => Some(ShardState::Connecting),
                ReplicationState::Handshake => Some(ShardState::Handshake),
                ReplicationState::Rdb => Some(ShardState::Rdb),
                ReplicationState::Incremental => Some(ShardState::Incremental),
                // How a link ended is the shard's call (a new link, or a
                // failure), not the reader's.
                ReplicationState::Stopped | ReplicationState::Failed => None,
            };
            // Reconnecting (destination retries), Stopped (paused) and
            // Failed come from the shard's own side; and a shard is
            // incremental only once the snapshot is applied, not received.
            let held = matches!(s.state, ShardState::Reconnecting | ShardState::Stopped | ShardState::Failed);
            if let Some(state) = state {
                if !(held || (state == ShardState::Incremental && s.applied_offset.is_none())) {
                    s.state = state;
                }
            }
        }
        ShardEvent::SourceOffset(off) => {
            // Never below what the master has already sent us.
            let off = s.received_offset.map_or(off, |r| r.max(off));
            s.source_offset = Some(off);
            s.lag_bytes = s.applied_offset.map(|a| off.saturating_sub(a));
        }
        ShardEvent::SourceKeys(keys) => s.source_keys = Some(keys),
        ShardEvent::HeartbeatRefused { message } => {
            push_alert(s, Alert { ts_ms: now_ms, offset: None, message });
            s.lag_ms = None;
            s.heartbeat_applied_ms = None;
        }
        ShardEvent::FullSyncStarted { offset } => {
            s.full_syncs += 1;
            s.keys_applied = 0;
            s.keys_skipped = KeysSkipped::default();
            s.rdb_applied = 0;
            // A new history (a restarted master) may count from lower
            // offsets than the old one.
            s.source_offset = Some(offset);
            s.received_offset = Some(offset);
            s.applied_offset = None;
            s.lag_bytes = None;
        }
        ShardEvent::RdbApplied(rdb) => s.rdb_applied = rdb,
        ShardEvent::Applied { offset } => {
            s.applied_offset = Some(offset);
            let source = s.source_offset.max(s.received_offset);
            s.lag_bytes = source.map(|so| so.saturating_sub(offset));
            // The snapshot is applied: incremental from here on.
            if s.state == ShardState::Rdb {
                s.state = ShardState::Incremental;
                // The last key ends a few bytes before the RDB does (EOF
                // opcode, checksum): the copy is whole now.
                s.rdb_applied = s.rdb_applied.max(s.rdb_bytes);
            }
        }
        ShardEvent::AppliedOffset(offset) => s.applied_offset = offset,
        ShardEvent::HeartbeatApplied(h) => {
            s.heartbeat_applied_ms = Some(s.heartbeat_applied_ms.map_or(h, |old| old.max(h)));
        }
        ShardEvent::Keys { applied, skipped, rdb_version } => {
            s.keys_applied = applied;
            s.keys_skipped = skipped;
            if rdb_version.is_some() {
                s.rdb_version = rdb_version;
            }
        }
        ShardEvent::WriteFailed { message } => {
            s.errors += 1;
            s.last_error = Some(message);
        }
        ShardEvent::Reconnecting { why } => {
            s.state = ShardState::Reconnecting;
            if why.is_some() {
                s.last_error = why;
            }
        }
        ShardEvent::ApplyingAgain { copying } => {
            if s.state == ShardState::Reconnecting {
                s.state = if copying { ShardState::Rdb } else { ShardState::Incremental };
            }
        }
        ShardEvent::Paused { on_error, why } => {
            if s.state != ShardState::Stopped {
                st.before_pause = Some(s.state);
            }
            s.state = ShardState::Stopped;
            s.paused_on_error = on_error;
            if why.is_some() {
                s.last_error = why;
            }
        }
        ShardEvent::Resumed { to } => {
            let before = st.before_pause.take();
            s.state = to.or(before).unwrap_or(ShardState::Incremental);
            s.paused_on_error = false;
        }
        ShardEvent::Ended { error } => {
            s.state = if error.is_some() { ShardState::Failed } else { ShardState::Stopped };
            if error.is_some() {
                s.last_error = error;
            }
        }
    }
}

/// Counts the alert and keeps the newest [`ALERTS_KEPT`].
fn push_alert(s: &mut ShardSnapshot, alert: Alert) {
    s.alerts_total += 1;
    s.alerts.push(alert);
    if s.alerts.len() > ALERTS_KEPT {
        s.alerts.remove(0);
    }
}

/// How a shard's parts report (cheap to clone).
#[derive(Clone, Debug)]
pub struct StatusTx {
    tx: mpsc::Sender<ShardEvent>,
}

impl StatusTx {
    /// Sends `ev` to the owner; waits while its queue is full. After the
    /// owner has ended (the task is over) an event has nobody to tell.
    pub(super) async fn send(&self, ev: ShardEvent) {
        let _ = self.tx.send(ev).await;
    }

    pub(super) async fn alert(&self, offset: Option<u64>, message: String) {
        self.send(ShardEvent::Alert { offset, message }).await;
    }
}

/// A shard's status owner: the sender its parts use, the receiver the
/// front ends read, and the task that folds (see [`own`]).
pub(super) fn channel(shard: &str) -> (StatusTx, mpsc::Receiver<ShardEvent>, watch::Sender<ShardSnapshot>) {
    let (tx, rx) = mpsc::channel(EVENTS_QUEUED);
    let (pub_tx, _) = watch::channel(ShardSnapshot::new(shard));
    (StatusTx { tx }, rx, pub_tx)
}

/// The owner: folds every event into the status and publishes it, until
/// every sender is gone or `close` is cancelled (then what is queued is
/// still folded). Returns the last status. Publications are at most one per
/// [`PUBLISH_EVERY`]: a snapshot carries up to 200 alerts, and the reader's
/// progress alone can come thousands of times a second.
pub(super) async fn own(
    shard: String,
    mut rx: mpsc::Receiver<ShardEvent>,
    publish: watch::Sender<ShardSnapshot>,
    close: CancellationToken,
) -> ShardSnapshot {
    let mut st = Status::new(&shard);
    let mut published = tokio::time::Instant::now();
    let mut dirty = false;
    loop {
        let ev = tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
            _ = close.cancelled() => break,
            _ = tokio::time::sleep_until(published + PUBLISH_EVERY), if dirty => None,
        };
        if let Some(ev) = ev {
            fold(&mut st, ev, now_ms());
            dirty = true;
        }
        if dirty && published.elapsed() >= PUBLISH_EVERY {
            publish.send_replace(st.snap.clone());
            published = tokio::time::Instant::now();
            dirty = false;
        }
    }
    while let Ok(ev) = rx.try_recv() {
        fold(&mut st, ev, now_ms());
    }
    publish.send_replace(st.snap.clone());
    st.snap
}

/// Longest a folded change waits to be published.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(events: Vec<ShardEvent>) -> ShardSnapshot {
        let mut st = Status::new("s1");
        for ev in events {
            fold(&mut st, ev, 1000);
        }
        st.snap
    }

    #[test]
    fn alerts_are_counted_and_bounded() {
        let s = folded(
            (0..ALERTS_KEPT + 5)
                .map(|i| ShardEvent::Alert { offset: Some(i as u64), message: format!("alert {i}") })
                .collect(),
        );
        assert_eq!(s.alerts_total, (ALERTS_KEPT + 5) as u64);
        assert_eq!(s.alerts.len(), ALERTS_KEPT);
        assert_eq!(s.alerts[0].message, "alert 5");
        assert_eq!(s.alerts[0].ts_ms, 1000);
    }

    fn progress(state: ReplicationState, received: Option<u64>) -> ShardEvent {
        ShardEvent::Progress(ReplicationProgress { state, received_offset: received, ..ReplicationProgress::default() })
    }

    #[test]
    fn incremental_only_once_the_snapshot_is_applied() {
        let mut st = Status::new("s1");
        fold(&mut st, ShardEvent::FullSyncStarted { offset: 100 }, 0);
        fold(&mut st, progress(ReplicationState::Rdb, Some(100)), 0);
        assert_eq!(st.snap.state, ShardState::Rdb);
        // Received whole, not yet applied: still rdb.
        fold(&mut st, progress(ReplicationState::Incremental, Some(150)), 0);
        assert_eq!(st.snap.state, ShardState::Rdb);
        fold(&mut st, ShardEvent::Applied { offset: 120 }, 0);
        assert_eq!(st.snap.state, ShardState::Incremental);
        assert_eq!(st.snap.lag_bytes, Some(30));
        fold(&mut st, ShardEvent::SourceOffset(140), 0);
        assert_eq!(st.snap.source_offset, Some(150), "never below what was received");
    }

    #[test]
    fn a_pause_returns_to_the_state_it_interrupted() {
        let mut st = Status::new("s1");
        fold(&mut st, ShardEvent::FullSyncStarted { offset: 0 }, 0);
        fold(&mut st, progress(ReplicationState::Rdb, Some(0)), 0);
        fold(&mut st, ShardEvent::Paused { on_error: true, why: Some("OOM".into()) }, 0);
        assert_eq!((st.snap.state, st.snap.paused_on_error), (ShardState::Stopped, true));
        assert_eq!(st.snap.last_error.as_deref(), Some("OOM"));
        // The reader's progress does not undo a pause.
        fold(&mut st, progress(ReplicationState::Rdb, Some(10)), 0);
        assert_eq!(st.snap.state, ShardState::Stopped);
        fold(&mut st, ShardEvent::Resumed { to: None }, 0);
        assert_eq!((st.snap.state, st.snap.paused_on_error), (ShardState::Rdb, false));
        fold(&mut st, ShardEvent::Paused { on_error: true, why: None }, 0);
        fold(&mut st, ShardEvent::Resumed { to: Some(ShardState::Connecting) }, 0);
        assert_eq!(st.snap.state, ShardState::Connecting);
    }

    #[test]
    fn retries_and_the_end() {
        let mut st = Status::new("s1");
        fold(&mut st, ShardEvent::Applied { offset: 5 }, 0);
        fold(&mut st, ShardEvent::WriteFailed { message: "LOADING".into() }, 0);
        fold(&mut st, ShardEvent::Reconnecting { why: None }, 0);
        assert_eq!((st.snap.state, st.snap.errors), (ShardState::Reconnecting, 1));
        fold(&mut st, ShardEvent::ApplyingAgain { copying: false }, 0);
        assert_eq!(st.snap.state, ShardState::Incremental);
        fold(&mut st, ShardEvent::Reconnect, 0);
        fold(&mut st, ShardEvent::LinkStarting, 0);
        assert_eq!((st.snap.state, st.snap.reconnects), (ShardState::Connecting, 1));
        fold(&mut st, ShardEvent::Ended { error: Some("boom".into()) }, 0);
        assert_eq!((st.snap.state, st.snap.last_error.as_deref()), (ShardState::Failed, Some("boom")));
        fold(&mut st, ShardEvent::HeartbeatApplied(10), 0);
        fold(&mut st, ShardEvent::HeartbeatApplied(7), 0);
        assert_eq!(st.snap.heartbeat_applied_ms, Some(10), "the newest, whatever the order");
    }

    #[tokio::test]
    async fn the_owner_folds_in_order_and_publishes_the_last_state() {
        let (tx, rx, publish) = channel("s1");
        let mut seen = publish.subscribe();
        let close = CancellationToken::new();
        let owner = tokio::spawn(own("s1".into(), rx, publish, close.clone()));
        tx.send(ShardEvent::FullSyncStarted { offset: 3 }).await;
        tx.alert(None, "hello".into()).await;
        seen.changed().await.expect("published");
        drop(tx);
        let last = owner.await.expect("owner");
        assert_eq!(last.full_syncs, 1);
        assert_eq!(last.alerts[0].message, "hello");
    }
}
