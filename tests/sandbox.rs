//! The demo's sandbox: real servers start, take data through the proxy,
//! replicate it, and are gone (processes and directory) once dropped.

use std::time::{Duration, Instant};

use shardsync::resp::{Cmd, ConnectOptions, Connection};
use shardsync::sandbox::{self, Sandbox, DEST_PASSWORD, DEST_USER};
use tokio_util::sync::CancellationToken;

async fn dbsize(addr: &str, opts: &ConnectOptions) -> i64 {
    let mut c = Connection::connect(addr, opts).await.expect("connect");
    c.query(&Cmd::new("DBSIZE")).await.expect("DBSIZE").as_int().expect("an integer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_starts_loads_replicates_and_cleans_up() {
    let mut lines = Vec::new();
    let sb =
        tokio::task::block_in_place(|| Sandbox::start(&mut |l| lines.push(l.to_owned()), &CancellationToken::new()))
            .expect("the sandbox starts");
    assert!(lines.iter().any(|l| l.contains("nutcracker on")), "{lines:?}");
    assert_eq!(sb.masters.len(), 2);
    let sent = sandbox::load_sample(&sb.proxy, 2_000).await.expect("sample data through the proxy");
    assert_eq!(sent, 2_000);

    let plain = ConnectOptions::default();
    let (a, b) = (dbsize(&sb.masters[0], &plain).await, dbsize(&sb.masters[1], &plain).await);
    assert!(a > 0 && b > 0, "twemproxy spread the keys over both masters: {a} and {b}");
    // The replicas follow their masters.
    let deadline = Instant::now() + Duration::from_secs(30);
    while dbsize(&sb.replicas[0], &plain).await != a {
        assert!(Instant::now() < deadline, "replica 1 did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The destination is empty and wants its ACL user.
    let creds = shardsync::config::Secret::new(format!("{DEST_USER}:{DEST_PASSWORD}")).credentials();
    assert_eq!(dbsize(&sb.destination, &ConnectOptions { credentials: creds, ..ConnectOptions::default() }).await, 0);
    let refused = match Connection::connect(&sb.destination, &plain).await {
        Err(_) => true,
        Ok(mut c) => c.query(&Cmd::new("DBSIZE")).await.map_or(true, |v| v.is_error()),
    };
    assert!(refused, "the destination answers without a login");

    let dir = sb.dir().to_path_buf();
    let master = sb.masters[0].clone();
    drop(sb);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(Connection::connect(&master, &plain).await.is_err(), "master still up after drop");
}
