//! The C examples (examples-c/) built with strict warnings against the library under test and
//! run through their Makefile's round trip (keygen → seal → open → compare, plus refusals),
//! then again under valgrind: no memory errors, no definite leaks.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const VALGRIND: &[&str] = &[
    "valgrind",
    "-q",
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite",
    // A false positive of OpenSSL's AVX AES-GCM when the tag comes after the ciphertext: the
    // file says why it is believed to be one.
    concat!(
        "--suppressions=",
        env!("CARGO_MANIFEST_DIR"),
        "/../examples-c/valgrind.supp"
    ),
];

fn make_run(build: &Path, runner: &[&str]) -> std::process::Output {
    let lib = cdylib();
    let libdir = lib.parent().unwrap();
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(workspace_dir().join("examples-c"))
        .arg(format!("LIBDIR={}", libdir.display()))
        .arg(format!("BUILD={}", build.display()))
        .arg(format!("RUNNER={}", runner.join(" ")))
        .arg("run");
    run(&mut cmd)
}

#[test]
fn c_examples_round_trip() {
    assert!(have("make"), "make is needed to build the C examples");
    let tmp = tempdir("examples");
    let out = make_run(&tmp.join("build"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("examples-c: round trip OK"),
        "the C examples failed:\n{}",
        text(&out)
    );
    for line in [
        "filename: invoice.xml",
        "signer: CN=alice",
        "LS_ERR_SIGNER_MISMATCH",
    ] {
        assert!(
            stdout.contains(line),
            "missing {line:?} in:\n{}",
            text(&out)
        );
    }

    if !have("valgrind") {
        ls_tests::skip(
            "the valgrind run of the C examples: valgrind is not installed (apt-get install valgrind)",
        );
        return;
    }
    let out = make_run(&tmp.join("build"), VALGRIND);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("examples-c: round trip OK"),
        "the C examples fail under valgrind (memory error or definite leak; exit 99 is valgrind's):\n{}",
        text(&out)
    );
}

/// The valgrind check can fail: a program that forgets to free what the library gave it is
/// reported as a definite leak.
#[test]
fn valgrind_catches_a_leaked_ls_bytes() {
    if !have("valgrind") {
        ls_tests::skip("valgrind is not installed (apt-get install valgrind)");
        return;
    }
    let tmp = tempdir("leak");
    let lib = cdylib();
    for name in ["liblayersec.so".to_string(), soname()] {
        std::os::unix::fs::symlink(&lib, tmp.join(name)).unwrap();
    }
    let src = tmp.join("leak.c");
    write(
        &src,
        r#"#include "layersec.h"
#include <stdio.h>
static size_t forget(const ls_identity *id) {
    ls_cert *cert = NULL;
    ls_bytes pem = {NULL, 0};
    size_t n;
    if (ls_identity_cert(id, &cert) != LS_OK || ls_cert_to_pem(cert, &pem) != LS_OK) return 0;
    n = pem.len;
    ls_cert_free(cert);
    return n; /* pem is never given back: a leak */
}
int main(void) {
    ls_identity *id = NULL;
    size_t n;
    if (ls_identity_generate("leaky", LS_KEY_EC_P256, 1, NULL, &id) != LS_OK) return 1;
    n = forget(id);
    ls_identity_free(id);
    printf("%lu\n", (unsigned long)n);
    return n > 0 ? 0 : 1;
}
"#,
    );
    let exe = tmp.join("leak");
    let out = run(Command::new("gcc")
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic-errors",
            "-g",
            "-I",
        ])
        .arg(workspace_dir().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&tmp)
        .arg("-llayersec")
        .arg(format!("-Wl,-rpath,{}", tmp.display())));
    assert!(out.status.success(), "gcc:\n{}", text(&out));
    let out = run(Command::new(VALGRIND[0]).args(&VALGRIND[1..]).arg(&exe));
    assert_eq!(
        out.status.code(),
        Some(99),
        "valgrind should report the leaked ls_bytes as definitely lost:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("definitely lost"),
        "{}",
        text(&out)
    );
}
