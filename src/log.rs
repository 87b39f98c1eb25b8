//! The library's log records, sent to one callback installed by the application.
//!
//! Nothing here formats a secret: callers pass messages built from redacted values only.
//! The callback is held under a read-write lock: records are delivered under the read lock,
//! and replacing the callback takes the write lock, so once [`set_logger`] returns the old
//! callback is never called again.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::RwLock;

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

/// 0 means logging is off; otherwise the most verbose level delivered.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Installs (or with `None` removes) the sink and its level filter. When this returns, the
/// previous sink has finished every call and will not be called again.
pub fn set_logger(sink: Option<Sink>, max_level: LogLevel) {
    let mut slot = SINK
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let level = if sink.is_some() { max_level as u8 } else { 0 };
    *slot = sink;
    MAX_LEVEL.store(level, Ordering::Release);
}

/// Whether a record at `level` would be delivered (to skip building messages nobody reads).
pub fn enabled(level: LogLevel) -> bool {
    (level as u8) <= MAX_LEVEL.load(Ordering::Acquire)
}

/// Delivers one record to the sink, if a sink is set and the level passes its filter.
pub fn emit(level: LogLevel, message: &str) {
    if !enabled(level) {
        return;
    }
    let slot = SINK.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(sink) = slot.as_ref() {
        if (level as u8) <= MAX_LEVEL.load(Ordering::Acquire) {
            sink(level, message);
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
