//! The C API (`include/dragent_tunnel.h`, generated from this module by cbindgen).
//!
//! Every function here only checks its arguments, calls the Rust API and maps the result:
//! no logic lives at the boundary. Every function catches panics.
//!
//! Safety, for every function: each pointer argument is NULL or valid for what its doc
//! comment says (a live handle from this library, `len` readable bytes, a NUL-terminated
//! string); the per-function docs are the C contract, so no separate `# Safety` sections.
#![allow(clippy::missing_safety_doc)]

mod backoff;
mod boundary;
mod handles;

use std::ffi::OsStr;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use backoff::*;
pub use handles::{dtun_backoff, dtun_config, dtun_conn, dtun_report};

use crate::config::TunnelConfig;
use crate::conn::{Connection, Transfer, Wait};
use crate::error::{Error, Status};
use crate::log::{self, LogLevel};
use boundary::{guard, guard_void, non_null, set_last_error};
use handles::Handle;

/// `timeout_ms` value that waits without limit. 0 never waits.
#[allow(unused_parens)]
pub const DTUN_WAIT_FOREVER: i32 = (-1);
/// The library's major version.
pub const DTUN_VERSION_MAJOR: u32 = 0;
/// The library's minor version.
pub const DTUN_VERSION_MINOR: u32 = 1;
/// The library's patch version.
pub const DTUN_VERSION_PATCH: u32 = 0;

/// A `dtun_status` passed in by C, read as the integer it is: C may pass any value, and a
/// Rust enum must never hold one it does not declare.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct StatusArg(c_int);

/// A `dtun_log_level` passed in by C, read as the integer it is.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct LogLevelArg(c_int);

/// Receives the library's log records.
///
/// `userdata` is the pointer given to `dtun_set_logger`; `message` is a NUL-terminated
/// UTF-8 line valid only during the call. Called on the thread whose `dtun_` call made the
/// record, at the end of that call, once the call has released every lock and left the
/// library's I/O, so a slow callback delays only its own thread; possibly from several
/// threads at once, so it must be thread-safe. It must not throw (C++) or longjmp out.
/// It may call any `dtun_` function, `dtun_set_logger` included (which then does not wait
/// for the running call); records made by those calls are not delivered (no recursion).
#[allow(non_camel_case_types)]
pub type dtun_log_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: LogLevel, message: *const c_char)>;

/// The library's version, `"0.1.0"`. Static storage; never free it.
#[no_mangle]
pub extern "C" fn dtun_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// The name of a status, `"DTUN_ERR_PROXY_AUTH"`; `"DTUN_UNKNOWN"` for a value that is not a
/// status. Static storage; never free it. Does not change `dtun_last_error()`.
#[no_mangle]
pub extern "C" fn dtun_status_name(s: StatusArg) -> *const c_char {
    Status::ALL
        .iter()
        .find(|known| **known as c_int == s.0)
        .map_or(c"DTUN_UNKNOWN".as_ptr(), |known| known.c_name().as_ptr())
}

/// This thread's last failure in words; `""` if the thread's last call succeeded.
///
/// The text names what failed and where (key, file, host:port, stage, the proxy's status
/// line) and never holds the proxy password or the `Proxy-Authorization` value. The
/// pointer stays valid until this thread's next `dtun_` call; never free it.
#[no_mangle]
pub extern "C" fn dtun_last_error() -> *const c_char {
    boundary::last_error_ptr()
}

/// Creates a configuration holding every documented default (direct TLS to
/// `collector.sysdigcloud.com:6443`, system trust store). On success writes a new handle to
/// `*out`, which the caller frees with `dtun_config_free`; on failure `*out` is untouched.
#[no_mangle]
pub unsafe extern "C" fn dtun_config_new(out: *mut *mut dtun_config) -> Status {
    guard(|| {
        non_null(out, "out")?;
        let cfg = TunnelConfig::new()?;
        unsafe { *out = dtun_config::into_raw(cfg) };
        Ok(Status::DTUN_OK)
    })
}

