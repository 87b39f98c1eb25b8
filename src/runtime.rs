//! The one process-wide tokio runtime, created on first use.
//!
//! One worker thread drives all sockets and timers; blocking calls (send, recv, open) run
//! their futures on the caller's own thread with `block_on`, so the library adds at most two
//! threads to the process whatever the number of connections: the worker and one thread for
//! name resolution (`getaddrinfo` blocks), which exits after a few idle seconds.

use std::time::Duration;

use once_cell::sync::OnceCell;
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

/// The runtime, created on first call.
pub fn get() -> Result<&'static Runtime> {
    RUNTIME.get_or_try_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_keep_alive(Duration::from_secs(5))
            .thread_name("dtun-io")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the I/O runtime: {e}")))
    })
}
