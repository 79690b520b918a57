//! Real mail servers for tests: a private Postfix (submission with STARTTLS, SMTPS) and Dovecot
//! (IMAP with STARTTLS, IMAPS, POP3 with STLS, POP3S) on loopback ports of their own, every file
//! in one temporary folder, run by `scripts/mail-servers.sh` (see its header for the details).
//!
//! Users are `NAME@example.test` ([`DOMAIN`]); they log in (IMAP, POP3, SMTP AUTH) with the full
//! address (the bare name works too) and their mail is the Maildir [`MailServers::maildir`].
//! `alice` (password `alice-pw`) and `bob` (`bob-pw`) exist from the start; more with
//! [`MailServers::add_user`]. Mail to an unknown user of `example.test` is refused at `RCPT TO`
//! (550 5.1.1); mail to any address of [`BOUNCE_DOMAIN`] is accepted and then bounced: a DSN
//! (`multipart/report; report-type=delivery-status`) reaches the sender's Maildir. The servers
//! relay nothing and accept submissions only after `AUTH`, which is offered only under TLS.
//!
//! ```no_run
//! let Some(mail) = ls_tests::mail::MailServers::start() else { return };
//! let to = mail.add_user("carol", "carol-pw"); // "carol@example.test"
//! // … a client submits to mail.smtp_url() trusting mail.ca_pem_path() …
//! let got = mail.wait_for_mail("carol", 1, std::time::Duration::from_secs(5));
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The users' domain: every user is `NAME@example.test`.
pub const DOMAIN: &str = "example.test";
/// Mail to any address of this domain is accepted by Postfix and then bounced with a DSN.
pub const BOUNCE_DOMAIN: &str = "bounce.test";
/// The users that exist from the start, as (name, password).
pub const DEFAULT_USERS: [(&str, &str); 2] = [("alice", "alice-pw"), ("bob", "bob-pw")];
/// Owner of the Maildirs (Debian's `mail`), uid and gid.
const MAIL_ID: u32 = 8;

/// The loopback ports of one instance.
#[derive(Clone, Copy, Debug)]
pub struct MailPorts {
    /// Submission: STARTTLS, then AUTH.
    pub smtp: u16,
    /// Submission with implicit TLS.
    pub smtps: u16,
    /// IMAP: STARTTLS, then LOGIN/AUTHENTICATE.
    pub imap: u16,
    pub imaps: u16,
    /// POP3: STLS, then USER/PASS or AUTH.
    pub pop3: u16,
    pub pop3s: u16,
}

/// A running Postfix + Dovecot pair. Dropping it stops both and removes the folder (kept, and its
/// path printed, when the thread panics: the logs are in it).
pub struct MailServers {
    /// The instance's folder: `ca.pem`, `other-ca.pem`, `mail/NAME/`, `postfix.log`,
    /// `dovecot.log`, the servers' configuration and queue.
    pub dir: PathBuf,
    pub ports: MailPorts,
    script: PathBuf,
    stopped: bool,
    tmp: Option<tempfile::TempDir>,
}

/// `scripts/mail-servers.sh` of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mail-servers.sh")
}

/// Six distinct free loopback ports (bound together, then released).
fn free_ports() -> MailPorts {
    let listeners: Vec<std::net::TcpListener> = (0..6)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let p: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    MailPorts {
        smtp: p[0],
        smtps: p[1],
        imap: p[2],
        imaps: p[3],
        pop3: p[4],
        pop3s: p[5],
    }
}

