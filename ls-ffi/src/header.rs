//! The `#define`s of `layersec.h` that come from values rather than from Rust items: the version
//! (from Cargo) and the result codes (from `ls_core::ErrorCode`, the single source of their
//! numbers and names). cbindgen places this text after the header's `#include`s.

use ls_core::ErrorCode;
use std::fmt::Write;

fn family_title(family: &str) -> &'static str {
    match family {
        "argument" => "the caller's arguments, files and passwords",
        "crypto" => "cryptographic failures",
        "certificate" => "certificates and trust",
        "format" => "malformed or hostile input",
        "protocol" => "the message protocol",
        "transport" => "transports (connecting, TLS, HTTP)",
        "store" => "the client's configuration and local state",
        _ => "bugs in the library (please report them)",
    }
}

/// The text cbindgen inserts after the includes of `layersec.h` (`after_includes`).
#[doc(hidden)]
pub fn header_defines() -> String {
    let mut s = String::new();
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let minor = env!("CARGO_PKG_VERSION_MINOR");
    let patch = env!("CARGO_PKG_VERSION_PATCH");
    let _ = write!(
        s,
        "\n/* The version of this header. ls_version() returns the library's, to compare. */\n\
         #define LS_VERSION_MAJOR {major}\n\
         #define LS_VERSION_MINOR {minor}\n\
         #define LS_VERSION_PATCH {patch}\n\
         #define LS_VERSION_STRING \"{}\"\n\
         /* Nonzero when this header is version major.minor.patch or later. */\n\
         #define LS_VERSION_AT_LEAST(major, minor, patch) \\\n  \
         (LS_VERSION_MAJOR > (major) || (LS_VERSION_MAJOR == (major) && \\\n   \
         (LS_VERSION_MINOR > (minor) || (LS_VERSION_MINOR == (minor) && LS_VERSION_PATCH >= (patch)))))\n",
        env!("CARGO_PKG_VERSION"),
    );
    s.push_str(
        "\n/*\n * Result codes (ls_result). LS_OK is success; the family of a failure is its hundreds\n \
         * digit. Codes are append-only: a number is never reused, a retired one stays listed here\n \
         * as a comment. ls_result_name() gives the macro name of a code as text.\n */\n\
         #define LS_OK 0\n",
    );
    let mut family = "";
    for code in ErrorCode::ALL {
        if code.family() != family {
            family = code.family();
            if code.as_i32() >= 900 && !ErrorCode::ALL.iter().any(|c| c.family() == "store") {
                s.push_str("/* 7xx store: reserved for the message store. */\n");
            }
            let _ = writeln!(
                s,
                "/* {}xx {family}: {} */",
                code.as_i32() / 100,
                family_title(family)
            );
        }
        let _ = writeln!(s, "#define LS_{} {}", code.name(), code.as_i32());
    }
    s.push_str(
        "\n/* ls_opened_signing_time() when the signer stated no signing time. */\n\
         #define LS_NO_TIME INT64_MIN\n",
    );
    s
}
