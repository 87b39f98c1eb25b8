//! The report of an open attempt: route, what each hop negotiated, the proxy's answer, the
//! collector's certificate, the addresses, the time of each stage and, after a failure,
//! which stage failed, why, and a hint of what to change in dragent.yaml.
//!
//! A report is a list of named values (stable keys, documented in the C header) plus a text
//! rendering of one line per stage. It never holds the password or the Authorization value:
//! it is built only from the plan's public parts, redacted proxy text and error messages.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{CertProblem, Error, ErrorKind, Stage, Status};
use crate::plan::Plan;
use crate::tls::{PresentedCert, TlsInfo};
use crate::tunnel::Progress;

/// The report of one open attempt. Cheap to clone (shared); after a successful open its
/// values and text are put together when first read: most reports are never read.
#[derive(Debug, Clone, Default)]
pub struct Report {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The route in words, known without assembling the rest.
    route: String,
    /// What a successful open's values are made of, until they are.
    pending: Option<Pending>,
    built: OnceLock<Built>,
}

/// The values, and the lines of the text, one per stage.
#[derive(Debug, Default)]
struct Built {
    entries: Vec<(String, String)>,
    stages: Vec<String>,
}

/// A successful open, as its report needs it: the plan's public parts, and the progress.
#[derive(Debug)]
struct Pending {
    facts: Facts,
    progress: Progress,
    total: Duration,
}

/// The parts of a plan a report shows (no secret among them).
#[derive(Debug)]
struct Facts {
    collector: String,
    collector_tls: bool,
    proxy: Option<ProxyFacts>,
    bypassed: Option<String>,
}

#[derive(Debug)]
struct ProxyFacts {
    authority: String,
    tls: bool,
    auth: &'static str,
    source: String,
}

impl Facts {
    fn of(plan: &Plan) -> Facts {
        Facts {
            collector: plan.collector_authority(),
            collector_tls: plan.collector_tls.is_some(),
            proxy: plan.proxy.as_ref().map(|proxy| ProxyFacts {
                authority: proxy.host.authority(proxy.port),
                tls: proxy.tls.is_some(),
                auth: match (proxy.authenticates, proxy.auth) {
                    (true, Some(auth)) => auth.name(),
                    _ => "none",
                },
                source: proxy.source.to_string(),
            }),
            bypassed: plan.bypassed.clone(),
        }
    }
}

impl Report {
    /// Builds the report of an attempt that ended with `outcome` after `total`.
    pub fn build(
        plan: &Plan,
        progress: &Progress,
        outcome: Result<(), &Error>,
        total: Duration,
    ) -> Report {
        Report::build_owned(plan, progress.clone(), outcome, total)
    }

    /// As [`Report::build`], keeping `progress`: after a success the values are assembled
    /// from it when first read; after a failure (whose hint needs the plan), at once.
    pub fn build_owned(
        plan: &Plan,
        progress: Progress,
        outcome: Result<(), &Error>,
        total: Duration,
    ) -> Report {
        let route = plan.route();
        let facts = Facts::of(plan);
        let inner = match outcome {
            Ok(()) => Inner {
                route,
                pending: Some(Pending {
                    facts,
                    progress,
                    total,
                }),
                built: OnceLock::new(),
            },
            Err(e) => {
                let hint = hint(plan, &progress, e);
                let built = assemble(&route, &facts, &progress, Err(e), hint, total);
                Inner {
                    route,
                    pending: None,
                    built: OnceLock::from(built),
                }
            }
        };
        Report {
            inner: Arc::new(inner),
        }
    }

    /// The route in words (the value of `route`), without assembling the rest.
    pub fn route(&self) -> &str {
        &self.inner.route
    }

    fn built(&self) -> &Built {
        let inner = &*self.inner;
        inner.built.get_or_init(|| match &inner.pending {
            Some(p) => assemble(
                &inner.route,
                &p.facts,
                &p.progress,
                Ok(()),
                String::new(),
                p.total,
            ),
            None => Built::default(),
        })
    }

