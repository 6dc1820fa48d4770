//! Test harness: real `redis-server` and `nutcracker` processes on loopback,
//! each in its own temporary directory, killed when their guard drops.
//!
//! A test asks for a server with [`RedisServer::start`] (options: binary,
//! extra config lines, a password the [`RedisServer::redis_cli`] helper then
//! uses), gets back a guard exposing `addr()`, `port()` and `dir()`, and the
//! guard kills the process and removes the directory even when the test
//! panics. [`Nutcracker::start`] does the same for a twemproxy pool in front
//! of such servers. Readiness is checked over the socket with a raw PING, so
//! the harness does not depend on the client code it helps to test.
//!
//! Everything returns `io::Result` with messages naming the binary, the
//! port and the server's own log, so a missing binary fails loudly.

// Each integration test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

pub mod cluster;
pub mod compare;
pub mod harness;
pub mod task;
pub mod wait;

use std::{
    env, fs,
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// How long a freshly started server may take to answer; generous because
/// CI machines with 2 cores run several test binaries at once.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Attempts with a new port when another process grabbed ours between the
/// probe bind and the server's own bind.
const PORT_ATTEMPTS: usize = 5;

/// Environment variable naming a Redis 6 `redis-server` binary.
pub const REDIS6_ENV: &str = "SHARDSYNC_REDIS6_BIN";
/// Environment variable naming the `nutcracker` binary.
pub const NUTCRACKER_ENV: &str = "SHARDSYNC_NUTCRACKER_BIN";

/// A loopback port that was free a moment ago (bind port 0, read, release).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A free loopback port `p` at most 55535 with `p + 10000` free too (a
/// cluster node's bus port).
pub fn free_cluster_port() -> io::Result<u16> {
    for _ in 0..1000 {
        let port = free_port()?;
        let candidate = if port <= 55535 { port } else { port - 20000 };
        let bind = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p));
        if let (Ok(_a), Ok(_b)) = (bind(candidate), bind(candidate + 10000)) {
            return Ok(candidate);
        }
    }
    Err(io::Error::other("no free port pair for a cluster node"))
}

/// How to start a `redis-server`.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    bin: PathBuf,
    config: Vec<String>,
    password: Option<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions { bin: PathBuf::from("redis-server"), config: Vec::new(), password: None }
    }
}

impl RedisOptions {
    /// `redis-server` from PATH, no extra config.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Redis 6 binary: `$SHARDSYNC_REDIS6_BIN`, else
    /// `<crate>/.deps/redis-6.0.9/redis-server`. An error if neither exists.
    pub fn redis6() -> io::Result<Self> {
        let default = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/redis-6.0.9/redis-server");
        let bin = env::var_os(REDIS6_ENV).map_or(default, PathBuf::from);
        if !bin.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("Redis 6 binary not found at {}: build it there or set {REDIS6_ENV}", bin.display()),
            ));
        }
        Ok(Self::default().bin(bin))
    }

    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = bin.into();
        self
    }

    /// One redis.conf line, e.g. `user alice on >pw ~* +@all`.
    pub fn config(mut self, line: impl Into<String>) -> Self {
        self.config.push(line.into());
        self
    }

    /// Sets `requirepass`; `redis_cli` then authenticates with it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
}

/// A running `redis-server`; killed on drop, then its directory removed.
#[derive(Debug)]
pub struct RedisServer {
    // Field order is drop order: the process dies before its directory goes.
    child: ChildGuard,
    port: u16,
    dir: TempDir,
    password: Option<String>,
    bin: PathBuf,
}

