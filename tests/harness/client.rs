//! A `layersec` client of a test service ([`crate::service::RunningService`]): `layersec init`
//! in the service's folder, polling every second and retrying soon, registered at the service;
//! the commands the tests run with its configuration.

use crate::service::RunningService;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// One party's client: its folder and configuration.
#[derive(Debug)]
pub struct Client {
    pub id: String,
    /// `<service folder>/client-<id>`.
    pub dir: PathBuf,
    /// Its `layersec.toml`.
    pub config: PathBuf,
    /// Its certificate (what partners and the service are given).
    pub cert: PathBuf,
    bin: PathBuf,
}

/// The JSON on a command's stdout (the test fails, with both streams, if it is not).
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

impl Client {
    /// `bin init` for party `id` of `svc` (with `init_args` besides the service's URL and
    /// certificates), polling every second and retrying within 2 s. Not registered yet.
    pub fn init(bin: &Path, svc: &RunningService, id: &str, init_args: &[&str]) -> Client {
        let dir = svc.dir.join(format!("client-{id}"));
        let o = Command::new(bin)
            .args([
                "init",
                "--party",
                id,
                "--service",
                &svc.url,
                "--dir",
                dir.to_str().unwrap(),
                "--service-cert",
                svc.service_cert_path().to_str().unwrap(),
                "--ca-file",
                svc.tls_cert_path().to_str().unwrap(),
                "--json",
            ])
            .args(init_args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "init: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v = json(&o);
        let cert = PathBuf::from(v["certificate"].as_str().unwrap());
        let cert = if cert.is_absolute() {
            cert
        } else {
            dir.join(cert)
        };
        assert_eq!(v["mpc"], format!("urn:layersec:mpc:{id}"));
        let config = PathBuf::from(v["config"].as_str().unwrap());
        let c = Client {
            id: id.to_string(),
            dir,
            config,
            cert,
            bin: bin.to_path_buf(),
        };
        c.edit_config(|t| {
            t.replace("interval_secs = 60", "interval_secs = 1")
                .replace("initial_secs = 30", "initial_secs = 1")
                .replace("max_secs = 3600", "max_secs = 2")
        });
        c
    }

    /// Registered at `svc` with its certificate, under a subscriber of its own
    /// (`party add` with `extra` arguments besides).
    pub fn register(&self, svc: &RunningService, extra: &[&str]) {
        let sub = svc.admin(&["subscriber", "add", "--organisation", &self.id]);
        let mut args = vec![
            "party".to_string(),
            "add".into(),
            "--subscriber".into(),
            sub["id"].to_string(),
            "--party".into(),
            self.id.clone(),
            "--certificate".into(),
            self.cert.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        svc.admin(&args);
    }

    /// Change its configuration file.
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, f(text)).unwrap();
    }

    /// `layersec <args> --config <its configuration>`.
    pub fn cmd(&self, args: &[&str]) -> Output {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--config", self.config.to_str().unwrap()]);
        Command::new(&self.bin).args(&a).output().unwrap()
    }

    /// [`Client::cmd`], which must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "layersec {args:?} ({}): exit {:?}: {}",
            self.id,
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// `layersec poll --json`, which must succeed: the documents received (the lines with a
    /// `path`).
    pub fn poll_received(&self) -> Vec<serde_json::Value> {
        let o = self.ok(&["poll", "--json"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &serde_json::Value| v.get("path").is_some())
            .collect()
    }

    /// `layersec run --json` in the background, its events in `<dir>/run.log` (of the last
    /// start), stderr thrown away.
    pub fn spawn_run(&self) -> Child {
        let log = std::fs::File::create(self.dir.join("run.log")).unwrap();
        Command::new(&self.bin)
            .args(["run", "--json", "--config", self.config.to_str().unwrap()])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Documents in one of its folders (not metadata, records or temporary files), sorted.
    pub fn documents(&self, folder: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join(folder))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            p.is_file()
                && !n.starts_with('.')
                && !n.ends_with(".meta.json")
                && !n.ends_with(".sent.json")
                && !n.ends_with(".reason.txt")
                && !n.ends_with(".signed.p7m")
                && !n.ends_with(".receipt.p7m")
        });
        v.sort();
        v
    }
}