/// Reads a dragent.yaml file (`path`: NUL-terminated, relative to the working directory)
/// and builds a configuration. CA files it names are read now. Blocks for the file reads
/// only. On success writes a new handle to `*out` (free it with `dtun_config_free`); on
/// failure returns `DTUN_ERR_CONFIG` with the key, file, or line and column in
/// `dtun_last_error()`, and `*out` is untouched.
#[no_mangle]
pub unsafe extern "C" fn dtun_config_from_file(
    path: *const c_char,
    out: *mut *mut dtun_config,
) -> Status {
    guard(|| {
        non_null(path, "path")?;
        non_null(out, "out")?;
        // Linux paths are bytes, not necessarily UTF-8.
        let path = Path::new(OsStr::from_bytes(
            unsafe { CStr::from_ptr(path) }.to_bytes(),
        ));
        let cfg = TunnelConfig::from_file(path)?;
        unsafe { *out = dtun_config::into_raw(cfg) };
        Ok(Status::DTUN_OK)
    })
}

/// Builds a configuration from dragent.yaml text: `len` bytes at `yaml` (no terminator
/// needed; `yaml` may be NULL when `len` is 0, giving every default). Same rules and
/// outputs as `dtun_config_from_file`. A `len` above `PTRDIFF_MAX` is
/// `DTUN_ERR_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn dtun_config_from_yaml(
    yaml: *const c_char,
    len: usize,
    out: *mut *mut dtun_config,
) -> Status {
    guard(|| {
        non_null(out, "out")?;
        let bytes = unsafe { boundary::bytes(yaml.cast(), len, "yaml") }?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::config("dragent.yaml text is not UTF-8"))?;
        let cfg = TunnelConfig::from_yaml(text)?;
        unsafe { *out = dtun_config::into_raw(cfg) };
        Ok(Status::DTUN_OK)
    })
}

/// Sets one key by its dotted dragent.yaml name (`"collector_port"`,
/// `"http_proxy.proxy_host"`, `"http_proxy.ssl"`...) from the value as YAML scalar text
/// (`"3128"`, `"true"`, `"squid.example"`; an empty string restores the default), with the
/// same parsing and checks as loading a file; a CA file is read now. Unknown key:
/// `DTUN_ERR_INVALID_ARGUMENT`; bad value or a contradiction between keys:
/// `DTUN_ERR_CONFIG`. On failure the config is unchanged. A relative CA path is resolved
/// against `root_dir` when it is set: set `root_dir` first, as a file does. Must not run while another
/// thread uses the same config; connections already open are not affected.
///
/// Socket keys (every TCP socket of an open): `"tcp_keepalive_s"`, keepalive idle seconds
/// before the first probe, 0 to 32767, 0 = off, default 60 (probes then every 10 s or the idle
/// time if shorter, 6 of them); `"tcp_user_timeout_ms"`, `TCP_USER_TIMEOUT`: data or probes
/// unacknowledged this long fail the connection (a send or recv then returns
/// `DTUN_ERR_IO`), 0 = the kernel's default, default 120000.
///
/// Proxy selection and the CONNECT request (README "The proxy from the environment"):
/// `"http_proxy.from_environment"` (`"true"`: with `proxy_host` empty, the proxy comes from
/// `https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`, read when the config is built, and
/// `no_proxy` / `NO_PROXY` apply to it; never `HTTP_PROXY`); `"http_proxy.no_proxy"` (curl's
/// NO_PROXY list); `"http_proxy.user_agent"` (`"''"` sends none; an empty text restores
/// `dragent-tunnel/<version>`); `"http_proxy.headers.<Name>"` sets one extra CONNECT header
/// (an empty text removes it). Header values are secrets, like the password: no message,
/// log record or report ever shows one.
#[no_mangle]
pub unsafe extern "C" fn dtun_config_set(
    cfg: *mut dtun_config,
    key: *const c_char,
    value: *const c_char,
) -> Status {
    guard(|| {
        non_null(key, "key")?;
        non_null(value, "value")?;
        let cfg = unsafe { dtun_config::get_mut(cfg) }?;
        let key = unsafe { CStr::from_ptr(key) }
            .to_str()
            .map_err(|_| Error::invalid_argument("key is not UTF-8"))?;
        let value = unsafe { CStr::from_ptr(value) }
            .to_str()
            .map_err(|_| Error::config(format!("{key}: the value is not UTF-8")))?;
        cfg.set(key, value)?;
        Ok(Status::DTUN_OK)
    })
}

