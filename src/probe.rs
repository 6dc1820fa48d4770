//! What one server is: connect, authenticate, and read the facts the
//! precheck and the wizard show (version, role, memory, keyspace,
//! replication settings), or say in one sentence why that failed.
//!
//! One `INFO` (every default section, read by [`crate::resp::info`])
//! carries most facts; a pipelined `CONFIG GET` and `COMMAND INFO` carry the
//! rest. Those two are often
//! renamed or refused on managed services, so each fact they give is an
//! `Option`: unknown is not the same as bad.
//!
//! A twemproxy (nutcracker) port answers `PING` but closes the connection
//! on `INFO` and every other admin command; that is how a proxy given where
//! a Redis-Server is expected is recognised and explained.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::Secret;
use crate::dest::{RedisVersion, ServerVersion};
pub use crate::human::human_bytes;
pub use crate::resp::info::DbKeys;
use crate::resp::info::{commandstats, Info};
use crate::resp::{Cmd, ConnectOptions, Connection, RespError, Value};

/// How long a precheck or a wizard test waits to connect: long enough for a
/// distant host, short enough that a dead one does not hold the screen.
pub const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A server's role in replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica { master: String, link_up: bool },
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Master => f.write_str("master"),
            Role::Replica { master, .. } => write!(f, "replica of {master}"),
        }
    }
}

/// `redis_mode` (Valkey 8+: `server_mode`) of `INFO server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    Standalone,
    Cluster,
    Sentinel,
}

impl ServerMode {
    /// From `INFO server`. Valkey 8 and later name the field `server_mode`
    /// (and still report a `redis_version`), so a Valkey cluster node read
    /// as `redis_mode` alone passed for a standalone server.
    fn from_info(info: &Info) -> ServerMode {
        match info.get("redis_mode").or_else(|| info.get("server_mode")) {
            Some("cluster") => ServerMode::Cluster,
            Some("sentinel") => ServerMode::Sentinel,
            _ => ServerMode::Standalone,
        }
    }
}

impl fmt::Display for ServerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerMode::Standalone => "standalone",
            ServerMode::Cluster => "cluster",
            ServerMode::Sentinel => "sentinel",
        })
    }
}

/// `client-output-buffer-limit` for replicas: the master drops a replica
/// whose pending output passes `hard`, or stays over `soft` for `soft_secs`
/// (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_secs: u64,
}

/// What a server said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFacts {
    pub addr: String,
    /// `redis_version` as the server prints it (`7.0.15`; Valkey says 7.2.4).
    pub version: String,
    /// The engine and its own version (`Redis 7.0.15`, `Valkey 9.1.2`).
    pub server: ServerVersion,
    pub role: Role,
    pub mode: ServerMode,
    pub used_memory: u64,
    /// `used_memory_dataset` (Redis 4.0+): the data without overheads, the
    /// best estimate of what a copy writes elsewhere.
    pub used_memory_dataset: Option<u64>,
    /// 0: no limit.
    pub maxmemory: u64,
    pub maxmemory_policy: Option<String>,
    /// `CONFIG GET databases`; `None` when CONFIG is refused.
    pub databases: Option<u32>,
    pub keyspace: BTreeMap<u32, DbKeys>,
    pub master_repl_offset: Option<u64>,
    pub repl_backlog_size: Option<u64>,
    /// `CONFIG GET client-output-buffer-limit`, the replica class.
    pub replica_buffer_limit: Option<BufferLimit>,
    /// Whether `PSYNC` is a command here (`COMMAND INFO psync`): `false`
    /// when renamed or disabled, `None` when `COMMAND` itself is unavailable.
    pub psync_command: Option<bool>,
    /// `replica-read-only` (or `slave-read-only`) for a replica.
    pub read_only: Option<bool>,
    /// The host's RAM (`total_system_memory`, Redis 3.2+).
    pub total_system_memory: Option<u64>,
    /// Connect and authenticate time.
    pub connect_ms: u64,
    /// `INFO commandstats`: calls per command since the server started
    /// (lower case, `function|load` for subcommands).
    pub commands_used: BTreeMap<String, u64>,
    /// `MODULE LIST`: the modules loaded (name, version); `None` when the
    /// server has no modules (before 4.0) or refuses the command.
    pub modules: Option<Vec<(String, i64)>>,
}

