//! What every exported function shares: the panic boundary, the thread's last error, the
//! handle checks. Nothing here knows about tunnels.
//!
//! Everything here must work at any point of thread and process exit: in a `thread_local`
//! destructor, in an `atexit` handler after the main thread's storage is gone. Thread-local
//! values with destructors are only reached through `try_with`, and the one fact that must
//! survive (did this thread's last call fail?) is a `const` thread-local without a destructor.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Status};
use crate::log;
use crate::report::Report;

thread_local! {
    /// Whether this thread's last call failed; readable even while the thread exits.
    static FAILED: Cell<bool> = const { Cell::new(false) };
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
    static LAST_OPEN: RefCell<Option<Report>> = const { RefCell::new(None) };
}

/// What `dtun_last_error()` says after a failure whose words could not be kept.
const UNAVAILABLE: &CStr = c"the words of this failure are not available: the calling thread's storage was already torn down (thread or process exit)";

/// Keeps the report of this thread's latest `dtun_open` (`None`: the latest call was
/// refused before any attempt). Lost when the thread's storage is gone.
pub(crate) fn set_last_open(report: Option<Report>) {
    let _ = LAST_OPEN.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = report;
        }
    });
}

/// The report of this thread's latest `dtun_open`, if it made one.
pub(crate) fn last_open() -> Option<Report> {
    LAST_OPEN
        .try_with(|cell| cell.try_borrow().ok().and_then(|r| r.clone()))
        .ok()
        .flatten()
}

/// Records this thread's last failure ("" after a success). Never panics.
pub(crate) fn set_last_error(message: &str) {
    FAILED.set(!message.is_empty());
    let text =
        (!message.is_empty()).then(|| CString::new(message.replace('\0', "?")).unwrap_or_default());
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = text;
        }
    });
}

/// This thread's last failure, valid until the thread's next call that records one.
pub(crate) fn last_error_ptr() -> *const c_char {
    if !FAILED.get() {
        return c"".as_ptr();
    }
    LAST_ERROR
        .try_with(|cell| {
            cell.try_borrow()
                .ok()
                .and_then(|text| text.as_ref().map(|t| t.as_ptr()))
        })
        .ok()
        .flatten()
        .unwrap_or(UNAVAILABLE.as_ptr())
}

/// Runs the body of an exported function: a panic becomes `DTUN_ERR_INTERNAL`, an error
/// becomes its status with its message recorded, a success clears the last error. Log
/// records of the call are delivered at its end, once the body has released every lock.
pub(crate) fn guard(body: impl FnOnce() -> Result<Status, Error>) -> Status {
    let deferred = log::Deferred::begin();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        injected::maybe_panic();
        body()
    }));
    deliver(deferred);
    match outcome {
        Ok(Ok(status)) => {
            set_last_error("");
            status
        }
        Ok(Err(e)) => {
            set_last_error(e.message());
            e.status()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // Dropping the payload could panic again, outside any catch: leak it.
            std::mem::forget(panic);
            set_last_error(&format!(
                "internal error (a bug in dragent-tunnel, please report it): {what}"
            ));
            Status::DTUN_ERR_INTERNAL
        }
    }
}

/// Runs the body of an exported function that returns a value rather than a status: a
/// success leaves `dtun_last_error()` as it was (so it still tells why the failure the
/// caller is handling happened), an error or a panic records its words and gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> Result<T, Error>) -> T {
    let deferred = log::Deferred::begin();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        injected::maybe_panic();
        body()
    }));
    deliver(deferred);
    match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            set_last_error(e.message());
            fallback
        }
        Err(panic) => {
            std::mem::forget(panic);
            set_last_error("internal error (a bug in dragent-tunnel, please report it)");
            fallback
        }
    }
}

/// Runs the body of an exported function that returns nothing: a panic is swallowed.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let deferred = log::Deferred::begin();
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
        injected::maybe_panic();
        body()
    })) {
        std::mem::forget(panic);
    }
    deliver(deferred);
    set_last_error("");
}

/// Delivers a call's records once the call is over (no lock held, no panic unwinding). The
/// callback may call back into the library: the thread's last-open report is kept across it,
/// and the last error is set after it.
fn deliver(deferred: log::Deferred) {
    if log::pending() {
        let report = last_open();
        drop(deferred);
        set_last_open(report);
    }
}

/// A NULL check that names the argument.
pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::invalid_argument(format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// The bytes at `p`: empty when `len` is 0 (then `p` may be NULL), refused when `p` is NULL
/// or `len` is more than a C object can hold (`PTRDIFF_MAX`), before any slice is made.
///
/// # Safety
/// `p` is valid for reads of `len` bytes when it is not NULL and `len` is in range.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    non_null(p, name)?;
    within_ptrdiff(len, name)?;
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// As [`bytes`], for a buffer to write into.
///
/// # Safety
/// `p` is valid for writes of `len` bytes when it is not NULL and `len` is in range.
pub(crate) unsafe fn bytes_mut<'a>(
    p: *mut u8,
    len: usize,
    name: &str,
) -> Result<&'a mut [u8], Error> {
    if len == 0 {
        return Ok(&mut []);
    }
    non_null(p, name)?;
    within_ptrdiff(len, name)?;
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

fn within_ptrdiff(len: usize, name: &str) -> Result<(), Error> {
    if len > isize::MAX as usize {
        return Err(Error::invalid_argument(format!(
            "the length of {name} ({len}) is more than PTRDIFF_MAX: no buffer is that large"
        )));
    }
    Ok(())
}

/// Marks a live handle; a handle whose tag is wrong is a wrong or freed pointer.
pub(crate) const LIVE_CONFIG: u64 = 0x6474_756e_6366_6721; // "dtuncfg!"
/// Marks a live connection handle.
pub(crate) const LIVE_CONN: u64 = 0x6474_756e_636f_6e6e; // "dtunconn"
/// Marks a live report handle.
pub(crate) const LIVE_REPORT: u64 = 0x6474_756e_7265_7074; // "dtunrept"
/// Marks a live backoff handle.
pub(crate) const LIVE_BACKOFF: u64 = 0x6474_756e_626b_6f66; // "dtunbkof"
/// Written over the tag when a handle is freed, so a second free is caught in most cases.
pub(crate) const FREED: u64 = 0xdead_dead_dead_dead;

/// A panic on demand inside the boundary, for the unit tests of the panic boundary only: the
/// production build has no such hook (it is compiled only under `cfg(test)`).
pub(crate) mod injected {
    #[cfg(test)]
    thread_local! {
        static NEXT_CALL_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Makes this thread's next exported call panic inside its boundary.
    #[cfg(test)]
    pub(crate) fn panic_in_next_call() {
        NEXT_CALL_PANICS.set(true);
    }

    #[cfg(test)]
    pub(super) fn maybe_panic() {
        if NEXT_CALL_PANICS.replace(false) {
            panic!("injected by a test");
        }
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(super) fn maybe_panic() {}
}
