//! A blocking connection over an open tunnel: send and recv with timeouts, usable from two
//! threads at once (one sending, one receiving), a shutdown that wakes both from any thread,
//! and a close that says goodbye in bounded time.
//!
//! Every wait of a call (for its turn behind another thread in the same direction, for the
//! socket, for a flush) happens inside one future bounded by the call's own timeout and by
//! [`Connection::shutdown`], so no call outlives its timeout and a shutdown ends them all.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use std::pin::{pin, Pin};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Notify};

use crate::config::TunnelConfig;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::report::Report;
use crate::runtime;
use crate::tunnel::{self, BoxStream, Progress};

/// How long `close` may spend sending TLS close_notify and flushing.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The largest send tried without entering the runtime ([`Connection::send`]'s fast path):
/// an agent's messages fit, and the work done there, unbounded by the call's timeout, stays
/// in microseconds.
const FAST_SEND_MAX: usize = 64 * 1024;

/// How long a call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No limit.
    Forever,
    /// At most this long; zero never waits.
    For(Duration),
}

impl Wait {
    /// From the C convention: -1 waits forever, 0 never waits, n > 0 waits n milliseconds.
    /// Other negative values are invalid.
    pub fn from_millis(ms: i32) -> Result<Wait> {
        match ms {
            -1 => Ok(Wait::Forever),
            ms if ms >= 0 => Ok(Wait::For(Duration::from_millis(ms as u64))),
            other => Err(Error::invalid_argument(format!(
                "timeout_ms must be -1 (wait forever) or >= 0, not {other}"
            ))),
        }
    }
}

/// How a send or recv ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// send: every byte was accepted; recv: at least one byte arrived.
    Complete,
    /// The timeout passed first; the connection is still usable.
    TimedOut,
    /// recv: the collector ended the stream cleanly.
    Closed,
    /// [`Connection::shutdown`] was called: now, or while the call waited.
    ShutDown,
}

/// An open tunnel to the collector (`dtun_conn`).
pub struct Connection {
    /// Async locks: a caller waiting for its turn does so under its own timeout. Dropped by
    /// hand: in a forked child they are leaked (see Drop).
    reader: ManuallyDrop<Mutex<ReadHalf<BoxStream>>>,
    writer: ManuallyDrop<Mutex<WriteHalf<BoxStream>>>,
    /// The process generation the connection was opened in.
    generation: u64,
    /// A send timed out with bytes possibly still queued in a TLS layer: a recv pushes them
    /// out while it waits, so a reply that needs them can come.
    unflushed: AtomicBool,
    /// Tells a recv already waiting that `unflushed` was just set.
    flush_wanted: Notify,
    /// Set once by [`Connection::shutdown`]; `shutdown_now` wakes every call waiting.
    shut: AtomicBool,
    shutdown_now: Notify,
    report: Report,
    /// The first failure of either direction. A broken stream stays broken: after a reset,
    /// Linux reports ECONNRESET once and then plain EOF, which must not read as a clean close.
    broken: OnceLock<Error>,
}

impl Connection {
    /// Opens a tunnel as the config says, within `wait` for the whole open (resolution, TCP,
    /// TLS to the proxy, CONNECT, TLS to the collector).
    pub fn open(config: &TunnelConfig, wait: Wait) -> Result<Connection> {
        Connection::attempt(config, wait, false).0
    }

    /// As [`Connection::open`], and also what the attempt did, stage by stage.
    pub fn open_with_progress(config: &TunnelConfig, wait: Wait) -> (Result<Connection>, Progress) {
        let (result, progress, _) = Connection::attempt(config, wait, true);
        (result, progress.unwrap_or_default())
    }

    /// As [`Connection::open`], and also the report of the attempt (kept by the connection
    /// too, see [`Connection::report`]): after a failure, which stage failed, the time of each
    /// stage, and a hint.
    pub fn open_with_report(config: &TunnelConfig, wait: Wait) -> (Result<Connection>, Report) {
        let (result, _, report) = Connection::attempt(config, wait, false);
        (result, report)
    }

