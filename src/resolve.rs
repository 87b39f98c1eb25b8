//! Name resolution that a hanging lookup cannot clog: at most one `getaddrinfo` per name in
//! flight, shared by every open that wants that name, and names known to hang kept off the
//! last free thread.
//!
//! `getaddrinfo` blocks and cannot be cancelled: a lookup whose open timed out keeps its
//! thread until the resolver gives up (a `getaddrinfo` sleeping 10 s holds it 10 s), and the
//! library may have only [`THREADS`] threads for lookups. A resolver with per-query timeouts
//! (a DNS client of our own) would not read `/etc/hosts`, nsswitch or the C library's own
//! configuration the way the agent and every other program on the host do, so the lookups
//! stay with `getaddrinfo` and are bounded instead:
//!
//! - One lookup per name at a time: an open for a name already being looked up waits for
//!   that lookup's answer instead of starting another. Any number of timed-out opens to one
//!   hanging name hold one thread, not one each.
//! - A name whose lookup outlived one of its callers (the caller gave up first) is *slow*.
//!   A slow name's lookup starts only when it leaves a thread free, so slow names hold at
//!   most `THREADS - 1` threads between them (one, with two threads): a name that resolves
//!   at once always finds a thread, whatever a known hanging name does. A slow name's caller
//!   that finds no thread waits for one within its own deadline. A name stops being slow
//!   when one of its lookups answers before every caller left; the last
//!   [`SLOW_NAMES_REMEMBERED`] slow names are remembered.
//! - A name never seen before takes any free thread: until one of its callers times out,
//!   nothing tells a hanging name from a slow but working one. So two *new* names that both
//!   hang, looked up at the same moment, can hold both threads until the first of them
//!   returns; once known, neither can again.
//!
//! The bookkeeping is [`Table`], I/O-free and unit-tested; [`lookup`] drives it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};

use crate::process;

/// Threads for lookups: the runtime's `max_blocking_threads`.
pub(crate) const THREADS: usize = 2;
/// How many slow names are remembered (the oldest is forgotten first).
pub(crate) const SLOW_NAMES_REMEMBERED: usize = 64;

/// What a caller of [`Table::admit`] does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit<T> {
    /// A lookup of the name is in flight: wait for its answer through this.
    Join(T),
    /// Start the lookup (a thread is reserved for it) and publish its answer through this.
    Start(T),
    /// No thread may be used for this name now: wait until a lookup finishes, then ask again.
    Wait,
}

struct Flight<T> {
    shared: T,
    waiters: usize,
    abandoned: bool,
}

/// The lookups in flight, one per name, and the names known to be slow. `T` is the handle
/// waiters share (a channel of the answer in [`lookup`]).
pub(crate) struct Table<T> {
    threads: usize,
    flights: HashMap<String, Flight<T>>,
    slow: VecDeque<String>,
}

impl<T: Clone> Table<T> {
    /// An empty table for `threads` lookup threads.
    pub(crate) fn new(threads: usize) -> Table<T> {
        Table {
            threads,
            flights: HashMap::new(),
            slow: VecDeque::new(),
        }
    }

    /// A caller wants `name`; `make` creates the shared handle when a lookup starts. Every
    /// `Join` and `Start` must be followed by one [`Table::leave`].
    pub(crate) fn admit(&mut self, name: &str, make: impl FnOnce() -> T) -> Admit<T> {
        if let Some(flight) = self.flights.get_mut(name) {
            flight.waiters += 1;
            return Admit::Join(flight.shared.clone());
        }
        let free = self.threads.saturating_sub(self.flights.len());
        let allowed = if self.is_slow(name) {
            let slow_running = self.flights.keys().filter(|n| self.is_slow(n)).count();
            free > 1 && slow_running + 1 < self.threads
        } else {
            free > 0
        };
        if !allowed {
            return Admit::Wait;
        }
        let shared = make();
        self.flights.insert(
            name.to_owned(),
            Flight {
                shared: shared.clone(),
                waiters: 1,
                abandoned: false,
            },
        );
        Admit::Start(shared)
    }

    /// A caller of `name` left: with the answer, or without it (`gave_up`: its deadline
    /// came first).
    pub(crate) fn leave(&mut self, name: &str, gave_up: bool) {
        if let Some(flight) = self.flights.get_mut(name) {
            flight.waiters = flight.waiters.saturating_sub(1);
            flight.abandoned |= gave_up;
        }
    }

    /// The lookup of `name` returned: its thread is free. The name is slow from now on when
    /// a caller gave up on it, and no longer slow when none did.
    pub(crate) fn finished(&mut self, name: &str) {
        if let Some(flight) = self.flights.remove(name) {
            self.slow.retain(|n| n != name);
            if flight.abandoned {
                if self.slow.len() == SLOW_NAMES_REMEMBERED {
                    self.slow.pop_front();
                }
                self.slow.push_back(name.to_owned());
            }
        }
    }

    /// Whether `name` is known to be slow.
    pub(crate) fn is_slow(&self, name: &str) -> bool {
        self.slow.iter().any(|n| n == name)
    }

    /// Lookups in flight (threads in use).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.flights.len()
    }
}

/// A lookup's answer, shared by every caller of the name.
type Answer = Option<Arc<Result<Vec<IpAddr>, (io::ErrorKind, String)>>>;