/// Frees a configuration and wipes the password from memory. NULL is a no-op. Connections
/// opened from it stay open and usable.
#[no_mangle]
pub unsafe extern "C" fn dtun_config_free(cfg: *mut dtun_config) {
    guard_void(|| unsafe { dtun_config::free(cfg) })
}

/// Opens a tunnel to the collector as the config says: resolve, TCP, [TLS to proxy],
/// CONNECT, [TLS to collector]. Blocks until the tunnel is ready for application bytes or
/// `timeout_ms` passes (one deadline for all stages; `DTUN_WAIT_FOREVER` waits without
/// limit; 0 fails at once with `DTUN_ERR_TIMEOUT` unless nothing needs waiting). The config
/// may be shared by threads opening at the same time and may be freed afterwards. On
/// success writes a new handle to `*out`, which the caller frees with `dtun_close`; on
/// failure `*out` is untouched and `dtun_last_error()` says which stage failed and why.
#[no_mangle]
pub unsafe extern "C" fn dtun_open(
    cfg: *const dtun_config,
    timeout_ms: i32,
    out: *mut *mut dtun_conn,
) -> Status {
    guard(|| {
        boundary::set_last_open(None);
        non_null(out, "out")?;
        let cfg = unsafe { dtun_config::get(cfg) }?;
        let wait = Wait::from_millis(timeout_ms)?;
        let (result, report) = Connection::open_with_report(cfg, wait);
        boundary::set_last_open(Some(report));
        let conn = result?;
        unsafe { *out = dtun_conn::into_raw(conn) };
        Ok(Status::DTUN_OK)
    })
}

/// Sends `len` bytes from `buf` (NULL allowed when `len` is 0; `len` above `PTRDIFF_MAX` is
/// `DTUN_ERR_INVALID_ARGUMENT`). Blocks until every byte is
/// accepted, the timeout passes, or the connection breaks. Whatever the outcome after the
/// arguments are checked, `*sent` says how many bytes were accepted: all of them with
/// `DTUN_OK`, possibly some with `DTUN_TIMED_OUT` (the connection stays usable: send the
/// rest later). Accepted bytes are queued for the wire; a call with `len` 0 pushes out
/// what a timed-out call left queued. `DTUN_ERR_IO`: the connection broke (reset, TLS
/// error, peer gone). One thread may send while another receives on the same connection;
/// two concurrent senders take turns, each within its own timeout (counted from its call,
/// including the wait for its turn). With TLS, accepted bytes may still be queued inside TLS
/// when `DTUN_TIMED_OUT` is returned (even with `*sent == len`): a `dtun_recv` waiting on
/// another thread is told and pushes them out at once, else the next `dtun_send` or
/// `dtun_recv` does. `DTUN_SHUT_DOWN`: `dtun_conn_shutdown` was called (before or during
/// the call; `*sent` says what was accepted before it).
#[no_mangle]
pub unsafe extern "C" fn dtun_send(
    c: *mut dtun_conn,
    buf: *const u8,
    len: usize,
    sent: *mut usize,
    timeout_ms: i32,
) -> Status {
    guard(|| {
        non_null(sent, "sent")?;
        let conn = unsafe { dtun_conn::get(c) }?;
        let data = unsafe { boundary::bytes(buf, len, "buf") }?;
        let wait = Wait::from_millis(timeout_ms)?;
        let (accepted, result) = conn.send(data, wait);
        unsafe { *sent = accepted };
        transfer_status(result)
    })
}