impl ServerFacts {
    /// The parsed version; `0.0.0` when unparsable (then every "at least"
    /// test fails, which is the safe side).
    pub fn redis_version(&self) -> RedisVersion {
        RedisVersion::parse(&self.version).unwrap_or(RedisVersion::new(0, 0, 0))
    }

    /// Keys over every DB.
    pub fn total_keys(&self) -> u64 {
        self.keyspace.values().map(|d| d.keys).sum()
    }

    /// The data a copy moves: `used_memory_dataset`, else `used_memory`.
    pub fn dataset_bytes(&self) -> u64 {
        self.used_memory_dataset.unwrap_or(self.used_memory)
    }
}

/// Why a server could not be probed, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Connect(RespError),

    #[error(
        "{addr} is a twemproxy (nutcracker) proxy, not a Redis-Server: it answered PING but closed the connection on \
         INFO; give the Redis-Servers from its nutcracker.yml (the `servers:` of the pool) instead"
    )]
    Proxy { addr: String },

    #[error(
        "{addr} refused the connection because of protected mode (no password set, and we do not connect from its \
         loopback interface): set a password (requirepass) on that server, or `CONFIG SET protected-mode no` from the \
         server's own host if the network is private"
    )]
    ProtectedMode { addr: String },

    #[error(
        "{addr} answered INFO without a redis_version: it is not a Redis-Server (a proxy of another kind?); give the \
         address of a Redis-Server itself"
    )]
    NotRedis { addr: String },

    #[error("{addr} refused INFO ({message}): shardsync needs INFO to follow replication; grant it to this user")]
    InfoRefused { addr: String, message: String },

    #[error("{0}")]
    Query(RespError),
}

impl ProbeError {
    /// Whether the address is a proxy rather than a Redis-Server.
    pub fn is_proxy(&self) -> bool {
        matches!(self, ProbeError::Proxy { .. } | ProbeError::NotRedis { .. })
    }

    /// Whether TCP and authentication worked (the failure came later).
    pub fn connected(&self) -> bool {
        !matches!(self, ProbeError::Connect(_) | ProbeError::ProtectedMode { .. })
    }
}

/// Options used to talk to a server for a probe.
pub fn probe_options(password: &Secret) -> ConnectOptions {
    ConnectOptions {
        connect_timeout: PROBE_CONNECT_TIMEOUT,
        read_timeout: Some(Duration::from_secs(10)),
        credentials: password.credentials(),
    }
}

/// Connects to `addr` with `password` and reads what the server is.
pub async fn probe(addr: &str, password: &Secret) -> Result<ServerFacts, ProbeError> {
    probe_with(addr, password, &[]).await
}

