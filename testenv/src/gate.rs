//! A gate in front of a server: a listener on a fixed `127.0.0.1` port that, while open,
//! relays every connection byte for byte to a target address, and that can be closed (the
//! port refuses connections, and every relayed connection is cut) and opened again on the
//! same port. Put in front of a [`crate::proxy::TestProxy`] it is a proxy being restarted: the
//! proxy's own code answers every CONNECT, the gate only decides whether its port is there.
//!
//! [`Gate::start`] picks the port and opens the gate; [`Gate::close`] and [`Gate::open`]
//! return once the port refuses, or accepts, connections.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use tokio::net::{TcpSocket, TcpStream};

use crate::ports::{runtime, ServerTask};

/// A relaying listener on a fixed port that can be closed and reopened. Dropping it closes it.
pub struct Gate {
    port: u16,
    target: SocketAddr,
    task: Mutex<Option<ServerTask>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("port", &self.port)
            .field("target", &self.target)
            .field("open", &self.is_open())
            .finish()
    }
}

impl Gate {
    /// Opens a gate on a port the kernel picks, relaying to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Gate> {
        let listener = bind(0)?;
        let port = listener.local_addr()?.port();
        let task = relay(listener, target)?;
        Ok(Gate {
            port,
            target,
            task: Mutex::new(Some(task)),
        })
    }

    /// The gate's port on `127.0.0.1`, the same whether it is open or closed.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the port currently accepts connections.
    pub fn is_open(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Closes the port and cuts every relayed connection; returns once that is done (a no-op
    /// when already closed).
    pub fn close(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        // ServerTask's drop stops listening, aborts the connections and waits for both.
        drop(task);
    }

    /// Listens on the same port again (a no-op when already open). Fails when another
    /// program took the port meanwhile.
    pub fn open(&self) -> io::Result<()> {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_none() {
            *task = Some(relay(bind(self.port)?, self.target)?);
        }
        Ok(())
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
    }
}

/// A listener on `127.0.0.1:port` with `SO_REUSEADDR`, so that the port can be bound again
/// while connections of the previous listener linger in TIME_WAIT.
fn bind(port: u16) -> io::Result<tokio::net::TcpListener> {
    let _guard = runtime().enter();
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(1024)
}

fn relay(listener: tokio::net::TcpListener, target: SocketAddr) -> io::Result<ServerTask> {
    ServerTask::spawn(listener, move |mut client, _peer| async move {
        // A target that is down: the client sees its connection closed.
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            return;
        };
        let _ = upstream.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::EchoServer;
    use std::io::{Read, Write};

    fn echo_through(port: u16) -> io::Result<()> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        s.write_all(b"ping")?;
        let mut back = [0u8; 4];
        s.read_exact(&mut back)?;
        assert_eq!(&back, b"ping");
        Ok(())
    }

    #[test]
    fn closes_and_reopens_on_the_same_port() {
        let echo = EchoServer::start(None).unwrap();
        let gate = Gate::start(echo.addr()).unwrap();
        let port = gate.port();
        echo_through(port).unwrap();

        // A relayed connection is cut when the gate closes, and the port refuses.
        let mut held = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        held.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        held.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        held.read_exact(&mut one).unwrap();
        gate.close();
        assert!(!gate.is_open());
        let mut rest = [0u8; 1];
        assert!(matches!(held.read(&mut rest), Ok(0) | Err(_)));
        for _ in 0..20 {
            assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        }

        gate.open().unwrap();
        assert!(gate.is_open());
        assert_eq!(gate.port(), port);
        echo_through(port).unwrap();
        gate.close();
        gate.open().unwrap();
        echo_through(port).unwrap();
    }
}
