//! Happy Eyeballs (RFC 8305): connecting to a host with several addresses without letting
//! one that never answers (a black-holed IPv6 route, a host dropping SYNs) eat the open's
//! deadline.
//!
//! The addresses are interleaved by family, IPv6 and IPv4 taking turns, starting with the
//! family of the resolver's first choice ([`interleave`]). Attempts start
//! [`ATTEMPT_DELAY`] apart, or at once when every attempt started so far has failed; all run
//! together, the first to connect wins and the others are dropped (closed) on the spot
//! ([`Schedule`] decides when, I/O-free; [`connect`] does the I/O). No attempt has a
//! timeout of its own: the open's deadline bounds them all.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

use crate::net;
use crate::plan::TcpOptions;

/// RFC 8305's "Connection Attempt Delay": 250 ms is its recommended value.
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// The addresses without duplicates, IPv6 and IPv4 alternating, the family of the first
/// address first, each family in the resolver's order (RFC 8305 section 4).
pub(crate) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !unique.contains(a) {
            unique.push(*a);
        }
    }
    let first_v6 = unique.first().is_some_and(SocketAddr::is_ipv6);
    let (mut first, mut second): (Vec<_>, Vec<_>) =
        unique.into_iter().partition(|a| a.is_ipv6() == first_v6);
    first.reverse();
    second.reverse();
    let mut out = Vec::with_capacity(first.len() + second.len());
    loop {
        match (first.pop(), second.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// What to do next in a race of `total` attempts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Start the attempt with this index now.
    Start(usize),
    /// Wait for an attempt to finish, or until this instant, whichever comes first.
    WaitUntil(Instant),
    /// Every attempt has started: wait for one to finish.
    WaitForAttempts,
    /// Every attempt has failed.
    Exhausted,
}

/// When each attempt starts: the first at once, each next one `delay` after the one before,
/// or as soon as no attempt is running.
#[derive(Debug)]
pub(crate) struct Schedule {
    total: usize,
    delay: Duration,
    started: usize,
    running: usize,
    next_at: Option<Instant>,
}

impl Schedule {
    /// A race of `total` attempts, `delay` apart.
    pub(crate) fn new(total: usize, delay: Duration) -> Schedule {
        Schedule {
            total,
            delay,
            started: 0,
            running: 0,
            next_at: None,
        }
    }

    /// The next step at `now`. A `Start` counts as started.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        if self.started == self.total {
            return if self.running > 0 {
                Step::WaitForAttempts
            } else {
                Step::Exhausted
            };
        }
        match self.next_at {
            Some(at) if now < at && self.running > 0 => Step::WaitUntil(at),
            _ => {
                let index = self.started;
                self.started += 1;
                self.running += 1;
                self.next_at = Some(now + self.delay);
                Step::Start(index)
            }
        }
    }

    /// A running attempt failed.
    pub(crate) fn failed(&mut self) {
        self.running = self.running.saturating_sub(1);
    }
}

type Attempt = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Connects to the first of `addrs` that accepts, racing them as RFC 8305 says; every socket
/// gets `tcp`'s options and `TCP_NODELAY`. On failure, every address with its error, in the
/// order tried.
pub(crate) async fn connect(
    addrs: &[SocketAddr],
    tcp: TcpOptions,
) -> Result<(TcpStream, SocketAddr), Vec<(SocketAddr, io::Error)>> {
    let order = interleave(addrs);
    let mut schedule = Schedule::new(order.len(), ATTEMPT_DELAY);
    let mut running: Vec<(SocketAddr, Attempt)> = Vec::new();
    let mut failures = Vec::new();
    loop {
        let wake_at = loop {
            match schedule.step(Instant::now()) {
                Step::Start(i) => {
                    let addr = order[i];
                    running.push((addr, Box::pin(attempt(addr, tcp))));
                }
                Step::WaitUntil(at) => break Some(at),
                Step::WaitForAttempts => break None,
                Step::Exhausted => return Err(failures),
            }
        };
        let mut timer = wake_at.map(|at| Box::pin(tokio::time::sleep_until(at.into())));
        let event = poll_fn(|cx| {
            for (k, (_, fut)) in running.iter_mut().enumerate() {
                if let Poll::Ready(done) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Some((k, done)));
                }
            }
            match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await;
        if let Some((k, done)) = event {
            let (addr, _) = running.swap_remove(k);
            match done {
                // The other attempts are dropped here: their sockets close.
                Ok(stream) => return Ok((stream, addr)),
                Err(e) => {
                    failures.push((addr, e));
                    schedule.failed();
                }
            }
        }
    }
}