/// As [`probe`], with `own_keys` (the tool's own keys, in DB 0: the
/// heartbeat on a source, checkpoints on the destination) left out of the
/// key counts, so they never pass for user data.
pub async fn probe_with(addr: &str, password: &Secret, own_keys: &[String]) -> Result<ServerFacts, ProbeError> {
    let opts = probe_options(password);
    let started = Instant::now();
    let mut conn = connect(addr, &opts).await?;
    let connect_ms = started.elapsed().as_millis() as u64;
    let info = match conn.send(&Cmd::new("INFO")).await {
        Ok(Value::Error(message)) => return Err(ProbeError::InfoRefused { addr: addr.to_owned(), message }),
        Ok(v) => v.into_bytes().unwrap_or_default(),
        Err(RespError::Closed { .. } | RespError::Io { .. }) => return Err(proxy_or(addr, &opts).await),
        Err(e) => return Err(ProbeError::Query(e)),
    };
    let info = Info::parse(&info);
    let Some(version) = info.get("redis_version") else {
        return Err(ProbeError::NotRedis { addr: addr.to_owned() });
    };
    let version = version.to_owned();
    let server =
        ServerVersion::from_info(|name| info.get(name)).unwrap_or(ServerVersion::redis(RedisVersion::new(0, 0, 0)));
    // Answers may be errors (renamed or refused commands): each is read on its own.
    let extra = [
        Cmd::new("CONFIG").arg("GET").arg("databases"),
        Cmd::new("CONFIG").arg("GET").arg("client-output-buffer-limit"),
        Cmd::new("COMMAND").arg("INFO").arg("psync"),
        Cmd::new("CONFIG").arg("GET").arg("maxmemory"),
        Cmd::new("CONFIG").arg("GET").arg("maxmemory-policy"),
    ];
    let mut extra = extra.to_vec();
    if !own_keys.is_empty() {
        extra.push(own_keys.iter().fold(Cmd::new("EXISTS"), |c, k| c.arg(k)));
    }
    // Last, so the indexes above hold with or without the EXISTS.
    extra.push(Cmd::new("MODULE").arg("LIST"));
    extra.push(Cmd::new("INFO").arg("commandstats"));
    let replies = conn.pipeline(&extra).await.map_err(ProbeError::Query)?;
    let commands_used = replies.last().and_then(Value::as_bytes).map(commandstats).unwrap_or_default();
    let modules = replies.get(replies.len().saturating_sub(2)).and_then(module_list);
    let mut keyspace = info.keyspace();
    if let (Some(own), Some(db0)) = (replies.get(5).and_then(Value::as_int), keyspace.get_mut(&0)) {
        db0.keys = db0.keys.saturating_sub(own.max(0) as u64);
        if db0.keys == 0 {
            keyspace.remove(&0);
        }
    }
    let config = |i: usize| replies.get(i).and_then(config_value);
    let role = match info.get("role") {
        Some("slave") | Some("replica") => Role::Replica {
            master: format!("{}:{}", info.get("master_host").unwrap_or("?"), info.get("master_port").unwrap_or("?")),
            link_up: info.get("master_link_status") == Some("up"),
        },
        _ => Role::Master,
    };
    let mode = ServerMode::from_info(&info);
    let read_only = match role {
        Role::Master => None,
        Role::Replica { .. } => {
            let c = Cmd::new("CONFIG").arg("GET").arg("replica-read-only");
            conn.query(&c).await.ok().as_ref().and_then(config_value).map(|v| v == "yes")
        }
    };
    Ok(ServerFacts {
        addr: addr.to_owned(),
        version,
        server,
        role,
        mode,
        used_memory: info.num("used_memory").unwrap_or(0),
        used_memory_dataset: info.num("used_memory_dataset"),
        maxmemory: info.num("maxmemory").or_else(|| config(3).and_then(|v| v.parse().ok())).unwrap_or(0),
        maxmemory_policy: info.get("maxmemory_policy").map(str::to_owned).or_else(|| config(4)),
        databases: config(0).and_then(|v| v.parse().ok()),
        keyspace,
        master_repl_offset: info.num("master_repl_offset"),
        repl_backlog_size: info.num("repl_backlog_size"),
        replica_buffer_limit: config(1).and_then(|v| replica_limit(&v)),
        psync_command: replies.get(2).and_then(command_exists),
        read_only,
        total_system_memory: info.num("total_system_memory").filter(|&m| m > 0),
        connect_ms,
        commands_used,
        modules,
    })
}

/// Connects, turning protected mode's `DENIED` into its own explanation.
pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Connection, ProbeError> {
    match Connection::connect(addr, opts).await {
        Ok(c) => Ok(c),
        Err(RespError::Server { message, .. }) if message.starts_with("DENIED") => {
            Err(ProbeError::ProtectedMode { addr: addr.to_owned() })
        }
        Err(e) => Err(ProbeError::Connect(e)),
    }
}

