//! What the destination server understands: its version, the RDB version
//! its `RESTORE` accepts, and the command features the rewrite may use.
//!
//! Everything version-dependent the writer relies on is listed here, each
//! with the Redis release that introduced it, so the rewrite asks
//! `caps.abs_ttl()` instead of comparing version numbers itself.
//! [`dest_info`] reads the version from `INFO server` on a live connection.

use std::fmt;

use crate::resp::info::info_field;
use crate::resp::{Cmd, Connection, RespError};

/// A `major.minor.patch` Redis version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RedisVersion {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl RedisVersion {
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        RedisVersion { major, minor, patch }
    }

    /// Parses `7.0.15`, `6.2`, `8.0.0-rc1` (a suffix after `-` is ignored).
    pub fn parse(text: &str) -> Option<RedisVersion> {
        let core = text.trim().split(['-', ' ']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u16>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(RedisVersion { major, minor, patch })
    }

    const fn at_least(self, other: RedisVersion) -> bool {
        self.major > other.major
            || (self.major == other.major
                && (self.minor > other.minor || (self.minor == other.minor && self.patch >= other.patch)))
    }
}

impl fmt::Display for RedisVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

// Releases that introduced what the writer uses.
/// `RESTORE`, `PEXPIREAT`, `PTTL`, the 5-byte DUMP trailer.
const V2_6: RedisVersion = RedisVersion::new(2, 6, 0);
/// `SET key value NX PX ms`.
const V2_6_12: RedisVersion = RedisVersion::new(2, 6, 12);
/// `RESTORE ... REPLACE`.
const V3_0: RedisVersion = RedisVersion::new(3, 0, 0);
/// `HSET` with several field/value pairs (before: `HMSET`).
const V4_0: RedisVersion = RedisVersion::new(4, 0, 0);
/// `RESTORE ... ABSTTL`, streams (`XADD`, `XSETID`, `XGROUP CREATE ... MKSTREAM`, `XCLAIM`).
const V5_0: RedisVersion = RedisVersion::new(5, 0, 0);
/// `XGROUP CREATECONSUMER`, `SET ... PXAT`.
const V6_2: RedisVersion = RedisVersion::new(6, 2, 0);
/// `XSETID ... ENTRIESADDED n MAXDELETEDID id`, `XGROUP CREATE ... ENTRIESREAD n`.
const V7_0: RedisVersion = RedisVersion::new(7, 0, 0);
/// Hash field TTLs (`HPEXPIREAT`).
const V7_4: RedisVersion = RedisVersion::new(7, 4, 0);

/// The RDB format version each Redis release writes, which is also the
/// newest DUMP payload version its `RESTORE` accepts (`verifyDumpPayload`
/// rejects a payload whose trailer version is above `RDB_VERSION`). From
/// `RDB_VERSION` in each release's `src/rdb.h`. Releases before 2.6 have no
/// `RESTORE` (0). For a release newer than the table the last row is a
/// floor: RDB versions only grow, so it accepts at least that.
const RDB_VERSIONS: &[(RedisVersion, u16)] = &[
    (RedisVersion::new(0, 0, 0), 0),
    (V2_6, 6),                        // 2.6, 2.8, 3.0
    (RedisVersion::new(3, 2, 0), 7),  // RESIZEDB, AUX
    (RedisVersion::new(4, 0, 0), 8),  // modules, quicklist
    (RedisVersion::new(5, 0, 0), 9),  // streams, LFU/LRU, module aux (5.0, 6.0, 6.2)
    (RedisVersion::new(7, 0, 0), 10), // listpacks, functions, stream v2
    (RedisVersion::new(7, 2, 0), 11), // set listpack, stream v3
    (RedisVersion::new(7, 4, 0), 12), // hash field TTLs (also 8.0)
];

/// The RDB version a server of `version` writes and restores.
pub fn rdb_version_of(version: RedisVersion) -> u16 {
    RDB_VERSIONS.iter().rev().find(|(since, _)| version.at_least(*since)).map_or(0, |(_, rdb)| *rdb)
}

/// Valkey 9.0: RDB 80 (`VALKEY080`), hash field TTLs. Valkey's
/// `redis_version` stays at 7.2.4 from 8.0 on, so its own `valkey_version`
/// is what tells its features.
const VALKEY_9_0: RedisVersion = RedisVersion::new(9, 0, 0);
/// Valkey's RDB version from 9.0 (versions 12–79 are Redis's, which it
/// refuses by default, `rdb-version-check strict`).
const VALKEY_RDB: u16 = 80;

/// Which server it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Redis,
    /// The Linux Foundation fork of Redis 7.2.4 (`server_name:valkey`).
    Valkey,
}

/// A server's engine and version, from `INFO server`: `redis_version`
/// always, `server_name` and `valkey_version` from Valkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    pub engine: Engine,
    /// The engine's own version (`valkey_version` for Valkey).
    pub version: RedisVersion,
    /// The Redis version it is compatible with (`redis_version`).
    pub redis: RedisVersion,
}

impl ServerVersion {
    pub fn redis(version: RedisVersion) -> Self {
        ServerVersion { engine: Engine::Redis, version, redis: version }
    }

