//! [`Secret`]: a server password that formats as `***`.
//!
//! Configs are printed in logs, progress output and test failures; the
//! password must never be. The raw string is reached only through
//! [`Secret::expose`], which the connection code calls when it sends `AUTH`.

use std::{env, fmt};

use crate::resp::Credentials;

/// What a redacted secret prints as.
const REDACTED: &str = "***";

/// A password as the task file writes it: `""` (no authentication),
/// `"<password>"` or `"<user>:<password>"` (split on the first `:` by
/// [`Credentials::parse`]).
///
/// `Debug` and `Display` print `***` whatever the content. A secret read from
/// the environment remembers the variable's name, so saving the task file
/// again writes the same `password_env`; equality compares the password only.
#[derive(Clone, Default)]
pub struct Secret {
    value: String,
    env_var: Option<String>,
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret { value: value.into(), env_var: None }
    }

    /// No password: the server is used without `AUTH`.
    pub fn none() -> Secret {
        Secret::default()
    }

    /// The password held by environment variable `var`.
    pub fn from_env(var: &str) -> Result<Secret, env::VarError> {
        env::var(var).map(|value| Secret::new(value).with_env_var(var))
    }

    /// Records that this password came from (and should be saved as) `var`.
    pub fn with_env_var(mut self, var: &str) -> Secret {
        self.env_var = Some(var.to_owned());
        self
    }

    /// The raw string, for the code that authenticates. Do not log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The environment variable the password was read from, if any.
    pub fn env_var(&self) -> Option<&str> {
        self.env_var.as_deref()
    }

    /// The user and password to authenticate with; `None` for no `AUTH`.
    pub fn credentials(&self) -> Option<Credentials> {
        Credentials::parse(&self.value)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.value == other.value
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_never_show_the_password() {
        let secret = Secret::new("admin:Rp829dlwa");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret:#?}"), "***");
        assert_eq!(secret.expose(), "admin:Rp829dlwa");
    }

    #[test]
    fn credentials_split_on_the_first_colon() {
        let creds = Secret::new("alice:pa:ss").credentials().unwrap();
        assert_eq!((creds.user(), creds.password()), (Some("alice"), "pa:ss"));
        assert!(Secret::none().credentials().is_none());
    }

    #[test]
    fn equality_ignores_where_the_password_came_from() {
        assert_eq!(Secret::new("p").with_env_var("V"), Secret::new("p"));
        assert_ne!(Secret::new("p"), Secret::new("q"));
    }

    #[test]
    fn from_env_reports_an_unset_variable() {
        assert_eq!(Secret::from_env("SHARDSYNC_TEST_SURELY_UNSET_VAR"), Err(env::VarError::NotPresent));
    }
}
