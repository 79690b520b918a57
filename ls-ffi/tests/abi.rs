//! The ABI as a C user meets it: the committed header is what the source generates, the library
//! exports exactly the header's functions under the right SONAME, and the header compiles as C99
//! and C++11 with strict warnings, agreeing with the library at run time.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn header_up_to_date() {
    let generated = generate_header();
    let path = header_path();
    if std::env::var_os("LS_REGEN_HEADER").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed == generated {
        return;
    }
    let first_diff = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    panic!(
        "{} is out of date with the ls-ffi source (first difference at line {}:\n  committed: {:?}\n  generated: {:?}).\n\
         Regenerate it with\n    LS_REGEN_HEADER=1 cargo test -p ls-ffi --test abi header_up_to_date\n\
         then review and commit it.",
        path.display(),
        first_diff + 1,
        committed.lines().nth(first_diff).unwrap_or("<end of file>"),
        generated.lines().nth(first_diff).unwrap_or("<end of file>"),
    );
}

/// The header without its comments (which mention functions in prose).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        let block_first = match (block, line) {
            (Some(b), Some(l)) => b < l,
            (b, _) => b.is_some(),
        };
        match (block, line) {
            (Some(b), _) if block_first => {
                out.push_str(&rest[..b]);
                let end = rest[b + 2..].find("*/").expect("unterminated comment");
                rest = &rest[b + 2 + end + 2..];
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |e| &rest[l + e..]);
            }
            (None, None) => {
                out.push_str(rest);
                return out;
            }
            (Some(_), None) => unreachable!("a block comment alone is handled first"),
        }
    }
}

/// The functions the header declares: `ls_[a-z0-9_]+` followed by `(`, outside comments and
/// macros.
fn header_functions(header: &str) -> BTreeSet<String> {
    let code = strip_comments(header);
    let mut names = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let b = line.as_bytes();
        let mut i = 0;
        while let Some(p) = line[i..].find("ls_") {
            let start = i + p;
            let word_start =
                start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
            let mut end = start + 3;
            while end < b.len()
                && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
            {
                end += 1;
            }
            let mut k = end;
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            if word_start && k < b.len() && b[k] == b'(' {
                names.insert(line[start..end].to_string());
            }
            i = end;
        }
    }
    names
}

/// Defined symbols of `lib` as (type letter, name), from `nm` with `args`.
fn nm(args: &[&str], lib: &Path) -> Vec<(String, String)> {
    let out = run(Command::new("nm").args(args).arg(lib));
    assert!(out.status.success(), "nm failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [_, t, name] => Some((t.to_string(), name.to_string())),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn exported_symbols() {
    let header = std::fs::read_to_string(header_path()).expect("include/layersec.h exists");
    let declared = header_functions(&header);
    assert!(
        declared.len() >= 30 && declared.contains("ls_seal") && declared.contains("ls_open"),
        "the header parser found too little: {declared:?}"
    );

    let lib = cdylib();
    let exported = nm(&["-D", "--defined-only"], &lib);
    let ls: BTreeSet<String> = exported
        .iter()
        .filter(|(_, n)| n.starts_with("ls_"))
        .map(|(_, n)| n.clone())
        .collect();
    let missing: Vec<_> = declared.difference(&ls).collect();
    let undeclared: Vec<_> = ls.difference(&declared).collect();
    assert!(
        missing.is_empty() && undeclared.is_empty(),
        "exports of {} and declarations of include/layersec.h differ:\n  declared, not exported: {missing:?}\n  exported, not declared: {undeclared:?}",
        lib.display()
    );
    for (t, n) in exported.iter().filter(|(_, n)| n.starts_with("ls_")) {
        assert_eq!(t, "T", "{n} is exported as {t}, not as a function (T)");
    }
    // Nothing else leaks: rustc exports only the #[no_mangle] items of a cdylib. Anything a
    // toolchain must export anyway would be listed here, with the reason.
    const UNAVOIDABLE: &[&str] = &[];
    let others: Vec<_> = exported
        .iter()
        .map(|(_, n)| n.as_str())
        .filter(|n| !n.starts_with("ls_") && !UNAVOIDABLE.contains(n))
        .collect();
    assert!(
        others.is_empty(),
        "symbols other than ls_* are exported: {others:?}"
    );

    let out = run(Command::new("readelf").args(["-d"]).arg(&lib));
    assert!(out.status.success(), "readelf failed:\n{}", text(&out));
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let soname = dynamic
        .lines()
        .find(|l| l.contains("(SONAME)"))
        .and_then(|l| l.split('[').nth(1))
        .and_then(|s| s.split(']').next());
    assert_eq!(
        soname,
        Some(common::soname().as_str()),
        "SONAME of {}:\n{dynamic}",
        lib.display()
    );

    // The static library carries the same API (plus, unavoidably, Rust's std as local code).
    let a = lib.with_file_name("liblayersec.a");
    let in_a: BTreeSet<String> = nm(&["--defined-only", "--no-sort"], &a)
        .into_iter()
        .filter(|(t, n)| t == "T" && n.starts_with("ls_"))
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        in_a,
        declared,
        "ls_* functions of {} differ from the header",
        a.display()
    );
}

