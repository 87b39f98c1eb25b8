//! Test collectors: an echo server with switchable misbehaviour, and a collector that speaks the
//! agent's length-prefixed framing and acknowledges every message.
//!
//! Both listen on `127.0.0.1` (port chosen by the kernel), plain or TLS, run on the crate's
//! shared runtime, and stop, connections included, when their handle is dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ports::{accept_maybe_tls, bind_loopback, set_reset_on_close, ServerTask};

/// Size of the echo and framing read buffers.
const BUF_SIZE: usize = 64 * 1024;
/// `SO_RCVBUF` for [`CollectorBehaviour::NeverRead`] listeners: small, so that a client's
/// writes stall soon.
const NEVER_READ_RCVBUF: u32 = 4096;
/// How long a collector that closed its side keeps reading (and discarding) the client's data,
/// so that unread bytes do not turn its close into a reset.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// What an [`EchoServer`] does with each connection once accepted (and after its greeting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CollectorBehaviour {
    /// Echo every byte until the client closes, then close (TLS: answer close_notify).
    #[default]
    Echo,
    /// Echo this many bytes, then close cleanly (TLS close_notify, then FIN).
    CloseAfter(usize),
    /// Echo this many bytes, then reset the connection (SO_LINGER 0 and close: RST).
    ResetAfter(usize),
    /// Accept (and complete the TLS handshake) but never read: a client's writes stall once
    /// the socket buffers are full (the accepted socket has a small receive buffer), so its send
    /// timeout fires. The connection stays open until the server is dropped.
    NeverRead,
}

/// Options of an [`EchoServer`]. The default is a plain echo server without a greeting.
#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    /// TLS configuration; `None` serves plain TCP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Bytes sent to each client first, right after accept (after the TLS handshake).
    pub greeting: Option<Vec<u8>>,
    /// What to do with each connection.
    pub behaviour: CollectorBehaviour,
}

/// An echo collector on `127.0.0.1`: sends back every byte it receives, to many concurrent
/// clients, flushing after each write. Stops when dropped.
pub struct EchoServer {
    task: ServerTask,
    accepted: Arc<AtomicUsize>,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("addr", &self.addr())
            .finish()
    }
}

impl EchoServer {
    /// Starts a plain (`None`) or TLS echo server. It listens before this returns.
    pub fn start(tls: Option<Arc<ServerConfig>>) -> io::Result<EchoServer> {
        EchoServer::start_with(EchoOptions {
            tls,
            ..EchoOptions::default()
        })
    }

    /// Starts an echo server with a greeting and/or a misbehaviour. It listens before this
    /// returns.
    pub fn start_with(opts: EchoOptions) -> io::Result<EchoServer> {
        let rcvbuf = match opts.behaviour {
            CollectorBehaviour::NeverRead => Some(NEVER_READ_RCVBUF),
            _ => None,
        };
        let listener = bind_loopback(rcvbuf)?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let opts = Arc::new(opts);
        let task = ServerTask::spawn(listener, move |stream, _peer| {
            counter.fetch_add(1, Ordering::SeqCst);
            serve_echo(stream, Arc::clone(&opts))
        })?;
        Ok(EchoServer { task, accepted })
    }

    /// The address it listens on (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.task.addr()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve_echo(stream: TcpStream, opts: Arc<EchoOptions>) {
    if let CollectorBehaviour::ResetAfter(_) = opts.behaviour {
        if set_reset_on_close(&stream).is_err() {
            return;
        }
    }
    let Ok(mut io) = accept_maybe_tls(stream, opts.tls.as_ref()).await else {
        return;
    };
    if let Some(greeting) = &opts.greeting {
        if io.write_all(greeting).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
    match opts.behaviour {
        CollectorBehaviour::Echo => {
            if echo(&mut io, None).await.is_ok() {
                let _ = io.shutdown().await;
            }
        }
        CollectorBehaviour::CloseAfter(limit) => {
            if echo(&mut io, Some(limit)).await.is_ok() {
                let _ = io.shutdown().await;
                drain(&mut io).await;
            }
        }
        CollectorBehaviour::ResetAfter(limit) => {
            let _ = echo(&mut io, Some(limit)).await;
            // Dropping the stream closes the socket with SO_LINGER 0: RST.
            drop(io);
        }
        CollectorBehaviour::NeverRead => std::future::pending::<()>().await,
    }
}

/// Echoes until EOF, or until `limit` bytes have been echoed. Returns the bytes echoed.
async fn echo<S>(io: &mut S, limit: Option<usize>) -> io::Result<usize>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; BUF_SIZE];
    let mut done = 0usize;
    loop {
        let want = match limit {
            Some(limit) => (limit - done).min(buf.len()),
            None => buf.len(),
        };
        if want == 0 {
            return Ok(done);
        }
        let n = io.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok(done);
        }
        io.write_all(&buf[..n]).await?;
        io.flush().await?;
        done += n;
    }
}