    /// From `INFO` fields; `None` without a readable `redis_version`.
    pub fn from_info<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<ServerVersion> {
        let redis = RedisVersion::parse(get("redis_version")?)?;
        let valkey = get("valkey_version").and_then(RedisVersion::parse);
        Some(match (get("server_name"), valkey) {
            (_, Some(version)) => ServerVersion { engine: Engine::Valkey, version, redis },
            // A Valkey that says its name but not its version: 7.2-era.
            (Some("valkey"), None) => ServerVersion { engine: Engine::Valkey, version: redis, redis },
            _ => ServerVersion::redis(redis),
        })
    }

    /// The newest RDB version the server writes (for a replica that does
    /// not announce its own version, Valkey 9 sends 11) and reads.
    pub fn rdb_version(&self) -> u16 {
        match self.engine {
            Engine::Valkey if self.version.at_least(VALKEY_9_0) => VALKEY_RDB,
            _ => rdb_version_of(self.redis),
        }
    }

    /// The RDB version of the snapshot it sends a replica that does not
    /// announce its own version (as shardsync): Valkey 9 falls back to 11.
    pub fn replica_rdb_version(&self) -> u16 {
        match self.engine {
            Engine::Valkey => self.rdb_version().min(11),
            Engine::Redis => self.rdb_version(),
        }
    }

    /// Whether `RESTORE` takes a payload of RDB version `v`.
    pub fn reads_rdb(&self, v: u16) -> bool {
        match self.engine {
            // Valkey refuses Redis's versions 12–79.
            Engine::Valkey => v <= rdb_version_of(self.redis).min(11) || (v == VALKEY_RDB && self.rdb_version() >= v),
            Engine::Redis => v <= rdb_version_of(self.redis),
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.engine {
            Engine::Redis => write!(f, "Redis {}", self.version),
            Engine::Valkey => write!(f, "Valkey {}", self.version),
        }
    }
}

/// What the destination is and what it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestCaps {
    /// The Redis version its commands match (`redis_version`).
    pub version: RedisVersion,
    /// The newest DUMP payload version its `RESTORE` accepts.
    pub rdb_version: u16,
    pub server: ServerVersion,
    /// Bit `v` set when `RESTORE` accepts a payload of RDB version `v`
    /// (none without `RESTORE`): computed once, read for every key.
    payload_versions: u128,
}

impl DestCaps {
    /// A Redis of `version`.
    pub fn new(version: RedisVersion) -> Self {
        Self::of(ServerVersion::redis(version))
    }

    pub fn of(server: ServerVersion) -> Self {
        let payload_versions = if server.redis.at_least(V2_6) {
            (0..128u16).filter(|&v| server.reads_rdb(v)).fold(0, |mask, v| mask | 1u128 << v)
        } else {
            0
        };
        DestCaps { version: server.redis, rdb_version: server.rdb_version(), server, payload_versions }
    }

    /// `RESTORE` exists at all.
    pub fn restore(&self) -> bool {
        self.version.at_least(V2_6)
    }

    /// `RESTORE ... REPLACE`.
    pub fn restore_replace(&self) -> bool {
        self.version.at_least(V3_0)
    }

    /// `RESTORE ... ABSTTL` (absolute expiry in unix ms).
    pub fn abs_ttl(&self) -> bool {
        self.version.at_least(V5_0)
    }

    /// `SET ... NX PX`.
    pub fn set_nx_px(&self) -> bool {
        self.version.at_least(V2_6_12)
    }

    /// `SET ... PXAT`.
    pub fn set_pxat(&self) -> bool {
        self.version.at_least(V6_2)
    }

    /// `HSET` takes several field/value pairs.
    pub fn hset_multi(&self) -> bool {
        self.version.at_least(V4_0)
    }

    /// Streams exist.
    pub fn streams(&self) -> bool {
        self.version.at_least(V5_0)
    }

    /// `XSETID ... ENTRIESADDED MAXDELETEDID` and `XGROUP CREATE ... ENTRIESREAD`.
    pub fn stream_v2_meta(&self) -> bool {
        self.version.at_least(V7_0)
    }

    /// `XGROUP CREATECONSUMER`.
    pub fn create_consumer(&self) -> bool {
        self.version.at_least(V6_2)
    }

    /// `HPEXPIREAT` (hash field TTLs): Redis 7.4, Valkey 9.0.
    pub fn hash_field_ttl(&self) -> bool {
        match self.server.engine {
            Engine::Redis => self.version.at_least(V7_4),
            Engine::Valkey => self.server.version.at_least(VALKEY_9_0),
        }
    }

    /// Whether `RESTORE` accepts a DUMP payload: its trailer (the last 10
    /// bytes: RDB version as 2 bytes LE, then the CRC64) names a version
    /// this server reads.
    pub fn accepts_payload(&self, payload: &[u8]) -> bool {
        payload_rdb_version(payload).is_some_and(|v| self.accepts_version(v))
    }

    /// Whether `RESTORE` accepts a DUMP payload of RDB version `version`.
    pub fn accepts_version(&self, version: u16) -> bool {
        version < 128 && self.payload_versions & (1u128 << version) != 0
    }