/// A folder with `liblayersec.so` and `liblayersec.so.<major>` (the SONAME programs ask for)
/// pointing at the library under test.
fn lib_link_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("lib");
    std::fs::create_dir_all(&dir).unwrap();
    let lib = cdylib();
    for name in ["liblayersec.so".to_string(), soname()] {
        let _ = std::fs::remove_file(dir.join(&name));
        std::os::unix::fs::symlink(&lib, dir.join(&name)).unwrap();
    }
    dir
}

/// A program that includes the header, checks its macros at compile time and the library
/// against them at run time. Valid C99 and C++11.
fn check_program() -> String {
    let mut codes = String::new();
    for c in ls_core::ErrorCode::ALL {
        codes.push_str(&format!(
            "    CHECK_CODE(LS_{}, {});\n",
            c.name(),
            c.as_i32()
        ));
    }
    format!(
        r#"#include "layersec.h"
#include "layersec.h" /* the include guard works */
#include <stdio.h>
#include <string.h>

/* Compile-time checks of the macros (C99 has no static_assert). */
typedef char check_version[(LS_VERSION_MAJOR >= 0 && LS_VERSION_MINOR >= 0 && LS_VERSION_PATCH >= 0) ? 1 : -1];
typedef char check_ok[(LS_OK == 0) ? 1 : -1];
#if !LS_VERSION_AT_LEAST(LS_VERSION_MAJOR, LS_VERSION_MINOR, LS_VERSION_PATCH)
#error "LS_VERSION_AT_LEAST is false for the header's own version"
#endif
#if LS_VERSION_AT_LEAST(LS_VERSION_MAJOR, LS_VERSION_MINOR, LS_VERSION_PATCH + 1) || \
    LS_VERSION_AT_LEAST(LS_VERSION_MAJOR, LS_VERSION_MINOR + 1, 0) || \
    LS_VERSION_AT_LEAST(LS_VERSION_MAJOR + 1, 0, 0)
#error "LS_VERSION_AT_LEAST is true for a later version"
#endif
#if !LS_VERSION_AT_LEAST(0, 0, 0)
#error "LS_VERSION_AT_LEAST(0, 0, 0) is false"
#endif

static int failures = 0;
#define CHECK(cond) do {{ if (!(cond)) {{ printf("FAILED: %s (line %d)\n", #cond, __LINE__); failures++; }} }} while (0)
#define CHECK_CODE(macro, value) do {{ CHECK((macro) == (value)); CHECK(strcmp(ls_result_name(macro), #macro) == 0); }} while (0)

int main(void) {{
    ls_result rc;
    ls_identity *id = (ls_identity *)&failures; /* garbage: must be reset to NULL */
    ls_bytes bytes = {{NULL, 0}};
    ls_seal_options so;
    ls_open_options oo;
    const ls_key_type key_type = LS_KEY_EC_P256;
    const uint32_t flags = LS_SEAL_PSS | LS_SEAL_CBC | LS_OPEN_ALLOW_SHA1;
    const int64_t no_time = LS_NO_TIME;

    CHECK(strcmp(ls_version(), LS_VERSION_STRING) == 0);
    CHECK(strcmp(ls_result_name(LS_OK), "LS_OK") == 0);
    CHECK(strcmp(ls_result_name(-12345), "LS_UNKNOWN") == 0);
{codes}
    ls_seal_options_init(&so);
    CHECK(so.struct_size == sizeof so);
    CHECK(so.flags == 0 && so.filename == NULL && so.mime_type == NULL);
    ls_open_options_init(&oo);
    CHECK(oo.struct_size == sizeof oo);
    CHECK(oo.sender == NULL && oo.partners == NULL && oo.kek == NULL);

    rc = ls_identity_load(NULL, NULL, NULL, &id);
    CHECK(rc == LS_ERR_NULL_ARGUMENT);
    CHECK(id == NULL);
    CHECK(strstr(ls_last_error_message(), "key_path") != NULL);
    rc = ls_cert_to_pem(NULL, &bytes);
    CHECK(rc == LS_ERR_NULL_ARGUMENT && bytes.data == NULL && bytes.len == 0);
    ls_bytes_free(&bytes);
    ls_bytes_free(NULL);
    ls_identity_free(NULL);
    ls_cert_free(NULL);
    ls_certstore_free(NULL);
    ls_opened_free(NULL);
    CHECK(ls_opened_signing_time(NULL) == no_time);
    CHECK(ls_opened_signer(NULL) == NULL);
    (void)key_type;
    (void)flags;

    rc = ls_identity_generate("abi-check", LS_KEY_EC_P256, 1, NULL, &id);
    CHECK(rc == LS_OK && id != NULL);
    CHECK(strcmp(ls_last_error_message(), "") == 0);
    ls_identity_free(id);

    if (failures == 0) printf("header check passed\n");
    return failures == 0 ? 0 : 1;
}}
"#
    )
}

