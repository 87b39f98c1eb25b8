//! The opaque handles of the C API and the one place where raw pointers become references.
//!
//! C sees `dtun_config`, `dtun_conn` and `dtun_report` as incomplete types. Behind each
//! pointer is a [`Tagged`] value: `#[repr(C)]` with the tag as its first field, so checking a
//! pointer reads only its first eight bytes, which every handle has; a handle of another type
//! is refused without reading past its allocation. The process generation recorded beside the
//! tag refuses a handle made before a `fork()` (see `process`).

use std::ffi::CString;

use crate::config::TunnelConfig;
use crate::conn::Connection;
use crate::error::Error;
use crate::process;
use crate::report::Report;

use super::boundary::{FREED, LIVE_BACKOFF, LIVE_CONFIG, LIVE_CONN, LIVE_REPORT};

/// A configuration (`dtun_config`): create with `dtun_config_new`, `dtun_config_from_file` or
/// `dtun_config_from_yaml`, free with `dtun_config_free`.
#[allow(non_camel_case_types)]
pub struct dtun_config {
    _opaque: [u8; 0],
}

/// An open tunnel (`dtun_conn`): create with `dtun_open`, free with `dtun_close`.
#[allow(non_camel_case_types)]
pub struct dtun_conn {
    _opaque: [u8; 0],
}

/// The report of an open attempt (`dtun_report`): get one with `dtun_conn_report` or
/// `dtun_last_open_report`, read it with `dtun_report_get` and `dtun_report_text`, free it
/// with `dtun_report_free`.
#[allow(non_camel_case_types)]
pub struct dtun_report {
    _opaque: [u8; 0],
}

/// A reconnect backoff policy and its state (`dtun_backoff`): create with
/// `dtun_backoff_new`, free with `dtun_backoff_free`.
#[allow(non_camel_case_types)]
pub struct dtun_backoff {
    _opaque: [u8; 0],
}

/// A report as C reads it: every value and the text, NUL-terminated once.
pub(crate) struct ReportView {
    values: Vec<(String, CString)>,
    text: CString,
}

impl ReportView {
    fn new(report: Report) -> ReportView {
        let c = |text: &str| CString::new(text.replace('\0', "?")).unwrap_or_default();
        ReportView {
            values: report
                .entries()
                .iter()
                .map(|(k, v)| (k.clone(), c(v)))
                .collect(),
            text: c(&report.text()),
        }
    }

    /// The value of a key as a C string, if the report has it.
    pub(crate) fn value(&self, key: &str) -> Option<&CString> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The whole report in words.
    pub(crate) fn text(&self) -> &CString {
        &self.text
    }
}

/// What a handle pointer points to.
#[repr(C)]
pub(crate) struct Tagged<T> {
    /// First, so that it is the only thing read from a pointer not yet known to be ours.
    tag: u64,
    generation: u64,
    value: T,
}

/// An opaque C handle type and the Rust value behind it. Wrong, freed and other-process
/// pointers are rejected as `DTUN_ERR_INVALID_ARGUMENT` rather than used (a freed pointer
/// whose memory was reused cannot always be told apart).
pub(crate) trait Handle: Sized {
    type Inner;
    const TAG: u64;
    const NAME: &'static str;
    /// Whether freeing a handle inherited from the parent must leak it instead: it owns
    /// sockets registered in the epoll instance parent and child share.
    const LEAK_IN_CHILD: bool;

    /// Moves a value to the heap and hands out the pointer; the caller owns it.
    fn into_raw(inner: Self::Inner) -> *mut Self {
        let tagged = Tagged {
            tag: Self::TAG,
            generation: process::generation(),
            value: inner,
        };
        Box::into_raw(Box::new(tagged)).cast()
    }

