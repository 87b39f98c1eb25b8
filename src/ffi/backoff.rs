//! `dtun_backoff_*`: the reconnect policy of [`crate::backoff`] behind a handle.

use std::ffi::c_int;

use crate::backoff::{Backoff, Failure};
use crate::error::{Error, Status};

use super::boundary::{self, guard, guard_value, guard_void, non_null};
use super::handles::{dtun_backoff, Handle};
use super::StatusArg;

/// What `dtun_backoff_next` returns when its handle is NULL or not a live `dtun_backoff`
/// (or a bug was caught): one minute, so that a reconnect loop with a broken handle never
/// spins.
pub const DTUN_BACKOFF_FALLBACK_MS: u32 = 60_000;

/// Creates a reconnect policy: exponential backoff with full jitter from `min_ms` to
/// `max_ms` (milliseconds), seeded differently in every process and every call, so agents
/// started together do not reconnect in step. `min_ms` 0, or `min_ms` greater than `max_ms`,
/// is `DTUN_ERR_INVALID_ARGUMENT`. On success writes a new handle to `*out` (free it with
/// `dtun_backoff_free`); on failure `*out` is untouched. Does not block. A policy is used by
/// one thread at a time (it holds no lock).
///
/// Typical values: `min_ms` 1000, `max_ms` 60000 (a minute between attempts once the
/// failures persist).
#[no_mangle]
pub unsafe extern "C" fn dtun_backoff_new(
    min_ms: u32,
    max_ms: u32,
    out: *mut *mut dtun_backoff,
) -> Status {
    guard(|| {
        non_null(out, "out")?;
        let policy = Backoff::new(min_ms, max_ms)
            .map_err(|e| Error::invalid_argument(format!("dtun_backoff_new: {e}")))?;
        unsafe { *out = dtun_backoff::into_raw(policy) };
        Ok(Status::DTUN_OK)
    })
}

/// The delay in milliseconds to wait before the next `dtun_open`, after an open (or a
/// connection) that ended with `last_failure`. Does not block (it only computes).
///
/// - Statuses that mean the configuration is wrong wait the slow floor, `max_ms`, at once:
///   `DTUN_ERR_PROXY_AUTH`, `DTUN_ERR_PROXY_CERT`, `DTUN_ERR_COLLECTOR_CERT`,
///   `DTUN_ERR_CONFIG`, `DTUN_ERR_INVALID_ARGUMENT`, `DTUN_ERR_INTERNAL`, and
///   `DTUN_ERR_PROXY_REFUSED` with a 4xx status (403: the proxy's ACL). Retrying those soon
///   cannot help and can lock the proxy account.
/// - Every other status (`DTUN_ERR_RESOLVE`, `DTUN_ERR_CONNECT`, `DTUN_ERR_TIMEOUT`,
///   `DTUN_ERR_IO`, `DTUN_ERR_PROXY_REFUSED` with a 5xx, `DTUN_CLOSED`, ...) is a network
///   failure: the n-th in a row (n from 0) waits a delay drawn uniformly from
///   `[min_ms, min(max_ms, min_ms * 2^(n+1))]`.
///
/// `DTUN_ERR_PROXY_REFUSED` alone does not say which HTTP status the proxy answered: this
/// function reads it from the calling thread's latest open report (`proxy.status_code` of
/// `dtun_last_open_report`), so call it on the thread that made the failed `dtun_open`. When
/// that report holds no status code (another thread's failure), the refusal counts as a
/// network failure.
///
/// On success `dtun_last_error()` is left as it was (it still tells why the open failed).
/// A NULL or invalid `b` returns `DTUN_BACKOFF_FALLBACK_MS` (60000) and records why in
/// `dtun_last_error()`.
#[no_mangle]
pub unsafe extern "C" fn dtun_backoff_next(b: *mut dtun_backoff, last_failure: StatusArg) -> u32 {
    guard_value(DTUN_BACKOFF_FALLBACK_MS, || {
        let policy = unsafe { dtun_backoff::get_mut(b) }?;
        let status = Status::ALL
            .iter()
            .copied()
            .find(|known| *known as c_int == last_failure.0);
        let failure = match status {
            Some(Status::DTUN_ERR_PROXY_REFUSED) => {
                let code = boundary::last_open()
                    .filter(|r| r.get("outcome") == Some("DTUN_ERR_PROXY_REFUSED"))
                    .and_then(|r| r.get("proxy.status_code").and_then(|c| c.parse().ok()));
                Failure::of(Status::DTUN_ERR_PROXY_REFUSED, code)
            }
            Some(s) => Failure::of(s, None),
            None => Failure::Network,
        };
        Ok(policy.next_ms(failure))
    })
}

/// Resets the policy after a connection stayed up: the next network failure waits from
/// `min_ms` again. NULL or an invalid handle is a no-op. Does not block.
#[no_mangle]
pub unsafe extern "C" fn dtun_backoff_reset(b: *mut dtun_backoff) {
    guard_void(|| {
        if let Ok(policy) = unsafe { dtun_backoff::get_mut(b) } {
            policy.reset();
        }
    })
}

/// Frees a policy. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn dtun_backoff_free(b: *mut dtun_backoff) {
    guard_void(|| unsafe { dtun_backoff::free(b) })
}
