//! Ports and the plumbing shared by the in-process servers.
//!
//! [`free_port`] hands out a port number for external processes (squid, tinyproxy) that need one
//! up front. The rest of this module is crate-internal: the shared tokio runtime on which every
//! in-process server runs, loopback listeners bound before a constructor returns, and the accept
//! loop whose handle shuts the server down, connections included, when it is dropped.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// It binds `127.0.0.1:0`, reads the port the kernel chose and closes the socket. Another process
/// may take the port before the caller binds it: use this only for external programs that must
/// be told a port number up front. In-process servers bind port 0 themselves.
///
/// # Panics
///
/// Panics if no loopback socket can be bound at all (the test machine is broken).
pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("cannot bind a TCP socket on 127.0.0.1");
    listener
        .local_addr()
        .expect("bound socket has no local address")
        .port()
}

/// The tokio runtime shared by every in-process server of this crate.
///
/// Servers spawn their tasks here, so their constructors are synchronous and they work from plain
/// `#[test]` functions, from `#[tokio::test]` functions (another runtime) and from threads that
/// block in C code.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("dtun-testenv")
            .enable_all()
            .build()
            .expect("cannot build the dtun-testenv runtime")
    })
}

/// Binds a listener on `127.0.0.1:0` (registered with the shared runtime).
///
/// `recv_buffer`, when set, is the `SO_RCVBUF` of the listening socket, inherited by accepted
/// sockets (a small one lets a peer that never reads fill the path quickly).
pub(crate) fn bind_loopback(recv_buffer: Option<u32>) -> io::Result<TcpListener> {
    let _guard = runtime().enter();
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    socket.listen(1024)
}

/// How long dropping a server handle waits for its tasks to stop.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A running accept loop. Dropping it stops accepting, closes the listener, aborts every
/// connection task and waits (bounded) until all of that has happened.
pub(crate) struct ServerTask {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
}

impl ServerTask {
    /// Runs `handler` for every connection accepted on `listener` (with TCP_NODELAY set).
    pub(crate) fn spawn<H, Fut>(listener: TcpListener, handler: H) -> io::Result<ServerTask>
    where
        H: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let (shutdown_tx, mut shutdown_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        runtime().spawn(async move {
            let listener = listener;
            let mut connections: JoinSet<()> = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut shutdown_rx => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            // A socket that refuses TCP_NODELAY is not worth serving.
                            if stream.set_nodelay(true).is_ok() {
                                connections.spawn(handler(stream, peer));
                            }
                        }
                        // Out of descriptors or an aborted handshake: back off a little.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            // Stop listening now: closing the descriptor alone may leave the socket listening a
            // moment longer when the kernel still holds a transient reference to it, and a
            // client connecting right after the handle dropped must be refused.
            let _ = socket2::SockRef::from(&listener).shutdown(std::net::Shutdown::Read);
            drop(listener);
            connections.shutdown().await;
            let _ = done_tx.send(());
        });
        Ok(ServerTask {
            addr,
            shutdown: Some(shutdown_tx),
            done: done_rx,
        })
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Ok: stopped; Err: timed out or the task is already gone (runtime shutting down).
        let _ = self.done.recv_timeout(STOP_WAIT);
    }
}

/// A byte stream served by a test server: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed plain or TLS server-side stream.
pub(crate) type BoxedIo = Box<dyn Io>;

/// Completes the TLS handshake when `tls` is set, otherwise passes the TCP stream through.
pub(crate) async fn accept_maybe_tls(
    stream: TcpStream,
    tls: Option<&Arc<ServerConfig>>,
) -> io::Result<BoxedIo> {
    match tls {
        None => Ok(Box::new(stream)),
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
            let tls_stream = acceptor.accept(stream).await?;
            Ok(Box::new(tls_stream))
        }
    }
}

/// Resets the connection when the socket is closed (SO_LINGER 0), instead of a clean FIN.
pub(crate) fn set_reset_on_close(stream: &TcpStream) -> io::Result<()> {
    stream.set_zero_linger()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, port));
        assert!(listener.is_ok());
    }

    #[test]
    fn dropping_a_server_closes_its_listener() {
        for _ in 0..50 {
            let listener = bind_loopback(None).unwrap();
            let server = ServerTask::spawn(listener, |_stream, _peer| async {}).unwrap();
            let addr = server.addr();
            assert!(std::net::TcpStream::connect(addr).is_ok());
            drop(server);
            assert!(std::net::TcpStream::connect(addr).is_err());
        }
    }
}
