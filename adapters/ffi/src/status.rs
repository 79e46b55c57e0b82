//! Status codes, the per-thread last error message, and the guard every entry point runs in:
//! no panic crosses the C boundary, and every failure is a status code plus a message.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What every function returns. Negative values are errors; [`RoP2pStatus::NoData`] is not an
/// error (nothing to poll right now).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoP2pStatus {
    /// Success.
    Ok = 0,
    /// Nothing to return right now (poll functions).
    NoData = 1,
    /// A required pointer was NULL.
    ErrNullPointer = -1,
    /// An argument was out of range or malformed (see `rop2p_last_error`).
    ErrInvalidArgument = -2,
    /// The output buffer is too small; the `*_len` out-parameter holds the size needed and
    /// nothing was lost: call again with a larger buffer.
    ErrBufferTooSmall = -3,
    /// The handle was never issued (or is of another kind).
    ErrInvalidHandle = -4,
    /// The handle was freed or stopped already (double free, call after stop).
    ErrClosed = -5,
    /// A bug inside the library was caught; the handle is unusable, free it.
    ErrPanic = -6,
    /// The configuration was rejected (see `rop2p_last_error`).
    ErrConfig = -7,
    /// A peer event was valid but not shown (unknown unit, duplicate, desynced stream).
    ErrRejected = -8,
    /// The background runtime could not be started or has failed.
    ErrRuntime = -9,
}

impl RoP2pStatus {
    /// The constant's name, e.g. `RO_P2P_STATUS_ERR_NULL_POINTER`.
    pub fn name(self) -> &'static str {
        match self {
            RoP2pStatus::Ok => "RO_P2P_STATUS_OK",
            RoP2pStatus::NoData => "RO_P2P_STATUS_NO_DATA",
            RoP2pStatus::ErrNullPointer => "RO_P2P_STATUS_ERR_NULL_POINTER",
            RoP2pStatus::ErrInvalidArgument => "RO_P2P_STATUS_ERR_INVALID_ARGUMENT",
            RoP2pStatus::ErrBufferTooSmall => "RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL",
            RoP2pStatus::ErrInvalidHandle => "RO_P2P_STATUS_ERR_INVALID_HANDLE",
            RoP2pStatus::ErrClosed => "RO_P2P_STATUS_ERR_CLOSED",
            RoP2pStatus::ErrPanic => "RO_P2P_STATUS_ERR_PANIC",
            RoP2pStatus::ErrConfig => "RO_P2P_STATUS_ERR_CONFIG",
            RoP2pStatus::ErrRejected => "RO_P2P_STATUS_ERR_REJECTED",
            RoP2pStatus::ErrRuntime => "RO_P2P_STATUS_ERR_RUNTIME",
        }
    }
}

/// An error on its way to C: a status and a message for `rop2p_last_error`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: RoP2pStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: RoP2pStatus, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    pub fn null(what: &str) -> Failure {
        Failure::new(RoP2pStatus::ErrNullPointer, format!("{what} is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(RoP2pStatus::ErrInvalidArgument, message)
    }

    pub fn too_small(what: &str, needed: usize, given: usize) -> Failure {
        Failure::new(
            RoP2pStatus::ErrBufferTooSmall,
            format!("{what} buffer too small: {needed} bytes needed, {given} given"),
        )
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn set_last_error(message: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        e.push_str(message);
    });
}

pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// Runs one entry point: catches panics, records the message of a failure, returns the status.
pub(crate) fn guard(f: impl FnOnce() -> Result<RoP2pStatus, Failure>) -> RoP2pStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(&format!("internal error (panic): {what}"));
            RoP2pStatus::ErrPanic
        }
    }
}

/// Copies `bytes` into a caller buffer, all or nothing: `*out_len` is set to `bytes.len()`
/// either way.
///
/// # Safety
/// `out` must be valid for `cap` bytes of writes (or NULL with `cap` 0); `out_len` valid.
pub(crate) unsafe fn copy_all(
    what: &str,
    bytes: &[u8],
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), Failure> {
    if out_len.is_null() {
        return Err(Failure::null("out_len"));
    }
    // SAFETY: out_len is non-null and the caller promises it is valid for writes.
    unsafe { out_len.write(bytes.len()) };
    if bytes.is_empty() {
        return Ok(());
    }
    if bytes.len() > cap {
        return Err(Failure::too_small(what, bytes.len(), cap));
    }
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: out is non-null and valid for cap >= bytes.len() bytes (caller's contract); the
    // regions cannot overlap, since `bytes` is memory owned by the library.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
    Ok(())
}

/// Borrows a caller's input buffer; NULL is allowed only with `len` 0.
///
/// # Safety
/// `data` must be valid for `len` bytes of reads for the duration of the call.
pub(crate) unsafe fn input<'a>(
    what: &str,
    data: *const u8,
    len: usize,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null, and the caller promises `len` readable bytes that outlive the call.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Reads an optional NUL-terminated UTF-8 string (NULL gives `None`).
///
/// # Safety
/// `s` must be NULL or point to a NUL-terminated string valid for the call.
pub(crate) unsafe fn c_str<'a>(what: &str, s: *const c_char) -> Result<Option<&'a str>, Failure> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let cs = unsafe { std::ffi::CStr::from_ptr(s) };
    cs.to_str().map(Some).map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// Writes `text` NUL-terminated into a fixed C char array, cutting at a character boundary.
pub(crate) fn write_text(dst: &mut [c_char], text: &str) {
    let max = dst.len().saturating_sub(1);
    let mut end = text.len().min(max);
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    for (d, b) in dst.iter_mut().zip(text.as_bytes().get(..end).unwrap_or_default()) {
        *d = *b as c_char;
    }
    if let Some(nul) = dst.get_mut(end) {
        *nul = 0;
    }
}