/// Receives up to `cap` bytes into `buf` (`cap` above `PTRDIFF_MAX` is
/// `DTUN_ERR_INVALID_ARGUMENT`). Blocks until at least one byte is available (then
/// returns what is available, like POSIX `recv`), the timeout passes (`DTUN_TIMED_OUT`,
/// `*received == 0`, the connection stays usable), or the collector ends the stream
/// (`DTUN_CLOSED`, `*received == 0`), or `dtun_conn_shutdown` is called (`DTUN_SHUT_DOWN`,
/// `*received == 0`). Two concurrent receivers take turns, each within its own timeout
/// (counted from its call, including the wait for its turn). Bytes the proxy sent right
/// behind its 2xx reply are
/// delivered first. `*received` is written whenever the arguments are valid (0 on errors).
/// `cap` 0 returns `DTUN_OK` at once with `*received == 0`.
#[no_mangle]
pub unsafe extern "C" fn dtun_recv(
    c: *mut dtun_conn,
    buf: *mut u8,
    cap: usize,
    received: *mut usize,
    timeout_ms: i32,
) -> Status {
    guard(|| {
        non_null(received, "received")?;
        let conn = unsafe { dtun_conn::get(c) }?;
        let wait = Wait::from_millis(timeout_ms)?;
        let data = unsafe { boundary::bytes_mut(buf, cap, "buf") }?;
        let (n, result) = conn.recv(data, wait);
        unsafe { *received = n };
        transfer_status(result)
    })
}

/// Shuts a tunnel down for its callers, like POSIX `shutdown(SHUT_RDWR)`: every `dtun_send`
/// and `dtun_recv` waiting on `c`, in any thread, returns `DTUN_SHUT_DOWN` at once (a send's
/// `*sent` says what it had accepted), and so does every later one. Safe to call from any
/// thread while others are in `dtun_send` or `dtun_recv` on `c`, and more than once. Does not
/// block. This is how an agent stops a reader thread parked in `dtun_recv(DTUN_WAIT_FOREVER)`:
/// shut down, join the thread, then `dtun_close` (which still sends close_notify, bounded).
#[no_mangle]
pub unsafe extern "C" fn dtun_conn_shutdown(c: *mut dtun_conn) -> Status {
    guard(|| {
        let conn = unsafe { dtun_conn::get(c) }?;
        conn.shutdown();
        Ok(Status::DTUN_OK)
    })
}

/// Closes a tunnel: sends TLS close_notify on each TLS layer and flushes, waiting at most
/// half a second, then closes the socket and frees the handle. NULL is a no-op. Must not
/// run while another thread is in `dtun_send` or `dtun_recv` on the same connection.
#[no_mangle]
pub unsafe extern "C" fn dtun_close(c: *mut dtun_conn) {
    guard_void(|| unsafe { dtun_conn::free(c) })
}

/// The report of the open that made `c` (see `dtun_report_get` for what it holds). On
/// success writes a new handle to `*out`, which the caller frees with `dtun_report_free`.
/// Does not block.
#[no_mangle]
pub unsafe extern "C" fn dtun_conn_report(
    c: *const dtun_conn,
    out: *mut *mut dtun_report,
) -> Status {
    guard(|| {
        non_null(out, "out")?;
        let conn = unsafe { dtun_conn::get(c) }?;
        unsafe { *out = handles::report_into_raw(conn.report().clone()) };
        Ok(Status::DTUN_OK)
    })
}

/// The report of the calling thread's latest `dtun_open`, failed or not: after a failure,
/// which stage failed (`failed_stage`), how long each stage took, and a `hint` of what to
/// change in dragent.yaml. On success writes a new handle to `*out` (free it with
/// `dtun_report_free`); `DTUN_ERR_INVALID_ARGUMENT` if this thread has not called
/// `dtun_open` yet, or its latest call was refused for its arguments. Does not block.
#[no_mangle]
pub unsafe extern "C" fn dtun_last_open_report(out: *mut *mut dtun_report) -> Status {
    guard(|| {
        non_null(out, "out")?;
        let report = boundary::last_open()
            .ok_or_else(|| Error::invalid_argument("this thread has not called dtun_open yet"))?;
        unsafe { *out = handles::report_into_raw(report) };
        Ok(Status::DTUN_OK)
    })
}

