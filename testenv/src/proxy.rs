//! An in-process HTTP CONNECT proxy for tests: plain or TLS, optional Basic auth, and switches
//! ([`Fault`]) that make it misbehave in one precise way each.
//!
//! It listens on `127.0.0.1` (port chosen by the kernel), records every request head it receives
//! ([`TestProxy::requests`]), and stops, tunnels included, when its handle is dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ports::{accept_maybe_tls, bind_loopback, set_reset_on_close, BoxedIo, ServerTask};

/// Largest request head the proxy reads (request line and headers, final CRLF CRLF included).
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Relay buffer size, each direction.
const RELAY_BUF: usize = 64 * 1024;
/// Time allowed to connect to the CONNECT target.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Fault::Ok200WithFirstBytes`] waits for the upstream's first bytes.
const FIRST_BYTES_WAIT: Duration = Duration::from_secs(5);
/// How long [`Fault::ResetAfter200`] waits for the client's first tunnel bytes before the reset.
const RESET_WAIT: Duration = Duration::from_secs(1);
/// How long the proxy keeps reading (and discarding) after it answered with an error and shut
/// its side, so that unread client bytes do not turn the close into a reset that could destroy
/// the answer.
const LINGER_READ: Duration = Duration::from_secs(2);
/// [`Fault::Dribble`] stops after this many bytes (10 minutes at one byte per 100 ms).
const DRIBBLE_MAX_BYTES: usize = 6000;
/// [`Fault::EndlessHeaders`] stops after this many bytes.
const ENDLESS_MAX_BYTES: usize = 1 << 30;

/// The 407 answer to a request without valid credentials when Basic auth is required; the
/// proxy closes the connection after it, and says so.
pub const RESPONSE_407: &str = "HTTP/1.1 407 Proxy Authentication Required\r\n\
Proxy-Authenticate: Basic realm=\"dtun\"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
/// The answer that opens a tunnel.
pub const RESPONSE_200: &str = "HTTP/1.1 200 Connection established\r\n\r\n";
/// The answer when the CONNECT target cannot be reached.
pub const RESPONSE_502: &str = "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
/// The answer to a method other than CONNECT.
pub const RESPONSE_405: &str =
    "HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\n\r\n";
/// The answer to a malformed request line or target.
pub const RESPONSE_400: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
/// The answer to a request head longer than [`MAX_REQUEST_HEAD`].
pub const RESPONSE_431: &str =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n";
/// The banner sent by [`Fault::SshBanner`].
pub const SSH_BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
/// The 27-byte body of [`Fault::Auth407WithBody`].
pub const AUTH_407_BODY: &str = "Proxy authentication needed";
/// The HTML body of [`Fault::Refused502WithBody`].
pub const BAD_GATEWAY_BODY: &str =
    "<html><body><h1>502 Bad Gateway</h1><p>Connection refused</p></body></html>\n";

/// One hostile or unusual proxy behaviour. Each variant tests one thing.
///
/// The variants that answer with a failure or garbage do so right after reading the request
/// head, whatever the method or credentials. The variants that answer with a (possibly unusual)
/// success check the method and the credentials and connect upstream first, like
/// [`Fault::None`], then relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// A correct proxy: `HTTP/1.1 200 Connection established`, then relay.
    #[default]
    None,
    /// Reads the request and never answers; keeps the connection open until the client closes.
    NeverAnswer,
    /// Sends `HTTP/1.1 200 ` then one byte `a` every 100 ms, never ending the head; stops when
    /// the client goes away or the proxy is dropped.
    Dribble,
    /// Answers like an SSH server: `SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n`, then waits.
    SshBanner,
    /// `HTTP/1.1 200 OK\r\n` then `X-Filler-N: aaaa...\r\n` lines forever, as fast as the socket
    /// takes them (up to 1 GiB), until an error.
    EndlessHeaders,
    /// Sends `HTTP/1.1 20` and closes.
    StatusCutShort,
    /// Answers `HTTP/1.1 2000 OK\r\n\r\n` (a four-digit status), then relays if the target can be
    /// reached: a client that takes it for a success is caught.
    Status2000,
    /// 407 with two `Proxy-Authenticate` headers (Basic, NTLM), `Connection: close` and the
    /// 27-byte body [`AUTH_407_BODY`], then closes.
    Auth407WithBody,
    /// `HTTP/1.1 502 Bad Gateway` with an HTML body and its Content-Length, then closes.
    Refused502WithBody,
    /// `HTTP/1.1 403 Forbidden` with `Content-Length: 0`, then closes.
    Forbidden403,
    /// A valid `HTTP/1.1 200 Connection established\r\nProxy-Agent: dtun\r\n\r\n` written one
    /// byte per write (flushed, 2 ms apart), then relays.
    Dribbled200,
    /// `HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n` (the length must be ignored), then
    /// relays.
    Ok200WithContentLength,
    /// `HTTP/1.0 204 No Content\r\n\r\n` (any 2xx opens the tunnel), then relays.
    Http10NoContent204,
    /// Connects upstream, waits (up to 5 s) for the upstream's first bytes (use a collector with
    /// a greeting), then writes `HTTP/1.1 200 OK\r\n\r\n` and those bytes in one write, then
    /// relays.
    Ok200WithFirstBytes,
    /// Sends `HTTP/1.1 200 Connection established\r\n\r\n`, waits (up to 1 s) for the client's
    /// first tunnel bytes, then resets the connection (SO_LINGER 0 and close).
    ResetAfter200,
    /// Answers `HTTP/1.0 200 Connection established\r\n\r\n` like tinyproxy, then relays.
    Http10Ok,
    /// A 407 whose `Proxy-Authenticate: Digest realm="aaa...` header never ends (up to
    /// 1 GiB).
    EndlessChallenge,
    /// A 407 with a Digest challenge without a nonce, kept alive: a client must not answer it.
    DigestNoNonce,
    /// With [`ProxyOptions::digest`] (kept alive): the first 407 as usual, then the request
    /// that carries credentials is recorded and the connection closed without a byte of
    /// answer, as a proxy going away at the wrong moment would. Later connections are
    /// served as usual.
    DigestCloseOnCredentials,
    /// With [`ProxyOptions::digest`]: each 407 has a body but neither `Content-Length` nor
    /// chunked framing (so, RFC 9112, its body runs until the close), and says
    /// `Connection: keep-alive`; the proxy then keeps the connection open and reads on it.
    /// A client must neither wait for the body's end nor send on that connection again.
    DigestUnframed407,
    /// Like [`Fault::DigestUnframed407`], then the proxy closes the connection (what ends
    /// such a body).
    DigestUnframed407ThenClose,
    /// With [`ProxyOptions::digest`] (kept alive): on the first connection, the 407 says
    /// nothing of a close, and the proxy closes the connection right after it; later
    /// connections are served as usual.
    DigestSilentClose,
    /// With [`ProxyOptions::digest`]: each 407 offers, in this order, `Negotiate`, the
    /// Digest challenge, `NTLM` and `Basic realm="dtun"`; only the Digest answer opens.
    DigestAmongSchemes,
    /// A 407 offering `Negotiate` (kept alive); the next request on the connection, which
    /// should carry the client's token, is recorded and the connection closed without a byte
    /// of answer.
    NegotiateCloseOnToken,
    /// A 407 offering `Negotiate` (kept alive); the next request gets a 407 with a Negotiate
    /// continuation token ([`NEGOTIATE_CONTINUATION`]) and `Connection: close`, and the
    /// connection is closed: a client has nowhere to send its next token.
    NegotiateContinueAndClose,
}