    /// The value of a key, if the attempt produced one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.built()
            .entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every key and value, in a stable order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.built().entries
    }

    /// The report in words: the route, one line per stage with its time, the result, and
    /// the hint after a failure.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "route: {}", self.get("route").unwrap_or(""));
        for line in &self.built().stages {
            let _ = writeln!(out, "  {line}");
        }
        let outcome = self.get("outcome").unwrap_or("");
        match self.get("message").filter(|m| !m.is_empty()) {
            Some(message) => {
                let _ = writeln!(out, "result: {outcome}: {message}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "result: {outcome} in {} ms",
                    self.get("time.total_ms").unwrap_or("?")
                );
            }
        }
        if let Some(hint) = self.get("hint").filter(|h| !h.is_empty()) {
            let _ = writeln!(out, "hint: {hint}");
        }
        out
    }
}

impl Built {
    fn put(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.push((key.into(), value.into()));
    }

    fn put_tls(&mut self, side: &str, tls: &TlsInfo) {
        let key = |name: &str| format!("{side}.{name}");
        self.put(key("tls_version"), &tls.version);
        self.put(key("cipher_suite"), &tls.cipher_suite);
        self.put(key("tls_resumed"), yes_no(tls.resumed));
        self.put_cert(side, &tls.cert);
    }

    fn put_cert(&mut self, side: &str, cert: &PresentedCert) {
        let key = |name: &str| format!("{side}.cert.{name}");
        self.put(key("subject"), &cert.subject);
        self.put(key("issuer"), &cert.issuer);
        self.put(key("names"), cert.names.join(", "));
        self.put(key("not_after"), &cert.not_after);
    }
}

/// The values and stage lines of an attempt that ended with `outcome`.
fn assemble(
    route: &str,
    facts: &Facts,
    progress: &Progress,
    outcome: Result<(), &Error>,
    hint: String,
    total: Duration,
) -> Built {
    let mut r = Built::default();
    let status = outcome.err().map_or(Status::DTUN_OK, Error::status);
    r.put("outcome", status.name());
    r.put("message", outcome.err().map(Error::message).unwrap_or(""));
    r.put(
        "failed_stage",
        outcome.err().map(|_| progress.stage.name()).unwrap_or(""),
    );
    r.put("hint", hint);
    r.put("route", route);
    r.put("collector", &facts.collector);
    r.put("collector.tls", yes_no(facts.collector_tls));
    if let Some(proxy) = &facts.proxy {
        r.put("proxy", &proxy.authority);
        r.put("proxy.tls", yes_no(proxy.tls));
        r.put("proxy.auth", proxy.auth);
        if let Some(scheme) = progress.auth_scheme {
            r.put("proxy.auth_scheme", scheme);
        }
        if progress.auth_rounds > 0 {
            r.put("proxy.auth_rounds", progress.auth_rounds.to_string());
        }
        r.put("proxy.source", &proxy.source);
    }
    if let Some(why) = &facts.bypassed {
        r.put("proxy.bypassed", why);
    }
    if let Some((code, reason)) = &progress.proxy_status {
        r.put("proxy.status_code", code.to_string());
        r.put("proxy.status_reason", reason);
    }
    if let Some(ErrorKind::ProxyAuth { schemes }) = outcome.err().map(Error::kind) {
        r.put("proxy.auth_schemes", schemes.join(", "));
    }
    if let Some(tls) = &progress.proxy_tls {
        r.put_tls("proxy", tls);
    }
    if let Some(tls) = &progress.collector_tls {
        r.put_tls("collector", tls);
    }
    if let (Err(_), Some(cert)) = (outcome, &progress.rejected_cert) {
        // The certificate of a failed handshake: a rejected one, a TLS-inspecting
        // proxy's re-signed one for instance.
        r.put_cert(failed_side(progress.stage), cert);
    }
    if let Some(local) = progress.local {
        r.put("address.local", local.to_string());
    }
    if let Some(peer) = progress.peer {
        r.put("address.peer", peer.to_string());
    }
    for (stage, took) in &progress.timings {
        r.put(stage_time_key(*stage), millis(*took));
    }
    r.put("time.total_ms", millis(total));
    r.stages = stage_lines(progress, outcome);
    r
}

