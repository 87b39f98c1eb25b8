//! The library's log records, sent to one callback installed by the application.
//!
//! Nothing here formats a secret: callers pass messages built from redacted values only.
//!
//! Delivery rules, each for a reason:
//! - Records made while a thread is inside the library's runtime (or inside an exported
//!   call, see [`Deferred`]) are queued on that thread and delivered when it leaves: a
//!   callback that takes a second must not hold the I/O of every other thread's connection,
//!   which the thread inside the runtime may be driving, nor run while the library holds a
//!   connection's locks (a callback may call back into the library).
//! - The callback is called without any lock held; [`set_logger`] counts the calls in flight
//!   and waits for them, so once it returns the old callback is never called again. Called
//!   from inside the callback, it does not wait for that very call (which cannot end first).
//! - Records that the callback's own library calls make are dropped: delivering them would
//!   call the callback inside itself, possibly without end.
//! - In a child after `fork()`, calls that were in flight in the parent's other threads will
//!   never end there and are not waited for.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::process;

/// Log levels (`dtun_log_level`), most severe first.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Failures.
    DTUN_LOG_ERROR = 1,
    /// Suspicious settings or events (certificate verification off).
    DTUN_LOG_WARN = 2,
    /// One line per tunnel opened: the route and TLS on each hop.
    DTUN_LOG_INFO = 3,
    /// Stage by stage progress of an open.
    DTUN_LOG_DEBUG = 4,
    /// Everything, including per-call send/recv sizes.
    DTUN_LOG_TRACE = 5,
}

impl LogLevel {
    /// The level's short name (`"WARN"`).
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::DTUN_LOG_ERROR => "ERROR",
            LogLevel::DTUN_LOG_WARN => "WARN",
            LogLevel::DTUN_LOG_INFO => "INFO",
            LogLevel::DTUN_LOG_DEBUG => "DEBUG",
            LogLevel::DTUN_LOG_TRACE => "TRACE",
        }
    }
}

/// A log sink: receives the level and the message.
pub type Sink = Box<dyn Fn(LogLevel, &str) + Send + Sync>;

/// The installed sink and the calls of it in flight.
struct Installed {
    sink: Option<Arc<Sink>>,
    in_flight: usize,
    /// Of `in_flight`, the calls that are themselves waiting in [`set_logger`].
    waiting_inside: usize,
    /// The process generation `in_flight` counts calls of.
    generation: u64,
}

impl Installed {
    /// Forgets calls that were in flight in the parent before a fork: their threads are gone.
    fn adopt(&mut self, generation: u64) {
        if self.generation != generation {
            self.generation = generation;
            self.in_flight = 0;
            self.waiting_inside = 0;
        }
    }
}

/// 0 means logging is off; otherwise the most verbose level delivered.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    sink: None,
    in_flight: 0,
    waiting_inside: 0,
    generation: 0,
});
static CALL_ENDED: Condvar = Condvar::new();

/// Records held back on this thread, at most this many (then counted, not kept).
const MAX_DEFERRED: usize = 1024;

thread_local! {
    /// How deep this thread is inside [`Deferred`] scopes.
    static DEFER_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Whether this thread is inside the callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    static QUEUE: RefCell<Queue> = const { RefCell::new(Queue { records: Vec::new(), dropped: 0 }) };
}

struct Queue {
    records: Vec<(LogLevel, String)>,
    dropped: usize,
}

fn installed() -> MutexGuard<'static, Installed> {
    INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs (or with `None` removes) the sink and its level filter. When this returns, the
