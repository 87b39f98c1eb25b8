//! Shared helpers of the integration tests: temporary folders, a per-test PKI with the
//! certificates the tests need, a dragent.yaml builder, open/echo helpers with bounded waits,
//! a log capture, a deterministic byte pattern, and checks that a secret never leaks.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dragent_tunnel::log::{set_logger, LogLevel};
use dragent_tunnel::{Connection, Error, Status, Transfer, TunnelConfig, Wait};
use dtun_testenv::pki::{CertKind, Pki};
use rustls::ServerConfig;

/// The proxy user of every test.
pub const USER: &str = "agent";
/// A password with every character that needs care in URLs and in `user:password`.
pub const PASSWORD: &str = "p:a@s/s%w+rd";

/// Deadline for opens that must succeed or fail by themselves; only a hang reaches it.
pub const OPEN_WAIT: Wait = Wait::For(Duration::from_secs(15));
/// Deadline for a send or recv that must complete; only a hang reaches it.
pub const IO_WAIT: Wait = Wait::For(Duration::from_secs(15));

/// `base64(user ":" password)`, the value after `Basic ` in `Proxy-Authorization`.
pub fn basic_token(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A fresh folder under the system temp folder, unique per process and call, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "dtun-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a server certificate is like, seen from a client that trusts `ca.pem` and connects
/// to `localhost` (or `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cert {
    /// Signed by the trusted CA, for `localhost` and `127.0.0.1`.
    Trusted,
    /// Signed by the trusted CA, for `localhost` only (no IP SAN).
    TrustedLocalhostOnly,
    /// Signed by a CA nobody trusts.
    UntrustedIssuer,
    /// Signed by the trusted CA, out of date since 2020.
    Expired,
    /// Signed by the trusted CA for `other.example`.
    WrongName,
}