/// One value of a report, as text; NULL when the report has no such value (a stage that
/// did not run, a hop without TLS, an unknown key). Keys:
/// `outcome` (status name), `message`, `failed_stage` (`""` on success), `hint` (what to
/// change; `""` on success), `route`, `collector` and `proxy` (`host:port`), `proxy.tls`
/// and `collector.tls` (`yes`/`no`), `proxy.auth` (`http_proxy.proxy_auth` in force:
/// `basic`, `digest`, `ntlm`, `negotiate`, `any`, or `none` without credentials),
/// `proxy.auth_scheme` (the scheme of the credentials last sent, `Basic`, `Digest`, `NTLM`
/// or `Negotiate`; absent when none
/// were sent),
/// `proxy.auth_rounds` (how many CONNECTs the open sent: `1` without a 407, `2` after one
/// answered challenge; absent before the first), `proxy.source` (where
/// the proxy came from: `config http_proxy.proxy_host` or `environment https_proxy`, ...),
/// `proxy.bypassed` (a proxy not used because the collector matched a `no_proxy` list),
/// `proxy.status_code`, `proxy.status_reason`, `proxy.auth_schemes` (after a 407),
/// `<side>.tls_version`, `<side>.cipher_suite`, `<side>.tls_resumed`,
/// `<side>.cert.subject`, `<side>.cert.names`, `<side>.cert.not_after` (side: `proxy`
/// or `collector`), `address.local`, `address.peer` (the TCP connection's ends),
/// `time.resolve_ms`, `time.tcp_ms`, `time.proxy_tls_ms`, `time.proxy_connect_ms`,
/// `time.collector_tls_ms`, `time.total_ms` (milliseconds with three decimals).
/// The pointer lives as long as the report; never free it. Never holds a secret.
#[no_mangle]
pub unsafe extern "C" fn dtun_report_get(
    r: *const dtun_report,
    key: *const c_char,
) -> *const c_char {
    let mut found = std::ptr::null();
    guard(|| {
        non_null(key, "key")?;
        let report = unsafe { dtun_report::get(r) }?;
        let key = unsafe { CStr::from_ptr(key) }.to_str().unwrap_or("");
        if let Some(value) = report.value(key) {
            found = value.as_ptr();
        }
        Ok(Status::DTUN_OK)
    });
    found
}

/// The whole report in words: the route, one line per stage with its time and outcome
/// (TLS version and certificate, the proxy's answer, the addresses), the result, and the
/// hint after a failure. The pointer lives as long as the report; never free it; NULL
/// for a NULL or invalid handle.
#[no_mangle]
pub unsafe extern "C" fn dtun_report_text(r: *const dtun_report) -> *const c_char {
    let mut text = std::ptr::null();
    guard(|| {
        let report = unsafe { dtun_report::get(r) }?;
        text = report.text().as_ptr();
        Ok(Status::DTUN_OK)
    });
    text
}

/// Frees a report. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn dtun_report_free(r: *mut dtun_report) {
    guard_void(|| unsafe { dtun_report::free(r) })
}