/// The side of a failed TLS stage, as report keys name it.
fn failed_side(stage: Stage) -> &'static str {
    if stage == Stage::ProxyTls {
        "proxy"
    } else {
        "collector"
    }
}

/// A certificate in words: `CN=x [names] issued by CN=y, valid until DATE`.
fn cert_words(cert: &PresentedCert) -> String {
    format!(
        "certificate {} [{}] issued by {}, valid until {}",
        cert.subject,
        cert.names.join(", "),
        cert.issuer,
        cert.not_after
    )
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn stage_time_key(stage: Stage) -> &'static str {
    match stage {
        Stage::Resolve => "time.resolve_ms",
        Stage::Connect => "time.tcp_ms",
        Stage::ProxyTls => "time.proxy_tls_ms",
        Stage::ProxyConnect => "time.proxy_connect_ms",
        Stage::CollectorTls => "time.collector_tls_ms",
        _ => "time.other_ms",
    }
}

fn stage_lines(progress: &Progress, outcome: Result<(), &Error>) -> Vec<String> {
    let count = progress.timings.len();
    progress
        .timings
        .iter()
        .enumerate()
        .map(|(i, (stage, took))| {
            let failed = i + 1 == count && outcome.is_err();
            let rejected = progress
                .rejected_cert
                .as_ref()
                .filter(|_| matches!(stage, Stage::ProxyTls | Stage::CollectorTls));
            let what = if failed {
                match rejected {
                    Some(cert) => format!("FAILED  {}", cert_words(cert)),
                    None => "FAILED".to_owned(),
                }
            } else {
                stage_detail(*stage, progress)
            };
            format!("{:<17}{:>10} ms  {what}", stage.name(), millis(*took))
        })
        .collect()
}

fn stage_detail(stage: Stage, p: &Progress) -> String {
    let tls = |t: &Option<TlsInfo>| match t {
        Some(t) => format!(
            "ok  {} {}{}, {}",
            t.version,
            t.cipher_suite,
            if t.resumed { " (resumed)" } else { "" },
            cert_words(&t.cert)
        ),
        None => "ok".into(),
    };
    match stage {
        Stage::Connect => match (p.local, p.peer) {
            (Some(l), Some(r)) => format!("ok  {l} -> {r}"),
            _ => "ok".into(),
        },
        Stage::ProxyTls => tls(&p.proxy_tls),
        Stage::CollectorTls => tls(&p.collector_tls),
        Stage::ProxyConnect => match &p.proxy_status {
            Some((code, reason)) => format!("ok  {code} {reason}"),
            None => "ok".into(),
        },
        _ => "ok".into(),
    }
}

