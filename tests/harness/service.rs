//! A real `layersec-server` for tests: `init` in a temporary folder, `serve` on loopback (the
//! `"as4"` URL read from its `"event":"listening"` log line), SIGKILL, restart on the same port,
//! and `admin` commands answering JSON.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `serve` waits for the service to report that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A service folder made by `layersec-server init`, and its running process (if any).
/// Dropping it kills the process and removes the folder (kept, and its path printed, when the
/// test panics).
pub struct RunningService {
    /// The service folder (configuration, identity/, tls/, store).
    pub dir: PathBuf,
    /// `<dir>/layersec-server.toml`.
    pub config: PathBuf,
    /// The AS4 endpoint, `https://127.0.0.1:<port>/…`, once served.
    pub url: String,
    /// The admin API's address, as the listening event names it, once served.
    pub admin_addr: String,
    /// The service's stderr lines, of every start in turn.
    pub log: Arc<Mutex<Vec<String>>>,
    child: Option<Child>,
    bin: PathBuf,
    /// `host:port` of the AS4 listener once known: restarts keep the port.
    listen: Option<String>,
    /// Removes `dir` when dropped, after the process (see `Drop`).
    _tmp: crate::TempDir,
}

impl RunningService {
    /// `bin init` a new service listening on loopback ports of the system's choice; `tweak`
    /// edits the configuration text. Not started: see [`RunningService::serve`].
    pub fn init(bin: &Path, name: &str, tweak: impl FnOnce(String) -> String) -> RunningService {
        let tmp = crate::tempdir(name);
        let dir = tmp.to_path_buf();
        let out = crate::run(Command::new(bin).args([
            "init",
            "--dir",
            path_str(&dir),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]));
        assert!(
            out.status.success(),
            "layersec-server init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.join("layersec-server.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, tweak(text)).unwrap();
        RunningService {
            dir,
            config,
            url: String::new(),
            admin_addr: String::new(),
            log: Arc::new(Mutex::new(Vec::new())),
            child: None,
            bin: bin.to_path_buf(),
            listen: None,
            _tmp: tmp,
        }
    }

    /// Another node of the same service (a store shared by several nodes: PostgreSQL): a
    /// folder of its own with this one's configuration, signing identity, TLS certificate and
    /// admin token (all nodes are one service to its clients), not its store folder; loopback
    /// ports of its own. Not started.
    pub fn another_node(&self, name: &str) -> RunningService {
        let tmp = crate::tempdir(name);
        let dir = tmp.to_path_buf();
        let copy = |rel: &str| {
            let to = dir.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(self.dir.join(rel), &to).unwrap_or_else(|e| panic!("copy {rel}: {e}"));
        };
        for rel in [
            "layersec-server.toml",
            "identity/service.key",
            "identity/service.crt",
            "tls/server.crt",
            "tls/server.key",
            "admin.token",
        ] {
            copy(rel);
        }
        RunningService {
            config: dir.join("layersec-server.toml"),
            dir,
            url: String::new(),
            admin_addr: String::new(),
            log: Arc::new(Mutex::new(Vec::new())),
            child: None,
            bin: self.bin.clone(),
            listen: None,
            _tmp: tmp,
        }
    }

    /// Start `serve` and wait until it listens; fills `url` and `admin_addr`. A restart
    /// listens on the port of the first start, so clients' configurations stay valid.
    pub fn serve(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "--config", path_str(&self.config)]);
        if let Some(listen) = &self.listen {
            cmd.args(["--listen", listen]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        // Reads the log to its end, so the service never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("\"event\":\"listening\"") {
                    if let Some(t) = tx.take() {
                        let _ = t.send(line.clone());
                    }
                }
                log.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "layersec-server did not report listening:\n{}",
                    self.logs().join("\n")
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        self.url = v["as4"]
            .as_str()
            .expect("the listening event names the as4 URL")
            .to_string();
        self.admin_addr = v["admin"].as_str().unwrap_or_default().to_string();
        self.listen = Some(self.hostport().to_string());
        self.child = Some(child);
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The running process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        crate::peak_rss_of(self.pid()?)
    }

    /// SIGKILL, no goodbye; waits for the process to end. Nothing if not running.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to the running process (a graceful stop); does not wait. Nothing if not running.
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill -TERM {}", c.id());
        }
    }

    /// Wait up to `timeout` for the process to end; its exit status, or None if it still runs
    /// (or was not started). Once it ended, the service counts as stopped.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + timeout;
        loop {
            let status = self.child.as_mut()?.try_wait().expect("try_wait");
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port` of the AS4 endpoint (empty before the first `serve`).
    pub fn hostport(&self) -> &str {
        self.url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default()
    }

    /// `bin admin --config <config> <args>`, whatever its outcome.
    pub fn admin_raw(&self, args: &[&str]) -> Output {
        crate::run(
            Command::new(&self.bin)
                .args(["admin", "--config", path_str(&self.config)])
                .args(args),
        )
    }

    /// `bin admin --config <config> <args>`, which must succeed; its JSON answer (`Null` when it
    /// prints nothing).
    pub fn admin(&self, args: &[&str]) -> serde_json::Value {
        let o = self.admin_raw(args);
        assert!(
            o.status.success(),
            "admin {args:?}: exit {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        if o.stdout.iter().all(u8::is_ascii_whitespace) {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "admin {args:?}: not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// The stderr lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The service's signing certificate (`identity/service.crt`), for clients.
    pub fn service_cert_path(&self) -> PathBuf {
        self.dir.join("identity/service.crt")
    }

    /// The service's TLS certificate (`tls/server.crt`), the CA of clients' connections.
    pub fn tls_cert_path(&self) -> PathBuf {
        self.dir.join("tls/server.crt")
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        // The process first; the folder goes with `_tmp` afterwards.
        self.stop();
    }
}

/// `layersec-server` in the folder of `beside` (a file such as `env!("CARGO_BIN_EXE_layersec")`,
/// or a folder such as a test's `target/<profile>`), built there with
/// `cargo build -p ls-server --bin layersec-server` (same target folder and profile) if missing.
pub fn server_bin_beside(beside: &Path) -> PathBuf {
    let profile_dir = if beside.is_dir() {
        beside
    } else {
        beside.parent().expect("a file has a folder")
    };
    let bin = profile_dir.join("layersec-server");
    static BUILD: Mutex<()> = Mutex::new(());
    let _once = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .args([
                "build",
                "--quiet",
                "-p",
                "ls-server",
                "--bin",
                "layersec-server",
            ])
            .arg("--target-dir")
            .arg(profile_dir.parent().expect("target dir"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
        }
        let out = crate::run(&mut cmd);
        assert!(
            out.status.success(),
            "building layersec-server failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(bin.is_file(), "{} is missing", bin.display());
    bin
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
