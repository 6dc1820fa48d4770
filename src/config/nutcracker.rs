//! Reads the pools of a twemproxy (nutcracker) YAML config: the part
//! shardsync needs, which is each pool's `servers:` list.
//!
//! nutcracker.yml uses a small corner of YAML: top-level pool names, each
//! followed by indented `key: value` settings, one of which is `servers:`
//! with `- host:port:weight [name]` items (sometimes quoted, sometimes as a
//! flow list `[a, b]`), and `#` comments. This module parses exactly that
//! corner, line by line, and says which line it cannot read rather than
//! guessing; it does no I/O, so it is tested from strings.

use super::addr::{Addr, AddrError};

/// One pool (one proxy listener) of the twemproxy config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// Line of the pool's name.
    pub line: usize,
    /// The proxy's own address (what clients connect to), if given.
    pub listen: Option<String>,
    /// `redis: true`; twemproxy's default is memcached.
    pub redis: bool,
    /// Whether the pool sets `redis_auth`. That password is the one clients
    /// give the proxy, which need not be the servers' own; it is not kept.
    pub has_redis_auth: bool,
    pub servers: Vec<Server>,
}

/// One `servers:` entry: `host:port:weight [name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub addr: Addr,
    pub weight: u32,
    pub name: Option<String>,
    pub line: usize,
}

/// A line of the file this parser cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct NutcrackerError {
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> NutcrackerError {
    NutcrackerError { line, message: message.into() }
}

/// Every pool of the file, in file order.
pub fn parse(text: &str) -> Result<Vec<Pool>, NutcrackerError> {
    let mut pools: Vec<Pool> = Vec::new();
    // Indent of the current pool's settings, fixed by its first setting.
    let mut setting_indent: Option<usize> = None;
    let mut in_servers = false;

    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let content = strip_comment(raw_line).trim_end();
        let body = content.trim_start_matches(' ');
        if body.is_empty() {
            continue;
        }
        let indent = content.len() - body.len();
        if body.starts_with('\t') {
            return Err(error(line, "tab in the indentation; YAML indents with spaces"));
        }
        if indent == 0 {
            if body == "---" || body == "..." {
                continue;
            }
            let (name, value) = split_key(body)
                .ok_or_else(|| error(line, format!("expected a pool name followed by `:`, found `{body}`")))?;
            if !value.is_empty() {
                return Err(error(line, format!("pool `{name}`: its settings go on the following, indented lines")));
            }
            if let Some(first) = pools.iter().find(|p| p.name == name) {
                return Err(error(line, format!("pool `{name}` is defined twice (first at line {})", first.line)));
            }
            pools.push(Pool {
                name: name.to_owned(),
                line,
                listen: None,
                redis: false,
                has_redis_auth: false,
                servers: Vec::new(),
            });
            setting_indent = None;
            in_servers = false;
            continue;
        }
        let Some(pool) = pools.last_mut() else {
            return Err(error(line, "an indented line before any pool name"));
        };

        if let Some(item) = body.strip_prefix('-') {
            if !in_servers {
                return Err(error(line, "a list item outside `servers:`"));
            }
            if !(item.is_empty() || item.starts_with(' ')) {
                return Err(error(line, format!("expected `- host:port:weight [name]`, found `{body}`")));
            }
            pool.servers.push(parse_server(unquote(item.trim()), line)?);
            continue;
        }

        let expected_indent = *setting_indent.get_or_insert(indent);
        if indent != expected_indent {
            return Err(error(line, format!("unexpected indentation in pool `{}`", pool.name)));
        }
        let (key, value) =
            split_key(body).ok_or_else(|| error(line, format!("expected `key: value`, found `{body}`")))?;
        in_servers = false;
        match key {
            "servers" if value.is_empty() => in_servers = true,
            "servers" => {
                let Some(items) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) else {
                    return Err(error(
                        line,
                        "`servers:` takes a list: `- host:port:weight [name]` items on the next lines",
                    ));
                };
                for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    pool.servers.push(parse_server(unquote(item), line)?);
                }
            }
            "redis" => {
                pool.redis = parse_bool(unquote(value))
                    .ok_or_else(|| error(line, format!("`redis` must be true or false, found `{value}`")))?;
            }
            "redis_auth" => pool.has_redis_auth = !unquote(value).is_empty(),
            "listen" => pool.listen = Some(unquote(value).to_owned()),
            // hash, distribution, timeout, server_retry_timeout, ...: proxy
            // behaviour that does not change which servers hold the data.
            _ => {}
        }
    }
    Ok(pools)
}