impl Cert {
    /// The three ways a certificate is rejected, with the words the error message must use.
    pub const FAILURES: [(Cert, &'static str); 3] = [
        (Cert::UntrustedIssuer, "untrusted issuer"),
        (Cert::Expired, "expired"),
        (Cert::WrongName, "wrong name"),
    ];

    /// The library's classification of the rejection.
    pub fn problem(self) -> Option<dragent_tunnel::error::CertProblem> {
        use dragent_tunnel::error::CertProblem;
        match self {
            Cert::Trusted | Cert::TrustedLocalhostOnly => None,
            Cert::UntrustedIssuer => Some(CertProblem::Untrusted),
            Cert::Expired => Some(CertProblem::Expired),
            Cert::WrongName => Some(CertProblem::WrongName),
        }
    }
}

/// A temp folder holding a fresh PKI; issues server certificates on demand.
pub struct Env {
    pki: Pki,
    issued: AtomicUsize,
    // Last, so the folder goes after everything that points into it.
    dir: TempDir,
}

impl Env {
    pub fn new(tag: &str) -> Env {
        let dir = TempDir::new(tag);
        let pki = Pki::new(dir.path()).expect("make PKI");
        Env {
            pki,
            issued: AtomicUsize::new(0),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The trusted CA file.
    pub fn ca(&self) -> PathBuf {
        self.pki.ca_path()
    }

    /// The CA file of the untrusted issuer (trusting it does not make the trusted ones valid).
    pub fn untrusted_ca(&self) -> PathBuf {
        self.pki.untrusted_ca_path()
    }

    /// Writes a certificate and key of the given kind; returns (cert path, key path, server
    /// config).
    pub fn issue(&self, kind: Cert) -> (PathBuf, PathBuf, Arc<ServerConfig>) {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let stem = format!("server-{n}");
        let (names, pki_kind): (&[&str], CertKind) = match kind {
            Cert::Trusted => (&["localhost", "127.0.0.1"], CertKind::Trusted),
            Cert::TrustedLocalhostOnly => (&["localhost"], CertKind::Trusted),
            Cert::UntrustedIssuer => (&["localhost", "127.0.0.1"], CertKind::UntrustedIssuer),
            Cert::Expired => (&["localhost", "127.0.0.1"], CertKind::Expired),
            Cert::WrongName => (&["other.example"], CertKind::Trusted),
        };
        let issued = self.pki.issue(&stem, names, pki_kind).expect("issue cert");
        (issued.cert_path, issued.key_path, issued.server_config)
    }

    /// A TLS server configuration presenting a certificate of the given kind.
    pub fn server_tls(&self, kind: Cert) -> Arc<ServerConfig> {
        self.issue(kind).2
    }
}

/// YAML scalar text for a string: single-quoted, quotes doubled.
pub fn q(text: impl AsRef<str>) -> String {
    format!("'{}'", text.as_ref().replace('\'', "''"))
}

/// YAML scalar text for a path.
pub fn qp(path: &Path) -> String {
    q(path.to_str().expect("UTF-8 temp path"))
}

/// A dragent.yaml written key by key: dotted `http_proxy.*` keys go under `http_proxy:`,
/// values are YAML scalar text as given (use [`q`] for strings).
#[derive(Debug, Clone, Default)]
pub struct Yaml {
    top: Vec<(String, String)>,
    proxy: Vec<(String, String)>,
}

impl Yaml {
    pub fn new() -> Yaml {
        Yaml::default()
    }

    /// A collector on localhost at `port`.
    pub fn collector(port: u16) -> Yaml {
        Yaml::new()
            .set("collector", "localhost")
            .set("collector_port", port)
    }

    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> Yaml {
        let value = value.to_string();
        let (section, key) = match key.strip_prefix("http_proxy.") {
            Some(sub) => (&mut self.proxy, sub),
            None => (&mut self.top, key),
        };
        match section.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => section.push((key.to_owned(), value)),
        }
        self
    }

    /// `ssl: true` with `ca_certificate` set to the env's trusted CA.
    pub fn tls_collector(self, env: &Env) -> Yaml {
        self.set("ssl", "true").set("ca_certificate", qp(&env.ca()))
    }

    /// `ssl: false`.
    pub fn plain_collector(self) -> Yaml {
        self.set("ssl", "false")
    }

    /// A plain proxy on localhost at `port`.
    pub fn proxy(self, port: u16) -> Yaml {
        self.set("http_proxy.proxy_host", "localhost")
            .set("http_proxy.proxy_port", port)
    }

    /// A TLS proxy on localhost at `port`, trusted through `http_proxy.ca_certificate`.
    pub fn tls_proxy(self, port: u16, env: &Env) -> Yaml {
        self.proxy(port)
            .set("http_proxy.ssl", "true")
            .set("http_proxy.ca_certificate", qp(&env.ca()))
    }

    /// Basic credentials.
    pub fn auth(self, user: &str, password: &str) -> Yaml {
        self.set("http_proxy.proxy_user", q(user))
            .set("http_proxy.proxy_password", q(password))
    }

    pub fn text(&self) -> String {
        let mut out = String::from("# dragent.yaml written by the integration tests\n");
        out.push_str("customerid: 00000000-0000-0000-0000-000000000000\n");
        for (k, v) in &self.top {
            writeln!(out, "{k}: {v}").unwrap();
        }
        if !self.proxy.is_empty() {
            out.push_str("http_proxy:\n");
            for (k, v) in &self.proxy {
                writeln!(out, "    {k}: {v}").unwrap();
            }
        }
        out
    }

    /// Parses the text; a rejected config fails the test. Setting a key again replaces it.
    pub fn build(&self) -> TunnelConfig {
        let text = self.text();
        TunnelConfig::from_yaml(&text)
            .unwrap_or_else(|e| panic!("config rejected: {e:?}\n--- yaml ---\n{text}"))
    }
}

/// Opens with the generous [`OPEN_WAIT`]; failures carry the config for context.
pub fn open(cfg: &TunnelConfig) -> Result<Connection, Error> {
    Connection::open(cfg, OPEN_WAIT)
}

/// Opens and expects success.
pub fn open_ok(cfg: &TunnelConfig) -> Connection {
    open(cfg).unwrap_or_else(|e| panic!("open failed: {e:?}\nconfig: {cfg:?}"))
}

/// Opens and expects a failure with exactly `status`; returns the error.
pub fn open_err(cfg: &TunnelConfig, status: Status) -> Error {
    match open(cfg) {
        Ok(conn) => panic!(
            "open succeeded ({}), expected {}",
            conn.route(),
            status.name()
        ),
        Err(e) => {
            assert_eq!(e.status(), status, "expected {}, got {e:?}", status.name());
            e
        }
    }
}

/// Sends all of `data` (one call) and expects it all accepted.
pub fn send_all(conn: &Connection, data: &[u8]) {
    let (sent, result) = conn.send(data, IO_WAIT);
    assert_eq!(result, Ok(Transfer::Complete), "send");
    assert_eq!(sent, data.len(), "bytes accepted");
}

/// Receives exactly `n` bytes (several recv calls if needed).
pub fn recv_exact(conn: &Connection, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let (k, result) = conn.recv(&mut out[got..], IO_WAIT);
        assert_eq!(
            result,
            Ok(Transfer::Complete),
            "recv after {got} of {n} bytes"
        );
        assert!(k > 0, "Complete with 0 bytes");
        got += k;
    }
    out
}

/// Sends `data` and expects it back.
pub fn echo(conn: &Connection, data: &[u8]) {
    send_all(conn, data);
    let back = recv_exact(conn, data.len());
    assert!(back == data, "echo differs");
}

/// The address of a TCP port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    dtun_testenv::ports::free_port()
}

