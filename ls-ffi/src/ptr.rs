//! The few places where pointers from C become Rust references, and where handles and byte
//! buffers cross the boundary as raw pointers. Every `unsafe` of the library is here, each with
//! the caller contract it relies on: the contract stated in `layersec.h` for every function,
//! namely that a non-NULL pointer points to a live, properly aligned object of the declared type
//! (or to `len` readable bytes), not mutated by another thread during the call.
//!
//! The lifetimes returned are unbounded; callers keep the references within the exported call.

use ls_core::Error;
use std::ffi::{c_char, c_void, CStr};

fn null(name: &str) -> Error {
    Error::NullArgument(format!("{name} is NULL"))
}

/// A shared reference to a caller's object, or `LS_ERR_NULL_ARGUMENT` naming the argument.
pub(crate) fn arg_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: non-NULL pointers passed by C callers point to a live T (the header contract).
    unsafe { p.as_ref() }.ok_or_else(|| null(name))
}

/// A shared reference to an optional (nullable) caller object.
pub(crate) fn opt_ref<'a, T>(p: *const T) -> Option<&'a T> {
    // SAFETY: as in `arg_ref`; NULL means "absent".
    unsafe { p.as_ref() }
}

/// An exclusive reference to a caller's object (e.g. an `ls_certstore *` being filled).
pub(crate) fn arg_mut<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: non-NULL pointers passed as `T *` (not `const`) point to a live T that no other
    // thread uses during the call (the header's thread-safety rules).
    unsafe { p.as_mut() }.ok_or_else(|| null(name))
}

/// `len` bytes at `p`. NULL is accepted when `len` is 0 (an empty buffer).
pub(crate) fn arg_bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(null(name)) };
    }
    if len > isize::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{name}: length {len} is too large"
        )));
    }
    // SAFETY: the caller passes `len` readable bytes at `p` (the header contract); the length
    // fits a Rust slice (checked above).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Nullable bytes: `None` when `p` is NULL (whatever `len` is).
pub(crate) fn opt_bytes<'a>(
    p: *const u8,
    len: usize,
    name: &str,
) -> Result<Option<&'a [u8]>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        arg_bytes(p, len, name).map(Some)
    }
}

/// A NUL-terminated UTF-8 string. NULL gives `LS_ERR_NULL_ARGUMENT`, invalid UTF-8 gives
/// `LS_ERR_INVALID_ARGUMENT`; both name the argument, never quote it.
pub(crate) fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL `const char *` arguments are NUL-terminated strings that stay unchanged
    // during the call (the header contract).
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Error::InvalidArgument(format!("{name} is not valid UTF-8")))
}

/// A nullable NUL-terminated UTF-8 string.
pub(crate) fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        arg_str(p, name).map(Some)
    }
}

/// An out-parameter: checks it, writes `init` into it at once (so the caller sees a defined
/// value, e.g. `*out = NULL`, whatever fails later) and returns it for the final write. The old
/// content is not read or dropped: it may be uninitialised C memory.
pub(crate) fn out_arg<'a, T>(p: *mut T, init: T, name: &str) -> Result<&'a mut T, Error> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: a non-NULL out-pointer points to writable, aligned memory for a T (the header
    // contract). `write` does not read or drop the possibly uninitialised old value; after it
    // the memory holds a valid T, so the reference is sound.
    unsafe {
        p.write(init);
        Ok(&mut *p)
    }
}

