//! The RESP connection against real `redis-server`s (started per test by the
//! harness in `common`) and against small fake peers that misbehave on
//! purpose: silent, closing, or speaking another protocol.

mod common;

use std::{error::Error, future::Future, time::Duration};

use bytes::Bytes;
use common::{free_port, Nutcracker, RedisOptions, RedisServer};
use shardsync::resp::{Cmd, ConnectOptions, Connection, Credentials, RespError, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

type TestResult = Result<(), Box<dyn Error>>;

fn opts(credentials: &str) -> ConnectOptions {
    ConnectOptions { credentials: Credentials::parse(credentials), ..ConnectOptions::default() }
}

async fn connect(server: &RedisServer, credentials: &str) -> Result<Connection, RespError> {
    Connection::connect(&server.addr(), &opts(credentials)).await
}

fn bulk(b: impl Into<Bytes>) -> Value {
    Value::Bulk(Some(b.into()))
}

/// Accepts one connection on a loopback port and hands it to `behave`.
async fn fake_peer<F, Fut>(behave: F) -> Result<String, Box<dyn Error>>
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        if let Ok((socket, _)) = listener.accept().await {
            behave(socket).await;
        }
    });
    Ok(addr)
}

/// Reads until `marker` has arrived (or the client goes away).
async fn read_until(socket: &mut TcpStream, marker: &[u8]) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !seen.windows(marker.len()).any(|w| w == marker) {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Keeps the socket open without ever answering, until the client leaves.
async fn stay_silent(mut socket: TcpStream) {
    let mut sink = [0u8; 1024];
    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
}

#[tokio::test]
async fn pipeline_returns_1000_replies_in_order_with_an_error_in_the_middle() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server, "").await?;

    let mut cmds = Vec::new();
    for i in 0..250 {
        let key = format!("k:{i}");
        cmds.push(Cmd::new("SET").arg(&key).arg(format!("v:{i}")));
        // A string that is not a number: WRONGTYPE-like error mid-pipeline.
        if i == 125 {
            cmds.push(Cmd::new("INCR").arg(&key));
        } else {
            cmds.push(Cmd::new("INCR").arg("counter"));
        }
        cmds.push(Cmd::new("GET").arg(&key));
        cmds.push(Cmd::new("RPUSH").arg("list").arg(i.to_string()));
    }
    assert_eq!(cmds.len(), 1000);

    let replies = conn.pipeline(&cmds).await?;
    assert_eq!(replies.len(), 1000);
    let mut counter = 0;
    for (i, group) in replies.chunks(4).enumerate() {
        assert!(group[0].is_ok(), "SET #{i}: {}", group[0]);
        if i == 125 {
            let error = group[1].as_error().unwrap_or_default();
            assert!(error.contains("not an integer"), "INCR #{i}: {}", group[1]);
        } else {
            counter += 1;
            assert_eq!(group[1], Value::Integer(counter), "INCR #{i}");
        }
        assert_eq!(group[2], bulk(format!("v:{i}")), "GET #{i}");
        assert_eq!(group[3], Value::Integer(i as i64 + 1), "RPUSH #{i}");
    }

    // The error reply left the connection in step.
    assert_eq!(conn.query(&Cmd::new("GET").arg("counter")).await?, bulk("249"));
    Ok(())
}

/// A transaction's replies: `+OK`, one `+QUEUED` per command (taken on a
/// fast path, also when cut across reads), then EXEC's array.
#[tokio::test]
async fn pipelined_transactions_reply_queued_then_their_results() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server, "").await?;
    let mut cmds = Vec::new();
    for t in 0..200 {
        cmds.push(Cmd::new("MULTI"));
        for i in 0..50 {
            cmds.push(Cmd::new("SET").arg(format!("k:{t}:{i}")).arg("v"));
            cmds.push(Cmd::new("INCR").arg("n"));
        }
        cmds.push(Cmd::new("EXEC"));
    }
    let replies = conn.pipeline(&cmds).await?;
    assert_eq!(replies.len(), cmds.len());
    let mut n = 0;
    for (t, unit) in replies.chunks(102).enumerate() {
        assert!(unit[0].is_ok(), "MULTI #{t}: {}", unit[0]);
        assert!(unit[1..101].iter().all(|r| r == &Value::Simple("QUEUED".into())), "unit #{t}");
        let results = unit[101].as_array().expect("EXEC replies with an array");
        assert_eq!(results.len(), 100);
        for pair in results.chunks(2) {
            n += 1;
            assert!(pair[0].is_ok());
            assert_eq!(pair[1], Value::Integer(n));
        }
    }
    Ok(())
}