/// `KEY=value` lines of the script's output.
fn keys(out: &Output) -> HashMap<String, String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl MailServers {
    /// Start an instance on free loopback ports with [`DEFAULT_USERS`]; `None` after
    /// [`crate::skip`] when it cannot run here (Postfix or Dovecot not installed, not root),
    /// which fails the test under `LS_REQUIRE_FIXTURES=1`. Panics when the servers fail to start.
    #[track_caller]
    pub fn start() -> Option<MailServers> {
        let script = script();
        let mut last = String::new();
        // A port found free may be taken by another test before the daemons bind it: new ports.
        for _ in 0..3 {
            let tmp = tempfile::Builder::new()
                .prefix("ls-mail-")
                // Under /tmp whatever TMPDIR says: the mail user, Dovecot's auth and Postfix must
                // cross every folder above the instance (o+x).
                .tempdir_in("/tmp")
                .unwrap_or_else(|e| panic!("cannot make a folder in /tmp: {e}"));
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
            let ports = free_ports();
            let out = crate::run(
                Command::new("bash")
                    .arg(&script)
                    .arg("start")
                    .arg(tmp.path())
                    .args(["--smtp", &ports.smtp.to_string()])
                    .args(["--smtps", &ports.smtps.to_string()])
                    .args(["--imap", &ports.imap.to_string()])
                    .args(["--imaps", &ports.imaps.to_string()])
                    .args(["--pop3", &ports.pop3.to_string()])
                    .args(["--pop3s", &ports.pop3s.to_string()])
                    .stdin(Stdio::null()),
            );
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            match out.status.code() {
                Some(0) => {
                    let k = keys(&out);
                    let dir = PathBuf::from(k.get("MAIL_DIR").expect("MAIL_DIR= from the script"));
                    return Some(MailServers {
                        dir,
                        ports,
                        script,
                        stopped: false,
                        tmp: Some(tmp),
                    });
                }
                Some(3) => {
                    crate::skip(format_args!(
                        "no mail servers here: {} (scripts/deps.sh installs postfix and dovecot)",
                        stderr.trim()
                    ));
                    return None;
                }
                _ => {
                    // Stop whatever half started before the folder goes.
                    let _ = Command::new("bash")
                        .arg(&script)
                        .arg("stop")
                        .arg(tmp.path())
                        .stdin(Stdio::null())
                        .output();
                    last = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
                }
            }
        }
        panic!("scripts/mail-servers.sh start failed three times:\n{last}");
    }

    fn url(scheme: &str, port: u16) -> String {
        format!("{scheme}://127.0.0.1:{port}")
    }
    /// `smtp://127.0.0.1:PORT`: submission, STARTTLS required before AUTH and mail.
    pub fn smtp_url(&self) -> String {
        Self::url("smtp", self.ports.smtp)
    }
    /// `smtps://127.0.0.1:PORT`: submission with implicit TLS.
    pub fn smtps_url(&self) -> String {
        Self::url("smtps", self.ports.smtps)
    }
    /// `imap://127.0.0.1:PORT`: STARTTLS required before login.
    pub fn imap_url(&self) -> String {
        Self::url("imap", self.ports.imap)
    }
    /// `imaps://127.0.0.1:PORT`.
    pub fn imaps_url(&self) -> String {
        Self::url("imaps", self.ports.imaps)
    }
    /// `pop3://127.0.0.1:PORT`: STLS required before login.
    pub fn pop3_url(&self) -> String {
        Self::url("pop3", self.ports.pop3)
    }
    /// `pop3s://127.0.0.1:PORT`.
    pub fn pop3s_url(&self) -> String {
        Self::url("pop3s", self.ports.pop3s)
    }

    /// The CA (EC P-256) that signed the servers' certificate (SAN `localhost`, `127.0.0.1`,
    /// `::1`): clients trust this file.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// A CA that did NOT sign the servers' certificate (same subject name as the real one):
    /// a client trusting only this must refuse the servers.
    pub fn other_ca_path(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// The address of user `name`: `name@example.test`.
    pub fn address(&self, name: &str) -> String {
        format!("{name}@{DOMAIN}")
    }
    /// The domain whose every address bounces: [`BOUNCE_DOMAIN`].
    pub fn bounce_domain(&self) -> &'static str {
        BOUNCE_DOMAIN
    }

    fn script_cmd(&self, args: &[&str]) -> Output {
        crate::run_ok(
            Command::new("bash")
                .arg(&self.script)
                .arg(args[0])
                .arg(&self.dir)
                .args(&args[1..])
                .stdin(Stdio::null()),
        )
    }

    /// Add user `name` (lower-case letters, digits, `. _ + -`) with `password`, or give an
    /// existing one a new password, while the servers run: usable at once for login and as a
    /// recipient. Returns the address, `name@example.test`.
    pub fn add_user(&self, name: &str, password: &str) -> String {
        self.script_cmd(&["adduser", name, password]);
        self.address(name)
    }

    /// The Maildir of user `name` (`new/`, `cur/`, `tmp/`; Dovecot adds its index files).
    pub fn maildir(&self, name: &str) -> PathBuf {
        self.dir
            .join("mail")
            .join(name.trim_end_matches(&format!("@{DOMAIN}")))
    }

    /// The files of the messages in `name`'s Maildir (`new/` and `cur/`), oldest first by name.
    pub fn messages(&self, name: &str) -> Vec<PathBuf> {
        let md = self.maildir(name);
        let mut v: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(md.join(sub)).into_iter().flatten())
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        v.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        v
    }

    /// Waits until `name`'s Maildir holds at least `n` messages (panics after `timeout`, dumping
    /// the logs); returns them.
    #[track_caller]
    pub fn wait_for_mail(&self, name: &str, n: usize, timeout: Duration) -> Vec<PathBuf> {
        let end = Instant::now() + timeout;
        loop {
            let m = self.messages(name);
            if m.len() >= n {
                return m;
            }
            if Instant::now() > end {
                panic!(
                    "{name} has {} message(s), not {n}, after {timeout:?}\n{}",
                    m.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Puts `raw` (a whole message, header and body) into `name`'s Maildir as a new message,
    /// bypassing SMTP (foreign mails, duplicates, crafted bounces). Written in `tmp/`, then renamed
    /// into `new/` under a unique name, owned by the mail user as Postfix would deliver it.
    /// Returns the message's path.
    pub fn deliver_raw(&self, name: &str, raw: &[u8]) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let md = self.maildir(name);
        assert!(md.join("new").is_dir(), "no user {name} (add_user first)");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let unique = format!(
            "{}.M{}P{}Q{}.ls-test",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = md.join("tmp").join(&unique);
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
            f.write_all(raw).unwrap();
            f.sync_all().unwrap();
        }
        std::os::unix::fs::chown(&tmp, Some(MAIL_ID), Some(MAIL_ID)).unwrap();
        let new = md.join("new").join(&unique);
        std::fs::rename(&tmp, &new).unwrap();
        new
    }

    /// Postfix's `message_size_limit` (bytes, headers that Postfix adds included; 64 MiB at
    /// start): larger submissions are refused with 552, at `MAIL FROM … SIZE=` or after `DATA`.
    /// Effective for the next connection.
    pub fn set_message_size_limit(&self, bytes: u64) {
        self.script_cmd(&["size-limit", &bytes.to_string()]);
    }

    /// Both servers' logs: `postfix.log`, then `dovecot.log`.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- postfix.log\n{}--- dovecot.log\n{}",
            read("postfix.log"),
            read("dovecot.log")
        )
    }

    /// Stops both servers (also done on drop). The folder stays until the drop.
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let out = Command::new("bash")
                .arg(&self.script)
                .arg("stop")
                .arg(&self.dir)
                .stdin(Stdio::null())
                .output();
            if let Ok(o) = out {
                if !o.status.success() {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "mail-servers.sh stop {}: {}",
                        self.dir.display(),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        self.stop();
        if let Some(d) = self.tmp.take() {
            if std::thread::panicking() {
                let kept = d.keep();
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "kept {} for inspection (the test failed): postfix.log, dovecot.log, mail/",
                    kept.display()
                );
            }
        }
    }
}
