//! SoftHSM2 tokens for tests: a token folder and configuration of the test process's own
//! (`SOFTHSM2_CONF`), tokens made by `softhsm2-util --init-token --free` before the module is
//! first loaded (SoftHSM2 reads its configuration and tokens when it is initialised, once per
//! process), and keys made on them as a user would, through the PKCS#11 seam.
//!
//! ```no_run
//! let Some(hsm) = ls_tests::softhsm::SoftHsm::get() else { return };
//! let uri = hsm.uri(ls_tests::softhsm::EC_TOKEN, "alice");
//! // … Pkcs11Key::generate(&uri, Some(hsm.module()), ls_tests::softhsm::PIN, KeyType::EcP256) …
//! ```
//!
//! The folder is `ls-tests-softhsm-<pid>-…` in the system's temporary folder; the module stays
//! initialised until the process ends, so it cannot be removed by the test: the next run
//! removes the folders of processes that have ended.

use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The user PIN of every token.
pub const PIN: &str = "4711-layersec";
/// The security officer's PIN of every token.
pub const SO_PIN: &str = "0815-layersec-so";
/// A token for EC keys (signing, key agreement).
pub const EC_TOKEN: &str = "ls-ec";
/// A token for RSA keys.
pub const RSA_TOKEN: &str = "ls-rsa";
/// A token that only the wrong-PIN test logs in to (login state is shared by a process's
/// sessions: a key loaded while the token is logged in is not asked to the token).
pub const PIN_TOKEN: &str = "ls-pin";
/// A token whose login the lost-login test takes away (and whose PIN it changes).
pub const RELOGIN_TOKEN: &str = "ls-relogin";
/// A token with two keys of one process: the shared-login test logs it out and changes its
/// PIN.
pub const SHARED_TOKEN: &str = "ls-shared";

/// SoftHSM2 for the tests of this process.
pub struct SoftHsm {
    /// The folder: `softhsm2.conf`, `tokens/`, `spy.log`.
    pub dir: PathBuf,
    module: PathBuf,
    spy: Option<PathBuf>,
}

