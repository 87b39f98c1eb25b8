//! The TCP socket under every tunnel: reads through a buffer, writes without SIGPIPE.
//!
//! - rustls reads at most 4 KiB per call; a 64 KiB block of ciphertext would cost sixteen
//!   `recvfrom` calls. The socket reads up to [`READ_BUFFER`] bytes at once and hands them out
//!   from memory. The buffer is reserved, not touched, so an idle tunnel costs no RSS for it.
//! - Writing to a socket whose peer has gone raises SIGPIPE, whose default action ends the
//!   process, and a C agent may keep that default. Every write here uses `send`/`sendmsg` with
//!   `MSG_NOSIGNAL`, so the library never raises SIGPIPE and never touches signal masks.
//! - A peer can vanish without a FIN (a host powered off, a NAT entry dropped). Every socket
//!   gets TCP keepalive (`tcp_keepalive_s` idle, then a probe every [`KEEPALIVE_INTERVAL`]
//!   at most, [`KEEPALIVE_PROBES`] probes) and `TCP_USER_TIMEOUT` (`tcp_user_timeout_ms`):
//!   data or probes left unacknowledged that long fail the connection, so a blocked send or
//!   recv sees an error in bounded time. Set before `connect`, so they hold from the start.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::plan::TcpOptions;

/// The longest pause between keepalive probes (shorter when the idle time is shorter).
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered keepalive probes before the connection fails (when no user timeout ends it
/// first).
pub(crate) const KEEPALIVE_PROBES: i32 = 6;

/// Sets keepalive and `TCP_USER_TIMEOUT` on a socket, as `tcp` says.
pub fn set_tcp_options(fd: &impl AsRawFd, tcp: &TcpOptions) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    let secs = |d: Duration| i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX);
    match tcp.keepalive_idle {
        Some(idle) => {
            setsockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1, "SO_KEEPALIVE")?;
            setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPIDLE,
                secs(idle),
                "TCP_KEEPIDLE",
            )?;
            let interval = secs(idle.min(KEEPALIVE_INTERVAL));
            setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPINTVL,
                interval,
                "TCP_KEEPINTVL",
            )?;
            setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_KEEPCNT,
                KEEPALIVE_PROBES,
                "TCP_KEEPCNT",
            )?;
        }
        None => setsockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0, "SO_KEEPALIVE")?,
    }
    if let Some(limit) = tcp.user_timeout {
        let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            ms,
            "TCP_USER_TIMEOUT",
        )?;
    }
    Ok(())
}

fn setsockopt(fd: RawFd, level: i32, name: i32, value: i32, what: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live `c_int`.
    let done = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// How much one `recvfrom` may bring in.
const READ_BUFFER: usize = 64 * 1024;

/// A connected TCP socket with a read buffer and SIGPIPE-free writes.
pub struct Socket {
    tcp: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Socket {
    /// Wraps a connected stream.
    pub fn new(tcp: TcpStream) -> Socket {
        Socket {
            tcp,
            buf: Vec::with_capacity(READ_BUFFER),
            pos: 0,
        }
    }

    fn send(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.tcp.as_raw_fd();
        let sent = if let [one] = bufs {
            // SAFETY: the pointer and length come from a live slice.
            unsafe { libc::send(fd, one.as_ptr().cast(), one.len(), libc::MSG_NOSIGNAL) }
        } else {
            // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the msghdr only borrows
            // the slices for the duration of the call.
            unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
                libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
            }
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }

    fn poll_send(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_io(Interest::WRITABLE, || self.send(bufs)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.buf.len() {
            if out.remaining() >= READ_BUFFER {
                return Pin::new(&mut this.tcp).poll_read(cx, out);
            }
            this.buf.clear();
            this.pos = 0;
            let mut fill = ReadBuf::uninit(this.buf.spare_capacity_mut());
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut fill))?;
            let n = fill.filled().len();
            // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
            unsafe { this.buf.set_len(n) };
        }
        let n = out.remaining().min(this.buf.len() - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn option(fd: RawFd, level: i32, name: i32) -> i32 {
        let mut value: i32 = -1;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: value and len are live and sized for a c_int.
        let r =
            unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
        assert_eq!(r, 0);
        value
    }

    #[test]
    fn keepalive_and_user_timeout_are_set_as_configured() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = socket.as_raw_fd();
        let on = TcpOptions {
            keepalive_idle: Some(Duration::from_secs(60)),
            user_timeout: Some(Duration::from_millis(120_000)),
        };
        set_tcp_options(&socket, &on).unwrap();
        assert_eq!(option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 60);
        assert_eq!(option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 10);
        assert_eq!(option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 6);
        assert_eq!(
            option(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
            120_000
        );

        let short = TcpOptions {
            keepalive_idle: Some(Duration::from_secs(2)),
            user_timeout: None,
        };
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_tcp_options(&other, &short).unwrap();
        assert_eq!(
            option(other.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            2
        );
        assert_eq!(
            option(other.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
            0
        );

        let off = TcpOptions {
            keepalive_idle: None,
            user_timeout: None,
        };
        set_tcp_options(&socket, &off).unwrap();
        assert_eq!(option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
    }

    #[test]
    fn reads_through_the_buffer_and_writes_after_the_peer_left_fail() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = TcpStream::connect(addr).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            let mut socket = Socket::new(client);
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            server.write_all(&data).await.unwrap();
            server.shutdown().await.unwrap();
            // Small reads, as rustls makes them, see every byte in order, then EOF.
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = socket.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(got, data);
            drop(server);
            // The peer is gone: a write fails (EPIPE or ECONNRESET). Rust test binaries ignore
            // SIGPIPE, so the C test test_sigpipe, which keeps its default, checks the rest.
            let mut failed = false;
            for _ in 0..100 {
                if socket.write(&[0u8; 65536]).await.is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(failed);
        });
    }
}
