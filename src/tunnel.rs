//! Establishing a tunnel: resolve → TCP → [TLS to proxy] → CONNECT → [TLS to collector], or
//! straight to the collector when no proxy is configured. The caller puts one deadline
//! around the whole of it; [`Progress`] records which stage was running and how long each
//! took, so a timeout says what it was waiting for.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::Host;
use crate::config::Secret;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::net::Socket;
use crate::plan::{Plan, TlsHop};
use crate::proxy::auth::{
    parse_challenges, Credentials, Decision, Exchange, NegotiateSetup, Scheme,
};
use crate::proxy::body::BodyDrain;
use crate::proxy::{self, BodyLength, Outcome, ReplyParser};
use crate::tls;

/// A byte stream of any layering (TCP, TLS, TLS in TLS).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A boxed stream: the layers differ per route.
pub type BoxStream = Box<dyn Stream>;

/// What an open did so far: the stage running now, the time each finished stage took, and
/// what each hop negotiated. The raw material of a [`crate::report::Report`].
#[derive(Debug, Clone)]
pub struct Progress {
    /// The stage running (or that failed).
    pub stage: Stage,
    /// Finished stages and their durations, in order.
    pub timings: Vec<(Stage, Duration)>,
    /// The address TCP connected to.
    pub peer: Option<SocketAddr>,
    /// Our end of that TCP connection.
    pub local: Option<SocketAddr>,
    /// The proxy's status code and reason, once it answered (reason redacted and shortened).
    pub proxy_status: Option<(u16, String)>,
    /// Whether the proxy sent any byte in reply to CONNECT.
    pub proxy_answered: bool,
    /// TLS with the proxy, once negotiated.
    pub proxy_tls: Option<TlsInfo>,
    /// TLS with the collector, once negotiated.
    pub collector_tls: Option<TlsInfo>,
    /// The proxy auth scheme of the last credentials sent (`Basic`, `Digest`), if any.
    pub auth_scheme: Option<&'static str>,
    /// How many CONNECTs were sent (1 without a 407).
    pub auth_rounds: u32,
    /// After a failed proxy authentication, the hint of what to change.
    pub auth_hint: Option<String>,
    /// The certificate the peer of a failed handshake presented, when it got that far (the
    /// failed stage says which side): what a TLS-inspecting proxy re-signed, for instance.
    pub rejected_cert: Option<PresentedCert>,
    stage_started: Instant,
}

pub use crate::tls::{PresentedCert, TlsInfo};

impl Progress {
    /// A new record, starting at the resolve stage.
    pub fn new() -> Progress {
        Progress {
            stage: Stage::Resolve,
            timings: Vec::new(),
            peer: None,
            local: None,
            proxy_status: None,
            proxy_answered: false,
            proxy_tls: None,
            collector_tls: None,
            auth_scheme: None,
            auth_rounds: 0,
            auth_hint: None,
            rejected_cert: None,
            stage_started: Instant::now(),
        }
    }

    fn enter(&mut self, next: Stage) {
        let now = Instant::now();
        self.timings.push((self.stage, now - self.stage_started));
        self.stage = next;
        self.stage_started = now;
    }

