//! Owned byte buffers handed to C.

use crate::ptr;
use crate::result::guard;

/// Bytes the library allocated for the caller (a sealed message, a PEM text, JSON…).
///
/// The caller owns them and gives them back with `ls_bytes_free` (never `free()`). `data[len]` is
/// always a NUL byte that `len` does not count, so textual output can be used as a C string.
/// Functions that fill an `ls_bytes` set it to `{NULL, 0}` first, so after a failure it holds
/// nothing to free (freeing it anyway is harmless). Do not modify `data` or `len`.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct ls_bytes {
    pub data: *mut u8,
    pub len: usize,
}

impl ls_bytes {
    pub(crate) const EMPTY: ls_bytes = ls_bytes {
        data: std::ptr::null_mut(),
        len: 0,
    };

    pub(crate) fn from_vec(v: Vec<u8>) -> ls_bytes {
        let (data, len) = ptr::bytes_into_raw(v);
        ls_bytes { data, len }
    }
}

/// Frees the bytes and resets `*b` to `{NULL, 0}`, so a second call is harmless. NULL `b` is a
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn ls_bytes_free(b: *mut ls_bytes) {
    guard("ls_bytes_free", (), || {
        if let Ok(b) = ptr::arg_mut(b, "b") {
            let taken = std::mem::replace(b, ls_bytes::EMPTY);
            ptr::bytes_free_raw(taken.data, taken.len);
        }
    })
}
