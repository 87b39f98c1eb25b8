//! The opaque handles of the C API and the one place where raw pointers become references.

use std::ffi::CString;

use crate::config::TunnelConfig;
use crate::conn::Connection;
use crate::error::Error;
use crate::report::Report;

use super::boundary::{FREED, LIVE_CONFIG, LIVE_CONN, LIVE_REPORT};

/// A configuration (`dtun_config`): create with `dtun_config_new`, `dtun_config_from_file` or
/// `dtun_config_from_yaml`, free with `dtun_config_free`.
#[allow(non_camel_case_types)]
pub struct dtun_config {
    tag: u64,
    pub(crate) inner: TunnelConfig,
}

/// An open tunnel (`dtun_conn`): create with `dtun_open`, free with `dtun_close`.
#[allow(non_camel_case_types)]
pub struct dtun_conn {
    tag: u64,
    pub(crate) inner: Connection,
}

/// The report of an open attempt (`dtun_report`): get one with `dtun_conn_report` or
/// `dtun_last_open_report`, read it with `dtun_report_get` and `dtun_report_text`, free it
/// with `dtun_report_free`.
#[allow(non_camel_case_types)]
pub struct dtun_report {
    tag: u64,
    values: Vec<(String, CString)>,
    text: CString,
}

impl dtun_report {
    /// The value of a key as a C string, if the report has it.
    pub(crate) fn value(&self, key: &str) -> Option<&CString> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The whole report in words.
    pub(crate) fn text(&self) -> &CString {
        &self.text
    }
}

/// A Rust value behind an opaque C handle, tagged so that a wrong or freed pointer is
/// rejected as `DTUN_ERR_INVALID_ARGUMENT` rather than used (in most cases: a pointer to
/// memory that was freed and reused cannot always be told apart).
pub(crate) trait Handle: Sized {
    type Inner;
    const TAG: u64;
    const NAME: &'static str;
    fn wrap(inner: Self::Inner) -> Self;
    fn tag(&self) -> u64;
    fn set_tag(&mut self, tag: u64);

    /// Moves a value to the heap and hands out the pointer; the caller owns it.
    fn into_raw(inner: Self::Inner) -> *mut Self {
        Box::into_raw(Box::new(Self::wrap(inner)))
    }

    /// Borrows the handle.
    ///
    /// # Safety
    /// `p` is NULL or a pointer from `into_raw` not yet passed to `free`.
    unsafe fn get<'a>(p: *const Self) -> Result<&'a Self, Error> {
        let handle = unsafe { p.as_ref() }
            .ok_or_else(|| Error::invalid_argument(format!("{} is NULL", Self::NAME)))?;
        if handle.tag() != Self::TAG {
            return Err(Error::invalid_argument(format!(
                "{} is not a live {} (freed, or a pointer of another type)",
                Self::NAME,
                Self::NAME
            )));
        }
        Ok(handle)
    }

    /// Borrows the handle mutably.
    ///
    /// # Safety
    /// As [`Handle::get`], and no other reference to it is in use.
    unsafe fn get_mut<'a>(p: *mut Self) -> Result<&'a mut Self, Error> {
        unsafe { Self::get(p) }?;
        Ok(unsafe { &mut *p })
    }

    /// Takes the value back and frees the handle; NULL and wrong pointers are ignored.
    ///
    /// # Safety
    /// As [`Handle::get`]; the pointer is dangling afterwards.
    unsafe fn free(p: *mut Self) {
        if unsafe { Self::get(p) }.is_err() {
            return;
        }
        let mut boxed = unsafe { Box::from_raw(p) };
        boxed.set_tag(FREED);
        drop(boxed);
        // The allocator may reuse the memory, so this catches most double frees, not all.
    }
}

impl Handle for dtun_config {
    type Inner = TunnelConfig;
    const TAG: u64 = LIVE_CONFIG;
    const NAME: &'static str = "dtun_config";
    fn wrap(inner: TunnelConfig) -> Self {
        dtun_config {
            tag: LIVE_CONFIG,
            inner,
        }
    }
    fn tag(&self) -> u64 {
        self.tag
    }
    fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }
}

impl Handle for dtun_conn {
    type Inner = Connection;
    const TAG: u64 = LIVE_CONN;
    const NAME: &'static str = "dtun_conn";
    fn wrap(inner: Connection) -> Self {
        dtun_conn {
            tag: LIVE_CONN,
            inner,
        }
    }
    fn tag(&self) -> u64 {
        self.tag
    }
    fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }
}

impl Handle for dtun_report {
    type Inner = Report;
    const TAG: u64 = LIVE_REPORT;
    const NAME: &'static str = "dtun_report";
    fn wrap(report: Report) -> Self {
        let c = |text: &str| CString::new(text.replace('\0', "?")).unwrap_or_default();
        dtun_report {
            tag: LIVE_REPORT,
            values: report
                .entries()
                .iter()
                .map(|(k, v)| (k.clone(), c(v)))
                .collect(),
            text: c(&report.text()),
        }
    }
    fn tag(&self) -> u64 {
        self.tag
    }
    fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }
}
