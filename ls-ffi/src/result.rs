//! Result codes, the per-thread last error message, and the panic boundary every export goes
//! through.

use ls_core::{Error, ErrorCode};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// The status every fallible function returns: `LS_OK` (0) or one of the `LS_ERR_*` codes.
///
/// The codes are grouped by family (hundreds digit: 1xx arguments, 2xx cryptography,
/// 3xx certificates, 4xx malformed input, 5xx message protocol, 6xx transport, 7xx store,
/// 9xx internal) and are append-only: a number is never reused for another meaning. Unknown
/// codes from a newer library should be treated by family.
#[allow(non_camel_case_types)]
pub type ls_result = i32;

pub(crate) const OK: ls_result = 0;

thread_local! {
    /// The message of the last failed call on this thread (None: the last call succeeded).
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
    /// Whether the last failed call on this thread may succeed when tried again later.
    static LAST_TRANSIENT: Cell<bool> = const { Cell::new(false) };
}

/// A C string from text that may contain NUL bytes (certificate names and file names come from
/// untrusted input): each NUL becomes U+FFFD so the text cannot be truncated in C.
pub(crate) fn cstring_lossy(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(_) => CString::new(s.replace('\0', "\u{FFFD}")).expect("no NUL left"),
    }
}

fn set_last_error(msg: Option<&str>, transient: bool) {
    // try_with: during thread teardown the slot may be gone; then there is nobody to tell.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = msg.map(cstring_lossy));
    let _ = LAST_TRANSIENT.try_with(|t| t.set(transient));
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// A failure as an export reports it: a code and the message for `ls_last_error_message`.
/// Mostly an `Error`; a few results (a send queued for retry) report the code of an earlier
/// failure with a message of their own.
pub(crate) struct Failure {
    code: ErrorCode,
    message: String,
    transient: bool,
}

impl Failure {
    pub(crate) fn new(code: ErrorCode, message: String, transient: bool) -> Failure {
        Failure {
            code,
            message,
            transient,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            code: e.code(),
            message: e.to_string(),
            transient: e.is_transient(),
        }
    }
}

/// The boundary of every export that returns an `ls_result`: clears the last error, runs `f`,
/// turns its error into a code plus message and a panic into `LS_ERR_PANIC` plus message. Nothing
/// unwinds into C.
pub(crate) fn call(func: &'static str, f: impl FnOnce() -> Result<(), Error>) -> ls_result {
    call_failure(func, || f().map_err(Failure::from))
}

/// `call` for exports whose failures are not all an `Error` (see `Failure`).
pub(crate) fn call_failure(
    func: &'static str,
    f: impl FnOnce() -> Result<(), Failure>,
) -> ls_result {
    set_last_error(None, false);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => OK,
        Ok(Err(e)) => {
            set_last_error(Some(&e.message), e.transient);
            e.code.as_i32()
        }
        Err(payload) => {
            set_last_error(
                Some(&format!(
                    "internal error (panic) in {func}: {}",
                    panic_message(payload.as_ref())
                )),
                false,
            );
            ErrorCode::Panic.as_i32()
        }
    }
}

/// The boundary of exports that return no `ls_result` (accessors, `_free`): they leave the last
/// error alone, and a panic returns `fallback` with the panic recorded as the last error.
pub(crate) fn guard<T>(func: &'static str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(
                Some(&format!(
                    "internal error (panic) in {func}: {}",
                    panic_message(payload.as_ref())
                )),
                false,
            );
            fallback
        }
    }
}

fn names() -> &'static [(ls_result, CString)] {
    static NAMES: OnceLock<Vec<(ls_result, CString)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        std::iter::once((OK, c"LS_OK".to_owned()))
            .chain(ErrorCode::ALL.iter().map(|c| {
                (
                    c.as_i32(),
                    CString::new(format!("LS_{}", c.name())).expect("names have no NUL"),
                )
            }))
            .collect()
    })
}

/// The name of a result code, e.g. `"LS_ERR_BAD_SIGNATURE"`; `"LS_UNKNOWN"` for a number this
/// library does not know. The string is static: never free it.
#[no_mangle]
pub extern "C" fn ls_result_name(result: ls_result) -> *const c_char {
    guard("ls_result_name", c"LS_UNKNOWN".as_ptr(), || {
        names()
            .iter()
            .find(|(n, _)| *n == result)
            .map_or(c"LS_UNKNOWN".as_ptr(), |(_, s)| s.as_ptr())
    })
}

/// The message of the last failed call on this thread, for humans (logs, dialogs); branch on
/// the `ls_result` code, not on the text. Empty (never NULL) when the last call succeeded.
///
/// The pointer stays valid until the next call on this thread of a function that returns an
/// `ls_result`; accessors, `_free` functions, `ls_result_name` and `ls_version` leave it alone.
/// Never free it. Messages never contain key material, passwords or document content.
#[no_mangle]
pub extern "C" fn ls_last_error_message() -> *const c_char {
    guard("ls_last_error_message", c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|e| match &*e.borrow() {
                // The CString's heap buffer does not move while it stays in the slot, and the
                // slot is only replaced by the next ls_result-returning call on this thread.
                Some(m) => m.as_ptr(),
                None => c"".as_ptr(),
            })
            .unwrap_or(c"".as_ptr())
    })
}

