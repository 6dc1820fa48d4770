//! Credentials as the task file writes them, and what an `AUTH` error reply
//! means for the user. The string form and its splitting rule are documented
//! on [`Credentials`].

use std::fmt;

use super::{cmd::Cmd, error::RespError};

/// The user Redis 6+ authenticates a bare `AUTH <password>` as.
pub(crate) const DEFAULT_USER: &str = "default";

/// A user (optional) and a password. `Debug` never shows the password.
///
/// The task file has one string per server: `""` (no auth), `"<password>"`
/// or `"<user>:<password>"`. The string is split on its **first** `:`, so a
/// password may itself contain `:` when a user is given (`alice:pa:ss` is
/// user `alice`, password `pa:ss`). A password containing `:` for the
/// default user is therefore written `default:<password>`. An empty user part
/// (`:secret`) means the default user. Against Redis before 6.0, which has no
/// users, `default:<password>` falls back to `AUTH <password>`; any other
/// user is an error ([`RespError::AclUnsupported`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: Option<String>,
    password: String,
}

impl Credentials {
    /// Parses the task-file form; `""` means no authentication.
    pub fn parse(spec: &str) -> Option<Credentials> {
        if spec.is_empty() {
            return None;
        }
        Some(match spec.split_once(':') {
            Some((user, password)) => Credentials::new(Some(user), password),
            None => Credentials::new(None, spec),
        })
    }

    /// An empty user is the default user, as in `parse`.
    pub fn new(user: Option<&str>, password: &str) -> Credentials {
        Credentials { user: user.filter(|u| !u.is_empty()).map(str::to_owned), password: password.to_owned() }
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// `AUTH <password>` or `AUTH <user> <password>`.
    pub(crate) fn auth_cmd(&self) -> Cmd {
        match &self.user {
            Some(user) => Cmd::new("AUTH").arg(user).arg(&self.password),
            None => self.password_only_cmd(),
        }
    }

    pub(crate) fn password_only_cmd(&self) -> Cmd {
        Cmd::new("AUTH").arg(&self.password)
    }

    /// A named user other than `default`: only then can a rejection be about
    /// the user rather than the password.
    fn acl_user(&self) -> Option<&str> {
        self.user().filter(|u| *u != DEFAULT_USER)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// What an error reply to `AUTH` means.
pub(crate) enum AuthRejection {
    /// Redis before 6.0 answered the two-argument form; retry with the
    /// password alone when the user was `default`.
    RetryPasswordOnly,
    Fatal(RespError),
}

/// Classifies an `AUTH` error reply. The texts differ between Redis versions
/// and twemproxy, hence the substring matching:
/// * `WRONGPASS invalid username-password pair or user is disabled.` (6.0+)
/// * `ERR invalid password` (before 6.0, and twemproxy)
/// * `ERR Client sent AUTH, but no password is set` (before 6.0, twemproxy)
/// * `ERR AUTH <password> called without any password configured for the
///   default user...` (6.0+)
/// * `ERR wrong number of arguments for 'auth' command` (before 6.0, given a
///   user)
pub(crate) fn classify_rejection(addr: &str, creds: &Credentials, reply: &str) -> AuthRejection {
    let addr = addr.to_owned();
    let server = reply.to_owned();
    let lower = reply.to_ascii_lowercase();
    let error = if lower.starts_with("wrongpass")
        || lower.contains("invalid username-password pair")
        || lower.contains("invalid password")
    {
        match creds.acl_user() {
            Some(user) => RespError::WrongUserOrPassword { addr, user: user.to_owned(), server },
            None => RespError::WrongPassword { addr, server },
        }
    } else if lower.contains("no password is set") || lower.contains("without any password configured") {
        RespError::NoPasswordSet { addr, server }
    } else if lower.contains("wrong number of arguments") && creds.user().is_some() {
        match creds.acl_user() {
            Some(user) => RespError::AclUnsupported { addr, user: user.to_owned() },
            None => return AuthRejection::RetryPasswordOnly,
        }
    } else {
        RespError::AuthFailed { addr, server }
    };
    AuthRejection::Fatal(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_the_first_colon_only() {
        let c = Credentials::parse("alice:pa:ss").expect("credentials");
        assert_eq!((c.user(), c.password()), (Some("alice"), "pa:ss"));
        let c = Credentials::parse("secret").expect("credentials");
        assert_eq!((c.user(), c.password()), (None, "secret"));
        let c = Credentials::parse(":secret").expect("credentials");
        assert_eq!((c.user(), c.password()), (None, "secret"));
        let c = Credentials::parse("alice:").expect("credentials");
        assert_eq!((c.user(), c.password()), (Some("alice"), ""));
        assert_eq!(Credentials::parse(""), None);
    }

    #[test]
    fn auth_command_matches_the_form() {
        let with_user = Credentials::parse("alice:pw").expect("credentials");
        assert_eq!(with_user.auth_cmd(), Cmd::from_args(["AUTH", "alice", "pw"]));
        let bare = Credentials::parse("pw").expect("credentials");
        assert_eq!(bare.auth_cmd(), Cmd::from_args(["AUTH", "pw"]));
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", Credentials::parse("alice:hunter2"));
        assert!(shown.contains("alice") && !shown.contains("hunter2"), "{shown}");
    }

    fn classify(spec: &str, reply: &str) -> String {
        let creds = Credentials::parse(spec).expect("credentials");
        match classify_rejection("10.0.0.1:6379", &creds, reply) {
            AuthRejection::RetryPasswordOnly => "retry".to_string(),
            AuthRejection::Fatal(e) => e.to_string(),
        }
    }

    #[test]
    fn rejections_name_the_wrong_credential() {
        let wrongpass = "WRONGPASS invalid username-password pair or user is disabled.";
        let msg = classify("pw", wrongpass);
        assert!(msg.contains("wrong password") && msg.contains("10.0.0.1:6379"), "{msg}");
        let msg = classify("default:pw", wrongpass);
        assert!(msg.contains("wrong password"), "{msg}");
        let msg = classify("alice:pw", wrongpass);
        assert!(msg.contains("`alice`") && msg.contains("unknown"), "{msg}");
        let msg = classify("pw", "ERR invalid password");
        assert!(msg.contains("wrong password"), "{msg}");
        let msg = classify("pw", "ERR Client sent AUTH, but no password is set");
        assert!(msg.contains("no password"), "{msg}");
        let msg = classify(
            "pw",
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
        assert!(msg.contains("no password"), "{msg}");
        let old = "ERR wrong number of arguments for 'auth' command";
        let msg = classify("alice:pw", old);
        assert!(msg.contains("before 6.0") && msg.contains("alice"), "{msg}");
        assert_eq!(classify("default:pw", old), "retry");
        let msg = classify("pw", "ERR something new");
        assert!(msg.contains("something new"), "{msg}");
    }
}