/// The `count` elements of a caller's array of pointers (NULL accepted when `count` is 0).
pub(crate) fn arg_array<'a, T>(
    p: *const *const T,
    count: usize,
    name: &str,
) -> Result<&'a [*const T], Error> {
    if p.is_null() {
        return if count == 0 { Ok(&[]) } else { Err(null(name)) };
    }
    if count > isize::MAX as usize / std::mem::size_of::<*const T>() {
        return Err(Error::InvalidArgument(format!(
            "{name}: count {count} is too large"
        )));
    }
    // SAFETY: the caller passes `count` readable, aligned pointers at `p` (the header contract).
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// The `struct_size` of a caller's versioned options struct whose Rust size is `ours`.
///
/// The struct may come from an older header (smaller: the fields past `struct_size` are not read
/// and keep their defaults) or from a newer one (larger: accepted only if every byte we do not
/// know is zero, i.e. the caller left the newer fields at their defaults — the rule of Linux's
/// `copy_struct_from_user`). The first two `uint32_t` fields (`struct_size`, `flags`) exist in
/// every version.
pub(crate) fn versioned_size<T>(p: *const T, ours: usize, name: &str) -> Result<usize, Error> {
    const MIN: usize = 2 * std::mem::size_of::<u32>();
    /// How much larger than ours a newer version's struct may plausibly be.
    const MAX_GROWTH: usize = 4096;
    // SAFETY: a non-NULL options pointer points to at least `struct_size` readable bytes, and
    // every version starts with `uint32_t struct_size` (the header contract); `p` is non-NULL.
    let size = unsafe { p.cast::<u32>().read_unaligned() } as usize;
    if size < MIN {
        return Err(Error::InvalidArgument(format!(
            "{name}->struct_size is {size}: initialise the options with their _init function"
        )));
    }
    if size > ours + MAX_GROWTH {
        // Not a newer version but an uninitialised struct: do not read that far.
        return Err(Error::InvalidArgument(format!(
            "{name}->struct_size is {size}: initialise the options with their _init function"
        )));
    }
    if size > ours {
        // SAFETY: as above, the caller's struct has `size` readable bytes.
        let extra = unsafe { std::slice::from_raw_parts(p.cast::<u8>().add(ours), size - ours) };
        if extra.iter().any(|&b| b != 0) {
            return Err(Error::InvalidArgument(format!(
                "{name} sets fields this version of layersec does not know (struct_size {size}, \
                 this library knows {ours} bytes): the program was built against a newer layersec.h"
            )));
        }
    }
    Ok(size)
}

/// Field `offset` of a caller's versioned struct of `size` bytes (see `versioned_size`), if the
/// whole field lies within `size`.
pub(crate) fn versioned_field<T, F: Copy>(p: *const T, size: usize, offset: usize) -> Option<F> {
    if offset + std::mem::size_of::<F>() > size {
        return None;
    }
    // SAFETY: the caller's struct has `size` readable bytes (checked by `versioned_size`) and the
    // field lies within them; `offset` comes from `offset_of!` on the same struct, so the bytes
    // are an F written by the caller. Unaligned read: the caller's struct may be any version.
    Some(unsafe { p.cast::<u8>().add(offset).cast::<F>().read_unaligned() })
}

/// Calls a caller's callback `f(userdata, arg)` and returns what it returns.
pub(crate) fn call_back<A>(
    f: unsafe extern "C" fn(*mut c_void, *const A) -> i32,
    userdata: *mut c_void,
    arg: &A,
) -> i32 {
    // SAFETY: `f` is a function of this signature (the header contract for callbacks), given
    // `userdata` unchanged as the caller passed it (the library never dereferences it) and a
    // pointer to an `A` that lives until the call returns. C code does not unwind.
    unsafe { f(userdata, arg) }
}

/// A new handle for C: the value moves to the heap and C owns it until its `_free` function.
pub(crate) fn into_handle<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Destroys a handle made by `into_handle`; NULL is a no-op.
pub(crate) fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: non-NULL handles passed to `_free` come from `into_handle` of the same type and
        // are freed once (the header contract: the caller owns the handle and gives it back).
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Heap bytes for an `ls_bytes`: the content plus a NUL byte that is not counted in the length,
/// so textual output is also a C string. Returns the pointer and the length without the NUL.
pub(crate) fn bytes_into_raw(mut v: Vec<u8>) -> (*mut u8, usize) {
    let len = v.len();
    v.reserve_exact(1);
    v.push(0);
    let b: Box<[u8]> = v.into_boxed_slice();
    (Box::into_raw(b).cast::<u8>(), len)
}

/// Frees what `bytes_into_raw` returned. NULL is a no-op.
pub(crate) fn bytes_free_raw(data: *mut u8, len: usize) {
    if !data.is_null() {
        // SAFETY: `data`/`len` come unchanged from `bytes_into_raw` (the header contract: an
        // ls_bytes is filled by the library and given back as it is), whose allocation is a
        // Box<[u8]> of `len + 1` bytes.
        let mut b = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len + 1)) };
        // What the library handed out may be a private key or an opened document: wiped.
        zeroize::Zeroize::zeroize(&mut b[..]);
    }
}
