//! What every exported function shares: the panic boundary, the thread's last error, the
//! handle checks. Nothing here knows about tunnels.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Status};
use crate::report::Report;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_OPEN: RefCell<Option<Report>> = const { RefCell::new(None) };
}

/// Keeps the report of this thread's latest `dtun_open` (`None`: the latest call was
/// refused before any attempt).
pub(crate) fn set_last_open(report: Option<Report>) {
    LAST_OPEN.with(|cell| *cell.borrow_mut() = report);
}

/// The report of this thread's latest `dtun_open`, if it made one.
pub(crate) fn last_open() -> Option<Report> {
    LAST_OPEN.with(|cell| cell.borrow().clone())
}

/// Records this thread's last failure ("" after a success).
pub(crate) fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "?")).unwrap_or_default();
    LAST_ERROR.with(|cell| *cell.borrow_mut() = text);
}

/// This thread's last failure, valid until the thread's next call that records one.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|cell| cell.borrow().as_ptr())
}

/// Runs the body of an exported function: a panic becomes `DTUN_ERR_INTERNAL`, an error
/// becomes its status with its message recorded, a success clears the last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<Status, Error>) -> Status {
    match catch_unwind(AssertUnwindSafe(body)) {
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
            set_last_error(&format!(
                "internal error (a bug in dragent-tunnel, please report it): {what}"
            ));
            Status::DTUN_ERR_INTERNAL
        }
    }
}

/// Runs the body of an exported function that returns nothing: a panic is swallowed.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
    set_last_error("");
}

/// A NULL check that names the argument.
pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::invalid_argument(format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Marks a live handle; a handle whose tag is wrong is a wrong or freed pointer.
pub(crate) const LIVE_CONFIG: u64 = 0x6474_756e_6366_6721; // "dtuncfg!"
/// Marks a live connection handle.
pub(crate) const LIVE_CONN: u64 = 0x6474_756e_636f_6e6e; // "dtunconn"
/// Marks a live report handle.
pub(crate) const LIVE_REPORT: u64 = 0x6474_756e_7265_7074; // "dtunrept"
/// Written over the tag when a handle is freed, so a second free is caught in most cases.
pub(crate) const FREED: u64 = 0xdead_dead_dead_dead;