/// The token of [`Fault::NegotiateContinueAndClose`]'s second 407 (base64; not a real
/// SPNEGO token: a client must not get as far as reading it).
pub const NEGOTIATE_CONTINUATION: &str = "oRQwEqADCgEBoQsGCSqGSIb3EgECAg==";

impl Fault {
    /// True for the variants that answer with a success after the usual checks and relay.
    fn opens_tunnel(self) -> bool {
        matches!(
            self,
            Fault::None
                | Fault::Dribbled200
                | Fault::Ok200WithContentLength
                | Fault::Http10NoContent204
                | Fault::Ok200WithFirstBytes
                | Fault::Http10Ok
                | Fault::DigestCloseOnCredentials
                | Fault::DigestUnframed407
                | Fault::DigestUnframed407ThenClose
                | Fault::DigestSilentClose
                | Fault::DigestAmongSchemes
        )
    }
}

/// Options of a [`TestProxy`]. The default is a plain, quiet, correct proxy without auth.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// TLS configuration for the client side (agent to proxy); `None` serves plain TCP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Required Basic credentials (user, password); `None`: no auth.
    pub auth: Option<(String, String)>,
    /// Required Digest credentials (instead of, or after, Basic); `None`: no Digest.
    pub digest: Option<crate::digest::DigestAuth>,
    /// The misbehaviour, if any.
    pub fault: Fault,
    /// Print one line per stage to stderr (never the password or the Authorization value).
    pub verbose: bool,
}

/// A request head received by the proxy, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The request line without its CRLF, e.g. `CONNECT collector.example:6443 HTTP/1.1`.
    pub request_line: String,
    /// The header lines in order: name as sent, value with surrounding blanks removed. A line
    /// without a colon is kept as a name with an empty value.
    pub headers: Vec<(String, String)>,
}

impl ConnectRequest {
    /// The value of the first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every header with this name (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The request method (first word of the request line).
    pub fn method(&self) -> &str {
        self.request_line.split(' ').next().unwrap_or("")
    }

    /// The request target (second word of the request line), e.g. `collector.example:6443`.
    pub fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or("")
    }
}

/// State shared by the proxy's connection tasks.
struct Shared {
    opts: ProxyOptions,
    requests: Mutex<Vec<ConnectRequest>>,
    tunnels: AtomicUsize,
    connections: AtomicUsize,
}

impl Shared {
    fn record(&self, request: &ConnectRequest) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request.clone());
    }
}

/// An HTTP CONNECT proxy on `127.0.0.1` for tests. Stops, tunnels included, when dropped.
pub struct TestProxy {
    task: ServerTask,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TestProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProxy")
            .field("addr", &self.addr())
            .field("fault", &self.shared.opts.fault)
            .finish()
    }
}