    /// Opens; returns the progress too when `keep_progress` (else the report takes it).
    fn attempt(
        config: &TunnelConfig,
        wait: Wait,
        keep_progress: bool,
    ) -> (Result<Connection>, Option<Progress>, Report) {
        let plan = config.plan();
        let started = Instant::now();
        let mut progress = Progress::new();
        let result = runtime::block_on(async {
            let open = tunnel::establish(&plan, &mut progress);
            match wait {
                Wait::Forever => open.await,
                Wait::For(limit) => match tokio::time::timeout(limit, open).await {
                    Ok(done) => done,
                    Err(_) => Err(Error::new(Stage::Internal, ErrorKind::Deadline, "")),
                },
            }
        })
        .and_then(|done| done);
        progress.finish();
        let total = started.elapsed();
        let result = result.map_err(|e| {
            if *e.kind() != ErrorKind::Deadline {
                return e;
            }
            Error::new(
                progress.stage,
                ErrorKind::Deadline,
                format!(
                    "open timed out after {} ms waiting for {} ({})",
                    total.as_millis(),
                    progress.stage.name(),
                    plan.route()
                ),
            )
        });
        let outcome = result.as_ref().map(|_| ());
        let (report, progress) = if keep_progress {
            let report = Report::build(&plan, &progress, outcome, total);
            (report, Some(progress))
        } else {
            (Report::build_owned(&plan, progress, outcome, total), None)
        };
        match result {
            Ok(stream) => {
                crate::dtun_log!(
                    DTUN_LOG_INFO,
                    "tunnel open {} in {} ms",
                    report.route(),
                    total.as_millis()
                );
                let (reader, writer) = tokio::io::split(stream);
                let conn = Connection {
                    reader: ManuallyDrop::new(Mutex::new(reader)),
                    writer: ManuallyDrop::new(Mutex::new(writer)),
                    generation: crate::process::generation(),
                    unflushed: AtomicBool::new(false),
                    flush_wanted: Notify::new(),
                    shut: AtomicBool::new(false),
                    shutdown_now: Notify::new(),
                    report: report.clone(),
                    broken: OnceLock::new(),
                };
                (Ok(conn), progress, report)
            }
            Err(e) => {
                crate::dtun_log!(DTUN_LOG_ERROR, "tunnel open failed: {e}");
                (Err(e), progress, report)
            }
        }
    }

    /// The report of the open that made this connection: route, TLS on each hop, the
    /// proxy's answer, the collector's certificate, addresses, stage times.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The route in words (direct, or via proxy host:port; TLS on each hop).
    pub fn route(&self) -> &str {
        self.report.route()
    }

    /// Sends all of `buf` unless `wait` passes or the stream breaks. Returns how many bytes
    /// were accepted, always (it may be > 0 with [`Transfer::TimedOut`] or an error).
    /// Bytes accepted are queued for the wire; an empty `buf` only pushes out what is queued,
    /// and so does the next [`Connection::recv`] while no send is in progress.
    pub fn send(&self, buf: &[u8], wait: Wait) -> (usize, Result<Transfer>) {
        if self.shut.load(Ordering::Acquire) {
            return (0, Ok(Transfer::ShutDown));
        }
        if let Some(e) = self.broken.get() {
            return (0, Err(e.clone()));
        }
        let called = Instant::now();
        let mut sent = 0usize;
        let outcome = match self.send_now(buf, &mut sent) {
            Some(done) => Ending::Done(done),
            None => {
                let outcome = runtime::block_on(self.bounded(wait, called, async {
                    let mut writer = self.writer.lock().await;
                    let done = write_all_counted(&mut writer, buf, &mut sent).await;
                    if done.is_ok() {
                        self.unflushed.store(false, Ordering::Release);
                    }
                    done
                }));
                match outcome {
                    Ok(outcome) => outcome,
                    Err(e) => return (sent, Err(e)),
                }
            }
        };
        crate::dtun_log!(
            DTUN_LOG_TRACE,
            "send: {sent} of {} bytes accepted",
            buf.len()
        );
        let result = match outcome {
            // `unflushed` was cleared while the writer was held: cleared after it is let go, it
            // could wipe the mark of another sender's timed-out bytes, which a waiting reader
            // would then leave queued.
            Ending::Done(Ok(())) => Ok(Transfer::Complete),
            Ending::Done(Err(e)) => Err(self.break_with(stream_error("send", &e))),
            Ending::TimedOut | Ending::ShutDown => {
                // What was accepted may sit in a TLS layer: a reader already waiting takes
                // over pushing it out (the writer lock is free again by now).
                self.unflushed.store(true, Ordering::Release);
                self.flush_wanted.notify_waiters();
                Ok(if matches!(outcome, Ending::TimedOut) {
                    Transfer::TimedOut
                } else {
                    Transfer::ShutDown
                })
            }
        };
        (sent, result)
    }