/// How the check program links the library.
enum Link {
    /// `-llayersec` against the shared library (found at run time through an rpath).
    Shared,
    /// `liblayersec.a` plus the `Libs.private` of layersec.pc.in, as `pkg-config --static` gives.
    Static,
}

fn compile_and_run(compiler: &str, std_flag: &str, src_name: &str, extra: &[&str], link: Link) {
    if !have(compiler) {
        panic!("{compiler} is needed to test the header (apt-get install gcc g++)");
    }
    let tmp = tempdir(&format!("header-{compiler}"));
    let src = tmp.join(src_name);
    write(&src, &check_program());
    let exe = tmp.join("check");
    let mut cmd = Command::new(compiler);
    cmd.arg(std_flag)
        .args(["-pedantic-errors", "-Wall", "-Wextra", "-Werror"])
        .args(extra)
        .arg("-I")
        .arg(workspace_dir().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Shared => {
            let libdir = lib_link_dir(&tmp);
            cmd.arg("-L")
                .arg(&libdir)
                .arg("-llayersec")
                .arg(format!("-Wl,-rpath,{}", libdir.display()));
        }
        Link::Static => {
            let pc = std::fs::read_to_string(workspace_dir().join("layersec.pc.in"))
                .expect("layersec.pc.in exists");
            let private = pc
                .lines()
                .find_map(|l| l.strip_prefix("Libs.private:"))
                .expect("layersec.pc.in has a Libs.private line");
            cmd.arg(cdylib().with_file_name("liblayersec.a"))
                .args(private.split_whitespace());
        }
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "{compiler} {std_flag} rejects a program using include/layersec.h:\n{}",
        text(&out)
    );
    let out = run(&mut Command::new(&exe));
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("header check passed"),
        "the {compiler} header check program failed:\n{}",
        text(&out)
    );
}

#[test]
fn header_compiles_as_c99() {
    compile_and_run(
        "gcc",
        "-std=c99",
        "check.c",
        &["-Wstrict-prototypes", "-Wmissing-prototypes"],
        Link::Shared,
    );
}

#[test]
fn header_compiles_as_cpp11() {
    compile_and_run("g++", "-std=c++11", "check.cpp", &[], Link::Shared);
}

#[test]
fn static_library_links_with_the_pkg_config_libs() {
    compile_and_run("gcc", "-std=c99", "check.c", &[], Link::Static);
}

#[test]
fn header_parser_finds_declarations_not_prose() {
    let h = "/* ls_fake(x) in a comment */\n#define LS_X(a) ls_macro(a)\nls_result ls_real(int a);\nconst char *ls_other (void);\n// ls_line_comment(\n";
    let f = header_functions(h);
    assert_eq!(
        f.into_iter().collect::<Vec<_>>(),
        vec!["ls_other", "ls_real"]
    );
}