#[tokio::test]
async fn pipeline_larger_than_the_socket_buffers_does_not_deadlock() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server, "").await?;
    // ~20 MB each way: far beyond kernel socket buffers, so this only
    // finishes if writing and reading overlap.
    let value = Bytes::from(vec![b'x'; 1024]);
    let sets: Vec<Cmd> =
        (0..20_000).map(|i| Cmd::new("SET").arg(format!("big:{i}")).arg_bytes(value.clone())).collect();
    assert!(conn.pipeline(&sets).await?.iter().all(Value::is_ok));
    let gets: Vec<Cmd> = (0..20_000).map(|i| Cmd::new("GET").arg(format!("big:{i}"))).collect();
    let replies = conn.pipeline(&gets).await?;
    assert!(replies.iter().all(|r| r.as_bytes() == Some(&value[..])));
    Ok(())
}

/// The fake peer's side of the low-water tests: answers the handshake's
/// `PING`, then a `GET big` with 8 MB (a fresh connection's receive window
/// is one segment, and Linux ignores the mark while it is that small), then
/// reads until `n` `ECHO` commands have arrived; false if the client left.
async fn warmed_up_for(socket: &mut TcpStream, n: usize) -> bool {
    read_until(socket, b"PING\r\n").await;
    let _ = socket.write_all(b"+PONG\r\n").await;
    read_until(socket, b"big\r\n").await;
    let big = 8usize << 20;
    let _ = socket.write_all(format!("${big}\r\n").as_bytes()).await;
    let _ = socket.write_all(&vec![b'b'; big]).await;
    let _ = socket.write_all(b"\r\n").await;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while seen.windows(6).filter(|w| w == b"ECHO\r\n").count() < n {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(got) => seen.extend_from_slice(&chunk[..got]),
        }
    }
    true
}

/// The connection raises the socket's receive low-water mark while many
/// replies are due (fewer wake-ups); the mark must never exceed the bytes
/// still to come, or a wait would hang until the read timeout. Replies as
/// short as RESP allows (`+\r\n`), the last share arriving exactly to the
/// byte after a reply cut in two: the pipeline ends when its last byte is
/// there, not at the timeout.
#[tokio::test]
async fn replies_as_short_as_resp_allows_end_a_pipeline_without_waiting() -> TestResult {
    const N: usize = 1000;
    const FIRST: usize = 700;
    let addr = fake_peer(|mut socket| async move {
        if !warmed_up_for(&mut socket, N).await {
            return;
        }
        // N replies for N commands: FIRST longer ones and half of the next
        // (more bytes than the mark for N replies asks, so the client wakes
        // and keeps `+` buffered), a pause, then exactly the bytes that
        // complete the rest.
        let mut first = b"+a long reply\r\n".repeat(FIRST);
        first.push(b'+');
        let _ = socket.write_all(&first).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut rest = b"\r\n".to_vec();
        rest.extend_from_slice(&b"+\r\n".repeat(N - FIRST - 1));
        let _ = socket.write_all(&rest).await;
        stay_silent(socket).await;
    })
    .await?;
    let mut conn = Connection::connect(&addr, &opts("")).await?;
    conn.set_read_timeout(Some(Duration::from_secs(3)));
    let big = conn.query(&Cmd::new("GET").arg("big")).await?;
    assert_eq!(big.as_bytes().map(<[u8]>::len), Some(8 << 20));
    let started = std::time::Instant::now();
    let replies = conn.pipeline(&vec![Cmd::new("ECHO"); N]).await?;
    assert_eq!(replies.len(), N);
    assert_eq!(replies[0], Value::Simple("a long reply".into()));
    assert!(replies[FIRST..].iter().all(|r| *r == Value::Simple("".into())), "{:?}", &replies[FIRST..FIRST + 2]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "the last replies waited for the read timeout: {took:?}");
    Ok(())
}