/// Whether the last failed call on this thread may succeed later: 1 for a service or mail server
/// that could not be reached or timed out, an HTTP 5xx/408/429 answer, a mail server's temporary
/// refusal, a receipt still pending, a token that is not there (the same call, made again
/// later, may succeed), and for every send queued for retry (`ls_client_send` with
/// `*message_id_out` set: the client itself retries it with the same MessageId — do not send it
/// again); 0 for everything else (a refusal, a bad signature, a TLS failure, a bad argument…)
/// and when the last call succeeded. Callers branch on this, never on the text of
/// `ls_last_error_message()`.
///
/// Set by the same calls as `ls_last_error_message()`, and left alone by the same calls.
#[no_mangle]
pub extern "C" fn ls_last_error_is_transient() -> c_int {
    guard("ls_last_error_is_transient", 0, || {
        c_int::from(LAST_TRANSIENT.try_with(Cell::get).unwrap_or(false))
    })
}

/// The last error message as Rust text (for this crate's tests).
#[doc(hidden)]
pub fn last_error_message() -> String {
    LAST_ERROR
        .try_with(|e| {
            e.borrow()
                .as_ref()
                .map(|m| m.to_string_lossy().into_owned())
        })
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn panic_becomes_ls_err_panic_with_message() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {})); // keep the test output quiet
        let rc = call("ls_test", || panic!("boom {}", 42));
        let rc2 = call("ls_test", || -> Result<(), Error> {
            std::panic::panic_any(7u8)
        });
        let g = guard("ls_test_accessor", 5, || -> i32 { panic!("accessor boom") });
        std::panic::set_hook(prev);
        assert_eq!(rc, ErrorCode::Panic.as_i32());
        assert_eq!(rc, 901);
        assert_eq!(rc2, 901);
        assert_eq!(g, 5);
        assert_eq!(
            last_error_message(),
            "internal error (panic) in ls_test_accessor: accessor boom"
        );
        let rc = call("ls_test", || panic!("boom {}", 42));
        assert_eq!(rc, 901);
        assert_eq!(
            last_error_message(),
            "internal error (panic) in ls_test: boom 42"
        );
    }

    #[test]
    fn transience_follows_the_error_and_success_clears_it() {
        let http = |status| {
            call("ls_test", move || {
                Err(Error::HttpStatus {
                    status,
                    message: "x".into(),
                })
            })
        };
        for (status, transient) in [(503, true), (429, true), (408, true), (400, false)] {
            assert_eq!(http(status), ErrorCode::HttpStatus.as_i32());
            assert_eq!(ls_last_error_is_transient() == 1, transient, "{status}");
        }
        call("ls_test", || Err(Error::ConnectFailed("down".into())));
        assert_eq!(ls_last_error_is_transient(), 1);
        // Accessors leave it alone.
        assert!(!ls_result_name(0).is_null());
        assert_eq!(ls_last_error_is_transient(), 1);
        call("ls_test", || Err(Error::BadSignature("x".into())));
        assert_eq!(ls_last_error_is_transient(), 0);
        call("ls_test", || Err(Error::ConnectFailed("down".into())));
        assert_eq!(call("ls_test", || Ok(())), OK);
        assert_eq!(ls_last_error_is_transient(), 0);
        assert_eq!(
            call_failure("ls_test", || Err(Failure::new(
                ErrorCode::ConnectFailed,
                "queued".into(),
                true
            ))),
            ErrorCode::ConnectFailed.as_i32()
        );
        assert_eq!(ls_last_error_is_transient(), 1);
    }

    #[test]
    fn errors_map_to_their_code_and_success_clears() {
        let rc = call("ls_test", || Err(Error::BadSignature("x".into())));
        assert_eq!(rc, 203);
        assert_eq!(last_error_message(), "signature does not verify: x");
        // Accessors leave the message alone.
        let _ = ls_result_name(rc);
        assert_eq!(last_error_message(), "signature does not verify: x");
        assert_eq!(call("ls_test", || Ok(())), OK);
        assert_eq!(last_error_message(), "");
    }

    #[test]
    fn every_core_code_has_a_name() {
        let name = |r| {
            unsafe { CStr::from_ptr(ls_result_name(r)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(name(0), "LS_OK");
        assert_eq!(name(203), "LS_ERR_BAD_SIGNATURE");
        assert_eq!(name(901), "LS_ERR_PANIC");
        assert_eq!(name(-1), "LS_UNKNOWN");
        assert_eq!(name(999), "LS_UNKNOWN");
        for c in ErrorCode::ALL {
            assert_eq!(name(c.as_i32()), format!("LS_{}", c.name()));
        }
    }

    #[test]
    fn nul_in_messages_is_replaced() {
        let rc = call("ls_test", || Err(Error::Malformed("a\0b".into())));
        assert_eq!(rc, 400);
        assert_eq!(last_error_message(), "malformed input: a\u{FFFD}b");
    }
}