/// Sends the library's log records at `max_level` and more severe to `fn`, with
/// `userdata`; `fn` NULL turns logging off. When this returns, the previous callback has
/// finished every call (other than the one this is called from, when called from inside
/// the callback) and is never called again; in a child after `fork()`, calls that were in
/// flight in the parent's other threads are not waited for. Records never contain the proxy password
/// or the `Proxy-Authorization` value, at any level. A `max_level` below
/// `DTUN_LOG_ERROR` turns logging off; above `DTUN_LOG_TRACE` means `DTUN_LOG_TRACE`.
#[no_mangle]
pub extern "C" fn dtun_set_logger(
    r#fn: dtun_log_fn,
    userdata: *mut c_void,
    max_level: LogLevelArg,
) {
    guard_void(|| {
        let level = match max_level.0 {
            i32::MIN..=0 => None,
            1 => Some(LogLevel::DTUN_LOG_ERROR),
            2 => Some(LogLevel::DTUN_LOG_WARN),
            3 => Some(LogLevel::DTUN_LOG_INFO),
            4 => Some(LogLevel::DTUN_LOG_DEBUG),
            _ => Some(LogLevel::DTUN_LOG_TRACE),
        };
        match (r#fn, level) {
            (Some(callback), Some(level)) => {
                let userdata = UserData(userdata);
                let sink: log::Sink = Box::new(move |level, message| {
                    let text =
                        std::ffi::CString::new(message.replace('\0', "?")).unwrap_or_default();
                    // SAFETY: the caller promised a thread-safe callback for this userdata.
                    unsafe { callback(userdata.get(), level, text.as_ptr()) };
                });
                log::set_logger(Some(sink), level);
            }
            _ => log::set_logger(None, LogLevel::DTUN_LOG_ERROR),
        }
        set_last_error("");
    })
}

/// The application's pointer, handed back to its callback from any thread.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the C contract of dtun_set_logger makes the callback and its userdata thread-safe.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}
impl UserData {
    fn get(self) -> *mut c_void {
        self.0
    }
}