impl TestProxy {
    /// Starts the proxy. It listens before this returns.
    pub fn start(opts: ProxyOptions) -> io::Result<TestProxy> {
        let listener = bind_loopback(None)?;
        let shared = Arc::new(Shared {
            opts,
            requests: Mutex::new(Vec::new()),
            tunnels: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let for_task = Arc::clone(&shared);
        let task = ServerTask::spawn(listener, move |stream, peer| {
            serve_client(stream, peer, Arc::clone(&for_task))
        })?;
        Ok(TestProxy { task, shared })
    }

    /// The address it listens on (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.task.addr()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Every request head received so far, in arrival order.
    pub fn requests(&self) -> Vec<ConnectRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many tunnels it has opened so far (success answered and upstream connected).
    pub fn tunnels_opened(&self) -> usize {
        self.shared.tunnels.load(Ordering::SeqCst)
    }

    /// How many client connections it has accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

/// Reads a request head (up to CRLF CRLF). Returns the head (without the final CRLF CRLF) and
/// the bytes read after it, `Ok(None)` if the client closed first, an `InvalidData` error
/// when the head exceeds [`MAX_REQUEST_HEAD`], or, with `reject_non_http`, an `InvalidInput`
/// error as soon as the first byte shows it is not an HTTP request (a method starts with a
/// letter; a TLS ClientHello sent to a plain port starts with 0x16).
async fn read_head<R>(io: &mut R, reject_non_http: bool) -> io::Result<Option<(Vec<u8>, Vec<u8>)>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while buf.len() <= MAX_REQUEST_HEAD {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        let search_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if reject_non_http && !buf[0].is_ascii_alphabetic() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an HTTP request",
            ));
        }
        if let Some(pos) = buf[search_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = search_from + pos;
            if end + 4 > MAX_REQUEST_HEAD {
                break;
            }
            let leftover = buf.split_off(end + 4);
            buf.truncate(end);
            return Ok(Some((buf, leftover)));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "request head too large",
    ))
}

