//! The engine's side poll of the destination: its `INFO` figures once a
//! second for the dashboard's header, and each master's on a cluster (read
//! by [`crate::dest::stats`]).
//! A failed read leaves the last figures in place.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::dest::stats::{DestReading, StatsReader};
use crate::resp::ConnectOptions;

/// Polls the destination every `every` into `shared`, until cancelled.
pub async fn poll_stats(
    addr: String,
    opts: ConnectOptions,
    every: Duration,
    shared: Arc<Mutex<Option<DestReading>>>,
    cancel: CancellationToken,
) {
    let mut reader = StatsReader::new(addr, opts);
    loop {
        if let Some(stats) = reader.read(now_ms()).await {
            if let Ok(mut s) = shared.lock() {
                *s = Some(stats);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