/// After `INFO` closed the connection: a peer that still answers `PING` on a
/// new connection is a proxy refusing admin commands.
async fn proxy_or(addr: &str, opts: &ConnectOptions) -> ProbeError {
    match Connection::connect(addr, opts).await {
        Ok(mut c) => match c.query(&Cmd::new("PING")).await {
            Ok(Value::Simple(s)) if s == "PONG" => ProbeError::Proxy { addr: addr.to_owned() },
            _ => ProbeError::NotRedis { addr: addr.to_owned() },
        },
        Err(e) => ProbeError::Connect(e),
    }
}

/// The value of a `CONFIG GET name` reply (`[name, value]`).
fn config_value(v: &Value) -> Option<String> {
    let items = v.as_array()?;
    items.get(1)?.as_str().map(str::to_owned)
}

/// `COMMAND INFO psync` answers `[nil]` when the command is renamed away.
fn command_exists(v: &Value) -> Option<bool> {
    match v {
        Value::Array(Some(items)) => Some(items.first().is_some_and(|i| !i.is_nil())),
        _ => None,
    }
}

/// The replica class of `normal 0 0 0 slave 268435456 67108864 60 pubsub ...`.
fn replica_limit(text: &str) -> Option<BufferLimit> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.chunks(4).find(|c| c.len() == 4 && matches!(c[0], "slave" | "replica")).and_then(|c| {
        Some(BufferLimit { hard: parse_size(c[1])?, soft: parse_size(c[2])?, soft_secs: c[3].parse().ok()? })
    })
}

/// `268435456`, `256mb`, `64k`… as Redis reads memory sizes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// A redis.conf size for a config line: whole megabytes, rounded up.
pub fn config_size(n: u64) -> String {
    format!("{}mb", n.div_ceil(1024 * 1024).max(1))
}

/// The modules of a `MODULE LIST` reply: each an array of field/value
/// pairs (`name`, `ver`, …; a map in RESP3, flat in RESP2).
fn module_list(reply: &Value) -> Option<Vec<(String, i64)>> {
    let items = reply.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|m| {
                let fields = m.as_array()?;
                let get = |name: &str| fields.chunks(2).find(|p| p[0].as_str() == Some(name)).and_then(|p| p.get(1));
                Some((get("name")?.as_str()?.to_owned(), get("ver").and_then(Value::as_int).unwrap_or(0)))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_read_under_the_name_each_server_gives_it() {
        let mode = |raw: &str| ServerMode::from_info(&Info::parse(raw.as_bytes()));
        assert_eq!(mode("# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n"), ServerMode::Cluster);
        assert_eq!(mode("redis_version:7.0.15\r\nredis_mode:sentinel\r\n"), ServerMode::Sentinel);
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\nserver_mode:cluster\r\n";
        assert_eq!(mode(valkey), ServerMode::Cluster);
        assert_eq!(mode("redis_version:7.0.15\r\nredis_mode:standalone\r\n"), ServerMode::Standalone);
        assert_eq!(mode("redis_version:2.4.0\r\n"), ServerMode::Standalone, "before redis_mode existed");
    }

    #[test]
    fn sizes_as_redis_reads_them() {
        assert_eq!(parse_size("268435456"), Some(268_435_456));
        assert_eq!(parse_size("256mb"), Some(256 << 20));
        assert_eq!(parse_size("64k"), Some(64_000));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(config_size(1), "1mb");
        assert_eq!(config_size(3 << 20), "3mb");
    }

    #[test]
    fn replica_buffer_limit_is_found_under_either_name() {
        let l = replica_limit("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60").unwrap();
        assert_eq!(l, BufferLimit { hard: 256 << 20, soft: 64 << 20, soft_secs: 60 });
        assert!(replica_limit("normal 0 0 0 replica 0 0 0").is_some_and(|l| l.hard == 0));
        assert!(replica_limit("garbage").is_none());
    }

    #[test]
    fn command_info_tells_renamed_commands() {
        assert_eq!(command_exists(&Value::Array(Some(vec![Value::Bulk(None)]))), Some(false));
        assert_eq!(command_exists(&Value::Array(Some(vec![Value::Array(Some(vec![]))]))), Some(true));
        assert_eq!(command_exists(&Value::Error("ERR unknown command".into())), None);
    }
}