impl RedisServer {
    pub fn start(opts: RedisOptions) -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("shardsync-redis-").tempdir()?;
        let mut last_error = None;
        // A cluster node also listens on its port + 10000 (the cluster bus),
        // so its port must be at most 55535 and that one free too.
        let cluster = opts.config.iter().any(|l| l.trim() == "cluster-enabled yes");
        for _ in 0..PORT_ATTEMPTS {
            let port = if cluster { free_cluster_port()? } else { free_port()? };
            let mut conf = vec![
                "bind 127.0.0.1".to_owned(),
                format!("port {port}"),
                format!("dir {}", dir.path().display()),
                "save \"\"".to_owned(),
                "appendonly no".to_owned(),
                "daemonize no".to_owned(),
                "logfile redis.log".to_owned(),
            ];
            if let Some(password) = &opts.password {
                conf.push(format!("requirepass {password}"));
            }
            conf.extend(opts.config.iter().cloned());
            let conf_path = dir.path().join("redis.conf");
            fs::write(&conf_path, conf.join("\n") + "\n")?;

            let mut child = ChildGuard(spawn_logged(Command::new(&opts.bin).arg(&conf_path), &opts.bin, dir.path())?);
            match wait_ready(&mut child.0, port, true) {
                Ok(()) => {
                    return Ok(RedisServer { child, port, dir, password: opts.password.clone(), bin: opts.bin.clone() })
                }
                Err(e) => {
                    drop(child);
                    let log = read_logs(dir.path(), REDIS_LOGS);
                    let retry = log.contains("Address already in use");
                    last_error = Some(io::Error::new(
                        e.kind(),
                        format!("redis-server ({}) on port {port}: {e}\n{log}", opts.bin.display()),
                    ));
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// `redis-server` from PATH with extra config lines.
    pub fn with_config(lines: &[&str]) -> io::Result<RedisServer> {
        let opts = lines.iter().fold(RedisOptions::new(), |opts, line| opts.config(*line));
        Self::start(opts)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `redis-cli -p <port> ARGS...` (authenticated if the server was
    /// started with a password) and returns its trimmed stdout.
    pub fn redis_cli(&self, args: &[&str]) -> io::Result<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            // The environment variable, unlike -a, prints no warning.
            cmd.env("REDISCLI_AUTH", password);
        }
        let out = cmd.args(args).stdin(Stdio::null()).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli {args:?} against port {} failed ({}): {stdout} {}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(stdout)
    }

    /// The server's log and captured output, for failure messages.
    pub fn logs(&self) -> String {
        read_logs(self.dir.path(), REDIS_LOGS)
    }

    /// Sends the server `signal` (`-STOP`, `-CONT`…).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill").args([signal, &self.child.0.id().to_string()]).status();
    }

    /// Kills the server with SIGKILL, for good.
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Kills the server with SIGKILL (a crash: it keeps only what it had
    /// persisted), stays down for `downtime`, then starts it again on the
    /// same port, directory and configuration.
    pub fn crash_and_restart(&mut self, downtime: Duration) -> io::Result<()> {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        // Held while down, so that no other test's server or client takes
        // the port meanwhile.
        let hold = TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).ok();
        thread::sleep(downtime);
        drop(hold);
        let conf_path = self.dir.path().join("redis.conf");
        let mut child = ChildGuard(spawn_logged(Command::new(&self.bin).arg(&conf_path), &self.bin, self.dir.path())?);
        wait_ready(&mut child.0, self.port, true).map_err(|e| {
            io::Error::new(e.kind(), format!("restarting redis-server on port {}: {e}\n{}", self.port, self.logs()))
        })?;
        self.child = child;
        Ok(())
    }
}

/// A running `nutcracker` (twemproxy) with one pool; killed on drop.
#[derive(Debug)]
pub struct Nutcracker {
    child: ChildGuard,
    port: u16,
    stats_port: u16,
    dir: TempDir,
}

/// How to start `nutcracker`.
#[derive(Clone, Debug)]
pub struct NutcrackerOptions {
    bin: PathBuf,
    pool: String,
    servers: Vec<(String, String)>,
    pool_config: Vec<String>,
}

impl NutcrackerOptions {
    /// A pool named `alpha` over `servers` (`host:port`), named `server1`,
    /// `server2`... in order, as in the seed's twemproxy config.
    pub fn new(servers: &[String]) -> Self {
        let bin = env::var_os(NUTCRACKER_ENV)
            .map(PathBuf::from)
            .or_else(|| find_on_path("nutcracker"))
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/nutcracker"));
        NutcrackerOptions {
            bin,
            pool: "alpha".to_owned(),
            servers: servers.iter().enumerate().map(|(i, addr)| (addr.clone(), format!("server{}", i + 1))).collect(),
            pool_config: Vec::new(),
        }
    }

    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = bin.into();
        self
    }

    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pool = name.into();
        self
    }

    /// One extra `key: value` line in the pool, e.g. `redis_auth: secret`.
    pub fn pool_config(mut self, line: impl Into<String>) -> Self {
        self.pool_config.push(line.into());
        self
    }
}

impl Nutcracker {
    /// A pool over `servers` with defaults (see [`NutcrackerOptions::new`]).
    pub fn start(servers: &[String]) -> io::Result<Nutcracker> {
        Self::start_with(NutcrackerOptions::new(servers))
    }

    pub fn start_with(opts: NutcrackerOptions) -> io::Result<Nutcracker> {
        let dir = tempfile::Builder::new().prefix("shardsync-nutcracker-").tempdir()?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let (port, stats_port) = (free_port()?, free_port()?);
            let conf_path = dir.path().join("nutcracker.yml");
            fs::write(&conf_path, Self::render(&opts, port))?;
            // The stats port defaults to 22222 on all interfaces, which two
            // proxies in parallel tests would fight over.
            let mut child = ChildGuard(spawn_logged(
                Command::new(&opts.bin)
                    .arg("-c")
                    .arg(&conf_path)
                    .arg("-o")
                    .arg(dir.path().join("nutcracker.log"))
                    .args(["-a", "127.0.0.1", "-s", &stats_port.to_string()])
                    .arg("-p")
                    .arg(dir.path().join("nutcracker.pid")),
                &opts.bin,
                dir.path(),
            )?);
            // twemproxy answers PING only once a backend does, so readiness
            // is the listening socket alone.
            match wait_ready(&mut child.0, port, false) {
                Ok(()) => return Ok(Nutcracker { child, port, stats_port, dir }),
                Err(e) => {
                    drop(child);
                    let log = read_logs(dir.path(), NUTCRACKER_LOGS);
                    let retry = log.contains("Address already in use");
                    last_error = Some(io::Error::new(
                        e.kind(),
                        format!("nutcracker ({}) on port {port}: {e}\n{log}", opts.bin.display()),
                    ));
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("nutcracker did not start")))
    }