fn transfer_status(result: crate::Result<Transfer>) -> Result<Status, Error> {
    Ok(match result? {
        Transfer::Complete => Status::DTUN_OK,
        Transfer::TimedOut => Status::DTUN_TIMED_OUT,
        Transfer::Closed => Status::DTUN_CLOSED,
        Transfer::ShutDown => Status::DTUN_SHUT_DOWN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(dtun_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_inside_becomes_internal_with_words_and_void_calls_swallow_it() {
        let mut out: *mut dtun_config = std::ptr::null_mut();
        boundary::injected::panic_in_next_call();
        let st = unsafe { dtun_config_new(&mut out) };
        assert_eq!(st, Status::DTUN_ERR_INTERNAL);
        assert!(
            out.is_null(),
            "an output was written by a call that panicked"
        );
        let words = last_error();
        assert!(
            words.contains("internal error") && words.contains("injected"),
            "{words}"
        );
        // A void function: the panic must not unwind into this (extern "C") caller, which
        // would abort the test process.
        boundary::injected::panic_in_next_call();
        unsafe { dtun_config_free(std::ptr::null_mut()) };
        assert_eq!(last_error(), "");
        boundary::injected::panic_in_next_call();
        dtun_set_logger(None, std::ptr::null_mut(), LogLevelArg(0));
        // The hook fires once: the next call works.
        assert_eq!(unsafe { dtun_config_new(&mut out) }, Status::DTUN_OK);
        unsafe { dtun_config_free(out) };
    }

    #[test]
    fn a_handle_of_another_type_is_refused_by_its_tag_alone() {
        let mut cfg: *mut dtun_config = std::ptr::null_mut();
        assert_eq!(unsafe { dtun_config_new(&mut cfg) }, Status::DTUN_OK);
        let mut report: *mut dtun_report = std::ptr::null_mut();
        let st = unsafe { dtun_conn_report(cfg.cast(), &mut report) };
        assert_eq!(st, Status::DTUN_ERR_INVALID_ARGUMENT);
        assert!(
            last_error().contains("not a live dtun_conn"),
            "{}",
            last_error()
        );
        assert!(report.is_null());
        // Eight bytes that are no tag: read as such, never further.
        let fake = [0u64; 1];
        let p = fake.as_ptr() as *mut dtun_conn;
        let mut sent = 7usize;
        let st = unsafe { dtun_send(p, [1u8].as_ptr(), 1, &mut sent, 0) };
        assert_eq!(st, Status::DTUN_ERR_INVALID_ARGUMENT);
        assert_eq!(sent, 7, "an output was written for a refused handle");
        unsafe { dtun_close(p) };
        assert_eq!(fake, [0]);
        unsafe { dtun_config_free(cfg) };
    }

    #[test]
    fn lengths_above_ptrdiff_max_are_refused_before_any_slice() {
        let mut out: *mut dtun_config = std::ptr::null_mut();
        let yaml = c"ssl: true";
        let huge = isize::MAX as usize + 1;
        let st = unsafe { dtun_config_from_yaml(yaml.as_ptr(), huge, &mut out) };
        assert_eq!(st, Status::DTUN_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("PTRDIFF_MAX"), "{}", last_error());
        assert!(out.is_null());
        let st = unsafe { boundary::bytes([0u8].as_ptr(), usize::MAX, "buf") };
        assert!(st.is_err());
        let mut one = [0u8];
        let st = unsafe { boundary::bytes_mut(one.as_mut_ptr(), huge, "buf") };
        assert!(st.is_err());
    }

    #[test]
    fn after_fork_a_parents_handles_are_refused_and_new_ones_work() {
        let mut cfg: *mut dtun_config = std::ptr::null_mut();
        assert_eq!(unsafe { dtun_config_new(&mut cfg) }, Status::DTUN_OK);
        // SAFETY: the child only makes library calls of this thread and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut code = 0;
            let st = unsafe { dtun_config_set(cfg, c"collector_port".as_ptr(), c"1".as_ptr()) };
            if st != Status::DTUN_ERR_INVALID_ARGUMENT || !last_error().contains("fork") {
                code |= 1;
            }
            unsafe { dtun_config_free(cfg) };
            let mut mine: *mut dtun_config = std::ptr::null_mut();
            if unsafe { dtun_config_new(&mut mine) } != Status::DTUN_OK {
                code |= 2;
            }
            let st = unsafe { dtun_config_set(mine, c"collector_port".as_ptr(), c"1".as_ptr()) };
            if st != Status::DTUN_OK {
                code |= 4;
            }
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child did not exit: {status}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "child's failures (bit mask)");
        let st = unsafe { dtun_config_set(cfg, c"collector_port".as_ptr(), c"2".as_ptr()) };
        assert_eq!(
            st,
            Status::DTUN_OK,
            "the parent's handle must still work in the parent"
        );
        unsafe { dtun_config_free(cfg) };
    }

    #[test]
    fn version_macros_match_cargo_toml() {
        let parts: Vec<u32> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            parts,
            [DTUN_VERSION_MAJOR, DTUN_VERSION_MINOR, DTUN_VERSION_PATCH]
        );
        let v = unsafe { CStr::from_ptr(dtun_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn void_calls_clear_the_last_error_and_paths_may_be_any_bytes() {
        let mut out: *mut dtun_config = std::ptr::null_mut();
        let bad = c"ssl: maybe";
        let st = unsafe { dtun_config_from_yaml(bad.as_ptr(), 10, &mut out) };
        assert_eq!(st, Status::DTUN_ERR_CONFIG);
        assert!(out.is_null());
        let last = unsafe { CStr::from_ptr(dtun_last_error()) };
        assert!(last.to_str().unwrap().contains("ssl"));
        unsafe { dtun_config_free(std::ptr::null_mut()) };
        assert_eq!(unsafe { CStr::from_ptr(dtun_last_error()) }.to_bytes(), b"");
        // A Latin-1 file name is a valid Linux path: a config error, not a bad argument.
        let path = c"/nonexistent-dtun-dir/caf\xe9.yaml";
        let st = unsafe { dtun_config_from_file(path.as_ptr(), &mut out) };
        assert_eq!(st, Status::DTUN_ERR_CONFIG);
    }

    #[test]
    fn status_names_including_unknown() {
        for s in Status::ALL {
            let n = unsafe { CStr::from_ptr(dtun_status_name(StatusArg(s as c_int))) };
            assert_eq!(n.to_str().unwrap(), s.name());
        }
        for bad in [-1, 4, 99, 102, 200, i32::MAX] {
            let n = unsafe { CStr::from_ptr(dtun_status_name(StatusArg(bad))) };
            assert_eq!(n.to_str().unwrap(), "DTUN_UNKNOWN");
        }
    }
}
