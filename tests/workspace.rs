//! The workspace's `rust-version` is true: no locked package needs a newer Rust, and every member
//! crate inherits the workspace value (so there is one place to raise it).

use std::path::Path;
use std::process::Command;

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `1.89`, `1.85.0` → (1, 89, 0).
fn parse_version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("rust-version {v:?} is not numeric"))
    });
    let major = parts.next().expect("a major version");
    (major, parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn manifest(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

#[test]
fn rust_version_covers_every_locked_package_and_every_member_inherits_it() {
    let root = manifest(&workspace_root().join("Cargo.toml"));
    let declared = root["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("[workspace.package] rust-version is set");
    let ours = parse_version(declared);

    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata --locked failed (is Cargo.lock up to date?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let packages = meta["packages"].as_array().unwrap();

    // Every locked package (those of other platforms too) builds with the declared version.
    let mut newer = Vec::new();
    let mut highest = ("", (0, 0, 0));
    for p in packages {
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        let v = parse_version(rv);
        if v > highest.1 {
            highest = (p["name"].as_str().unwrap(), v);
        }
        if v > ours {
            newer.push(format!("{} {} needs {rv}", p["name"], p["version"]));
        }
    }
    assert!(
        newer.is_empty(),
        "the workspace says rust-version = {declared}, but locked packages need newer: {newer:?}"
    );
    eprintln!(
        "rust-version {declared}; the highest a locked package needs: {} {:?}",
        highest.0, highest.1
    );

    // Every member takes the workspace's value (`rust-version.workspace = true`), so the
    // checks above hold for each of them.
    let mut checked = 0;
    for p in packages {
        if !members.contains(&p["id"].as_str().unwrap()) {
            continue;
        }
        let name = p["name"].as_str().unwrap();
        let path = Path::new(p["manifest_path"].as_str().unwrap());
        let m = manifest(path);
        let inherited = m["package"]
            .get("rust-version")
            .and_then(|v| v.get("workspace"))
            .and_then(|v| v.as_bool());
        assert_eq!(
            inherited,
            Some(true),
            "{name} ({}) must say rust-version.workspace = true",
            path.display()
        );
        assert_eq!(p["rust_version"].as_str(), Some(declared), "{name}");
        checked += 1;
    }
    assert_eq!(checked, members.len());
    assert!(checked >= 6, "only {checked} workspace members found");
}
