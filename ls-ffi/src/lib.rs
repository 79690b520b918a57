//! liblayersec: the C ABI of Layer Security (`include/layersec.h`, generated from this crate by
//! cbindgen).
//!
//! Every export is `#[no_mangle] extern "C"`, named `ls_<object>_<verb>`, and runs inside one
//! panic boundary (`result::call` for functions returning `ls_result`, `result::guard` for the
//! others): nothing unwinds into C. The pointer handling (`unsafe`) lives in `ptr`.
//!
//! # Safety
//!
//! The exports are `unsafe` for Rust callers: every pointer argument must be NULL (where the
//! header allows it) or valid as the header states (live handles of the right type, `len`
//! readable bytes, NUL-terminated strings, writable out-pointers), and handles are freed once.
#![allow(non_camel_case_types)]
// The contract of each export is in its doc comment (which becomes the header's), not in a
// `# Safety` section repeated on each of them; see the crate documentation.
#![allow(clippy::missing_safety_doc)]

// The order of the header's sections: results, bytes, identities, certificates, seal, open,
// client.
mod result;

mod bytes;

mod identity;

mod cert;

mod seal;

mod open;

// Sealing and opening as streams: file and callback variants.
mod stream;

mod client;

mod header;
mod ptr;

pub use bytes::*;
pub use cert::*;
pub use client::*;
pub use header::header_defines;
pub use identity::*;
pub use open::*;
pub use result::*;
pub use seal::*;
pub use stream::*;

use std::ffi::c_char;

/// The library version, e.g. `"0.1.0"` (`LS_VERSION_STRING` of the header the library was built
/// with; compare it with the macros to detect a header/library mismatch). Static: never free it.
#[no_mangle]
pub extern "C" fn ls_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    result::guard("ls_version", V.as_ptr().cast(), || V.as_ptr().cast())
}

// Handles are shared across threads as the header promises: check the types allow it.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<ls_identity>();
    shareable::<ls_cert>();
    shareable::<ls_certstore>();
    shareable::<ls_opened>();
    // A client is used by one thread at a time, but may move between threads.
    const fn movable<T: Send>() {}
    movable::<ls_client>();
};