/// A server that answers a pipeline slowly, one reply at a time, each well
/// within the read timeout: the raised low-water mark holds those replies
/// back from the wait, which must not take that for a silent server.
#[tokio::test]
async fn replies_that_trickle_in_slower_than_the_mark_fills_are_not_a_timeout() -> TestResult {
    const N: usize = 80;
    let addr = fake_peer(|mut socket| async move {
        if !warmed_up_for(&mut socket, N).await {
            return;
        }
        for _ in 0..N {
            tokio::time::sleep(Duration::from_millis(15)).await;
            let _ = socket.write_all(b"+OK\r\n").await;
        }
        stay_silent(socket).await;
    })
    .await?;
    let mut conn = Connection::connect(&addr, &opts("")).await?;
    let big = conn.query(&Cmd::new("GET").arg("big")).await?;
    assert_eq!(big.as_bytes().map(<[u8]>::len), Some(8 << 20));
    // 80 replies of 5 bytes every 15 ms: the mark for 80 (240 bytes) fills
    // after 0.7 s, beyond the read timeout; a reply comes every 15 ms.
    conn.set_read_timeout(Some(Duration::from_millis(250)));
    let replies = conn.pipeline(&vec![Cmd::new("ECHO"); N]).await?;
    assert_eq!(replies.len(), N);
    assert!(replies.iter().all(Value::is_ok));
    Ok(())
}

#[tokio::test]
async fn query_turns_an_error_reply_into_an_error_naming_the_command() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server, "").await?;
    conn.query(&Cmd::from_args(["SET", "s", "text"])).await?;
    let err = conn.query(&Cmd::from_args(["LPUSH", "s", "x"])).await.expect_err("LPUSH on a string");
    let msg = err.to_string();
    assert!(matches!(err, RespError::Server { .. }), "{msg}");
    assert!(msg.contains("LPUSH") && msg.contains("WRONGTYPE"), "{msg}");
    assert!(msg.contains(&server.addr()), "{msg}");
    // A server error is a reply, not a broken connection.
    assert!(conn.is_usable());
    Ok(())
}

#[tokio::test]
async fn nil_bulk_and_nil_array_are_told_apart() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server, "").await?;
    assert_eq!(conn.query(&Cmd::from_args(["GET", "missing"])).await?, Value::Bulk(None));
    let blpop = Cmd::from_args(["BLPOP", "missing", "0.01"]);
    assert_eq!(conn.query(&blpop).await?, Value::Array(None));
    Ok(())
}

#[tokio::test]
async fn args_and_values_are_binary_safe() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server, "").await?;
    let all: Vec<u8> = (0..=255).collect();
    let reversed: Vec<u8> = all.iter().rev().copied().collect();
    conn.query(&Cmd::new("SET").arg(&all).arg(&reversed)).await?;
    assert_eq!(conn.query(&Cmd::new("GET").arg(&all)).await?, bulk(reversed.clone()));
    // Every single byte as a key, CR and LF and NUL included.
    let sets: Vec<Cmd> = (0..=255u8).map(|b| Cmd::new("SET").arg([b]).arg([b, b'\r', b'\n', b])).collect();
    conn.pipeline(&sets).await?;
    let gets: Vec<Cmd> = (0..=255u8).map(|b| Cmd::new("GET").arg([b])).collect();
    for (b, reply) in (0..=255u8).zip(conn.pipeline(&gets).await?) {
        assert_eq!(reply, bulk(vec![b, b'\r', b'\n', b]));
    }
    assert_eq!(server.redis_cli(&["STRLEN", "\u{7f}"])?, "4", "redis-cli sees what we wrote");
    Ok(())
}