    fn render(opts: &NutcrackerOptions, port: u16) -> String {
        let mut yml = format!(
            "{}:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n  \
             redis: true\n  auto_eject_hosts: false\n  timeout: 4000\n  \
             server_retry_timeout: 2000\n",
            opts.pool
        );
        for line in &opts.pool_config {
            yml.push_str(&format!("  {line}\n"));
        }
        yml.push_str("  servers:\n");
        for (addr, name) in &opts.servers {
            yml.push_str(&format!("   - {addr}:1 {name}\n"));
        }
        yml
    }

    /// `127.0.0.1:<port>` of the pool's listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stats_port(&self) -> u16 {
        self.stats_port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The nutcracker.yml it runs with, e.g. for `[twemproxy] config = ...`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nutcracker.yml")
    }

    pub fn logs(&self) -> String {
        read_logs(self.dir.path(), NUTCRACKER_LOGS)
    }
}

const REDIS_LOGS: &[&str] = &["redis.log", "stdout.log"];
const NUTCRACKER_LOGS: &[&str] = &["nutcracker.log", "stdout.log"];

/// Kills and reaps its process on drop, so no test leaves servers behind,
/// whether it passes, fails or panics.
#[derive(Debug)]
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Errors mean the process is already gone, which is the goal.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns with stdout and stderr in `<dir>/stdout.log`: config errors are
/// printed there before the server opens its own log.
fn spawn_logged(cmd: &mut Command, bin: &Path, dir: &Path) -> io::Result<Child> {
    let out = fs::File::create(dir.join("stdout.log"))?;
    let err = out.try_clone()?;
    cmd.current_dir(dir).stdin(Stdio::null()).stdout(out).stderr(err).spawn().map_err(|e| {
        io::Error::new(e.kind(), format!("cannot start {}: {e} (is it installed and on PATH?)", bin.display()))
    })
}

/// Polls until `port` accepts a connection (and, with `ping`, answers a
/// RESP PING with any reply: `-NOAUTH` also proves the server is up), the
/// child exits, or [`READY_TIMEOUT`] passes.
fn wait_ready(child: &mut Child, port: u16, ping: bool) -> io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("exited early with {status}")));
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, POLL_INTERVAL * 10) {
            if !ping {
                return Ok(());
            }
            if answers_ping(&mut stream) {
                // Another process may have taken the port (a test server
                // elsewhere, between a crash and the restart): only ours
                // counts, and one that answers for us is an error, not a
                // server to test against.
                return match process_id(&mut stream) {
                    Some(pid) if pid != child.id() => Err(io::Error::other(format!(
                        "port {port} is answered by process {pid}, not by the server started (process {})",
                        child.id()
                    ))),
                    _ => Ok(()),
                };
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("not ready after {READY_TIMEOUT:?}")));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Any reply but `-LOADING`: a server loading its AOF or RDB after a
/// restart answers, but refuses every command until it is done.
fn answers_ping(stream: &mut TcpStream) -> bool {
    let mut head = [0u8; 8];
    stream.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && stream.read_exact(&mut head[..1]).is_ok()
        && match head[0] {
            b'+' => true,
            b'-' => stream.read_exact(&mut head[1..]).is_ok() && &head != b"-LOADING",
            _ => false,
        }
}

/// The `process_id` of `INFO server`; `None` when the server does not say
/// (it wants a password first).
fn process_id(stream: &mut TcpStream) -> Option<u32> {
    stream.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    const FIELD: &[u8] = b"process_id:";
    loop {
        if reply.first() == Some(&b'-') {
            return None;
        }
        // Its whole line has arrived.
        if let Some(at) = reply.windows(FIELD.len()).position(|w| w == FIELD) {
            if let Some(end) = reply[at..].iter().position(|&b| b == b'\r') {
                let value = String::from_utf8_lossy(&reply[at + FIELD.len()..at + end]).into_owned();
                return value.trim().parse().ok();
            }
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || reply.len() > 64 << 10 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
    }
}

fn read_logs(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|name| {
            let text = fs::read_to_string(dir.join(name)).ok()?;
            Some(format!("--- {name} ---\n{text}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}