async fn attempt(addr: SocketAddr, tcp: TcpOptions) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    net::set_tcp_options(&socket, &tcp)?;
    let stream = socket.connect(addr).await?;
    // Small writes (a CONNECT head, a handshake flight, an agent message) must leave at
    // once: Nagle would hold them for the peer's delayed ACK.
    stream
        .set_nodelay(true)
        .map_err(|e| io::Error::new(e.kind(), format!("TCP_NODELAY: {e}")))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_alternate_starting_with_the_first() {
        let got = interleave(&[
            a("[2001:db8::1]:1"),
            a("[2001:db8::2]:1"),
            a("[2001:db8::3]:1"),
            a("10.0.0.1:1"),
            a("10.0.0.2:1"),
            a("[2001:db8::1]:1"),
        ]);
        assert_eq!(
            got,
            [
                a("[2001:db8::1]:1"),
                a("10.0.0.1:1"),
                a("[2001:db8::2]:1"),
                a("10.0.0.2:1"),
                a("[2001:db8::3]:1"),
            ]
        );
        let got = interleave(&[a("10.0.0.1:1"), a("[::1]:1"), a("10.0.0.2:1")]);
        assert_eq!(got, [a("10.0.0.1:1"), a("[::1]:1"), a("10.0.0.2:1")]);
        assert!(interleave(&[]).is_empty());
    }

    #[test]
    fn attempts_start_a_delay_apart_and_at_once_after_failures() {
        let t0 = Instant::now();
        let d = ATTEMPT_DELAY;
        let mut s = Schedule::new(3, d);
        assert_eq!(s.step(t0), Step::Start(0));
        assert_eq!(s.step(t0), Step::WaitUntil(t0 + d));
        assert_eq!(s.step(t0 + d / 2), Step::WaitUntil(t0 + d));
        assert_eq!(s.step(t0 + d), Step::Start(1));
        assert_eq!(s.step(t0 + d), Step::WaitUntil(t0 + 2 * d));
        // Both running attempts fail: the last starts at once, not at t0 + 2d.
        s.failed();
        assert_eq!(s.step(t0 + d + d / 4), Step::WaitUntil(t0 + 2 * d));
        s.failed();
        assert_eq!(s.step(t0 + d + d / 4), Step::Start(2));
        assert_eq!(s.step(t0 + 5 * d), Step::WaitForAttempts);
        s.failed();
        assert_eq!(s.step(t0 + 5 * d), Step::Exhausted);
        assert_eq!(Schedule::new(0, d).step(t0), Step::Exhausted);
    }

    #[test]
    fn a_black_holed_first_address_does_not_hold_up_a_working_second() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A listener whose backlog is full and never accepted drops further SYNs.
            let hole = TcpSocket::new_v4().unwrap();
            hole.bind(a("127.0.0.2:0")).unwrap();
            let hole = hole.listen(1).unwrap();
            let hole_addr = hole.local_addr().unwrap();
            let mut fillers = Vec::new();
            let filled = tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    let probe = TcpSocket::new_v4().unwrap();
                    match tokio::time::timeout(Duration::from_millis(300), probe.connect(hole_addr))
                        .await
                    {
                        Ok(Ok(s)) => fillers.push(s),
                        _ => break,
                    }
                }
            })
            .await;
            assert!(filled.is_ok(), "the backlog never filled");
            let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let good_addr = good.local_addr().unwrap();
            let opts = TcpOptions {
                keepalive_idle: None,
                user_timeout: None,
            };
            let won = tokio::time::timeout(
                Duration::from_secs(2),
                connect(&[hole_addr, good_addr], opts),
            )
            .await
            .expect("the open's 2 s deadline passed")
            .expect("no address connected");
            assert_eq!(won.1, good_addr);
        });
    }
}
