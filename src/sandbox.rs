//! The demo sandbox: a small twemproxy deployment on loopback, made of real
//! servers, for `shardsync demo` — two Redis masters each with a replica,
//! a nutcracker pool in front of the masters, and an empty destination
//! that wants an ACL user (`admin:<password>`, as the seed's destination).
//!
//! Every process runs from `redis-server` and `nutcracker` on the PATH (or
//! the usual sbin directories), in its own directory under one temporary
//! directory, in its own process group (a Ctrl-C on the terminal reaches
//! shardsync, which stops them in order, not them directly). Dropping the
//! [`Sandbox`] kills them all and removes the directory, which happens on a
//! normal exit, an error and a panic alike.
//!
//! [`load_sample`] fills it through the proxy as clients would, and
//! [`write_load`] keeps a light stream of writes going.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::resp::{Cmd, ConnectOptions, Connection};

/// The destination's ACL user and password (the seed's form `user:password`).
pub const DEST_USER: &str = "admin";
pub const DEST_PASSWORD: &str = "Rp829dlwa";
/// The nutcracker pool's name.
pub const POOL: &str = "demo";

/// How long a process may take to accept connections: generous, as the
/// demo may start on a busy 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{program} was not found on PATH nor in /usr/sbin, /usr/local/bin, /usr/local/sbin: install it (`make deps` does, or apt-get install {package})")]
    Missing { program: &'static str, package: &'static str },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{what} did not start: {why}\n{log}")]
    NotReady { what: String, why: String, log: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Io { what, source }
}

/// A process of the sandbox; killed and reaped when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // An error means it is already gone, which is the goal.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running sandbox. Field order is drop order: the processes go
/// before their directory.
pub struct Sandbox {
    procs: Vec<Proc>,
    dir: tempfile::TempDir,
    /// `127.0.0.1:<port>` of each master, in pool order (`server1`, `server2`).
    pub masters: Vec<String>,
    pub replicas: Vec<String>,
    pub destination: String,
    /// The nutcracker listener clients use.
    pub proxy: String,
    pub nutcracker_yml: PathBuf,
}

/// How the masters replicate: `Disk` announces the RDB's size (the
/// dashboard's progress bar), `Diskless` streams it from the fork
/// (`$EOF:` framing) after waiting `delay_secs` for other replicas (Redis's
/// default is 5). The demo uses disk-based masters; the soak one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterSync {
    Disk,
    Diskless { delay_secs: u32 },
}

impl MasterSync {
    fn config(self) -> Vec<String> {
        match self {
            MasterSync::Disk => vec!["repl-diskless-sync no".to_owned()],
            MasterSync::Diskless { delay_secs } => {
                vec!["repl-diskless-sync yes".to_owned(), format!("repl-diskless-sync-delay {delay_secs}")]
            }
        }
    }
}

impl Sandbox {
    /// Starts everything with two disk-based masters; `say` hears about
    /// each step. Stops early (and cleans up) when `cancel` fires between steps.
    pub fn start(say: &mut dyn FnMut(&str), cancel: &CancellationToken) -> Result<Sandbox, SandboxError> {
        Self::start_with(&[MasterSync::Disk, MasterSync::Disk], say, cancel)
    }