/// A deterministic pseudo-random byte stream (xorshift64*): the same seed gives the same
/// bytes, whatever the chunking.
pub struct Pattern {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern {
            state: seed | 1,
            word: [0; 8],
            used: 8,
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

/// One log record.
pub type Record = (LogLevel, String);

/// Serializes the tests that install the process-global logger.
static LOGGER_LOCK: Mutex<()> = Mutex::new(());

/// Captures every log record at TRACE while alive; the logger is removed on drop. Holds a
/// process-wide lock, so captures never overlap (records of other tests running meanwhile
/// may still be captured).
pub struct LogCapture {
    records: Arc<Mutex<Vec<Record>>>,
    _guard: MutexGuard<'static, ()>,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let guard = LOGGER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let sink = Arc::clone(&records);
        set_logger(
            Some(Box::new(move |level, message: &str| {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((level, message.to_owned()));
            })),
            LogLevel::DTUN_LOG_TRACE,
        );
        LogCapture {
            records,
            _guard: guard,
        }
    }

    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every record, one per line, for failure messages.
    pub fn dump(&self) -> String {
        self.records()
            .iter()
            .map(|(level, msg)| format!("[{}] {msg}\n", level.name()))
            .collect()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        set_logger(None, LogLevel::DTUN_LOG_TRACE);
    }
}

/// The secrets of a Basic-auth config: the password, and the Base64 token (with and without
/// the `Basic ` scheme, which contains the token anyway).
pub fn secrets_of(user: &str, password: &str) -> Vec<String> {
    vec![password.to_owned(), basic_token(user, password)]
}

/// The first piece of a secret found in `text`: the whole secret, or any run of 8 of its
/// characters (a truncated or partly escaped secret is still a leak).
pub fn leak_in<'a>(text: &str, secrets: &'a [String]) -> Option<&'a str> {
    const WINDOW: usize = 8;
    for secret in secrets {
        if text.contains(secret.as_str()) {
            return Some(secret);
        }
        let chars: Vec<(usize, char)> = secret.char_indices().collect();
        if chars.len() > WINDOW {
            for w in 0..=chars.len() - WINDOW {
                let start = chars[w].0;
                let end = chars.get(w + WINDOW).map_or(secret.len(), |c| c.0);
                if text.contains(&secret[start..end]) {
                    return Some(&secret[start..end]);
                }
            }
        }
    }
    None
}

/// Fails when any text holds a secret (or a piece of one).
pub fn assert_no_leak(what: &str, text: &str, secrets: &[String]) {
    if let Some(piece) = leak_in(text, secrets) {
        panic!("{what} leaks {piece:?}: {text}");
    }
}

/// The error's message, Display and Debug, checked for secrets.
pub fn assert_error_clean(e: &Error, secrets: &[String]) {
    assert_no_leak("error message", e.message(), secrets);
    assert_no_leak("error Display", &e.to_string(), secrets);
    assert_no_leak("error Debug", &format!("{e:?}"), secrets);
}

/// A one-shot fake proxy on 127.0.0.1: reads one request head, answers what `reply` makes of
/// it, and closes. For replies no real proxy module produces (a proxy echoing our header).
pub struct ScriptedProxy {
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<Option<String>>>,
}

impl ScriptedProxy {
    pub fn start(reply: impl FnOnce(&str) -> Vec<u8> + Send + 'static) -> ScriptedProxy {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().ok()?;
            stream
                .set_read_timeout(Some(Duration::from_secs(15)))
                .ok()?;
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).ok()?;
                if n == 0 {
                    return None;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let _ = stream.write_all(&reply(&head));
            let _ = stream.shutdown(std::net::Shutdown::Write);
            // Read until the client closes, so our close is a FIN, not a reset.
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            Some(head)
        });
        ScriptedProxy {
            addr,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits for the exchange to end and returns the request head it received. Call it once
    /// the client is done (its connection closed); `None` if no client sent a request.
    pub fn finish(mut self) -> Option<String> {
        // Wakes the thread if no client ever came; a client that came is accepted first.
        let _ = std::net::TcpStream::connect(self.addr);
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for ScriptedProxy {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Wake a thread still waiting in accept, then reap it.
            let _ = std::net::TcpStream::connect(self.addr);
            let _ = thread.join();
        }
    }
}