/// previous sink has finished every call (but one that is running this very call) and will
/// not be called again.
pub fn set_logger(sink: Option<Sink>, max_level: LogLevel) {
    let generation = process::generation();
    let mut slot = installed();
    slot.adopt(generation);
    let level = if sink.is_some() { max_level as u8 } else { 0 };
    let old = std::mem::replace(&mut slot.sink, sink.map(Arc::new));
    MAX_LEVEL.store(level, Ordering::Release);
    // A call made from inside the callback cannot wait for its own call, nor for another
    // thread's callback that is itself waiting here: those end only after this returns.
    let own = usize::from(in_callback());
    slot.waiting_inside += own;
    CALL_ENDED.notify_all();
    while slot.in_flight > slot.waiting_inside {
        slot = CALL_ENDED
            .wait(slot)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    slot.waiting_inside -= own;
    drop(slot);
    drop(old);
}

/// Whether a record at `level` would be delivered (to skip building messages nobody reads).
pub fn enabled(level: LogLevel) -> bool {
    (level as u8) <= MAX_LEVEL.load(Ordering::Acquire)
}

/// Whether this thread is running the callback now.
pub fn in_callback() -> bool {
    IN_CALLBACK.get()
}

/// Delivers one record to the sink, if a sink is set and the level passes its filter: now,
/// or when this thread leaves its outermost [`Deferred`] scope.
pub fn emit(level: LogLevel, message: &str) {
    if !enabled(level) || in_callback() {
        return;
    }
    if DEFER_DEPTH.get() > 0 {
        let queued = QUEUE.try_with(|queue| {
            let mut queue = queue.borrow_mut();
            if queue.records.len() < MAX_DEFERRED {
                queue.records.push((level, message.to_owned()));
            } else {
                queue.dropped += 1;
            }
        });
        if queued.is_ok() {
            return;
        }
    }
    deliver(level, message);
}

fn deliver(level: LogLevel, message: &str) {
    let generation = process::generation();
    let sink = {
        let mut slot = installed();
        slot.adopt(generation);
        match slot.sink.clone() {
            Some(sink) if (level as u8) <= MAX_LEVEL.load(Ordering::Acquire) => {
                slot.in_flight += 1;
                sink
            }
            _ => return,
        }
    };
    // Ends the call whatever happens in the sink (a Rust sink may panic).
    struct CallEnds(u64);
    impl Drop for CallEnds {
        fn drop(&mut self) {
            IN_CALLBACK.set(false);
            let mut slot = installed();
            if slot.generation == self.0 {
                slot.in_flight = slot.in_flight.saturating_sub(1);
            }
            drop(slot);
            CALL_ENDED.notify_all();
        }
    }
    let _ends = CallEnds(generation);
    IN_CALLBACK.set(true);
    // A panicking sink loses its record, nothing else.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(level, message)));
}

/// Whether this thread holds records to deliver when its outermost scope ends.
pub fn pending() -> bool {
    QUEUE
        .try_with(|queue| queue.try_borrow().is_ok_and(|q| !q.records.is_empty()))
        .unwrap_or(false)
}

/// A lock held from just before a fork until just after it, in parent and child.
struct HeldForFork(std::cell::UnsafeCell<Option<MutexGuard<'static, Installed>>>);
// SAFETY: only the thread that holds INSTALLED (the forking thread, between the prepare and
// the parent/child handlers) touches the cell.
unsafe impl Sync for HeldForFork {}
static HELD_FOR_FORK: HeldForFork = HeldForFork(std::cell::UnsafeCell::new(None));

/// fork() prepare handler: takes the logger's lock, so the child never inherits it held by
/// a thread that does not exist there.
pub(crate) fn before_fork() {
    let guard = installed();
    // SAFETY: see HeldForFork.
    unsafe { *HELD_FOR_FORK.0.get() = Some(guard) };
}

/// fork() parent and child handler: releases what [`before_fork`] took.
pub(crate) fn after_fork() {
    // SAFETY: see HeldForFork; this thread took the lock in before_fork.
    drop(unsafe { (*HELD_FOR_FORK.0.get()).take() });
}

/// A scope in which this thread's records are queued; leaving the outermost one delivers
/// them, in order. Open one around anything that may hold locks or drive other threads' I/O.
pub struct Deferred(());

impl Deferred {
    /// Enters a scope.
    pub fn begin() -> Deferred {
        DEFER_DEPTH.set(DEFER_DEPTH.get() + 1);
        Deferred(())
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        let depth = DEFER_DEPTH.get().saturating_sub(1);
        DEFER_DEPTH.set(depth);
        if depth > 0 {
            return;
        }
        let Ok(Queue { records, dropped }) = QUEUE.try_with(|queue| {
            std::mem::replace(
                &mut *queue.borrow_mut(),
                Queue {
                    records: Vec::new(),
                    dropped: 0,
                },
            )
        }) else {
            return;
        };
        for (level, message) in records {
            deliver(level, &message);
        }
        if dropped > 0 {
            deliver(
                LogLevel::DTUN_LOG_WARN,
                &format!(
                    "{dropped} log records of one call were dropped (more than {MAX_DEFERRED})"
                ),
            );
        }
    }
}

/// Logs a formatted record at a level, building the message only when it will be delivered.
#[macro_export]
#[doc(hidden)]
macro_rules! dtun_log {
    ($level:ident, $($arg:tt)*) => {
        if $crate::log::enabled($crate::log::LogLevel::$level) {
            $crate::log::emit($crate::log::LogLevel::$level, &format!($($arg)*));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    // The sink is process-wide: these tests run one at a time under this lock.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn deferred_records_arrive_in_order_after_the_scope_and_not_before() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink_seen = Arc::clone(&seen);
        set_logger(
            Some(Box::new(move |_, m| {
                sink_seen.lock().unwrap().push(m.to_owned())
            })),
            LogLevel::DTUN_LOG_TRACE,
        );
        {
            let _outer = Deferred::begin();
            emit(LogLevel::DTUN_LOG_INFO, "one");
            {
                let _inner = Deferred::begin();
                emit(LogLevel::DTUN_LOG_INFO, "two");
            }
            assert!(
                seen.lock().unwrap().is_empty(),
                "delivered inside the scope"
            );
        }
        assert_eq!(*seen.lock().unwrap(), ["one", "two"]);
        emit(LogLevel::DTUN_LOG_INFO, "three");
        assert_eq!(seen.lock().unwrap().len(), 3);
        set_logger(None, LogLevel::DTUN_LOG_ERROR);
    }

    #[test]
    fn a_callback_may_replace_itself_and_its_own_records_are_dropped() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        CALLS.store(0, Ordering::SeqCst);
        set_logger(
            Some(Box::new(|_, _| {
                CALLS.fetch_add(1, Ordering::SeqCst);
                // Would recurse without end if delivered; would deadlock if it waited for
                // this call to end.
                emit(LogLevel::DTUN_LOG_ERROR, "from inside");
                set_logger(None, LogLevel::DTUN_LOG_ERROR);
            })),
            LogLevel::DTUN_LOG_TRACE,
        );
        emit(LogLevel::DTUN_LOG_ERROR, "first");
        emit(LogLevel::DTUN_LOG_ERROR, "second: logging is off now");
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert!(!enabled(LogLevel::DTUN_LOG_ERROR));
    }

    #[test]
    fn two_callbacks_replacing_the_logger_at_once_do_not_wait_for_each_other() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let both_inside = Arc::new(std::sync::Barrier::new(2));
        let sink_barrier = Arc::clone(&both_inside);
        set_logger(
            Some(Box::new(move |_, _| {
                // Both threads are inside the callback before either replaces the logger.
                sink_barrier.wait();
                set_logger(None, LogLevel::DTUN_LOG_ERROR);
            })),
            LogLevel::DTUN_LOG_TRACE,
        );
        let threads: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(|| emit(LogLevel::DTUN_LOG_ERROR, "x")))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!enabled(LogLevel::DTUN_LOG_ERROR));
    }

    #[test]
    fn a_panicking_sink_loses_its_record_and_nothing_else() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        set_logger(
            Some(Box::new(|_, _| panic!("sink panics"))),
            LogLevel::DTUN_LOG_TRACE,
        );
        emit(LogLevel::DTUN_LOG_ERROR, "x");
        assert!(!in_callback());
        // Would wait for ever if the panicking call were still counted in flight.
        set_logger(None, LogLevel::DTUN_LOG_ERROR);
    }

    #[test]
    fn set_logger_waits_for_a_call_in_flight_on_another_thread() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let finished = Arc::new(AtomicUsize::new(0));
        let sink_finished = Arc::clone(&finished);
        let entered_tx = Mutex::new(entered_tx);
        set_logger(
            Some(Box::new(move |_, _| {
                let _ = entered_tx.lock().unwrap().send(());
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(30));
                sink_finished.fetch_add(1, Ordering::SeqCst);
            })),
            LogLevel::DTUN_LOG_TRACE,
        );
        let logger = std::thread::spawn(|| emit(LogLevel::DTUN_LOG_INFO, "slow"));
        entered_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        let releaser = std::thread::spawn(move || {
            // Released only once set_logger below is (very likely) waiting; either order
            // must end with the call finished before set_logger returns.
            std::thread::yield_now();
            release_tx.send(()).unwrap();
        });
        set_logger(None, LogLevel::DTUN_LOG_ERROR);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        logger.join().unwrap();
        releaser.join().unwrap();
    }
}