/// What to change, in dragent.yaml terms, for a failed open.
pub fn hint(plan: &Plan, progress: &Progress, e: &Error) -> String {
    let proxy = plan.proxy.as_ref();
    let proxy_at = proxy.map(|p| p.host.authority(p.port)).unwrap_or_default();
    let collector = plan.collector_authority();
    let side_is_proxy = e.stage() == Stage::ProxyTls;
    let (side, ca_key, verify_key, host_key) = if side_is_proxy {
        (
            format!("proxy at {proxy_at}"),
            "http_proxy.ca_certificate",
            "http_proxy.ssl_verify_certificate",
            "http_proxy.proxy_host",
        )
    } else {
        (
            format!("collector {collector}"),
            "ca_certificate",
            "ssl_verify_certificate",
            "collector",
        )
    };
    match e.kind() {
        ErrorKind::InvalidArgument | ErrorKind::Internal => String::new(),
        ErrorKind::Config => "fix the key named in the message".into(),
        ErrorKind::Resolve => format!(
            "the name of the {} does not resolve on this host: check {} and the host's DNS",
            if proxy.is_some() { "proxy" } else { "collector" },
            if proxy.is_some() { "http_proxy.proxy_host" } else { "collector" }
        ),
        ErrorKind::Connect => match proxy {
            Some(_) => format!("nothing accepts connections at {proxy_at}: check http_proxy.proxy_host and http_proxy.proxy_port, and that the proxy runs and a firewall lets this host reach it"),
            None => format!("nothing accepts connections at {collector}: check collector and collector_port, or configure the http_proxy this network requires"),
        },
        ErrorKind::Deadline => match progress.stage {
            Stage::Resolve => "name resolution did not answer in time: check the host's DNS servers".into(),
            Stage::Connect => format!("TCP to {} got no answer in time: a firewall may drop the packets; check the host and port", if proxy.is_some() { &proxy_at } else { &collector }),
            Stage::ProxyTls => format!("the proxy at {proxy_at} did not answer the TLS handshake: if it does not speak TLS, set http_proxy.ssl: false"),
            Stage::ProxyConnect => format!("the proxy at {proxy_at} did not answer CONNECT in time: check that it is an HTTP proxy (if it expects TLS, set http_proxy.ssl: true), or raise the open timeout"),
            Stage::CollectorTls => format!("the collector {collector} did not complete the TLS handshake in time: check that collector_port speaks TLS (else ssl: false) and that the proxy relays it"),
            _ => "raise the open timeout".into(),
        },
        ErrorKind::NotTls if side_is_proxy => format!("the proxy at {proxy_at} does not speak TLS: set http_proxy.ssl: false"),
        ErrorKind::NotTls => format!("the collector {collector} does not speak TLS on that port: check collector_port, or set ssl: false if the collector really is plain text"),
        ErrorKind::Tls if side_is_proxy => format!("the TLS handshake with the proxy at {proxy_at} failed: check that http_proxy.proxy_port is its TLS port (http_proxy.ssl: true) and that it accepts TLS 1.2 or 1.3"),
        ErrorKind::Tls => format!("the TLS handshake with the collector {collector} failed: check collector_port and ssl"),
        ErrorKind::Certificate(problem) => {
            let detail = e.cert_detail().cloned().unwrap_or_default();
            // A proxy that answered 2xx and then showed a certificate for the collector that
            // this host rejects may be inspecting TLS: re-signing with its own CA.
            let inspected = match (&progress.rejected_cert, &progress.proxy_status, proxy) {
                (Some(cert), Some((code, _)), Some(_))
                    if !side_is_proxy && (200..300).contains(code) && *problem != CertProblem::NoTrustAnchors =>
                {
                    Some((cert, code))
                }
                _ => None,
            };
            let presented = |cert: &PresentedCert| format!("issuer \"{}\", subject \"{}\"", cert.issuer, cert.subject);
            if let (CertProblem::Untrusted, Some((cert, code))) = (problem, inspected) {
                return format!(
                    "the {side} presents a certificate from an issuer this host does not trust ({}), after the proxy {proxy_at} answered {code} to CONNECT: the proxy may be inspecting TLS (squid ssl-bump, mitmproxy and corporate appliances re-sign certificates with their own CA): set {ca_key} to the PEM file of the proxy's CA, or ask for the collector to be exempted from inspection; if the collector's certificate really comes from that issuer, set {ca_key} to its CA (or, knowingly, {verify_key}: false)",
                    presented(cert)
                );
            }
            let hint = match problem {
                CertProblem::Untrusted => format!("the {side} presents a certificate from an issuer this host does not trust: set {ca_key} to the PEM file of that CA (or, knowingly, {verify_key}: false)"),
                CertProblem::Expired => match (detail.expired_on, detail.valid_from) {
                    (Some(date), _) => format!("the {side} presents a certificate that expired on {date}: renew it on the server"),
                    (None, Some(date)) => format!("the {side} presents a certificate valid only from {date}: check this host's clock, or the server's certificate"),
                    (None, None) => format!("the {side} presents a certificate outside its validity period: renew it, or check this host's clock"),
                },
                CertProblem::WrongName => format!(
                    "the {side} presents a certificate for {}, not for {}: set {host_key} to a name the certificate holds, or reissue the certificate",
                    if detail.presented_names.is_empty() { "other names".to_owned() } else { detail.presented_names.join(", ") },
                    detail.expected_name.unwrap_or_else(|| "the configured name".into())
                ),
                CertProblem::Other => format!("the {side}'s certificate was rejected: see the message; {ca_key} sets the CA to trust"),
                CertProblem::NoTrustAnchors => format!(
                    "the system trust store is empty (tried {}): install the distribution's CA certificates (Debian: ca-certificates), point SSL_CERT_FILE or SSL_CERT_DIR at them, or set {ca_key} to the PEM file of the CA that signed the certificate of the {side}; the next open reads the system store again",
                    detail.trust_store_tried.as_deref().unwrap_or("its usual places")
                ),
            };
            match inspected {
                Some((cert, code)) => format!(
                    "{hint}; the proxy {proxy_at} answered {code} to CONNECT: if it inspects TLS, this certificate ({}) is its own: trust its CA in {ca_key}, or ask for the collector to be exempted from inspection",
                    presented(cert)
                ),
                None => hint,
            }
        }
        ErrorKind::ProxyAuth { .. } if progress.auth_hint.is_some() => {
            progress.auth_hint.clone().unwrap_or_default()
        }
        ErrorKind::ProxyAuth { schemes } => {
            let offered = if schemes.is_empty() { "no scheme".to_owned() } else { schemes.join(", ") };
            let basic = schemes.iter().any(|s| s.eq_ignore_ascii_case("basic"));
            match (proxy.map(|p| p.authenticates).unwrap_or(false), basic) {
                (false, _) => format!("the proxy requires credentials (it asks for {offered}): set http_proxy.proxy_user and http_proxy.proxy_password"),
                (true, true) => format!("the proxy rejected the credentials (it asks for {offered}): check http_proxy.proxy_user and http_proxy.proxy_password"),
                (true, false) => format!("the proxy asks for {offered}, and this library speaks only Basic: ask for a Basic-auth account or an exception for this host"),
            }
        }
        ErrorKind::ProxyRefused { code, reason } => match code {
            403 => format!("the proxy's ACL refused CONNECT to {collector}; many proxies allow CONNECT only to port 443: ask for port {} to be allowed for this host", plan.collector_port),
            // Squid and Apache Traffic Server answer 500 when they cannot resolve or reach
            // the target; a 500 is generic, so its reason phrase goes with the hint.
            500 => {
                let answered = if reason.is_empty() { code.to_string() } else { format!("{code} {reason}") };
                format!("the proxy could not reach the collector {collector} (it answered {answered}): check collector and collector_port, and the proxy's own DNS and network")
            }
            502..=504 => format!("the proxy could not reach the collector {collector}: check collector and collector_port, and the proxy's own DNS and network"),
            _ => format!("the proxy refused CONNECT to {collector} with status {code}: see its administrator"),
        },
        ErrorKind::ProxySpeaksTls => format!("the proxy at {proxy_at} speaks TLS on that port: set http_proxy.ssl: true"),
        ErrorKind::ProxyProtocol if !progress.proxy_answered && proxy.is_some_and(|p| p.tls.is_none()) => format!(
            "the proxy at {proxy_at} closed the connection without answering CONNECT: if that port expects TLS (as squid's https_port does), set http_proxy.ssl: true; otherwise check http_proxy.proxy_host and http_proxy.proxy_port"
        ),
        ErrorKind::ProxyProtocol if progress.proxy_status.as_ref().is_some_and(|(code, _)| *code == 101) => format!(
            "the service at {proxy_at} answered CONNECT with 101 Switching Protocols, which opens no tunnel: check that http_proxy.proxy_host and http_proxy.proxy_port name an HTTP proxy that supports CONNECT"
        ),
        ErrorKind::ProxyProtocol => format!("the service at {proxy_at} did not answer as an HTTP proxy: check http_proxy.proxy_host and http_proxy.proxy_port"),
        ErrorKind::Io => "the connection broke: reconnect".into(),
    }
}
