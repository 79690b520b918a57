//! Shared helpers of the ABI tests: paths, header generation, the built library, commands.
#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// ls-ffi/
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace root (the parent of ls-ffi/).
pub fn workspace_dir() -> PathBuf {
    crate_dir()
        .parent()
        .expect("ls-ffi has a parent")
        .to_path_buf()
}

/// include/layersec.h, the committed header.
pub fn header_path() -> PathBuf {
    workspace_dir().join("include").join("layersec.h")
}

/// The header as cbindgen generates it now from the crate's source and cbindgen.toml.
pub fn generate_header() -> String {
    let mut config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("ls-ffi/cbindgen.toml is readable and valid");
    config.after_includes = Some(layersec::header_defines());
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir().join("src").join("lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

/// target/<profile>/, derived from this test executable (target/<profile>/deps/<test>-<hash>).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("exe dir");
    assert_eq!(
        deps.file_name().and_then(|n| n.to_str()),
        Some("deps"),
        "unexpected test location {}",
        exe.display()
    );
    deps.parent().expect("profile dir").to_path_buf()
}

/// target/<profile>/liblayersec.so, built with `cargo build -p ls-ffi` (same profile and target
/// folder as this test) once per test process, so it matches the source under test.
pub fn cdylib() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_dir = profile_dir();
            let target_dir = profile_dir.parent().expect("target dir");
            let profile = profile_dir
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace_dir())
                .args(["build", "--quiet", "-p", "ls-ffi", "--lib", "--target-dir"])
                .arg(target_dir);
            match profile.as_str() {
                "debug" => {}
                "release" => {
                    cmd.arg("--release");
                }
                other => {
                    cmd.args(["--profile", other]);
                }
            }
            let out = run(&mut cmd);
            assert!(
                out.status.success(),
                "cargo build -p ls-ffi failed:\n{}",
                text(&out)
            );
            let lib = profile_dir.join("liblayersec.so");
            assert!(lib.is_file(), "{} was not built", lib.display());
            lib
        })
        .clone()
}

/// Runs a command, panicking with a clear message if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()))
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether a program can be run (`prog --version` starts).
pub fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A fresh temporary folder for one test, removed when the guard is dropped.
pub fn tempdir(name: &str) -> ls_tests::TempDir {
    ls_tests::tempdir(&format!("ffi-{name}"))
}

/// The library's SONAME, `liblayersec.so.<major>`, from the crate version (as build.rs sets
/// it).
pub fn soname() -> String {
    format!("liblayersec.so.{}", env!("CARGO_PKG_VERSION_MAJOR"))
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