    /// Starts one master (with its replica) per entry of `masters`.
    pub fn start_with(
        masters: &[MasterSync],
        say: &mut dyn FnMut(&str),
        cancel: &CancellationToken,
    ) -> Result<Sandbox, SandboxError> {
        let redis =
            find("redis-server").ok_or(SandboxError::Missing { program: "redis-server", package: "redis-server" })?;
        let nutcracker =
            find("nutcracker").ok_or(SandboxError::Missing { program: "nutcracker", package: "nutcracker" })?;
        let dir = tempfile::Builder::new()
            .prefix("shardsync-demo-")
            .tempdir()
            .map_err(io_err("creating the sandbox directory"))?;
        let mut sb = Sandbox {
            procs: Vec::new(),
            dir,
            masters: Vec::new(),
            replicas: Vec::new(),
            destination: String::new(),
            proxy: String::new(),
            nutcracker_yml: PathBuf::new(),
        };
        say(&format!("sandbox in {}", sb.dir.path().display()));
        let stopped =
            || SandboxError::NotReady { what: "the sandbox".into(), why: "interrupted".into(), log: String::new() };
        for (i, sync) in (1..).zip(masters) {
            if cancel.is_cancelled() {
                return Err(stopped());
            }
            let master = sb.redis(&redis, &format!("master{i}"), &sync.config())?;
            say(&format!("master server{i}     redis-server on {master}"));
            let replica =
                sb.redis(&redis, &format!("replica{i}"), &[format!("replicaof {}", master.replace(':', " "))])?;
            say(&format!("  its replica        redis-server on {replica}"));
            sb.masters.push(master);
            sb.replicas.push(replica);
        }
        if cancel.is_cancelled() {
            return Err(stopped());
        }
        // The seed's destination: an ACL user, no default user.
        let dest = sb.redis(
            &redis,
            "destination",
            &[format!("user {DEST_USER} on >{DEST_PASSWORD} ~* &* +@all"), "user default off".into()],
        )?;
        say(&format!("destination        redis-server on {dest} (user {DEST_USER})"));
        sb.destination = dest;
        if cancel.is_cancelled() {
            return Err(stopped());
        }
        let proxy = sb.nutcracker(&nutcracker)?;
        say(&format!("twemproxy          nutcracker on {proxy}, pool `{POOL}` over the two masters"));
        sb.proxy = proxy;
        Ok(sb)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts one redis-server in `<dir>/<name>/` with `extra` config
    /// lines; its address.
    fn redis(&mut self, bin: &Path, name: &str, extra: &[String]) -> Result<String, SandboxError> {
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let mut last = None;
        // Another process may take the port between our probe and the bind.
        for _ in 0..5 {
            let port = free_port().map_err(io_err("finding a free loopback port"))?;
            let mut conf = vec![
                "bind 127.0.0.1".to_owned(),
                format!("port {port}"),
                format!("dir {}", dir.display()),
                "save \"\"".to_owned(),
                "appendonly no".to_owned(),
                "logfile redis.log".to_owned(),
            ];
            conf.extend(extra.iter().cloned());
            let conf_path = dir.join("redis.conf");
            fs::write(&conf_path, conf.join("\n") + "\n")
                .map_err(io_err(format!("writing {}", conf_path.display())))?;
            let mut cmd = Command::new(bin);
            cmd.arg(&conf_path);
            match self.spawn(cmd, &dir, &format!("redis-server {name}"), port, "redis.log") {
                Ok(()) => return Ok(format!("127.0.0.1:{port}")),
                Err(SandboxError::NotReady { log, .. }) if log.contains("Address already in use") => {
                    last = Some(log);
                }
                Err(e) => return Err(e),
            }
        }
        Err(SandboxError::NotReady {
            what: format!("redis-server {name}"),
            why: "no free port".into(),
            log: last.unwrap_or_default(),
        })
    }

    fn nutcracker(&mut self, bin: &Path) -> Result<String, SandboxError> {
        let dir = self.dir.path().join("nutcracker");
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let port = free_port().map_err(io_err("finding a free loopback port"))?;
        let stats = free_port().map_err(io_err("finding a free loopback port"))?;
        let mut yml = format!(
            "{POOL}:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  \
             auto_eject_hosts: false\n  timeout: 4000\n  servers:\n"
        );
        for (i, m) in self.masters.iter().enumerate() {
            yml.push_str(&format!("   - {m}:1 server{}\n", i + 1));
        }
        let yml_path = dir.join("nutcracker.yml");
        fs::write(&yml_path, yml).map_err(io_err(format!("writing {}", yml_path.display())))?;
        let mut cmd = Command::new(bin);
        // The stats port defaults to 22222 on every interface: keep it on loopback.
        cmd.arg("-c").arg(&yml_path).arg("-o").arg(dir.join("nutcracker.log"));
        cmd.args(["-a", "127.0.0.1", "-s", &stats.to_string()]);
        cmd.arg("-p").arg(dir.join("nutcracker.pid"));
        self.spawn(cmd, &dir, "nutcracker", port, "nutcracker.log")?;
        self.nutcracker_yml = yml_path;
        Ok(format!("127.0.0.1:{port}"))
    }

    fn spawn(&mut self, mut cmd: Command, dir: &Path, what: &str, port: u16, log: &str) -> Result<(), SandboxError> {
        let ping = !what.starts_with("nutcracker");
        let out = fs::File::create(dir.join("stdout.log")).map_err(io_err(format!("creating {what}'s output file")))?;
        let err = out.try_clone().map_err(io_err(format!("creating {what}'s output file")))?;
        // Its own process group: a terminal's Ctrl-C goes to shardsync, which
        // stops the sandbox in order.
        cmd.current_dir(dir).stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().map_err(io_err(format!("starting {what}")))?;
        let mut proc = Proc { child };
        let logs = || {
            [log, "stdout.log"]
                .iter()
                .filter_map(|f| fs::read_to_string(dir.join(f)).ok())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Err(SandboxError::NotReady {
                    what: what.into(),
                    why: format!("exited with {status}"),
                    log: logs(),
                });
            }
            if accepts(port, ping) {
                self.procs.push(proc);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SandboxError::NotReady {
                    what: what.into(),
                    why: format!("port {port} not open after {READY_TIMEOUT:?}"),
                    log: logs(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// The port accepts a connection and, with `ping`, answers a RESP PING
/// with anything (`-NOAUTH` proves a server is up as well as `+PONG`).
/// twemproxy forwards PING to a backend, so it is only asked to accept.
fn accepts(port: u16, ping: bool) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    if !ping {
        return true;
    }
    let mut first = [0u8; 1];
    s.set_read_timeout(Some(Duration::from_millis(500))).is_ok()
        && s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && s.read_exact(&mut first).is_ok()
        && matches!(first[0], b'+' | b'-')
}

/// `program` on PATH, else in the sbin directories Debian puts daemons in
/// (PATH often lacks them for non-root users).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Writes `keys` keys of the common types through the proxy, in pipelined
/// batches: strings (some with a TTL), hashes, lists, sets and sorted sets,
/// spread over both masters by twemproxy's hashing. Returns how many
/// commands were sent.
pub async fn load_sample(proxy: &str, keys: u64) -> Result<u64, String> {
    let mut conn =
        Connection::connect(proxy, &ConnectOptions::default()).await.map_err(|e| format!("the proxy {proxy}: {e}"))?;
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(500);
    for i in 0..keys {
        let cmd = match i % 10 {
            0..=4 => Cmd::new("SET")
                .arg(format!("user:{i}"))
                .arg(format!("{{\"id\":{i},\"name\":\"user {i}\",\"plan\":\"basic\"}}")),
            5 => Cmd::new("SET").arg(format!("session:{i}")).arg(format!("token-{i:08x}")).arg("EX").arg("86400"),
            6 => Cmd::new("HSET")
                .arg(format!("profile:{i}"))
                .arg("name")
                .arg(format!("user {i}"))
                .arg("visits")
                .arg((i % 97).to_string())
                .arg("country")
                .arg(["cn", "de", "us", "br"][(i % 4) as usize]),
            7 => Cmd::new("RPUSH").arg(format!("orders:{}", i % 500)).arg(format!("order-{i}")),
            8 => Cmd::new("SADD").arg(format!("tags:{}", i % 200)).arg(format!("tag-{}", i % 37)),
            _ => {
                Cmd::new("ZADD").arg(format!("board:{}", i % 50)).arg((i % 1000).to_string()).arg(format!("player-{i}"))
            }
        };
        batch.push(cmd);
        if batch.len() == batch.capacity() || i + 1 == keys {
            let replies = conn.pipeline(&batch).await.map_err(|e| format!("loading through {proxy}: {e}"))?;
            if let Some(err) = replies.iter().find_map(|v| v.as_error()) {
                return Err(format!("loading through {proxy}: the proxy answered {err}"));
            }
            sent += batch.len() as u64;
            batch.clear();
        }
    }
    Ok(sent)
}

/// A light, steady write load through the proxy (about `per_sec` commands
/// a second: counters, a capped event list, last-seen times), until
/// cancelled. A failed connection is retried after a second.
pub async fn write_load(proxy: String, per_sec: u32, cancel: CancellationToken) {
    let mut conn: Option<Connection> = None;
    let mut n: u64 = 0;
    let every = Duration::from_millis(100);
    let per_tick = (per_sec / 10).max(1) as u64;
    loop {
        if conn.is_none() {
            conn = Connection::connect(&proxy, &ConnectOptions::default()).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            let mut cmds = Vec::new();
            for _ in 0..per_tick {
                n += 1;
                cmds.push(match n % 4 {
                    0 => Cmd::new("INCR").arg(format!("counter:{}", n % 20)),
                    1 => Cmd::new("SET").arg(format!("last_seen:{}", n % 300)).arg(n.to_string()),
                    2 => Cmd::new("LPUSH").arg(format!("events:{}", n % 10)).arg(format!("event-{n}")),
                    _ => Cmd::new("LTRIM").arg(format!("events:{}", n % 10)).arg("0").arg("99"),
                });
            }
            if c.pipeline(&cmds).await.is_err() {
                conn = None;
            }
        }
        let wait = if conn.is_some() { every } else { Duration::from_secs(1) };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