/// Reads and discards until EOF, an error, or [`DRAIN_LIMIT`].
async fn drain<S>(io: &mut S)
where
    S: AsyncRead + Unpin + ?Sized,
{
    let mut buf = vec![0u8; BUF_SIZE];
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Version byte of every message of the agent's framing.
pub const FRAME_VERSION: u8 = 4;
/// Length of a frame header: 4-byte big-endian length (header included), version, type.
pub const FRAME_HEADER_LEN: usize = 6;
/// Largest frame length a [`FramedCollector`] accepts (16 MiB); longer frames close the
/// connection.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;
/// Message type of the acknowledgements sent by a [`FramedCollector`].
pub const ACK_TYPE: u8 = 0xAC;
/// Total length of an acknowledgement frame: header, sequence number, payload length.
pub const ACK_FRAME_LEN: usize = FRAME_HEADER_LEN + 8;

/// Encodes one message of the agent's framing: length (header included, big-endian), version
/// [`FRAME_VERSION`], `msg_type`, payload.
///
/// # Panics
///
/// Panics if the frame would be longer than `u32::MAX` bytes.
pub fn encode_frame(msg_type: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(FRAME_HEADER_LEN + payload.len()).expect("frame too long");
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(FRAME_VERSION);
    frame.push(msg_type);
    frame.extend_from_slice(payload);
    frame
}

/// Decodes an acknowledgement frame into (sequence number, payload length acknowledged), or
/// `None` when it is not a well-formed ack.
pub fn parse_ack(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() != ACK_FRAME_LEN
        || frame[..4] != (ACK_FRAME_LEN as u32).to_be_bytes()
        || frame[4] != FRAME_VERSION
        || frame[5] != ACK_TYPE
    {
        return None;
    }
    let seq = u32::from_be_bytes(frame[6..10].try_into().ok()?);
    let len = u32::from_be_bytes(frame[10..14].try_into().ok()?);
    Some((seq, len))
}

/// A collector speaking the agent's framing.
///
/// Each message is a 4-byte big-endian length that includes the 6-byte header, a version byte
/// ([`FRAME_VERSION`]), a type byte, then the payload. For each message it answers an ack in the
/// same framing: type [`ACK_TYPE`], payload = the message's sequence number on the connection
/// (from 1) and the payload length received, both 4-byte big-endian. A frame shorter than its
/// header, longer than [`MAX_FRAME_LEN`] or of another version closes the connection.
pub struct FramedCollector {
    task: ServerTask,
    acked: Arc<AtomicU64>,
}

impl std::fmt::Debug for FramedCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedCollector")
            .field("addr", &self.addr())
            .finish()
    }
}

impl FramedCollector {
    /// Starts a quiet framed collector, plain (`None`) or TLS. It listens before this returns.
    pub fn start(tls: Option<Arc<ServerConfig>>) -> io::Result<FramedCollector> {
        FramedCollector::start_inner(tls, false)
    }

    /// Like [`FramedCollector::start`], and logs each acknowledged message to stderr
    /// (`collector: ack #3 type 1, 42 bytes`).
    pub fn start_verbose(tls: Option<Arc<ServerConfig>>) -> io::Result<FramedCollector> {
        FramedCollector::start_inner(tls, true)
    }

    fn start_inner(tls: Option<Arc<ServerConfig>>, verbose: bool) -> io::Result<FramedCollector> {
        let listener = bind_loopback(None)?;
        let acked = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&acked);
        let task = ServerTask::spawn(listener, move |stream, _peer| {
            serve_framed(stream, tls.clone(), verbose, Arc::clone(&counter))
        })?;
        Ok(FramedCollector { task, acked })
    }

    /// The address it listens on (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.task.addr()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// How many messages it has acknowledged so far (acks sent or being sent), all connections
    /// together.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }
}