    /// Checks the pointer: NULL, wrong or freed, or made in another process.
    ///
    /// # Safety
    /// `p` is NULL or points to at least eight readable bytes.
    unsafe fn check(p: *const Self) -> Result<*mut Tagged<Self::Inner>, Error> {
        if p.is_null() {
            return Err(Error::invalid_argument(format!("{} is NULL", Self::NAME)));
        }
        // Unaligned: C may pass any pointer, and this read must not be UB for it.
        let tag = unsafe { p.cast::<u64>().read_unaligned() };
        if tag != Self::TAG || !p.cast::<Tagged<Self::Inner>>().is_aligned() {
            return Err(Error::invalid_argument(format!(
                "{name} is not a live {name} (freed, or a pointer of another type)",
                name = Self::NAME
            )));
        }
        let tagged = p.cast::<Tagged<Self::Inner>>().cast_mut();
        if unsafe { (*tagged).generation } != process::generation() {
            return Err(Error::invalid_argument(format!(
                "{} was made in the parent process before fork(): it cannot be used in this \
                 child (make a new one here; freeing it here releases nothing of the parent's)",
                Self::NAME
            )));
        }
        Ok(tagged)
    }

    /// Borrows the value behind the handle.
    ///
    /// # Safety
    /// `p` is NULL or a pointer from `into_raw` not yet passed to `free`, or any pointer to
    /// eight readable bytes (which is then refused unless it carries the tag).
    unsafe fn get<'a>(p: *const Self) -> Result<&'a Self::Inner, Error> {
        let tagged = unsafe { Self::check(p) }?;
        Ok(unsafe { &(*tagged).value })
    }

    /// Borrows the value mutably.
    ///
    /// # Safety
    /// As [`Handle::get`], and no other reference to it is in use.
    unsafe fn get_mut<'a>(p: *mut Self) -> Result<&'a mut Self::Inner, Error> {
        let tagged = unsafe { Self::check(p) }?;
        Ok(unsafe { &mut (*tagged).value })
    }

    /// Frees the handle and drops its value; NULL and wrong pointers are ignored. A handle
    /// made before a fork is marked freed and, if it owns sockets, leaked.
    ///
    /// # Safety
    /// As [`Handle::get`]; the pointer is dangling afterwards.
    unsafe fn free(p: *mut Self) {
        let tagged = match unsafe { Self::check(p) } {
            Ok(tagged) => tagged,
            Err(_) if Self::LEAK_IN_CHILD && unsafe { Self::from_parent(p) } => {
                unsafe { (*p.cast::<Tagged<Self::Inner>>()).tag = FREED };
                return;
            }
            Err(_) if unsafe { Self::from_parent(p) } => p.cast(),
            Err(_) => return,
        };
        let mut boxed = unsafe { Box::from_raw(tagged) };
        boxed.tag = FREED;
        drop(boxed);
        // The allocator may reuse the memory, so this catches most double frees, not all.
    }

    /// Whether `p` is a live handle of this type made in another (parent) process.
    ///
    /// # Safety
    /// As [`Handle::get`].
    unsafe fn from_parent(p: *const Self) -> bool {
        if p.is_null() || !p.cast::<Tagged<Self::Inner>>().is_aligned() {
            return false;
        }
        let tagged = p.cast::<Tagged<Self::Inner>>();
        unsafe { (*tagged).tag == Self::TAG && (*tagged).generation != process::generation() }
    }
}

impl Handle for dtun_config {
    type Inner = TunnelConfig;
    const TAG: u64 = LIVE_CONFIG;
    const NAME: &'static str = "dtun_config";
    const LEAK_IN_CHILD: bool = false;
}

impl Handle for dtun_conn {
    type Inner = Connection;
    const TAG: u64 = LIVE_CONN;
    const NAME: &'static str = "dtun_conn";
    const LEAK_IN_CHILD: bool = true;
}

impl Handle for dtun_report {
    type Inner = ReportView;
    const TAG: u64 = LIVE_REPORT;
    const NAME: &'static str = "dtun_report";
    const LEAK_IN_CHILD: bool = false;
}

impl Handle for dtun_backoff {
    type Inner = crate::backoff::Backoff;
    const TAG: u64 = LIVE_BACKOFF;
    const NAME: &'static str = "dtun_backoff";
    const LEAK_IN_CHILD: bool = false;
}

/// Makes a report handle.
pub(crate) fn report_into_raw(report: Report) -> *mut dtun_report {
    dtun_report::into_raw(ReportView::new(report))
}