struct Shared {
    generation: u64,
    table: Table<watch::Receiver<Answer>>,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
static FINISHED: Notify = Notify::const_new();

/// The table of this process (a forked child starts with an empty one: the parent's
/// lookup threads do not exist in it).
fn table() -> MutexGuard<'static, Option<Shared>> {
    let mut guard = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    let generation = process::generation();
    if guard.as_ref().map(|s| s.generation) != Some(generation) {
        *guard = Some(Shared {
            generation,
            table: Table::new(THREADS),
        });
    }
    guard
}

fn with_table<R>(f: impl FnOnce(&mut Table<watch::Receiver<Answer>>) -> R) -> R {
    let mut guard = table();
    match guard.as_mut() {
        Some(shared) => f(&mut shared.table),
        // `table()` has just filled it.
        None => f(&mut Table::new(THREADS)),
    }
}

/// Leaves the table when a caller's future ends, answered or dropped at its deadline.
struct Caller<'a> {
    name: &'a str,
    answered: bool,
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        with_table(|t| t.leave(self.name, !self.answered));
    }
}

/// Frees the lookup's thread slot and wakes the callers waiting for one, when the lookup
/// returned (or its task was dropped unrun).
struct Finish {
    name: String,
    generation: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        if process::generation() == self.generation {
            with_table(|t| t.finished(&self.name));
        }
        FINISHED.notify_waiters();
    }
}

/// The addresses of `name`, in the resolver's order. Must run on the library's runtime;
/// bounded only by the caller's deadline (dropping the future gives up).
pub async fn lookup(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut rx = loop {
        let finished = FINISHED.notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        let (tx, rx) = watch::channel(None);
        match with_table(|t| t.admit(name, || rx)) {
            Admit::Join(rx) => break rx,
            Admit::Start(rx) => {
                let finish = Finish {
                    name: name.to_owned(),
                    generation: process::generation(),
                };
                let owned = name.to_owned();
                drop(tokio::task::spawn_blocking(move || {
                    let _finish = finish;
                    let answer = blocking_lookup(&owned);
                    let _ = tx.send(Some(Arc::new(answer)));
                }));
                break rx;
            }
            Admit::Wait => finished.await,
        }
    };
    let mut caller = Caller {
        name,
        answered: false,
    };
    let answer = match rx.wait_for(Option::is_some).await {
        Ok(answer) => answer.clone(),
        Err(_) => None,
    };
    caller.answered = true;
    drop(caller);
    match answer.as_deref() {
        Some(Ok(addrs)) => Ok(addrs.clone()),
        Some(Err((kind, message))) => Err(io::Error::new(*kind, message.clone())),
        None => Err(io::Error::other("the lookup ended without an answer")),
    }
}

fn blocking_lookup(name: &str) -> Result<Vec<IpAddr>, (io::ErrorKind, String)> {
    match (name, 0u16).to_socket_addrs() {
        Ok(found) => {
            let mut addrs: Vec<IpAddr> = Vec::new();
            for addr in found {
                if !addrs.contains(&addr.ip()) {
                    addrs.push(addr.ip());
                }
            }
            Ok(addrs)
        }
        Err(e) => Err((e.kind(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(t: &mut Table<u32>, name: &str) -> bool {
        matches!(t.admit(name, || 7), Admit::Start(7))
    }

    #[test]
    fn one_lookup_per_name_and_callers_share_it() {
        let mut t = Table::new(2);
        assert!(start(&mut t, "hang.example"));
        for _ in 0..100 {
            assert_eq!(t.admit("hang.example", || 8), Admit::Join(7));
            t.leave("hang.example", true);
        }
        assert_eq!(t.in_flight(), 1);
        // Another name still gets the second thread.
        assert!(start(&mut t, "localhost"));
        t.leave("localhost", false);
        t.finished("localhost");
        assert!(!t.is_slow("localhost"));
        assert!(start(&mut t, "localhost"));
    }

    #[test]
    fn a_slow_name_never_takes_the_last_thread() {
        let mut t = Table::new(2);
        assert!(start(&mut t, "hang.example"));
        t.leave("hang.example", true);
        t.finished("hang.example");
        assert!(t.is_slow("hang.example"));
        // Known slow: starts when it leaves a thread free...
        assert!(start(&mut t, "hang.example"));
        t.leave("hang.example", true);
        // ...and a second slow name does not get the last one.
        assert!(start(&mut t, "other-hang.example"));
        t.leave("other-hang.example", true);
        t.finished("other-hang.example");
        assert_eq!(t.admit("other-hang.example", || 1), Admit::Wait);
        // A name that resolves at once does.
        assert!(start(&mut t, "localhost"));
        // Both threads busy: even a new name waits (it is not refused for good).
        assert_eq!(t.admit("new.example", || 1), Admit::Wait);
        t.leave("localhost", false);
        t.finished("localhost");
        assert!(start(&mut t, "new.example"));
    }

    #[test]
    fn a_slow_name_recovers_when_answered_in_time_and_the_memory_is_bounded() {
        let mut t = Table::new(2);
        for i in 0..SLOW_NAMES_REMEMBERED + 10 {
            let name = format!("n{i}.example");
            assert!(start(&mut t, &name));
            t.leave(&name, true);
            t.finished(&name);
        }
        assert!(!t.is_slow("n0.example"));
        let last = format!("n{}.example", SLOW_NAMES_REMEMBERED + 9);
        assert!(t.is_slow(&last));
        assert!(start(&mut t, &last));
        t.leave(&last, false);
        t.finished(&last);
        assert!(!t.is_slow(&last));
        assert_eq!(t.in_flight(), 0);
    }
}