async fn serve_framed(
    stream: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    verbose: bool,
    acked: Arc<AtomicU64>,
) {
    let Ok(mut io) = accept_maybe_tls(stream, tls.as_ref()).await else {
        return;
    };
    let mut discard = vec![0u8; BUF_SIZE];
    let mut seq: u32 = 0;
    loop {
        let mut header = [0u8; FRAME_HEADER_LEN];
        if io.read_exact(&mut header).await.is_err() {
            break; // EOF (clean or mid-header) or error
        }
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let (version, msg_type) = (header[4], header[5]);
        if (len as usize) < FRAME_HEADER_LEN || len > MAX_FRAME_LEN || version != FRAME_VERSION {
            if verbose {
                eprintln!("collector: invalid frame (length {len}, version {version}), closing");
            }
            break;
        }
        let payload_len = len - FRAME_HEADER_LEN as u32;
        let mut remaining = payload_len as usize;
        while remaining > 0 {
            let want = remaining.min(discard.len());
            match io.read(&mut discard[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => remaining -= n,
            }
        }
        seq = seq.wrapping_add(1);
        let mut ack = Vec::with_capacity(ACK_FRAME_LEN);
        ack.extend_from_slice(&(ACK_FRAME_LEN as u32).to_be_bytes());
        ack.push(FRAME_VERSION);
        ack.push(ACK_TYPE);
        ack.extend_from_slice(&seq.to_be_bytes());
        ack.extend_from_slice(&payload_len.to_be_bytes());
        // Counted before it is sent, so that a client that has read the ack sees the count.
        acked.fetch_add(1, Ordering::SeqCst);
        if io.write_all(&ack).await.is_err() || io.flush().await.is_err() {
            return;
        }
        if verbose {
            eprintln!("collector: ack #{seq} type {msg_type}, {payload_len} bytes");
        }
    }
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::tests::temp_dir;
    use crate::pki::{CertKind, Pki};
    use std::io::{Read, Write};

    fn connect(addr: SocketAddr) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    #[test]
    fn plain_echo_with_greeting() {
        let server = EchoServer::start_with(EchoOptions {
            greeting: Some(b"hello\n".to_vec()),
            ..EchoOptions::default()
        })
        .unwrap();
        let mut s = connect(server.addr());
        let mut greeting = [0u8; 6];
        s.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"hello\n");
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut back = vec![0u8; data.len()];
        let mut writer = s.try_clone().unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| writer.write_all(&data).unwrap());
            s.read_exact(&mut back).unwrap();
        });
        assert_eq!(back, data);
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(server.accepted(), 1);
    }

    #[test]
    fn tls_echo_and_close_notify() {
        let dir = temp_dir("echo-tls");
        let pki = Pki::new(&dir).unwrap();
        let issued = pki
            .issue("collector", &["localhost"], CertKind::Trusted)
            .unwrap();
        let server = EchoServer::start(Some(issued.server_config)).unwrap();
        let conn =
            rustls::ClientConnection::new(pki.client_config(), "localhost".try_into().unwrap())
                .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, connect(server.addr()));
        tls.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        let mut rest = Vec::new();
        // A clean close_notify from the server gives Ok(0), not an UnexpectedEof error.
        tls.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn close_after_and_reset_after() {
        let server = EchoServer::start_with(EchoOptions {
            behaviour: CollectorBehaviour::CloseAfter(3),
            ..EchoOptions::default()
        })
        .unwrap();
        let mut s = connect(server.addr());
        s.write_all(b"abc").unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"abc");

        let server = EchoServer::start_with(EchoOptions {
            behaviour: CollectorBehaviour::ResetAfter(3),
            ..EchoOptions::default()
        })
        .unwrap();
        let mut s = connect(server.addr());
        s.write_all(b"abc").unwrap();
        let mut back = [0u8; 3];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"abc");
        let mut rest = [0u8; 1];
        let err = s.read(&mut rest).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn never_read_lets_sends_time_out() {
        let server = EchoServer::start_with(EchoOptions {
            behaviour: CollectorBehaviour::NeverRead,
            ..EchoOptions::default()
        })
        .unwrap();
        let mut s = connect(server.addr());
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let block = vec![0u8; BUF_SIZE];
        let mut sent = 0usize;
        let err = loop {
            assert!(sent < 1 << 30, "a peer that never reads took 1 GiB");
            match s.write(&block) {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );
    }

    #[test]
    fn framed_collector_acks() {
        let server = FramedCollector::start(None).unwrap();
        let mut s = connect(server.addr());
        let mut frames = encode_frame(1, b"first message");
        frames.extend(encode_frame(7, b""));
        frames.extend(encode_frame(2, &vec![0x55; 100_000]));
        s.write_all(&frames).unwrap();
        for (seq, len) in [(1u32, 13u32), (2, 0), (3, 100_000)] {
            let mut ack = [0u8; ACK_FRAME_LEN];
            s.read_exact(&mut ack).unwrap();
            assert_eq!(&ack[..6], &[0, 0, 0, 14, 4, 0xAC]);
            assert_eq!(parse_ack(&ack), Some((seq, len)));
        }
        assert_eq!(server.acked(), 3);
        // A bad version closes the connection.
        s.write_all(&[0, 0, 0, 6, 3, 1]).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        // So does a length shorter than the header.
        let mut s = connect(server.addr());
        s.write_all(&[0, 0, 0, 5, 4, 1]).unwrap();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}