    /// Closes the running stage's timing (at success, failure or deadline).
    pub fn finish(&mut self) {
        if self.timings.last().map(|(stage, _)| *stage) != Some(self.stage) {
            self.timings
                .push((self.stage, Instant::now() - self.stage_started));
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Opens the tunnel the plan describes. Has no deadline of its own: the caller bounds it.
pub async fn establish(plan: &Arc<Plan>, progress: &mut Progress) -> Result<BoxStream> {
    let (first_host, first_port) = match &plan.proxy {
        Some(p) => (&p.host, p.port),
        None => (&plan.collector, plan.collector_port),
    };
    let what = if plan.proxy.is_some() {
        "proxy"
    } else {
        "collector"
    };
    let addrs = resolve(what, first_host, first_port).await?;
    progress.enter(Stage::Connect);
    let tcp = connect_any(what, first_host, first_port, &addrs, plan.tcp, progress).await?;
    let mut stream: BoxStream = Box::new(Socket::new(tcp));

    if let Some(proxy) = &plan.proxy {
        let peer = proxy.host.authority(proxy.port);
        if let Some(hop) = &proxy.tls {
            progress.enter(Stage::ProxyTls);
            let shown = Some(plan);
            stream =
                tls_handshake(stream, plan, shown, hop, Stage::ProxyTls, &peer, progress).await?;
        }
        progress.enter(Stage::ProxyConnect);
        stream = send_connect(stream, plan, &peer, &addrs, progress).await?;
    }

    if let Some(hop) = &plan.collector_tls {
        progress.enter(Stage::CollectorTls);
        let peer = plan.collector_authority();
        let shown = Some(plan);
        stream = tls_handshake(
            stream,
            plan,
            shown,
            hop,
            Stage::CollectorTls,
            &peer,
            progress,
        )
        .await?;
    }
    Ok(stream)
}

async fn resolve(what: &str, host: &Host, port: u16) -> Result<Vec<SocketAddr>> {
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => {
            let found = crate::resolve::lookup(name)
                .await
                .map_err(|e| {
                    Error::new(
                        Stage::Resolve,
                        ErrorKind::Resolve,
                        format!("cannot resolve {what} host {name}: {e}"),
                    )
                })?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect::<Vec<_>>();
            if found.is_empty() {
                return Err(Error::new(
                    Stage::Resolve,
                    ErrorKind::Resolve,
                    format!("cannot resolve {what} host {name}: no addresses"),
                ));
            }
            Ok(found)
        }
    }
}

/// Races the addresses (Happy Eyeballs, see [`crate::eyeballs`]) until one connects.
async fn connect_any(
    what: &str,
    host: &Host,
    port: u16,
    addrs: &[SocketAddr],
    tcp: crate::plan::TcpOptions,
    progress: &mut Progress,
) -> Result<TcpStream> {
    match crate::eyeballs::connect(addrs, tcp).await {
        Ok((tcp, addr)) => {
            progress.peer = Some(addr);
            progress.local = tcp.local_addr().ok();
            Ok(tcp)
        }
        Err(failures) => Err(Error::new(
            Stage::Connect,
            ErrorKind::Connect,
            format!(
                "TCP connection to {what} {} failed ({})",
                host.authority(port),
                failures
                    .iter()
                    .map(|(addr, e)| format!("{addr}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

/// `shown`: the plan as an `Arc`, when the certificate's texts may be kept for the next
/// open of the same plan (see [`shown_cert`]).
async fn tls_handshake(
    stream: BoxStream,
    plan: &Plan,
    shown: Option<&Arc<Plan>>,
    hop: &TlsHop,
    stage: Stage,
    peer: &str,
    progress: &mut Progress,
) -> Result<BoxStream> {
    let side = if stage == Stage::ProxyTls {
        "proxy"
    } else {
        "collector"
    };
    if !hop.verify {
        crate::dtun_log!(
            DTUN_LOG_WARN,
            "certificate verification is off for the {side} {peer}: the connection is encrypted but the {side} is not authenticated"
        );
    }
    if hop.system_store {
        tls::system_trust(stage, peer)?;
    }
    let connector = TlsConnector::from(hop.config.clone());
    let connecting = connector.connect(hop.name.clone(), stream);
    // The verifier notes the presented certificate into this handshake's slot (rustls drops
    // it when it rejects it); the slot is this thread's capture during each poll only.
    let slot = tls::PresentedSlot::default();
    let mut connecting = std::pin::pin!(connecting);
    let result =
        std::future::poll_fn(|cx| tls::capturing(&slot, || connecting.as_mut().poll(cx))).await;
    let presented = slot.take();
    match result {
        Ok(tls) => {
            let info = tls::session_info(tls.get_ref().1, |der| match shown {
                Some(plan) => shown_cert(plan, der),
                None => redacted(plan, tls::presented_cert(der)),
            });
            crate::dtun_log!(
                DTUN_LOG_DEBUG,
                "TLS to {side} {peer} established: {} {}{}",
                info.version,
                info.cipher_suite,
                if info.resumed { " (resumed)" } else { "" }
            );
            if stage == Stage::ProxyTls {
                progress.proxy_tls = Some(info);
            } else {
                progress.collector_tls = Some(info);
            }
            Ok(Box::new(tls))
        }
        Err(e) => {
            // What the peer put in its certificate is the peer's text: redacted like a
            // reason phrase, the rustls error (which may quote the names) included.
            let presented = presented.map(|der| redacted(plan, tls::presented_cert(&der)));
            let mut error = tls::handshake_error(stage, peer, &e, presented.as_ref())
                .map_message(|message| plan.redact_and_shorten(&message, 2000));
            if let Some(mut detail) = error.cert_detail().cloned() {
                // The names rustls quotes for a wrong-name rejection, which the hint shows.
                detail.presented_names = detail
                    .presented_names
                    .iter()
                    .take(20)
                    .map(|name| plan.redact_and_shorten(name, 100))
                    .collect();
                error = error.with_cert_detail(detail);
            }
            progress.rejected_cert = presented;
            Err(error)
        }
    }
}

/// The certificates of the latest handshakes, as [`redacted`] shows them for the plan that
/// opened them: a reconnect is shown the same certificate every time, and parsing and
/// redacting it again cost about as much as the rest of the report. Keyed by the plan's
/// allocation, held through a `Weak` (which keeps the plan's memory, not the plan, so no
/// later plan can take its address while an entry names it, and the plan's secrets go when
/// its config does) and by the certificate's bytes.
struct ShownCert {
    plan: Weak<Plan>,
    der: CertificateDer<'static>,
    shown: PresentedCert,
}

static SHOWN: Mutex<Vec<ShownCert>> = Mutex::new(Vec::new());

/// Entries kept in [`SHOWN`]: both hops of a couple of configs.
const SHOWN_MAX: usize = 4;

/// [`redacted`] of the parsed certificate, from [`SHOWN`] when this plan was shown these
/// bytes before. Never waits for the lock (nor, in a child forked while another thread held
/// it, hangs on it): when it is taken, the certificate is parsed and nothing kept.
fn shown_cert(plan: &Arc<Plan>, der: &CertificateDer<'_>) -> PresentedCert {
    let same = |entry: &ShownCert| {
        std::ptr::eq(entry.plan.as_ptr(), Arc::as_ptr(plan)) && entry.der.as_ref() == der.as_ref()
    };
    if let Ok(seen) = SHOWN.try_lock() {
        if let Some(entry) = seen.iter().find(|entry| same(entry)) {
            return entry.shown.clone();
        }
    }
    let shown = redacted(plan, tls::presented_cert(der));
    if let Ok(mut seen) = SHOWN.try_lock() {
        seen.retain(|entry| entry.plan.strong_count() > 0);
        if seen.len() >= SHOWN_MAX {
            seen.remove(0);
        }
        seen.push(ShownCert {
            plan: Arc::downgrade(plan),
            der: der.clone().into_owned(),
            shown: shown.clone(),
        });
    }
    shown
}

/// A presented certificate's texts, secrets replaced and each cut to a length fit for a
/// message (a peer could put anything in them).
fn redacted(plan: &Plan, cert: PresentedCert) -> PresentedCert {
    PresentedCert {
        subject: plan.redact_and_shorten(&cert.subject, 200),
        issuer: plan.redact_and_shorten(&cert.issuer, 200),
        names: cert
            .names
            .iter()
            .take(20)
            .map(|name| plan.redact_and_shorten(name, 100))
            .collect(),
        not_after: cert.not_after,
    }
}

/// Sends CONNECT and reads the reply, answering the proxy's 407 challenges as
/// `http_proxy.proxy_auth` says ([`crate::proxy::auth::Exchange`]): after a 407 the body is
/// read past and the next CONNECT goes on the same connection, or on a new one (TCP, and TLS
/// to the proxy) when the proxy closes it. On a 2xx returns the stream with any bytes that
/// came right behind the reply put back in front of it.
async fn send_connect(
    mut stream: BoxStream,
    plan: &Plan,
    peer: &str,
    addrs: &[SocketAddr],
    progress: &mut Progress,
) -> Result<BoxStream> {
    let proxy = plan
        .proxy
        .as_ref()
        .ok_or_else(|| Error::internal("no proxy in plan"))?;
    let target = plan.collector_authority();
    let credentials = (!proxy.user.is_empty()).then(|| Credentials {
        user: &proxy.user,
        password: &proxy.password,
    });
    let mut exchange =
        Exchange::new(proxy.auth, credentials, &proxy.authority).with_negotiate(NegotiateSetup {
            host: proxy.host.to_string(),
            keytab: proxy
                .keytab
                .clone()
                .map(|keytab| (proxy.user.clone(), keytab)),
        });
    // The first request was built with the plan: the exchange only notes what it holds.
    let _ = exchange.first();
    let mut request: Option<Secret> = None;
    // Whether the request goes on a connection the proxy kept after a 407.
    let mut reused = false;
    loop {
        let io_err = |e: io::Error| {
            Error::new(
                Stage::ProxyConnect,
                ErrorKind::ProxyProtocol,
                format!("proxy {peer}: connection failed during CONNECT to {target}: {e}"),
            )
        };
        if reused && !exchange.needs_same_connection() && peer_closed(&mut stream).await {
            // The proxy closed the connection it kept after its 407 before anything more
            // was written on it: the request goes on a new one (nothing reached the proxy).
            crate::dtun_log!(
                DTUN_LOG_DEBUG,
                "proxy {peer} closed the connection it kept after its 407: connecting again"
            );
            reused = false;
            stream = reconnect_proxy(plan, addrs, peer, progress).await?;
        }
        // The first request was built with the plan (Basic in it under proxy_auth: basic).
        let bytes = request.as_ref().unwrap_or(&proxy.request);
        let written = match stream.write_all(bytes.expose()).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            if !reused || exchange.needs_same_connection() {
                return Err(io_err(e));
            }
            // The proxy closed the connection it kept after its 407 without saying so.
            reused = false;
            stream = reconnect_proxy(plan, addrs, peer, progress).await?;
            continue;
        }
        progress.auth_rounds = exchange.rounds();
        progress.auth_scheme = exchange.scheme().map(Scheme::name);
        crate::dtun_log!(
            DTUN_LOG_DEBUG,
            "sent CONNECT {target} to proxy {peer}{}",
            match exchange.scheme() {
                Some(scheme) => format!(" with {scheme} credentials"),
                None => String::new(),
            }
        );
        let Some((head, rest)) = read_reply(&mut stream, plan, &exchange, peer, progress).await?
        else {
            // Closed before a byte of reply. Credentials written may have reached the proxy
            // (which counts failures): never sent twice. A request without them goes again
            // on a new connection when the kept one had gone away.
            let why = match exchange.unanswered() {
                None if reused => {
                    crate::dtun_log!(
                        DTUN_LOG_DEBUG,
                        "proxy {peer} closed the connection it kept after its 407: connecting again"
                    );
                    reused = false;
                    stream = reconnect_proxy(plan, addrs, peer, progress).await?;
                    continue;
                }
                Some(why) if reused => why,
                _ => crate::proxy::ParseError::CutShort(0).to_string(),
            };
            return Err(protocol_error(plan, &exchange, peer, &why));
        };
        let reason = plan.redact_with(exchange.sent_values(), &head.reason, 80);
        progress.proxy_status = Some((head.code, reason.clone()));
        let status_line = head.status_line_with(&reason);
        match head.outcome() {
            Outcome::Tunnel => {
                crate::dtun_log!(DTUN_LOG_DEBUG, "proxy {peer} answered {status_line}");
                match exchange.on_tunnel(&parse_challenges(&head.challenges)) {
                    Ok(Some(verified)) => crate::dtun_log!(
                        DTUN_LOG_DEBUG,
                        "proxy {peer}: Negotiate mutual authentication {}",
                        if verified {
                            "verified"
                        } else {
                            "not offered by the proxy"
                        }
                    ),
                    Ok(None) => {}
                    Err(failure) => {
                        progress.auth_hint = Some(failure.hint(""));
                        let why = plan.redact_with(
                            exchange.sent_values(),
                            &failure.describe(""),
                            4000,
                        );
                        return Err(Error::new(
                            Stage::ProxyConnect,
                            ErrorKind::ProxyAuth {
                                schemes: vec![Scheme::Negotiate.name().to_owned()],
                            },
                            format!("proxy {peer} answered {status_line} to CONNECT {target}, but {why}"),
                        ));
                    }
                }
                return if rest.is_empty() {
                    Ok(stream)
                } else {
                    Ok(Box::new(Prefixed::new(rest, stream)))
                };
            }
            Outcome::AuthRequired => {
                let schemes: Vec<String> = head
                    .auth_schemes
                    .iter()
                    .map(|scheme| plan.redact_with(exchange.sent_values(), scheme, 40))
                    .collect();
                let offered = if schemes.is_empty() {
                    "no scheme named".to_owned()
                } else {
                    schemes.join(", ")
                };
                let challenges = parse_challenges(&head.challenges);
                exchange.reply_closes(head.closes);
                let value = match exchange.on_challenge(&challenges) {
                    Decision::Retry(value) => value,
                    Decision::Fail(failure) => {
                        progress.auth_hint = Some(failure.hint(&offered));
                        // The failure may quote the proxy's challenge, which may echo
                        // what we sent.
                        let why =
                            plan.redact_with(exchange.sent_values(), &failure.describe(&offered), 4000);
                        return Err(Error::new(
                            Stage::ProxyConnect,
                            ErrorKind::ProxyAuth { schemes },
                            format!("proxy {peer} answered {status_line} to CONNECT {target}: {why}"),
                        ));
                    }
                };
                crate::dtun_log!(
                    DTUN_LOG_DEBUG,
                    "proxy {peer} answered {status_line} offering {offered}; answering with {}",
                    exchange.answering()
                );
                let kept = !head.closes && drain_body(&mut stream, head.body, &rest, peer).await?;
                if !kept {
                    if exchange.needs_same_connection() {
                        return Err(Error::new(
                            Stage::ProxyConnect,
                            ErrorKind::ProxyAuth { schemes },
                            format!(
                                "proxy {peer} closed the connection in the middle of {} authentication, which needs one connection for all its steps",
                                exchange.scheme().map_or("?", Scheme::name)
                            ),
                        ));
                    }
                    crate::dtun_log!(
                        DTUN_LOG_DEBUG,
                        "proxy {peer} closes the connection after its 407: connecting again"
                    );
                    stream = reconnect_proxy(plan, addrs, peer, progress).await?;
                }
                reused = kept;
                request = Some(proxy::connect_request_with(
                    &proxy.authority,
                    Some(&value),
                    proxy.user_agent.as_deref(),
                    &proxy.headers,
                ));
            }
            Outcome::SwitchedProtocols => return Err(Error::new(
                Stage::ProxyConnect,
                ErrorKind::ProxyProtocol,
                format!("proxy {peer} answered {status_line} to CONNECT {target}: a switch to another protocol, which CONNECT never asks for, is no tunnel"),
            )),
            Outcome::Refused => return Err(Error::new(
                Stage::ProxyConnect,
                ErrorKind::ProxyRefused {
                    code: head.code,
                    reason,
                },
                format!("proxy {peer} refused CONNECT {target}: {status_line}"),
            )),
        }
    }
}

/// Reads one final reply head to CONNECT; returns it with the bytes that followed it.
async fn read_reply(
    stream: &mut BoxStream,
    plan: &Plan,
    exchange: &Exchange<'_>,
    peer: &str,
    progress: &mut Progress,
) -> Result<Option<(crate::proxy::ReplyHead, Vec<u8>)>> {
    let target = plan.collector_authority();
    let io_err = |e: io::Error| {
        Error::new(
            Stage::ProxyConnect,
            ErrorKind::ProxyProtocol,
            format!("proxy {peer}: connection failed during CONNECT to {target}: {e}"),
        )
    };
    let mut parser = ReplyParser::new();
    let mut buf = vec![0u8; 4096];
    let mut first_bytes = None;
    let done = loop {
        let n = stream.read(&mut buf).await.map_err(io_err)?;
        if n == 0 {
            if first_bytes.is_none() {
                return Ok(None);
            }
            let why = with_interim(parser.eof().to_string(), parser.interim_replies());
            return Err(protocol_error(plan, exchange, peer, &why));
        }
        first_bytes.get_or_insert_with(|| buf[..n.min(2)].to_vec());
        progress.proxy_answered = true;
        match parser.feed(&buf[..n]) {
            Ok(Some(done)) => break done,
            Ok(None) => continue,
            Err(_) if first_bytes.as_deref().is_some_and(looks_like_tls_record) => {
                return Err(Error::new(
                    Stage::ProxyConnect,
                    ErrorKind::ProxySpeaksTls,
                    format!("proxy {peer} answered CONNECT with TLS: its port expects TLS (http_proxy.ssl: true)"),
                ))
            }
            Err(e) => {
                let why = with_interim(e.to_string(), parser.interim_replies());
                return Err(protocol_error(plan, exchange, peer, &why));
            }
        }
    };
    if parser.interim_replies() > 0 {
        crate::dtun_log!(
            DTUN_LOG_DEBUG,
            "proxy {peer} sent {} interim (1xx) replies before its final reply",
            parser.interim_replies()
        );
    }
    Ok(Some(done))
}

/// Reads past the body of a 407 (bytes already read first). `Ok(false)`: the proxy closed
/// the connection (the next CONNECT needs a new one).
async fn drain_body(
    stream: &mut BoxStream,
    length: BodyLength,
    already: &[u8],
    peer: &str,
) -> Result<bool> {
    let fail = |why: String| {
        Error::new(
            Stage::ProxyConnect,
            ErrorKind::ProxyProtocol,
            format!("proxy {peer}: {why} (reading past the body of its 407)"),
        )
    };
    let mut drain = BodyDrain::new(length);
    drain.feed(already).map_err(|e| fail(e.to_string()))?;
    let mut buf = vec![0u8; 8192];
    while !drain.is_done() {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return Ok(false),
            Ok(n) => {
                drain.feed(&buf[..n]).map_err(|e| fail(e.to_string()))?;
            }
        }
    }
    Ok(true)
}

/// Whether the proxy already ended a connection it kept after its 407: its close (or an
/// error, or bytes nobody asked for) is there to be read before we write on it. Does not
/// wait.
async fn peer_closed(stream: &mut BoxStream) -> bool {
    let mut byte = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut byte);
        Poll::Ready(Pin::new(&mut *stream).poll_read(cx, &mut buf).is_ready())
    })
    .await
}

/// A new connection to the proxy (TCP, and TLS when configured), for the next CONNECT of
/// an authentication after the proxy closed the last one. Timed as part of the CONNECT
/// stage.
async fn reconnect_proxy(
    plan: &Plan,
    addrs: &[SocketAddr],
    peer: &str,
    progress: &mut Progress,
) -> Result<BoxStream> {
    let proxy = plan
        .proxy
        .as_ref()
        .ok_or_else(|| Error::internal("no proxy in plan"))?;
    let tcp = connect_any("proxy", &proxy.host, proxy.port, addrs, plan.tcp, progress).await?;
    let mut stream: BoxStream = Box::new(Socket::new(tcp));
    if let Some(hop) = &proxy.tls {
        stream = tls_handshake(stream, plan, None, hop, Stage::ProxyTls, peer, progress).await?;
    }
    Ok(stream)
}

/// A TLS record header (alert or handshake, version 3.x): what a TLS port sends back to
/// plain text.
fn looks_like_tls_record(first: &[u8]) -> bool {
    matches!(first, [0x15 | 0x16, 0x03, ..] | [0x15 | 0x16])
}

/// A parse error's text, with the interim replies that came before it, if any.
fn with_interim(why: String, interim: usize) -> String {
    match interim {
        0 => why,
        1 => format!("{why} (after 1 interim 1xx reply)"),
        n => format!("{why} (after {n} interim 1xx replies)"),
    }
}

fn protocol_error(plan: &Plan, exchange: &Exchange<'_>, peer: &str, why: &str) -> Error {
    Error::new(
        Stage::ProxyConnect,
        ErrorKind::ProxyProtocol,
        format!(
            "proxy {peer}: {}",
            plan.redact_with(exchange.sent_values(), why, 200)
        ),
    )
}

/// A stream that first yields bytes already read from it (those the proxy sent right behind
/// its 2xx reply), then reads from the stream itself.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    offset: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Puts `prefix` in front of `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed {
            prefix,
            offset: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.offset < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.offset);
            buf.put_slice(&this.prefix[this.offset..this.offset + n]);
            this.offset += n;
            if this.offset == this.prefix.len() {
                this.prefix = Vec::new();
                this.offset = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TunnelConfig;

    fn plan_with_password(password: &str) -> Arc<Plan> {
        let yaml = format!(
            "collector: collector.example\nhttp_proxy:\n  proxy_host: proxy.example\n  proxy_port: 3128\n  proxy_user: agent\n  proxy_password: {password}\n"
        );
        TunnelConfig::from_yaml(&yaml).unwrap().plan()
    }

    #[test]
    fn a_certificate_shown_before_is_shown_as_its_own_plan_redacts_it() {
        let dir = std::env::temp_dir().join(format!("dtun-shown-{}", std::process::id()));
        let pki = dtun_testenv::pki::Pki::new(&dir).unwrap();
        let ca = pki.make_ca("shown", "Secretword7 CA").unwrap();
        let hides = plan_with_password("Secretword7");
        let shows = plan_with_password("Otherword9");
        for _ in 0..2 {
            // The same bytes, each plan's own redaction, from the cache or not.
            assert_eq!(
                shown_cert(&hides, &ca.cert_der).subject,
                "CN=<redacted> CA, O=dtun tests"
            );
            assert_eq!(
                shown_cert(&shows, &ca.cert_der).subject,
                "CN=Secretword7 CA, O=dtun tests"
            );
        }
        // A plan gone: its entry goes too, and a new plan never matches it.
        drop(hides);
        let again = plan_with_password("Secretword7");
        assert_eq!(
            shown_cert(&again, &ca.cert_der).subject,
            "CN=<redacted> CA, O=dtun tests"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