    /// The send without entering the runtime, when nothing has to wait: the writer is free
    /// and the socket takes every byte and the flush at once (the usual case for the small
    /// messages of an agent). `None` when something would wait: then `sent` says what was
    /// accepted meanwhile, and the caller goes on from there inside the runtime, where the
    /// waits happen (within the call's timeout and the shutdown, as ever).
    ///
    /// Polling the socket outside the runtime is sound: its readiness is kept by the
    /// registration, which the waker given here (a no-op) only replaces until the runtime
    /// polls again with its own.
    ///
    /// Only for sends of at most [`FAST_SEND_MAX`] bytes: the polling here has no deadline, no
    /// shutdown check and no runtime budget, so a large send into a fast socket would run on
    /// past its timeout (tens of MiB were seen accepted by a send with timeout 0).
    fn send_now(&self, buf: &[u8], sent: &mut usize) -> Option<std::io::Result<()>> {
        if buf.len() > FAST_SEND_MAX {
            return None;
        }
        let mut writer = self.writer.try_lock().ok()?;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = pin!(write_all_counted(&mut writer, buf, sent)).poll(&mut cx);
        match polled {
            Poll::Ready(done) => {
                if done.is_ok() {
                    self.unflushed.store(false, Ordering::Release);
                }
                Some(done)
            }
            Poll::Pending => None,
        }
    }

    /// Receives at least one byte (up to `buf.len()`) unless `wait` passes or the stream
    /// ends. Returns how many bytes were written into `buf`. Meanwhile pushes out what a
    /// timed-out send left queued, including when that send times out during this wait.
    pub fn recv(&self, buf: &mut [u8], wait: Wait) -> (usize, Result<Transfer>) {
        if buf.is_empty() {
            return (0, Ok(Transfer::Complete));
        }
        if self.shut.load(Ordering::Acquire) {
            return (0, Ok(Transfer::ShutDown));
        }
        if let Some(e) = self.broken.get() {
            return (0, Err(e.clone()));
        }
        let called = Instant::now();
        let outcome = runtime::block_on(self.bounded(wait, called, async {
            let mut reader = self.reader.lock().await;
            read_while_flushing(
                &mut reader,
                buf,
                &self.writer,
                &self.unflushed,
                &self.flush_wanted,
            )
            .await
        }));
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => return (0, Err(e)),
        };
        match outcome {
            Ending::TimedOut => (0, Ok(Transfer::TimedOut)),
            Ending::ShutDown => (0, Ok(Transfer::ShutDown)),
            Ending::Done(Ok(0)) => {
                crate::dtun_log!(DTUN_LOG_DEBUG, "recv: the collector closed the stream");
                (0, Ok(Transfer::Closed))
            }
            Ending::Done(Ok(n)) => {
                crate::dtun_log!(DTUN_LOG_TRACE, "recv: {n} bytes");
                (n, Ok(Transfer::Complete))
            }
            Ending::Done(Err(e)) => (0, Err(self.break_with(stream_error("recv", &e)))),
        }
    }

    /// Like POSIX `shutdown(SHUT_RDWR)` for the calls: wakes every `send` and `recv` waiting
    /// on this connection, from any thread, at once; they and every later one return
    /// [`Transfer::ShutDown`]. The tunnel stays connected until [`Connection::close`] (or
    /// drop), which still says goodbye within [`CLOSE_GRACE`].
    pub fn shutdown(&self) {
        self.shut.store(true, Ordering::Release);
        self.shutdown_now.notify_waiters();
        crate::dtun_log!(DTUN_LOG_DEBUG, "tunnel shut down ({})", self.route());
    }

    /// Runs `work` until it ends, `wait` passes, or the connection is shut down.
    ///
    /// Costs nothing beyond `work` when it ends at its first poll: the shutdown wait and the
    /// timer are registered only when `work` has to wait.
    /// `called`: when the exported call began, which the timeout counts from.
    async fn bounded<F: Future>(&self, wait: Wait, called: Instant, work: F) -> Ending<F::Output> {
        // Made before the flag is read: `notify_waiters` wakes every `Notified` made before
        // it, polled or not, so a shutdown between the two still wakes us.
        let mut shut = pin!(self.shutdown_now.notified());
        let started = match wait {
            Wait::Forever => None,
            Wait::For(limit) => Some((called, limit)),
        };
        let mut work = pin!(work);
        let mut deadline = pin!(None::<tokio::time::Sleep>);
        std::future::poll_fn(|cx| {
            if self.shut.load(Ordering::Acquire) {
                return Poll::Ready(Ending::ShutDown);
            }
            if let Poll::Ready(done) = work.as_mut().poll(cx) {
                return Poll::Ready(Ending::Done(done));
            }
            if shut.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ending::ShutDown);
            }
            let Some((since, limit)) = started else {
                return Poll::Pending;
            };
            if deadline.is_none() {
                // Counted from the call, not from this first wait.
                deadline.set(Some(tokio::time::sleep_until((since + limit).into())));
            }
            match deadline.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Ending::TimedOut),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// Records the stream's first failure and returns it (or the earlier one).
    fn break_with(&self, e: Error) -> Error {
        self.broken.get_or_init(|| e).clone()
    }

    /// Sends TLS close_notify (on each TLS layer) and flushes, waiting at most
    /// [`CLOSE_GRACE`], then closes the socket. Dropping a connection does the same.
    pub fn close(self) {
        drop(self)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Opened in the parent of this forked child: the socket and TLS state are the
        // parent's too (close_notify would corrupt its stream, deregistering the socket would
        // remove the parent's registration from the epoll instance both share). Leak them.
        if self.generation != crate::process::generation() {
            return;
        }
        // Inside an async context block_on would panic; the socket still closes on drop.
        if tokio::runtime::Handle::try_current().is_err() {
            let writer = self.writer.get_mut();
            let _ = runtime::block_on(async {
                let _ = tokio::time::timeout(CLOSE_GRACE, writer.shutdown()).await;
            });
            crate::dtun_log!(DTUN_LOG_DEBUG, "tunnel closed ({})", self.route());
        }
        // SAFETY: dropped once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.writer);
            ManuallyDrop::drop(&mut self.reader);
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("route", &self.route())
            .finish()
    }
}