/// Where Debian puts a library of the SoftHSM2 and OpenSC packages.
fn find_lib(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl SoftHsm {
    /// The process's SoftHSM2 (made on first use), or `None` after [`crate::skip`] when
    /// `softhsm2` is not installed (a failure under `LS_REQUIRE_FIXTURES=1`).
    #[track_caller]
    pub fn get() -> Option<&'static SoftHsm> {
        static HSM: OnceLock<Result<SoftHsm, String>> = OnceLock::new();
        match HSM.get_or_init(SoftHsm::make) {
            Ok(h) => Some(h),
            Err(why) => {
                crate::skip(why);
                None
            }
        }
    }

    fn make() -> Result<SoftHsm, String> {
        let module = find_lib(&[
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        ])
        .ok_or("SoftHSM2 is not installed (apt-get install softhsm2; scripts/deps.sh)")?;
        let util_ok = Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !util_ok {
            return Err("softhsm2-util is not on PATH (apt-get install softhsm2)".into());
        }
        remove_stale_folders();
        let dir = tempfile::Builder::new()
            .prefix(&format!("ls-tests-softhsm-{}-", std::process::id()))
            .tempdir()
            .map_err(|e| format!("cannot make a temporary folder: {e}"))?
            .keep();
        let tokens = dir.join("tokens");
        std::fs::create_dir(&tokens).map_err(|e| e.to_string())?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                 slots.removable = false\n",
                tokens.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        for label in [EC_TOKEN, RSA_TOKEN, PIN_TOKEN, RELOGIN_TOKEN, SHARED_TOKEN] {
            let o = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", label, "--pin", PIN])
                .args(["--so-pin", SO_PIN])
                .output()
                .map_err(|e| format!("cannot run softhsm2-util: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "softhsm2-util --init-token failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
        let spy = find_lib(&[
            "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
            "/usr/lib/aarch64-linux-gnu/pkcs11-spy.so",
            "/usr/lib/softhsm/pkcs11-spy.so",
        ]);
        // Read by SoftHSM2 when it is initialised and by OpenSC's pkcs11-spy when it is loaded:
        // both happen after this, in this process, and every test of the process asks for
        // this SoftHSM first (so no other thread reads the environment meanwhile).
        std::env::set_var("SOFTHSM2_CONF", &conf);
        std::env::set_var("PKCS11SPY", &module);
        std::env::set_var("PKCS11SPY_OUTPUT", dir.join("spy.log"));
        Ok(SoftHsm { dir, module, spy })
    }

    /// One test at a time on this process's tokens, for the tests that start processes using
    /// them (`layersec`, `layersec-server`): hold the guard for the whole test. SoftHSM2's file
    /// store is not safe for several processes writing one token at once — a process may then
    /// see the token missing or fail its login with `CKR_GENERAL_ERROR`
    /// (softhsm/SoftHSMv2#757) —, which real HSMs do not suffer from; in-process tests need
    /// no guard (the module serialises its own threads).
    pub fn one_at_a_time(&self) -> std::sync::MutexGuard<'static, ()> {
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        ONE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `libsofthsm2.so`.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// OpenSC's `pkcs11-spy.so`, which passes every call to SoftHSM2 and writes it to
    /// [`SoftHsm::spy_log`]; `None` when `opensc-pkcs11` is not installed.
    pub fn spy(&self) -> Option<&Path> {
        self.spy.as_deref()
    }

    /// The calls the spy has logged so far.
    pub fn spy_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("spy.log")).unwrap_or_default()
    }

    /// The private key objects labelled `label` on `token`, read through cryptoki directly
    /// (not through the code under test): each one's Sensitive, Extractable and
    /// NeverExtractable attributes, and whether its CKA_VALUE could be read.
    pub fn private_keys(&self, token: &str, label: &str) -> Vec<(Vec<Attribute>, bool)> {
        let ctx = ls_core::keys::pkcs11::module(self.module()).unwrap();
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token)
            .unwrap_or_else(|| panic!("no token {token}"));
        let session = ctx.open_ro_session(slot).unwrap();
        match session.login(UserType::User, Some(&PIN.to_string().into())) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => panic!("login: {e}"),
        }
        let keys = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        keys.iter()
            .map(|k| {
                let flags = session
                    .get_attributes(
                        *k,
                        &[
                            AttributeType::Sensitive,
                            AttributeType::Extractable,
                            AttributeType::NeverExtractable,
                        ],
                    )
                    .unwrap();
                // Refused by the token: an error, or (cryptoki's way with
                // CKR_ATTRIBUTE_SENSITIVE) no value in the answer.
                let value = session
                    .get_attributes(*k, &[AttributeType::Value])
                    .ok()
                    .is_some_and(|v| v.iter().any(|a| matches!(a, Attribute::Value(_))));
                (flags, value)
            })
            .collect()
    }

    /// Exactly one private key `label` on `token`, sensitive and never extractable, its value
    /// not readable (an export attempt fails).
    #[track_caller]
    pub fn assert_one_locked_key(&self, token: &str, label: &str) {
        let keys = self.private_keys(token, label);
        assert_eq!(keys.len(), 1, "private keys {label} on {token}: {keys:?}");
        let (flags, value) = &keys[0];
        assert!(flags.contains(&Attribute::Sensitive(true)), "{flags:?}");
        assert!(flags.contains(&Attribute::Extractable(false)), "{flags:?}");
        assert!(
            flags.contains(&Attribute::NeverExtractable(true)),
            "{flags:?}"
        );
        assert!(!value, "the token gave out the private value of {label}");
    }

    /// The pkcs11-spy log `spy_log` that a process given a wrong PIN wrote (its module
    /// [`SoftHsm::spy`], `PKCS11SPY` and `PKCS11SPY_OUTPUT` set): exactly one `C_Login`, which
    /// the token refused — the PIN was not tried again. Its text, for further checks; `None`
    /// after a visible skip when OpenSC's pkcs11-spy is not installed.
    #[track_caller]
    pub fn assert_one_refused_login(&self, spy_log: &Path) -> Option<String> {
        if self.spy.is_none() {
            crate::skip(
                "OpenSC's pkcs11-spy.so is not installed (apt-get install opensc-pkcs11): the \
                 logins of a wrong PIN are not counted",
            );
            return None;
        }
        let log = std::fs::read_to_string(spy_log).unwrap_or_default();
        assert_eq!(log.matches("C_Login").count(), 1, "one login attempt");
        assert!(log.contains("CKR_PIN_INCORRECT"), "the spy saw the refusal");
        Some(log)
    }

    /// `pkcs11:token=<token>;object=<label>` (no module, no PIN).
    pub fn uri(&self, token: &str, label: &str) -> String {
        format!("pkcs11:token={token};object={label};type=private")
    }
}

/// Folders of earlier runs whose process has ended.
fn remove_stale_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("ls-tests-softhsm-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