/// `host:port:weight [name]`; the host may be a bracketed IPv6 literal.
fn parse_server(item: &str, line: usize) -> Result<Server, NutcrackerError> {
    let mut words = item.split_whitespace();
    let spec = words.next().ok_or_else(|| error(line, "an empty `servers:` item"))?;
    let name = words.next().map(str::to_owned);
    if let Some(extra) = words.next() {
        return Err(error(line, format!("unexpected `{extra}` after the server name")));
    }
    if spec.starts_with('/') {
        return Err(error(line, format!("`{spec}` is a unix socket; shardsync connects to servers by host:port")));
    }
    let malformed = || error(line, format!("expected `host:port:weight [name]`, found `{item}`"));
    let (addr, weight) = spec.rsplit_once(':').ok_or_else(malformed)?;
    let weight = weight.parse::<u32>().map_err(|_| malformed())?;
    let addr = addr.parse::<Addr>().map_err(|e| match e {
        AddrError::NoPort(_) => {
            error(line, format!("expected `host:port:weight [name]`, found `{item}`: is the weight missing?"))
        }
        e => error(line, format!("server address {e}")),
    })?;
    Ok(Server { addr, weight, name, line })
}

/// `key: value` with a plain key; the value may be empty.
fn split_key(body: &str) -> Option<(&str, &str)> {
    let (key, value) = body.split_once(':')?;
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    (plain && (value.is_empty() || value.starts_with(' '))).then(|| (key, value.trim()))
}

/// The line without a `#` comment (a `#` that starts the line or follows a
/// space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous == ' ' || previous == '\t' => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// The YAML 1.1 booleans nutcracker's parser accepts.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# two pools
alpha:
  listen: 127.0.0.1:22121   # the proxy
  hash: fnv1a_64
  distribution: ketama
  redis: true
  redis_auth: proxypass
  servers:
   - 127.0.0.1:7001:1 server1
   - \"127.0.0.1:7002:1 server2\"   # quoted
beta:
  listen: \"0.0.0.0:22122\"
  redis: yes
  servers:
  - '10.0.0.1:6379:1'
  - [::1]:6380:2
gamma:
  servers: [10.0.0.2:11211:1, 10.0.0.3:11211:1]
";

    #[test]
    fn reads_pools_servers_names_and_flags() {
        let pools = parse(SAMPLE).unwrap();
        let names: Vec<_> = pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta", "gamma"]);

        let alpha = &pools[0];
        assert_eq!((alpha.line, alpha.redis, alpha.has_redis_auth), (2, true, true));
        assert_eq!(alpha.listen.as_deref(), Some("127.0.0.1:22121"));
        let servers: Vec<_> =
            alpha.servers.iter().map(|s| (s.addr.to_string(), s.weight, s.name.clone(), s.line)).collect();
        assert_eq!(
            servers,
            [
                ("127.0.0.1:7001".to_owned(), 1, Some("server1".to_owned()), 9),
                ("127.0.0.1:7002".to_owned(), 1, Some("server2".to_owned()), 10),
            ]
        );

        let beta = &pools[1];
        assert!(beta.redis && !beta.has_redis_auth);
        assert_eq!(beta.listen.as_deref(), Some("0.0.0.0:22122"));
        assert_eq!(beta.servers[1].addr.to_string(), "[::1]:6380");
        assert_eq!((beta.servers[1].weight, beta.servers[1].name.as_deref()), (2, None));

        let gamma = &pools[2];
        assert!(!gamma.redis, "twemproxy's default protocol is memcached");
        assert_eq!(gamma.servers.len(), 2);
    }

    #[test]
    fn says_which_line_it_cannot_read() {
        let cases = [
            ("alpha:\n  servers:\n   - 127.0.0.1:7001 server1\n", 3, "expected `host:port:weight [name]`"),
            ("alpha:\n  servers:\n   - 127.0.0.1:1:1 a b\n", 3, "unexpected `b`"),
            ("alpha:\n  servers:\n   - /tmp/redis.sock:1 a\n", 3, "unix socket"),
            ("alpha:\n  servers:\n   - 127.0.0.1:0:1\n", 3, "port `0`"),
            ("  listen: x\n", 1, "before any pool name"),
            ("alpha:\n  redis: maybe\n", 2, "`redis` must be true or false"),
            ("alpha:\n  - 1.2.3.4:1:1\n", 2, "outside `servers:`"),
            ("alpha:\n  redis: true\n    hash: x\n", 3, "unexpected indentation"),
            ("alpha:\n\tredis: true\n", 2, "tab"),
            ("alpha:\nalpha:\n", 2, "defined twice (first at line 1)"),
            ("alpha: {}\n", 1, "following, indented lines"),
        ];
        for (text, line, words) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn comments_need_a_space_before_the_hash() {
        assert_eq!(strip_comment("a: b # c"), "a: b ");
        assert_eq!(strip_comment("a: b#c"), "a: b#c");
        assert_eq!(strip_comment("a: \"b # c\""), "a: \"b # c\"");
        assert_eq!(strip_comment("# all"), "");
    }
}