/// How a bounded wait ended.
enum Ending<T> {
    Done(T),
    TimedOut,
    ShutDown,
}

/// Reads at least one byte, and meanwhile pushes out what a timed-out send left queued,
/// now or while this waits (`flush_wanted`), holding the writer only until that is done and
/// only when no sender holds it (a sender flushes by itself), so no sender waits longer.
async fn read_while_flushing(
    reader: &mut ReadHalf<BoxStream>,
    buf: &mut [u8],
    writer: &Mutex<WriteHalf<BoxStream>>,
    unflushed: &AtomicBool,
    flush_wanted: &Notify,
) -> std::io::Result<usize> {
    // Made now, polled (registered) only before waiting: `notify_waiters` wakes every
    // `Notified` made before it, polled or not.
    let mut told = pin!(flush_wanted.notified());
    let mut flush: Option<tokio::sync::MutexGuard<'_, WriteHalf<BoxStream>>> = None;
    std::future::poll_fn(|cx| loop {
        if flush.is_none() && unflushed.load(Ordering::Acquire) {
            flush = writer.try_lock().ok();
        }
        if let Some(guard) = flush.as_mut() {
            if let Poll::Ready(done) = Pin::new(&mut **guard).poll_flush(cx) {
                // A failure here shows up again on the next send, which reports it.
                if done.is_ok() {
                    unflushed.store(false, Ordering::Release);
                }
                flush = None;
            }
        }
        let mut filled = ReadBuf::new(&mut *buf);
        match Pin::new(&mut *reader).poll_read(cx, &mut filled) {
            Poll::Ready(Ok(())) => return Poll::Ready(Ok(filled.filled().len())),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        // About to wait: registered, so a later notification wakes this task; one that came
        // meanwhile means a send just left bytes queued: look again.
        if told.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        told.set(flush_wanted.notified());
    })
    .await
}

async fn write_all_counted(
    writer: &mut WriteHalf<BoxStream>,
    buf: &[u8],
    sent: &mut usize,
) -> std::io::Result<()> {
    while *sent < buf.len() {
        let n = writer.write(&buf[*sent..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        *sent += n;
    }
    writer.flush().await
}

fn stream_error(op: &str, e: &std::io::Error) -> Error {
    let why = match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection without TLS close_notify (stream may be truncated)"
                .to_owned()
        }
        std::io::ErrorKind::BrokenPipe => "the peer closed the connection".to_owned(),
        std::io::ErrorKind::ConnectionReset => "the connection was reset by the peer".to_owned(),
        _ => e.to_string(),
    };
    Error::new(Stage::Stream, ErrorKind::Io, format!("{op} failed: {why}"))
}
