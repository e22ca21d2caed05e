//! Strings and buffers across the ABI, and the checks every pointer argument goes through.

use std::ffi::c_char;
use std::ptr::NonNull;

use crate::error::{Failure, guard_void};

/// A string borrowed from the library: `len` bytes of UTF-8 at `data`, followed by a NUL that
/// `len` does not count (so `data` can be printed with `%s`). Valid as long as the object it came
/// from (see each function); never freed by the caller. `{NULL, 0}` stands for "none".
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct lh_str {
    /// The bytes, NUL-terminated; NULL for "none".
    pub data: *const c_char,
    /// Length in bytes, without the NUL.
    pub len: usize,
}

impl lh_str {
    /// "None".
    pub(crate) const NONE: Self = Self {
        data: std::ptr::null(),
        len: 0,
    };

    /// A static NUL-terminated string.
    pub(crate) fn from_static(s: &'static str) -> Self {
        debug_assert!(s.ends_with('\0'));
        Self {
            data: s.as_ptr().cast(),
            len: s.len() - 1,
        }
    }
}

/// Bytes allocated by the library and owned by the caller until it hands them back to
/// `lh_bytes_free`. `data[len]` is always a NUL byte (not counted in `len`), so text can be
/// printed with `%s`. A zeroed `lh_bytes` (`{NULL, 0}`) is empty and may be freed.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct lh_bytes {
    /// The bytes, followed by a NUL.
    pub data: *mut u8,
    /// Length in bytes, without the NUL.
    pub len: usize,
}

impl lh_bytes {
    /// Hands `bytes` (plus a NUL) over to the caller.
    pub(crate) fn from_vec(mut bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        bytes.push(0);
        let boxed = bytes.into_boxed_slice();
        Self {
            data: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }
}

/// Frees bytes the library handed out and zeroes `*bytes` (so a second call is harmless).
/// NULL, and a zeroed `lh_bytes`, are accepted and ignored.
///
/// # Safety
/// `bytes` is NULL or points to an `lh_bytes` filled by this library (or zeroed) and not
/// modified since.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_bytes_free(bytes: *mut lh_bytes) {
    guard_void(|| {
        // SAFETY: NULL or a valid `lh_bytes`, per the contract.
        let Some(b) = (unsafe { bytes.as_mut() }) else {
            return;
        };
        if !b.data.is_null() {
            // SAFETY: `data` came from `Box<[u8]>::into_raw` of `len + 1` bytes in `from_vec`.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(b.data, b.len + 1)) });
        }
        b.data = std::ptr::null_mut();
        b.len = 0;
    });
}

/// Text owned by a library object and lent out as [`lh_str`]: the bytes plus a NUL.
#[derive(Debug, Clone)]
pub(crate) struct CText(Box<[u8]>);

impl CText {
    pub(crate) fn new(s: &str) -> Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        Self(v.into_boxed_slice())
    }

    pub(crate) fn as_lh_str(&self) -> lh_str {
        lh_str {
            data: self.0.as_ptr().cast(),
            len: self.0.len() - 1,
        }
    }
}

fn check_len(len: usize, what: &str) -> Result<(), Failure> {
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "{what}: length {len} is too large"
        )));
    }
    Ok(())
}

/// `len` bytes at `ptr`; NULL is accepted when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes for `'a`.
pub(crate) unsafe fn slice<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    check_len(len, what)?;
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// `len` bytes of UTF-8 at `ptr` (no NUL needed); NULL is accepted when `len` is 0.
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn text<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded.
    let bytes = unsafe { slice(ptr.cast(), len, what) }?;
    std::str::from_utf8(bytes)
        .map_err(|e| Failure::invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// Like [`text`], but NULL (with any length) or an empty string mean "not given".
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn opt_text<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() || len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded.
    unsafe { text(ptr, len, what) }.map(Some)
}

/// A JSON document of `len` bytes at `ptr`, deserialized into `T`.
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn parse_json<T: serde::de::DeserializeOwned>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<T, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: forwarded.
    let bytes = unsafe { slice(ptr.cast(), len, what) }?;
    serde_json::from_slice(bytes).map_err(|e| Failure::json(what, &e))
}

/// A library object behind a handle the library handed out.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `T` from this library.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: NULL or live, per the contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// An output pointer, checked before any work is done; written with [`Out::write`] only once
/// the call has succeeded.
#[derive(Debug)]
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// # Safety
    /// `ptr` is NULL or valid for a write of `T`.
    pub(crate) unsafe fn new(ptr: *mut T, what: &str) -> Result<Self, Failure> {
        NonNull::new(ptr)
            .map(Self)
            .ok_or_else(|| Failure::null(what))
    }

    /// `None` when the caller passed NULL for an optional output.
    ///
    /// # Safety
    /// `ptr` is NULL or valid for a write of `T`.
    pub(crate) unsafe fn optional(ptr: *mut T) -> Option<Self> {
        NonNull::new(ptr).map(Self)
    }

    pub(crate) fn write(self, value: T) {
        // SAFETY: checked non-NULL at construction; the caller promised it is writable. `write`
        // does not drop whatever garbage was there.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Moves `value` into a new heap handle for the caller.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back a handle made by [`into_handle`] and drops it.
///
/// # Safety
/// `ptr` is NULL or came from [`into_handle`] for the same `T` and was not freed yet.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: per the contract, made by `Box::into_raw` and still owned.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_double_free_is_harmless() {
        let mut b = lh_bytes::from_vec(b"abc".to_vec());
        assert_eq!(b.len, 3);
        // SAFETY: from_vec allocates len + 1 bytes.
        assert_eq!(unsafe { *b.data.add(3) }, 0);
        // SAFETY: a valid lh_bytes.
        unsafe { lh_bytes_free(&mut b) };
        assert!(b.data.is_null());
        // SAFETY: zeroed now.
        unsafe { lh_bytes_free(&mut b) };
        // SAFETY: NULL is accepted.
        unsafe { lh_bytes_free(std::ptr::null_mut()) };
        let mut empty = lh_bytes::from_vec(Vec::new());
        // SAFETY: valid.
        unsafe { lh_bytes_free(&mut empty) };
    }

    #[test]
    fn null_with_zero_length_is_empty() {
        // SAFETY: NULL with length 0 is accepted.
        let s = unsafe { text(std::ptr::null(), 0, "x") };
        assert_eq!(s.ok(), Some(""));
        // SAFETY: NULL with a length is refused before any read.
        let e = unsafe { text(std::ptr::null(), 3, "x") };
        assert!(e.is_err());
    }
}
