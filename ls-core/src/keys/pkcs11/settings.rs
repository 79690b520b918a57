//! The `[identity]` settings that put a key on a PKCS#11 token, as the client's
//! (`layersec.toml`) and the service's (`layersec-server.toml`) configurations both name them:
//! `pkcs11_uri`, `module`, `pin_env` / `pin_file`. One set of rules and messages for both; the
//! configuration layers add their file's name and resolve relative paths first.

use std::path::Path;
use zeroize::Zeroizing;

/// A setting that is wrong: the key it is about (`identity.pin_env`, …) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub key: &'static str,
    pub message: String,
}

impl SettingError {
    fn new(key: &'static str, message: impl Into<String>) -> SettingError {
        SettingError {
            key,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// What an `[identity]` section says about where its key is.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenSettings<'a> {
    pub pkcs11_uri: Option<&'a str>,
    /// The module (wins over a `module-path` in the URI). Not checked as a file: a module that
    /// is not there is the token being unavailable, a temporary failure, told when it is used.
    pub module: Option<&'a Path>,
    pub pin_env: Option<&'a str>,
    /// Resolved against the configuration's folder.
    pub pin_file: Option<&'a Path>,
    /// A `pin` key was given (only to refuse it).
    pub pin_given: bool,
    /// `key` (a key file) was given.
    pub key_given: bool,
    pub password_env_given: bool,
    pub password_file_given: bool,
}

impl TokenSettings<'_> {
    /// Whether the key is on a token (`pkcs11_uri` given).
    pub fn on_token(&self) -> bool {
        self.pkcs11_uri.is_some()
    }

    /// The rules: never a PIN in the file; `pkcs11_uri` (an RFC 7512 URI) excludes `key` and the
    /// password settings; `pin_env` or `pin_file`, not both (`pin_env` a variable's name,
    /// `pin_file` a readable file); without `pkcs11_uri`, no token settings.
    pub fn check(&self) -> Result<(), SettingError> {
        if self.pin_given {
            return Err(SettingError::new(
                "identity.pin",
                "a PIN is never kept in the configuration file: name an environment variable \
                 with pin_env or a file with pin_file",
            ));
        }
        let Some(uri) = self.pkcs11_uri else {
            for (key, given) in [
                ("identity.module", self.module.is_some()),
                ("identity.pin_env", self.pin_env.is_some()),
                ("identity.pin_file", self.pin_file.is_some()),
            ] {
                if given {
                    return Err(SettingError::new(
                        key,
                        "only with pkcs11_uri (the key on a PKCS#11 token); a key file's \
                         password is given with password_env or password_file",
                    ));
                }
            }
            return Ok(());
        };
        if !uri.trim_start().to_ascii_lowercase().starts_with("pkcs11:") {
            return Err(SettingError::new(
                "identity.pkcs11_uri",
                "an RFC 7512 URI starting with \"pkcs11:\" is expected",
            ));
        }
        // Parsed here, so that a URI that could not name the key (a pin-value in it, an
        // attribute misspelt) is the configuration's error, before anything shows the URI.
        // The parser's messages name attributes, never their values for a PIN.
        super::Pkcs11Uri::parse(uri.trim())
            .map_err(|e| SettingError::new("identity.pkcs11_uri", e.to_string()))?;
        if self.key_given {
            return Err(SettingError::new(
                "identity.key",
                "either key (a key file) or pkcs11_uri (the key on a token) is expected, not both",
            ));
        }
        for (key, given) in [
            ("identity.password_env", self.password_env_given),
            ("identity.password_file", self.password_file_given),
        ] {
            if given {
                return Err(SettingError::new(
                    key,
                    "not with pkcs11_uri: the token's PIN is given with pin_env or pin_file",
                ));
            }
        }
        if self.pin_env.is_some() && self.pin_file.is_some() {
            return Err(SettingError::new(
                "identity.pin_env",
                "either pin_env or pin_file is expected, not both",
            ));
        }
        if let Some(v) = self.pin_env {
            if v.is_empty() || v.contains('=') || v.contains('\0') {
                return Err(SettingError::new(
                    "identity.pin_env",
                    "the name of an environment variable is expected",
                ));
            }
        }
        if let Some(p) = self.pin_file {
            if !p.is_file() {
                return Err(SettingError::new(
                    "identity.pin_file",
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        Ok(())
    }

    /// The token's PIN: the value of `pin_env`'s variable, or the first line of `pin_file`;
    /// `None` when neither is given (a token that needs no login). An empty PIN (a variable
    /// set to nothing, a file whose first line is empty) is refused here, not sent to the
    /// token, where it would count towards the lock-out. The error names the setting and never
    /// holds the PIN.
    pub fn pin(&self) -> Result<Option<Zeroizing<String>>, SettingError> {
        if let Some(var) = self.pin_env {
            let pin = std::env::var(var).map(Zeroizing::new).map_err(|_| {
                SettingError::new(
                    "identity.pin_env",
                    format!("the environment variable {var} is expected to hold the token's PIN"),
                )
            })?;
            if pin.is_empty() {
                return Err(SettingError::new(
                    "identity.pin_env",
                    format!("the environment variable {var} is empty: the token's PIN is expected"),
                ));
            }
            return Ok(Some(pin));
        }
        if let Some(p) = self.pin_file {
            let s = Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
                SettingError::new(
                    "identity.pin_file",
                    format!("{} is not readable: {e}", p.display()),
                )
            })?);
            let pin = Zeroizing::new(s.lines().next().unwrap_or("").to_string());
            if pin.is_empty() {
                return Err(SettingError::new(
                    "identity.pin_file",
                    format!(
                        "the first line of {} is empty: the token's PIN is expected",
                        p.display()
                    ),
                ));
            }
            return Ok(Some(pin));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_of_the_token_settings() {
        let d = ls_tests::tempdir("pkcs11-settings");
        let pin = d.path().join("pin");
        std::fs::write(&pin, "1234\nrest\n").unwrap();
        let missing = d.path().join("no-pin");
        let token = TokenSettings {
            pkcs11_uri: Some("pkcs11:token=t;object=k;type=private"),
            pin_env: Some("P"),
            ..Default::default()
        };
        assert!(token.check().is_ok());
        let file_key = TokenSettings {
            key_given: true,
            ..Default::default()
        };
        assert!(file_key.check().is_ok());
        let module = Path::new("/nonexistent/p11.so");
        for (s, key, says) in [
            (
                TokenSettings {
                    key_given: true,
                    ..token
                },
                "identity.key",
                "not both",
            ),
            (
                TokenSettings {
                    password_env_given: true,
                    ..token
                },
                "identity.password_env",
                "pin_env or pin_file",
            ),
            (
                TokenSettings {
                    password_file_given: true,
                    ..token
                },
                "identity.password_file",
                "pin_env or pin_file",
            ),
            (
                TokenSettings {
                    pin_file: Some(&pin),
                    ..token
                },
                "identity.pin_env",
                "not both",
            ),
            (
                TokenSettings {
                    pin_given: true,
                    ..token
                },
                "identity.pin",
                "never kept",
            ),
            (
                TokenSettings {
                    pin_given: true,
                    ..file_key
                },
                "identity.pin",
                "never kept",
            ),
            (
                TokenSettings {
                    pin_env: Some("A=B"),
                    ..token
                },
                "identity.pin_env",
                "environment variable",
            ),
            (
                TokenSettings {
                    pin_env: None,
                    pin_file: Some(&missing),
                    ..token
                },
                "identity.pin_file",
                "not a readable file",
            ),
            (
                TokenSettings {
                    pkcs11_uri: Some("token=t"),
                    ..token
                },
                "identity.pkcs11_uri",
                "pkcs11:",
            ),
            (
                TokenSettings {
                    pkcs11_uri: Some("pkcs11:token=t;object=k;pin-value=2468"),
                    ..token
                },
                "identity.pkcs11_uri",
                "unknown attribute",
            ),
            (
                TokenSettings {
                    pkcs11_uri: Some("pkcs11:token=t;object=k?pin-value=2468"),
                    ..token
                },
                "identity.pkcs11_uri",
                "pin-value",
            ),
            (
                TokenSettings {
                    pkcs11_uri: Some("pkcs11:token=t"),
                    ..token
                },
                "identity.pkcs11_uri",
                "object=",
            ),
            (
                TokenSettings {
                    module: Some(module),
                    ..file_key
                },
                "identity.module",
                "only with pkcs11_uri",
            ),
            (
                TokenSettings {
                    pin_env: Some("P"),
                    ..file_key
                },
                "identity.pin_env",
                "only with pkcs11_uri",
            ),
            (
                TokenSettings {
                    pin_file: Some(&pin),
                    ..file_key
                },
                "identity.pin_file",
                "only with pkcs11_uri",
            ),
        ] {
            let e = s.check().unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(says), "{e}");
            assert!(!e.message.contains("2468"), "a PIN is never shown: {e}");
        }
        // A module that is not there is not the configuration's error.
        assert!(TokenSettings {
            module: Some(module),
            ..token
        }
        .check()
        .is_ok());
        // The PIN: the first line of the file; a variable not set is named, no PIN shown.
        let from_file = TokenSettings {
            pin_env: None,
            pin_file: Some(&pin),
            ..token
        };
        assert_eq!(from_file.pin().unwrap().unwrap().as_str(), "1234");
        let unset = TokenSettings {
            pin_env: Some("LS_CORE_TEST_PIN_NOT_SET"),
            ..token
        };
        let e = unset.pin().unwrap_err();
        assert_eq!(e.key, "identity.pin_env");
        assert!(e.message.contains("LS_CORE_TEST_PIN_NOT_SET"), "{e}");
        assert!(TokenSettings::default().pin().unwrap().is_none());
        // An empty PIN is not sent to the token.
        let empty = d.path().join("empty-pin");
        std::fs::write(&empty, "\nsecond line\n").unwrap();
        let e = TokenSettings {
            pin_env: None,
            pin_file: Some(&empty),
            ..token
        }
        .pin()
        .unwrap_err();
        assert_eq!(e.key, "identity.pin_file");
        assert!(e.message.contains("empty"), "{e}");
        std::env::set_var("LS_CORE_TEST_PIN_EMPTY", "");
        let e = TokenSettings {
            pin_env: Some("LS_CORE_TEST_PIN_EMPTY"),
            ..token
        }
        .pin()
        .unwrap_err();
        assert_eq!(e.key, "identity.pin_env");
        assert!(e.message.contains("empty"), "{e}");
    }
}