#[tokio::test]
async fn requirepass_right_wrong_and_missing_password() -> TestResult {
    let server = RedisServer::start(RedisOptions::new().password("s3cret"))?;
    let addr = server.addr();

    let mut conn = connect(&server, "s3cret").await?;
    assert_eq!(conn.query(&Cmd::new("PING")).await?, Value::Simple("PONG".into()));

    let err = connect(&server, "nope").await.expect_err("wrong password");
    let msg = err.to_string();
    assert!(matches!(err, RespError::WrongPassword { .. }), "{msg}");
    assert!(msg.contains("wrong password") && msg.contains(&addr), "{msg}");

    let err = connect(&server, "").await.expect_err("no password");
    let msg = err.to_string();
    assert!(matches!(err, RespError::AuthRequired { .. }), "{msg}");
    assert!(msg.contains("NOAUTH") && msg.contains(&addr), "{msg}");
    assert!(msg.contains("set `password`"), "says what to do: {msg}");
    Ok(())
}

#[tokio::test]
async fn password_given_to_a_server_without_one() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let err = connect(&server, "extra").await.expect_err("no password set");
    let msg = err.to_string();
    assert!(matches!(err, RespError::NoPasswordSet { .. }), "{msg}");
    assert!(msg.contains("no password set") && msg.contains("leave `password` empty"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn password_with_colons_for_the_default_user() -> TestResult {
    let server = RedisServer::start(RedisOptions::new().password("pa:ss:word"))?;
    let mut conn = connect(&server, "default:pa:ss:word").await?;
    let whoami = conn.query(&Cmd::from_args(["ACL", "WHOAMI"])).await?;
    assert_eq!(whoami.as_str(), Some("default"));
    Ok(())
}

#[tokio::test]
async fn acl_user_right_wrong_password_and_unknown_user() -> TestResult {
    let server =
        RedisServer::start(RedisOptions::new().config("user alice on >alice:pw ~* +@all").config("user default off"))?;

    let mut conn = connect(&server, "alice:alice:pw").await?;
    let whoami = conn.query(&Cmd::from_args(["ACL", "WHOAMI"])).await?;
    assert_eq!(whoami.as_str(), Some("alice"));

    let err = connect(&server, "alice:wrong").await.expect_err("wrong password");
    let msg = err.to_string();
    assert!(matches!(err, RespError::WrongUserOrPassword { .. }), "{msg}");
    assert!(msg.contains("user `alice`") && msg.contains("wrong password"), "{msg}");

    let err = connect(&server, "bob:alice:pw").await.expect_err("unknown user");
    let msg = err.to_string();
    assert!(msg.contains("user `bob`") && msg.contains("unknown"), "{msg}");
    assert!(msg.contains(&server.addr()), "{msg}");

    // With the default user off, no credentials means no access.
    let err = connect(&server, "").await.expect_err("default user off");
    assert!(matches!(err, RespError::AuthRequired { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn refused_connection_names_the_address() -> TestResult {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let err = Connection::connect(&addr, &opts("")).await.expect_err("nothing listens there");
    let msg = err.to_string();
    assert!(matches!(err, RespError::ConnectRefused { .. }), "{msg}");
    assert!(msg.contains("refused") && msg.contains(&addr), "{msg}");
    Ok(())
}

#[tokio::test]
async fn an_http_server_does_not_speak_resp() -> TestResult {
    let addr = fake_peer(|mut socket| async move {
        read_until(&mut socket, b"\r\n").await;
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    })
    .await?;
    let err = Connection::connect(&addr, &opts("")).await.expect_err("HTTP");
    let msg = err.to_string();
    assert!(msg.contains(&format!("peer at {addr} does not speak RESP: got \"HTTP/1.1 400")), "{msg}");
    Ok(())
}

#[tokio::test]
async fn random_bytes_on_connect_do_not_speak_resp() -> TestResult {
    // A TLS alert, as a TLS-only port would send: binary, so it is escaped.
    let addr = fake_peer(|mut socket| async move {
        let _ = socket.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]).await;
        stay_silent(socket).await;
    })
    .await?;
    let err = Connection::connect(&addr, &opts("pw")).await.expect_err("binary garbage");
    let msg = err.to_string();
    assert!(matches!(err, RespError::NotResp { .. }), "{msg}");
    assert!(msg.contains("\\x15\\x03\\x03"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn read_timeout_names_the_command_and_poisons_the_connection() -> TestResult {
    let addr = fake_peer(|mut socket| async move {
        read_until(&mut socket, b"PING\r\n").await;
        let _ = socket.write_all(b"+PONG\r\n").await;
        stay_silent(socket).await;
    })
    .await?;
    let mut conn = Connection::connect(&addr, &opts("")).await?;
    conn.set_read_timeout(Some(Duration::from_millis(200)));
    let err = conn.query(&Cmd::from_args(["HGETALL", "some-key"])).await.expect_err("silent peer");
    let msg = err.to_string();
    assert!(matches!(err, RespError::Timeout { .. }), "{msg}");
    assert!(msg.contains("HGETALL") && msg.contains(&addr) && msg.contains("200ms"), "{msg}");
    assert!(!msg.contains("some-key"), "keys stay out of messages: {msg}");

    // A late reply would now be taken for the next command's; refuse.
    let err = conn.query(&Cmd::new("PING")).await.expect_err("poisoned");
    assert!(matches!(err, RespError::Unusable { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn silent_peer_during_handshake_times_out_naming_auth() -> TestResult {
    let addr = fake_peer(stay_silent).await?;
    let options = ConnectOptions { connect_timeout: Duration::from_millis(300), ..opts("alice:pw") };
    let err = Connection::connect(&addr, &options).await.expect_err("silent peer");
    let msg = err.to_string();
    assert!(matches!(err, RespError::Timeout { .. }), "{msg}");
    assert!(msg.contains("AUTH") && !msg.contains("pw"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn peer_closing_mid_command_says_so() -> TestResult {
    let addr = fake_peer(|mut socket| async move {
        read_until(&mut socket, b"PING\r\n").await;
        let _ = socket.write_all(b"+PONG\r\n").await;
        read_until(&mut socket, b"DBSIZE\r\n").await;
    })
    .await?;
    let mut conn = Connection::connect(&addr, &opts("")).await?;
    let err = conn.query(&Cmd::new("DBSIZE")).await.expect_err("closed");
    let msg = err.to_string();
    assert!(matches!(err, RespError::Closed { .. }), "{msg}");
    assert!(msg.contains("closed by") && msg.contains(&addr) && msg.contains("DBSIZE"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn server_shutdown_is_a_closed_connection() -> TestResult {
    let server = RedisServer::start(RedisOptions::new())?;
    let mut conn = connect(&server, "").await?;
    let addr = server.addr();
    drop(server);
    let err = conn.query(&Cmd::new("PING")).await.expect_err("server gone");
    assert!(matches!(err, RespError::Closed { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
    Ok(())
}

#[tokio::test]
async fn into_inner_hands_over_the_socket_and_unread_bytes() -> TestResult {
    let addr = fake_peer(|mut socket| async move {
        read_until(&mut socket, b"PING\r\n").await;
        // Two replies in one segment: the second was never asked for by the
        // connection and must come back with the socket.
        let _ = socket.write_all(b"+PONG\r\n+FULLRESYNC abc 0\r\n").await;
        read_until(&mut socket, b"hello").await;
        let _ = socket.write_all(b"world").await;
        stay_silent(socket).await;
    })
    .await?;
    let conn = Connection::connect(&addr, &opts("")).await?;
    let (mut stream, buffered) = conn.into_inner();
    assert_eq!(&buffered[..], b"+FULLRESYNC abc 0\r\n");
    stream.write_all(b"hello").await?;
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).await?;
    assert_eq!(&reply, b"world");
    Ok(())
}

#[tokio::test]
async fn works_through_nutcracker() -> TestResult {
    let shards = [RedisServer::start(RedisOptions::new())?, RedisServer::start(RedisOptions::new())?];
    let proxy = Nutcracker::start(&shards.iter().map(RedisServer::addr).collect::<Vec<_>>())?;
    let mut conn = Connection::connect(&proxy.addr(), &opts("")).await?;
    let sets: Vec<Cmd> = (0..100).map(|i| Cmd::new("SET").arg(format!("key:{i}")).arg(i.to_string())).collect();
    assert!(conn.pipeline(&sets).await?.iter().all(Value::is_ok));
    // The proxy spread the keys over both shards.
    let mut total = 0;
    for shard in &shards {
        let keys: i64 = shard.redis_cli(&["DBSIZE"])?.parse()?;
        assert!(keys > 0, "shard {} got no keys", shard.addr());
        total += keys;
    }
    assert_eq!(total, 100);
    Ok(())
}
