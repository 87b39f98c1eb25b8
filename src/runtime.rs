//! The process's tokio runtime, created on first use (and again in a forked child), and the
//! one way into it: [`block_on`].
//!
//! A current-thread runtime: the library starts no I/O thread. Each blocking call (open,
//! send, recv, close) drives the sockets from the caller's own thread through `block_on`,
//! so a lone agent thread waits in its own `epoll_wait` with no cross-thread wake-up. When
//! two threads use the library at once (one sending, one receiving), one of them drives the
//! I/O for both and wakes the other when its socket is ready. The only threads the library
//! may start are at most two for name resolution (`getaddrinfo` blocks, and one stuck lookup
//! must not hold up every other open), which exit after a few idle seconds, and, only while
//! a thread's own storage is being torn down, the thread that does that thread's call.
//!
//! After `fork()` the child gets a runtime of its own; the parent's is left untouched (and
//! leaked) there: dropping it would deregister the parent's sockets from the epoll instance
//! both processes share.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};
use crate::log;
use crate::process;

struct Slot {
    generation: u64,
    runtime: Runtime,
}

static CURRENT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static CREATING: Mutex<()> = Mutex::new(());

/// This process's runtime, created on first call (and on the first call in a forked child).
fn get() -> Result<&'static Runtime> {
    let generation = process::generation();
    if let Some(slot) = current(generation) {
        return Ok(slot);
    }
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = current(generation) {
        return Ok(slot);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(2)
        .thread_keep_alive(Duration::from_secs(5))
        .thread_name("dtun-resolve")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the I/O runtime: {e}")))?;
    // Leaked on purpose: a runtime is never dropped (see the module docs).
    let slot: &'static Slot = Box::leak(Box::new(Slot {
        generation,
        runtime,
    }));
    CURRENT.store(slot as *const Slot as *mut Slot, Ordering::Release);
    Ok(&slot.runtime)
}

/// A lock held from just before a fork until just after it, in parent and child.
struct HeldForFork(std::cell::UnsafeCell<Option<std::sync::MutexGuard<'static, ()>>>);
// SAFETY: only the thread holding CREATING (the forking thread, between the prepare and the
// parent/child handlers) touches the cell.
unsafe impl Sync for HeldForFork {}
static HELD_FOR_FORK: HeldForFork = HeldForFork(std::cell::UnsafeCell::new(None));

/// fork() prepare handler: waits for a runtime being built, so the child never inherits the
/// lock held by a thread that does not exist there.
pub(crate) fn before_fork() {
    let guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: see HeldForFork.
    unsafe { *HELD_FOR_FORK.0.get() = Some(guard) };
}

/// fork() parent and child handler: releases what [`before_fork`] took.
pub(crate) fn after_fork() {
    // SAFETY: see HeldForFork; this thread took the lock in before_fork.
    drop(unsafe { (*HELD_FOR_FORK.0.get()).take() });
}

fn current(generation: u64) -> Option<&'static Runtime> {
    // SAFETY: CURRENT only ever holds NULL or a leaked, never freed Slot.
    let slot = unsafe { CURRENT.load(Ordering::Acquire).as_ref() }?;
    (slot.generation == generation).then_some(&slot.runtime)
}

/// Runs a future to completion on the runtime, from the calling thread.
///
/// Log records made meanwhile are held back and delivered after the runtime is left (see
/// [`log::Deferred`]), so a slow logger never stalls the I/O of other threads. When the
/// calling thread's storage is already torn down (a call from a `thread_local` destructor,
/// or from an `atexit` handler after the main thread's), the runtime cannot be entered
/// from it: the future then runs on a short-lived thread of its own, joined before return.
pub fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send,
    F::Output: Send + 'static,
{
    let runtime = get()?;
    if !thread_storage_torn_down() {
        let _deferred = log::Deferred::begin();
        return Ok(runtime.block_on(future));
    }
    let boxed: Pin<Box<dyn Future<Output = F::Output> + Send + '_>> = Box::pin(future);
    // SAFETY: the thread is joined before this function returns, so every borrow the future
    // holds outlives its use there; nothing of it escapes the thread but the output.
    let boxed: Pin<Box<dyn Future<Output = F::Output> + Send + 'static>> =
        unsafe { std::mem::transmute(boxed) };
    let worker = std::thread::Builder::new()
        .name("dtun-exit".into())
        .spawn(move || {
            let _deferred = log::Deferred::begin();
            runtime.block_on(boxed)
        })
        .map_err(|e| {
            Error::internal(format!("cannot start a thread for a call during exit: {e}"))
        })?;
    worker
        .join()
        .map_err(|_| Error::internal("a call made during thread exit panicked"))
}

/// Whether this thread's thread-local storage is being (or has been) destroyed, so tokio's
/// own per-thread state is gone.
fn thread_storage_torn_down() -> bool {
    matches!(tokio::runtime::Handle::try_current(), Err(e) if e.is_thread_local_destroyed())
}
