//! The one process-wide tokio runtime, created on first use.
//!
//! A current-thread runtime: the library starts no I/O thread. Each blocking call (open,
//! send, recv, close) drives the sockets from the caller's own thread through `block_on`,
//! so a lone agent thread waits in its own `epoll_wait` with no cross-thread wake-up. When
//! two threads use the library at once (one sending, one receiving), one of them drives the
//! I/O for both and wakes the other when its socket is ready. The only threads the library
//! may start are at most two for name resolution (`getaddrinfo` blocks, and one stuck lookup
//! must not hold up every other open), which exit after a few idle seconds.

use std::time::Duration;

use once_cell::sync::OnceCell;
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

/// The runtime, created on first call.
pub fn get() -> Result<&'static Runtime> {
    RUNTIME.get_or_try_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(2)
            .thread_keep_alive(Duration::from_secs(5))
            .thread_name("dtun-resolve")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the I/O runtime: {e}")))
    })
}
