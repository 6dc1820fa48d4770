//! `host:port` addresses as the task file writes them.
//!
//! The host is kept as written (a name or an IP literal; names are resolved
//! when connecting, not here). IPv6 literals are written in brackets,
//! `[::1]:6379`, and `Display` writes them back the same way, so an address
//! survives a save and load unchanged.

use std::{fmt, str::FromStr};

/// A validated `host:port`: a non-empty host and a port from 1 to 65535.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    host: String,
    port: u16,
}

/// Why a string is not a `host:port`. Each message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("`{0}` has no port; write host:port")]
    NoPort(String),
    #[error("`{0}` has no host; write host:port")]
    NoHost(String),
    #[error("`{input}`: port `{port}` is not a number from 1 to 65535")]
    BadPort { input: String, port: String },
    #[error("`{0}` looks like an IPv6 address; write it in brackets, as [::1]:6379")]
    UnbracketedIpv6(String),
    #[error("`{0}`: only IPv6 addresses go in brackets")]
    BracketedNonIpv6(String),
    #[error("`{0}` contains a space or a control character")]
    Whitespace(String),
}

impl Addr {
    /// An address from its parts; `host` is written without brackets.
    pub fn new(host: &str, port: u16) -> Result<Addr, AddrError> {
        let shown = || if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        if host.is_empty() {
            return Err(AddrError::NoHost(shown()));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddrError::Whitespace(shown()));
        }
        if port == 0 {
            return Err(AddrError::BadPort { input: shown(), port: "0".into() });
        }
        Ok(Addr { host: host.to_owned(), port })
    }

    /// The host without brackets (`::1`, `10.0.0.5`, `redis-a.internal`).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether two addresses name the same server as written (host names
    /// compared without case; no DNS lookup).
    pub fn same_server(&self, other: &Addr) -> bool {
        self.port == other.port && self.host.eq_ignore_ascii_case(&other.host)
    }
}

/// The host part of an address as written, `host:port` → `host`
/// (`[::1]:7001` → `[::1]`, brackets kept): what shares a machine. A string
/// without a port is all host.
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Addr, AddrError> {
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddrError::Whitespace(s.to_owned()));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return Err(AddrError::NoPort(s.to_owned()));
            };
            if !host.contains(':') {
                return Err(AddrError::BracketedNonIpv6(s.to_owned()));
            }
            match after.strip_prefix(':') {
                Some(port) => (host, port),
                None => return Err(AddrError::NoPort(s.to_owned())),
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => return Err(AddrError::UnbracketedIpv6(s.to_owned())),
                Some((host, port)) => (host, port),
                None => return Err(AddrError::NoPort(s.to_owned())),
            }
        };
        if host.is_empty() {
            return Err(AddrError::NoHost(s.to_owned()));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(AddrError::BadPort { input: s.to_owned(), port: port.to_owned() }),
        };
        Ok(Addr { host: host.to_owned(), port })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_host_port() {
        for text in ["127.0.0.1:6379", "redis-a.internal:7001", "[::1]:6379", "[fe80::1%eth0]:1", "h:65535"] {
            let addr: Addr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let v6: Addr = "[::1]:6379".parse().unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 6379));
    }

    #[test]
    fn rejects_what_cannot_be_dialled() {
        let cases = [
            ("127.0.0.1", "`127.0.0.1` has no port; write host:port"),
            (":6379", "`:6379` has no host; write host:port"),
            ("h:0", "`h:0`: port `0` is not a number from 1 to 65535"),
            ("h:65536", "`h:65536`: port `65536` is not a number from 1 to 65535"),
            ("h:+5", "`h:+5`: port `+5` is not a number from 1 to 65535"),
            ("h:", "`h:`: port `` is not a number from 1 to 65535"),
            ("::1:6379", "`::1:6379` looks like an IPv6 address; write it in brackets, as [::1]:6379"),
            ("[::1]", "`[::1]` has no port; write host:port"),
            ("[::1]6379", "`[::1]6379` has no port; write host:port"),
            ("[host]:1", "`[host]:1`: only IPv6 addresses go in brackets"),
            ("a b:1", "`a b:1` contains a space or a control character"),
            ("", "`` has no port; write host:port"),
        ];
        for (text, message) in cases {
            assert_eq!(text.parse::<Addr>().unwrap_err().to_string(), message, "{text}");
        }
    }

    #[test]
    fn new_validates_and_brackets_ipv6() {
        assert_eq!(Addr::new("::1", 7000).unwrap().to_string(), "[::1]:7000");
        assert!(Addr::new("", 1).is_err());
        assert!(Addr::new("h", 0).is_err());
    }

    #[test]
    fn hosts_are_compared_without_ports() {
        assert_eq!(host_of("10.0.0.5:7001"), "10.0.0.5");
        assert_eq!(host_of("[::1]:7001"), "[::1]");
        assert_eq!(host_of("redis-a"), "redis-a");
    }

    #[test]
    fn same_server_ignores_host_case() {
        let a: Addr = "Redis-A:1".parse().unwrap();
        assert!(a.same_server(&"redis-a:1".parse().unwrap()));
        assert!(!a.same_server(&"redis-a:2".parse().unwrap()));
    }
}