    /// The RDB versions (bit `v` for version `v`) whose payloads
    /// `RESTORE` accepts; 0 without `RESTORE`.
    pub fn payload_versions(&self) -> u128 {
        self.payload_versions
    }
}

/// The RDB version in a DUMP payload's trailer.
pub fn payload_rdb_version(payload: &[u8]) -> Option<u16> {
    let trailer = payload.len().checked_sub(10)?;
    Some(u16::from_le_bytes([payload[trailer], payload[trailer + 1]]))
}

/// Reads the destination's version (`INFO server`, field `redis_version`).
pub async fn dest_info(conn: &mut Connection) -> Result<DestCaps, RespError> {
    let cmd = Cmd::new("INFO").arg("server");
    let reply = conn.query(&cmd).await?;
    let text = reply.as_bytes().unwrap_or_default();
    let server = ServerVersion::from_info(|name| info_field(text, name)).ok_or_else(|| RespError::Protocol {
        addr: conn.addr().to_owned(),
        command: cmd.name(),
        detail: "no parsable redis_version line in INFO server".to_owned(),
    })?;
    Ok(DestCaps::of(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> RedisVersion {
        RedisVersion::parse(text).unwrap()
    }

    #[test]
    fn valkey_is_known_by_its_own_version() {
        let info = |fields: &'static [(&'static str, &'static str)]| {
            move |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        };
        let vk = ServerVersion::from_info(info(&[
            ("redis_version", "7.2.4"),
            ("server_name", "valkey"),
            ("valkey_version", "9.1.2"),
        ]))
        .unwrap();
        assert_eq!((vk.engine, vk.version, vk.redis), (Engine::Valkey, v("9.1.2"), v("7.2.4")));
        assert_eq!(vk.to_string(), "Valkey 9.1.2");
        assert_eq!(vk.rdb_version(), 80);
        // Its own RDB 80 and anything up to 7.2's 11, not Redis 7.4's 12.
        assert!(vk.reads_rdb(80) && vk.reads_rdb(11) && !vk.reads_rdb(12));
        let caps = DestCaps::of(vk);
        assert!(caps.hash_field_ttl() && caps.set_pxat());
        let vk8 = ServerVersion::from_info(info(&[("redis_version", "7.2.4"), ("valkey_version", "8.1.0")])).unwrap();
        assert_eq!(vk8.rdb_version(), 11);
        assert!(!vk8.reads_rdb(80) && !DestCaps::of(vk8).hash_field_ttl());
        let redis = ServerVersion::from_info(info(&[("redis_version", "7.4.2")])).unwrap();
        assert_eq!(redis.to_string(), "Redis 7.4.2");
        assert!(redis.reads_rdb(12) && !redis.reads_rdb(80));
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(v("7.0.15"), RedisVersion::new(7, 0, 15));
        assert_eq!(v("6.2"), RedisVersion::new(6, 2, 0));
        assert_eq!(v("8.0.0-rc1"), RedisVersion::new(8, 0, 0));
        assert!(RedisVersion::parse("x.1").is_none());
        assert!(v("6.2.0") > v("6.0.9"));
        assert!(v("10.0.0") > v("9.9.9"));
    }

    #[test]
    fn rdb_versions_follow_the_releases() {
        let table = [
            ("2.4.17", 0),
            ("2.6.0", 6),
            ("2.8.24", 6),
            ("3.0.7", 6),
            ("3.2.12", 7),
            ("4.0.14", 8),
            ("5.0.14", 9),
            ("6.0.9", 9),
            ("6.2.14", 9),
            ("7.0.15", 10),
            ("7.2.4", 11),
            ("7.4.1", 12),
            ("8.0.2", 12),
        ];
        for (version, rdb) in table {
            assert_eq!(rdb_version_of(v(version)), rdb, "{version}");
        }
    }

    #[test]
    fn features_by_version() {
        let old = DestCaps::new(v("4.0.14"));
        assert!(old.restore_replace() && !old.abs_ttl() && !old.streams() && old.hset_multi());
        let six = DestCaps::new(v("6.0.9"));
        assert!(six.abs_ttl() && six.streams() && !six.create_consumer() && !six.stream_v2_meta());
        let seven = DestCaps::new(v("7.0.15"));
        assert!(seven.create_consumer() && seven.stream_v2_meta() && !seven.hash_field_ttl());
        assert!(DestCaps::new(v("7.4.0")).hash_field_ttl());
    }

    #[test]
    fn payload_versions_are_read_from_the_trailer() {
        let mut payload = vec![0u8, 3, b'a', b'b', b'c'];
        payload.extend_from_slice(&10u16.to_le_bytes());
        payload.extend_from_slice(&[0; 8]);
        assert_eq!(payload_rdb_version(&payload), Some(10));
        assert!(DestCaps::new(v("7.0.0")).accepts_payload(&payload));
        assert!(!DestCaps::new(v("6.0.9")).accepts_payload(&payload));
        assert!(!DestCaps::new(v("7.0.0")).accepts_payload(&[1, 2, 3]));
    }
}