fn parse_head(head: &[u8]) -> ConnectRequest {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let headers = lines
        .map(|line| match line.split_once(':') {
            Some((name, value)) => (name.to_string(), value.trim().to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect();
    ConnectRequest {
        request_line,
        headers,
    }
}

/// Outcome of the credentials check.
enum AuthCheck {
    Ok(String),
    Missing,
    Wrong(Option<String>),
}

fn check_auth(req: &ConnectRequest, user: &str, password: &str) -> AuthCheck {
    let Some(value) = req.header("Proxy-Authorization") else {
        return AuthCheck::Missing;
    };
    let Some((scheme, credentials)) = value.split_once(' ') else {
        return AuthCheck::Wrong(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return AuthCheck::Wrong(None);
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials.trim()) else {
        return AuthCheck::Wrong(None);
    };
    let given_user = decoded
        .iter()
        .position(|&b| b == b':')
        .map(|i| String::from_utf8_lossy(&decoded[..i]).into_owned());
    if decoded == format!("{user}:{password}").as_bytes() {
        AuthCheck::Ok(user.to_string())
    } else {
        AuthCheck::Wrong(given_user)
    }
}

/// Splits a CONNECT target into host and port: `host:port`, `1.2.3.4:port`, `[::1]:port`.
fn parse_target(target: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        target.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || (!target.starts_with('[') && host.contains(':')) {
        return None;
    }
    Some((host.to_string(), port))
}

async fn send<W>(io: &mut W, bytes: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    io.write_all(bytes).await?;
    io.flush().await
}

/// Shuts our side (TLS: close_notify), then reads and discards for a while so that unread client
/// bytes do not make the kernel reset the connection before the client read our answer.
async fn close_gracefully(io: &mut BoxedIo) {
    let _ = io.shutdown().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER_READ, async {
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Answers `response` and closes gracefully.
async fn answer_and_close(io: &mut BoxedIo, response: &[u8]) {
    if send(io, response).await.is_ok() {
        close_gracefully(io).await;
    }
}

/// Reads and discards until the client closes or fails.
async fn wait_for_client_close(io: &mut BoxedIo) {
    let mut buf = vec![0u8; RELAY_BUF];
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn connect_upstream(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn serve_client(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let opts = &shared.opts;
    let log = |line: &str| {
        if opts.verbose {
            eprintln!("proxy: {line}");
        }
    };
    let connection = shared.connections.fetch_add(1, Ordering::SeqCst);
    if opts.fault == Fault::ResetAfter200 && set_reset_on_close(&stream).is_err() {
        return;
    }
    let mut client = match accept_maybe_tls(stream, opts.tls.as_ref()).await {
        Ok(client) => client,
        Err(e) => {
            log(&format!("TLS handshake with {peer} failed: {e}"));
            return;
        }
    };
    // A correct proxy answers 400 to bytes that are not HTTP; the hostile ones keep reading.
    let (head, leftover) = match read_head(&mut client, opts.fault.opens_tunnel()).await {
        Ok(Some(parts)) => parts,
        Ok(None) => return,
        Err(e) => {
            if e.kind() == io::ErrorKind::InvalidData {
                log(&format!("request head from {peer} too large"));
                answer_and_close(&mut client, RESPONSE_431.as_bytes()).await;
            } else if e.kind() == io::ErrorKind::InvalidInput {
                // Like squid: a plain port answers 400 to bytes that are not HTTP (a TLS
                // ClientHello), instead of waiting for a blank line that never comes.
                log(&format!("not an HTTP request from {peer}: 400"));
                answer_and_close(&mut client, RESPONSE_400.as_bytes()).await;
            }
            return;
        }
    };
    let request = parse_head(&head);
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request.clone());
    log(&format!(
        "{} {} from {peer}",
        request.method(),
        request.target()
    ));

    if !opts.fault.opens_tunnel() {
        log(&format!("fault {:?}", opts.fault));
        hostile(client, &request, &shared).await;
        return;
    }

    if request.method() != "CONNECT" {
        log("not CONNECT: 405");
        answer_and_close(&mut client, RESPONSE_405.as_bytes()).await;
        return;
    }
    if let Some((user, password)) = &opts.auth {
        match check_auth(&request, user, password) {
            AuthCheck::Ok(user) => log(&format!("auth ok for user {user}")),
            AuthCheck::Missing => {
                log("no credentials: 407");
                answer_and_close(&mut client, RESPONSE_407.as_bytes()).await;
                return;
            }
            AuthCheck::Wrong(given) => {
                match given {
                    Some(user) => log(&format!("auth failed for user {user}: 407")),
                    None => log("malformed credentials: 407"),
                }
                answer_and_close(&mut client, RESPONSE_407.as_bytes()).await;
                return;
            }
        }
    }
    let (request, leftover) = match &opts.digest {
        Some(digest) => {
            match digest_exchange(&mut client, request, leftover, digest, &shared, connection).await
            {
                Some(parts) => parts,
                None => return,
            }
        }
        None => (request, leftover),
    };
    let Some((host, port)) = parse_target(request.target()) else {
        log("bad target: 400");
        answer_and_close(&mut client, RESPONSE_400.as_bytes()).await;
        return;
    };
    let mut upstream = match connect_upstream(&host, port).await {
        Ok(upstream) => upstream,
        Err(e) => {
            log(&format!("connect to {host}:{port} failed ({e}): 502"));
            answer_and_close(&mut client, RESPONSE_502.as_bytes()).await;
            return;
        }
    };

    let answered = match opts.fault {
        Fault::Dribbled200 => {
            dribble_bytes(
                &mut client,
                b"HTTP/1.1 200 Connection established\r\nProxy-Agent: dtun\r\n\r\n",
            )
            .await
        }
        Fault::Ok200WithContentLength => {
            send(
                &mut client,
                b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n",
            )
            .await
        }
        Fault::Http10NoContent204 => send(&mut client, b"HTTP/1.0 204 No Content\r\n\r\n").await,
        Fault::Http10Ok => send(&mut client, b"HTTP/1.0 200 Connection established\r\n\r\n").await,
        Fault::Ok200WithFirstBytes => {
            let mut first = vec![0u8; RELAY_BUF];
            let n = match tokio::time::timeout(FIRST_BYTES_WAIT, upstream.read(&mut first)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
                Err(_) => 0,
            };
            let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            answer.extend_from_slice(&first[..n]);
            send(&mut client, &answer).await
        }
        _ => send(&mut client, RESPONSE_200.as_bytes()).await,
    };
    if answered.is_err() {
        return;
    }
    tunnel(client, upstream, leftover, &shared).await;
}

/// Relays between the client and the upstream, with the stage lines.
async fn tunnel(client: BoxedIo, mut upstream: TcpStream, leftover: Vec<u8>, shared: &Shared) {
    let verbose = shared.opts.verbose;
    shared.tunnels.fetch_add(1, Ordering::SeqCst);
    if verbose {
        eprintln!("proxy: tunnel open");
    }
    if !leftover.is_empty() && send(&mut upstream, &leftover).await.is_err() {
        return;
    }
    let (up, down) = relay(client, upstream).await;
    if verbose {
        eprintln!(
            "proxy: tunnel closed, {} bytes up, {down} bytes down",
            up + leftover.len() as u64
        );
    }
}

/// The failure and garbage faults: they answer whatever the request was.
async fn hostile(mut client: BoxedIo, request: &ConnectRequest, shared: &Shared) {
    match shared.opts.fault {
        Fault::NeverAnswer => wait_for_client_close(&mut client).await,
        Fault::Dribble => dribble_forever(client).await,
        Fault::SshBanner => {
            if send(&mut client, SSH_BANNER.as_bytes()).await.is_ok() {
                wait_for_client_close(&mut client).await;
            }
        }
        Fault::EndlessHeaders => endless_headers(&mut client).await,
        Fault::StatusCutShort => {
            if send(&mut client, b"HTTP/1.1 20").await.is_ok() {
                close_gracefully(&mut client).await;
            }
        }
        Fault::Status2000 => {
            if send(&mut client, b"HTTP/1.1 2000 OK\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let upstream = match parse_target(request.target()) {
                Some((host, port)) => connect_upstream(&host, port).await.ok(),
                None => None,
            };
            match upstream {
                Some(upstream) => tunnel(client, upstream, Vec::new(), shared).await,
                None => close_gracefully(&mut client).await,
            }
        }
        Fault::Auth407WithBody => {
            let answer = format!(
                "HTTP/1.1 407 Proxy Authentication Required\r\n\
                 Proxy-Authenticate: Basic realm=\"dtun\"\r\n\
                 Proxy-Authenticate: NTLM\r\n\
                 Connection: close\r\n\
                 Content-Length: {}\r\n\r\n{AUTH_407_BODY}",
                AUTH_407_BODY.len()
            );
            answer_and_close(&mut client, answer.as_bytes()).await;
        }
        Fault::EndlessChallenge => {
            let head = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"";
            if send(&mut client, head).await.is_ok() {
                let filler = vec![b'a'; 16 * 1024];
                let mut sent = 0;
                while sent < ENDLESS_MAX_BYTES && send(&mut client, &filler).await.is_ok() {
                    sent += filler.len();
                }
            }
        }
        Fault::DigestNoNonce => {
            let answer = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                Proxy-Authenticate: Digest realm=\"dtun\", qop=\"auth\"\r\n\
                Content-Length: 0\r\n\r\n";
            if send(&mut client, answer).await.is_ok() {
                wait_for_client_close(&mut client).await;
            }
        }
        Fault::NegotiateCloseOnToken | Fault::NegotiateContinueAndClose => {
            negotiate_then_close(client, shared).await
        }
        Fault::Refused502WithBody => {
            let answer = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{BAD_GATEWAY_BODY}",
                BAD_GATEWAY_BODY.len()
            );
            answer_and_close(&mut client, answer.as_bytes()).await;
        }
        Fault::Forbidden403 => {
            answer_and_close(
                &mut client,
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        }
        Fault::ResetAfter200 => {
            if send(&mut client, RESPONSE_200.as_bytes()).await.is_ok() {
                let mut buf = [0u8; 1];
                let _ = tokio::time::timeout(RESET_WAIT, client.read(&mut buf)).await;
            }
            // SO_LINGER 0 was set at accept: dropping the socket resets the connection.
            drop(client);
        }
        Fault::None
        | Fault::Dribbled200
        | Fault::Ok200WithContentLength
        | Fault::Http10NoContent204
        | Fault::Ok200WithFirstBytes
        | Fault::Http10Ok
        | Fault::DigestCloseOnCredentials
        | Fault::DigestUnframed407
        | Fault::DigestUnframed407ThenClose
        | Fault::DigestSilentClose
        | Fault::DigestAmongSchemes => {
            unreachable!("tunnel-opening faults are handled by serve_client")
        }
    }
}

/// [`Fault::NegotiateCloseOnToken`] and [`Fault::NegotiateContinueAndClose`]: a `Negotiate`
/// 407 kept alive, then the next request (the token) is recorded and answered by a close, or
/// by a 407 with a continuation token and `Connection: close`.
async fn negotiate_then_close(mut client: BoxedIo, shared: &Shared) {
    let challenge = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
        Proxy-Authenticate: Negotiate\r\nContent-Length: 0\r\n\r\n";
    if send(&mut client, challenge).await.is_err() {
        return;
    }
    let Ok(Some((head, _))) = read_head(&mut client, true).await else {
        return;
    };
    shared.record(&parse_head(&head));
    if shared.opts.fault == Fault::NegotiateContinueAndClose {
        let answer = format!(
            "HTTP/1.1 407 Proxy Authentication Required\r\n\
             Proxy-Authenticate: Negotiate {NEGOTIATE_CONTINUATION}\r\n\
             Connection: close\r\nContent-Length: 0\r\n\r\n"
        );
        answer_and_close(&mut client, answer.as_bytes()).await;
    } else {
        close_gracefully(&mut client).await;
    }
}

/// A Digest 407 as [`ProxyOptions::fault`] shapes it: other schemes around the challenge
/// ([`Fault::DigestAmongSchemes`]), or a body without framing ([`Fault::DigestUnframed407`]).
fn shaped_407(fault: Fault, answer: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&answer).into_owned();
    match fault {
        Fault::DigestAmongSchemes => {
            let Some((status, rest)) = text.split_once("\r\n") else {
                return answer;
            };
            let mut out = format!("{status}\r\nProxy-Authenticate: Negotiate\r\n");
            let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
            out.push_str(head);
            out.push_str(
                "\r\nProxy-Authenticate: NTLM\r\nProxy-Authenticate: Basic realm=\"dtun\"\r\n\r\n",
            );
            out.push_str(body);
            out.into_bytes()
        }
        Fault::DigestUnframed407 | Fault::DigestUnframed407ThenClose => {
            let head = text.split("\r\n\r\n").next().unwrap_or("");
            let mut out: String = head
                .split("\r\n")
                .filter(|line| {
                    let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                    !matches!(
                        name.as_str(),
                        "content-length" | "transfer-encoding" | "connection"
                    )
                })
                .map(|line| format!("{line}\r\n"))
                .collect();
            out.push_str("Connection: keep-alive\r\n\r\n");
            out.push_str(crate::digest::PAGE_407);
            out.into_bytes()
        }
        _ => answer,
    }
}

/// Writes `bytes` one per write, flushed, 2 ms apart.
async fn dribble_bytes(client: &mut BoxedIo, bytes: &[u8]) -> io::Result<()> {
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        send(client, std::slice::from_ref(byte)).await?;
    }
    Ok(())
}

/// [`Fault::Dribble`]: `HTTP/1.1 200 ` then `a` every 100 ms until the client goes away.
async fn dribble_forever(client: BoxedIo) {
    let (mut reader, mut writer) = tokio::io::split(client);
    if send(&mut writer, b"HTTP/1.1 200 ").await.is_err() {
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    ticks.tick().await; // the first tick is immediate
    let mut buf = vec![0u8; 4096];
    let mut sent = 0usize;
    while sent < DRIBBLE_MAX_BYTES {
        tokio::select! {
            _ = ticks.tick() => {
                if send(&mut writer, b"a").await.is_err() {
                    return;
                }
                sent += 1;
            }
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// [`Fault::EndlessHeaders`]: a status line then filler header lines until an error.
async fn endless_headers(client: &mut BoxedIo) {
    if send(client, b"HTTP/1.1 200 OK\r\n").await.is_err() {
        return;
    }
    let filler = "a".repeat(100);
    let mut line_no: u64 = 0;
    let mut sent = 0usize;
    let mut batch = String::with_capacity(16 * 1024);
    while sent < ENDLESS_MAX_BYTES {
        batch.clear();
        while batch.len() < 8 * 1024 {
            line_no += 1;
            batch.push_str(&format!("X-Filler-{line_no}: {filler}\r\n"));
        }
        if send(client, batch.as_bytes()).await.is_err() {
            return;
        }
        sent += batch.len();
    }
}

/// Copies `reader` to `writer` until EOF, then shuts `writer` down (half-close). Counts bytes.
async fn pump<R, W>(reader: &mut R, writer: &mut W, counter: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // A TLS peer that closed without close_notify: treat as EOF.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n]).await?;
        writer.flush().await?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    writer.shutdown().await
}

/// Relays both ways until both directions reached EOF, or one failed. Returns (bytes client to
/// upstream, bytes upstream to client).
async fn relay(client: BoxedIo, upstream: TcpStream) -> (u64, u64) {
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut up_r, mut up_w) = upstream.into_split();
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let to_upstream = pump(&mut client_r, &mut up_w, &up);
    let to_client = pump(&mut up_r, &mut client_w, &down);
    tokio::pin!(to_upstream, to_client);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            result = &mut to_upstream, if !up_done => {
                up_done = true;
                if result.is_err() {
                    break;
                }
            }
            result = &mut to_client, if !down_done => {
                down_done = true;
                if result.is_err() {
                    break;
                }
            }
        }
    }
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed))
}

/// The Digest exchange of a proxy with [`ProxyOptions::digest`]: 407 with a challenge until
/// a request carries a right answer; on the same connection when the options keep it alive.
/// Returns the accepted request and the bytes after its head, or `None` when the connection
/// ended (closed after a 407, or by the client).
async fn digest_exchange(
    client: &mut BoxedIo,
    mut request: ConnectRequest,
    mut leftover: Vec<u8>,
    digest: &crate::digest::DigestAuth,
    shared: &Shared,
    connection: usize,
) -> Option<(ConnectRequest, Vec<u8>)> {
    use crate::digest::{challenge, check, Body407, Check};
    let log = |line: &str| {
        if shared.opts.verbose {
            eprintln!("proxy: {line}");
        }
    };
    let nonce_of = |generation: usize| format!("n{}g{generation}", std::process::id());
    loop {
        let generation = digest.generation.load(Ordering::SeqCst);
        let nonce = nonce_of(generation);
        let verdict = request
            .header("Proxy-Authorization")
            .map(|value| check(digest, value, request.target(), &nonce));
        let stale = match verdict {
            Some(Check::Ok) if digest.stale_first && generation == 0 => {
                digest.generation.store(1, Ordering::SeqCst);
                true
            }
            Some(Check::Ok) => {
                log("digest auth ok");
                return Some((request, leftover));
            }
            Some(Check::StaleNonce) => true,
            Some(Check::Wrong) | None => false,
        };
        let nonce = nonce_of(digest.generation.load(Ordering::SeqCst));
        log(&format!(
            "digest: {}: 407",
            match verdict {
                None => "no credentials",
                Some(_) if stale => "stale nonce",
                Some(_) => "wrong credentials",
            }
        ));
        let fault = shared.opts.fault;
        if send(client, &shaped_407(fault, challenge(digest, &nonce, stale)))
            .await
            .is_err()
        {
            return None;
        }
        if fault == Fault::DigestUnframed407ThenClose
            || (fault == Fault::DigestSilentClose && connection == 0)
        {
            close_gracefully(client).await;
            return None;
        }
        if digest.body == Body407::Endless {
            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
            let mut sent = 0;
            while sent < ENDLESS_MAX_BYTES && send(client, chunk.as_bytes()).await.is_ok() {
                sent += chunk.len();
            }
            return None;
        }
        if !digest.keep_alive {
            close_gracefully(client).await;
            return None;
        }
        // The next request on the same connection (what the client sent behind the last one
        // first).
        let mut prefixed = Prefix {
            first: std::mem::take(&mut leftover),
            inner: &mut *client,
        };
        let (head, rest) = read_head(&mut prefixed, true).await.ok()??;
        request = parse_head(&head);
        leftover = rest;
        shared.record(&request);
        if fault == Fault::DigestCloseOnCredentials
            && request.header("Proxy-Authorization").is_some()
        {
            log("credentials on the kept connection: closing without an answer");
            close_gracefully(client).await;
            return None;
        }
    }
}

/// A reader that yields `first`, then reads `inner`.
struct Prefix<'a> {
    first: Vec<u8>,
    inner: &'a mut BoxedIo,
}

impl AsyncRead for Prefix<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            let taken: Vec<u8> = self.first.drain(..n).collect();
            buf.put_slice(&taken);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{EchoOptions, EchoServer};
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

    /// Reads up to and including CRLF CRLF, byte by byte (so nothing after it is consumed).
    fn read_reply_head<R: Read>(s: &mut R) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert!(head.len() < 65536);
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    fn basic(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    #[test]
    fn connect_relays_to_echo_and_records_the_head() {
        let echo = EchoServer::start(None).unwrap();
        let proxy = TestProxy::start(ProxyOptions::default()).unwrap();
        let mut s = connect(proxy.addr());
        let head = format!(
            "CONNECT localhost:{0} HTTP/1.1\r\nHost: localhost:{0}\r\nUser-Agent: t\r\n\r\n",
            echo.port()
        );
        s.write_all(head.as_bytes()).unwrap();
        assert_eq!(read_reply_head(&mut s), RESPONSE_200);
        s.write_all(b"hello through the tunnel").unwrap();
        let mut back = [0u8; 24];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello through the tunnel");
        // Half-close: the echo server sees EOF, closes, and the proxy passes the EOF back.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        let requests = proxy.requests();
        assert_eq!(requests.len(), 1);
        let req = &requests[0];
        assert_eq!(
            req.request_line,
            format!("CONNECT localhost:{} HTTP/1.1", echo.port())
        );
        assert_eq!(
            req.header("host"),
            Some(format!("localhost:{}", echo.port()).as_str())
        );
        assert_eq!(req.headers.len(), 2);
        assert_eq!(proxy.tunnels_opened(), 1);
        assert_eq!(echo.accepted(), 1);
    }

    #[test]
    fn auth_required() {
        let echo = EchoServer::start(None).unwrap();
        let password = "s3cr:t@/%+pw";
        let proxy = TestProxy::start(ProxyOptions {
            auth: Some(("agent".into(), password.into())),
            ..ProxyOptions::default()
        })
        .unwrap();
        let target = format!("127.0.0.1:{}", echo.port());

        for auth in [
            None,
            Some(basic("agent", "wrong")),
            Some("Bearer x".to_string()),
        ] {
            let mut s = connect(proxy.addr());
            let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
            if let Some(auth) = &auth {
                let value = if auth.starts_with("Bearer") {
                    auth.clone()
                } else {
                    format!("Basic {auth}")
                };
                head.push_str(&format!("Proxy-Authorization: {value}\r\n"));
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes()).unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            assert_eq!(reply, RESPONSE_407);
        }

        let mut s = connect(proxy.addr());
        let head = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {}\r\n\r\n",
            basic("agent", password)
        );
        s.write_all(head.as_bytes()).unwrap();
        assert_eq!(read_reply_head(&mut s), RESPONSE_200);
        s.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"x");
        let requests = proxy.requests();
        assert_eq!(requests.len(), 4);
        assert_eq!(requests[0].header("Proxy-Authorization"), None);
        assert_eq!(
            requests[3].headers_named("proxy-authorization"),
            vec![format!("Basic {}", basic("agent", password))]
        );
    }

    #[test]
    fn tls_proxy_with_tls_collector_inside() {
        let dir = temp_dir("proxy-tls");
        let pki = Pki::new(&dir).unwrap();
        let proxy_cert = pki
            .issue("proxy", &["localhost"], CertKind::Trusted)
            .unwrap();
        let collector_cert = pki
            .issue("collector", &["collector.example"], CertKind::Trusted)
            .unwrap();
        let echo = EchoServer::start(Some(collector_cert.server_config)).unwrap();
        let proxy = TestProxy::start(ProxyOptions {
            tls: Some(proxy_cert.server_config),
            ..ProxyOptions::default()
        })
        .unwrap();
        let outer =
            rustls::ClientConnection::new(pki.client_config(), "localhost".try_into().unwrap())
                .unwrap();
        let mut outer = rustls::StreamOwned::new(outer, connect(proxy.addr()));
        let head = format!(
            "CONNECT localhost:{0} HTTP/1.1\r\nHost: localhost:{0}\r\n\r\n",
            echo.port()
        );
        outer.write_all(head.as_bytes()).unwrap();
        assert_eq!(read_reply_head(&mut outer), RESPONSE_200);
        let inner = rustls::ClientConnection::new(
            pki.client_config(),
            "collector.example".try_into().unwrap(),
        )
        .unwrap();
        let mut inner = rustls::StreamOwned::new(inner, outer);
        inner.write_all(b"tls in tls").unwrap();
        let mut back = [0u8; 10];
        inner.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"tls in tls");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn upstream_refused_gives_502_and_other_methods_405() {
        let proxy = TestProxy::start(ProxyOptions::default()).unwrap();
        let port = crate::ports::free_port();
        let mut s = connect(proxy.addr());
        s.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{reply}");

        let mut s = connect(proxy.addr());
        s.write_all(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
    }

    #[test]
    fn hostile_answers() {
        let cases: [(Fault, &str); 5] = [
            (Fault::SshBanner, SSH_BANNER),
            (Fault::StatusCutShort, "HTTP/1.1 20"),
            (
                Fault::Forbidden403,
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            ),
            (
                Fault::Auth407WithBody,
                "HTTP/1.1 407 Proxy Authentication Required\r\n\
                 Proxy-Authenticate: Basic realm=\"dtun\"\r\nProxy-Authenticate: NTLM\r\n\
                 Connection: close\r\nContent-Length: 27\r\n\r\nProxy authentication needed",
            ),
            (Fault::Status2000, "HTTP/1.1 2000 OK\r\n\r\n"),
        ];
        for (fault, expected) in cases {
            let proxy = TestProxy::start(ProxyOptions {
                fault,
                ..ProxyOptions::default()
            })
            .unwrap();
            let mut s = connect(proxy.addr());
            s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
                .unwrap();
            let mut reply = vec![0u8; expected.len()];
            s.read_exact(&mut reply).unwrap();
            assert_eq!(String::from_utf8(reply).unwrap(), expected, "{fault:?}");
        }
        assert_eq!(AUTH_407_BODY.len(), 27);
    }

    #[test]
    fn first_bytes_arrive_with_the_answer() {
        let echo = EchoServer::start_with(EchoOptions {
            greeting: Some(b"GREETING".to_vec()),
            ..EchoOptions::default()
        })
        .unwrap();
        let proxy = TestProxy::start(ProxyOptions {
            fault: Fault::Ok200WithFirstBytes,
            ..ProxyOptions::default()
        })
        .unwrap();
        let mut s = connect(proxy.addr());
        s.write_all(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", echo.port()).as_bytes())
            .unwrap();
        let expected = b"HTTP/1.1 200 OK\r\n\r\nGREETING";
        let mut reply = vec![0u8; expected.len()];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, expected);
    }

    #[test]
    fn unusual_successes_relay() {
        let echo = EchoServer::start(None).unwrap();
        let cases: [(Fault, &str); 5] = [
            (
                Fault::Dribbled200,
                "HTTP/1.1 200 Connection established\r\nProxy-Agent: dtun\r\n\r\n",
            ),
            (
                Fault::Ok200WithContentLength,
                "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n",
            ),
            (Fault::Http10NoContent204, "HTTP/1.0 204 No Content\r\n\r\n"),
            (
                Fault::Http10Ok,
                "HTTP/1.0 200 Connection established\r\n\r\n",
            ),
            (Fault::None, RESPONSE_200),
        ];
        for (fault, expected) in cases {
            let proxy = TestProxy::start(ProxyOptions {
                fault,
                ..ProxyOptions::default()
            })
            .unwrap();
            let mut s = connect(proxy.addr());
            s.write_all(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", echo.port()).as_bytes())
                .unwrap();
            assert_eq!(read_reply_head(&mut s), expected, "{fault:?}");
            s.write_all(b"echo").unwrap();
            let mut back = [0u8; 4];
            s.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"echo", "{fault:?}");
        }
    }

    #[test]
    fn endless_and_dribbling_heads_and_reset() {
        let proxy = TestProxy::start(ProxyOptions {
            fault: Fault::EndlessHeaders,
            ..ProxyOptions::default()
        })
        .unwrap();
        let mut s = connect(proxy.addr());
        s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut head = vec![0u8; 200_000];
        s.read_exact(&mut head).unwrap();
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nX-Filler-1: aaaa"));
        assert!(!head.contains("\r\n\r\n"));
        drop(s);

        let proxy = TestProxy::start(ProxyOptions {
            fault: Fault::Dribble,
            ..ProxyOptions::default()
        })
        .unwrap();
        let mut s = connect(proxy.addr());
        s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 15];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 aa");
        drop(s);

        let proxy = TestProxy::start(ProxyOptions {
            fault: Fault::ResetAfter200,
            ..ProxyOptions::default()
        })
        .unwrap();
        let mut s = connect(proxy.addr());
        s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
            .unwrap();
        assert_eq!(read_reply_head(&mut s), RESPONSE_200);
        s.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        let err = s.read(&mut byte).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn never_answer_keeps_the_connection_open() {
        let proxy = TestProxy::start(ProxyOptions {
            fault: Fault::NeverAnswer,
            ..ProxyOptions::default()
        })
        .unwrap();
        let mut s = connect(proxy.addr());
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut byte = [0u8; 1];
        let err = s.read(&mut byte).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );
        assert_eq!(proxy.requests().len(), 1);
        // Dropping the proxy closes the connection.
        drop(proxy);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(s.read(&mut byte).unwrap(), 0);
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("localhost:6443"),
            Some(("localhost".into(), 6443))
        );
        assert_eq!(parse_target("[::1]:443"), Some(("::1".into(), 443)));
        assert_eq!(parse_target("10.0.0.1:1"), Some(("10.0.0.1".into(), 1)));
        assert_eq!(parse_target("::1:443"), None);
        assert_eq!(parse_target("host"), None);
        assert_eq!(parse_target("host:0"), None);
        assert_eq!(parse_target("host:70000"), None);
    }
}
