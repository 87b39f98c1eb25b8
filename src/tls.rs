//! rustls client configurations, one per side (proxy, collector), built once per config and
//! fully independent: trust roots, verification and SNI of one side never leak into the other.
//!
//! Trust is the side's CA file when set, else the system store. The system store is read at
//! the first handshake that needs it and kept for the life of the process only once a read
//! found certificates: a failed read (nothing found, or unreadable) is not remembered, so the
//! next open reads again ([`system_trust`]).
//! Verification off is an explicit verifier that accepts any certificate but still checks
//! the handshake signatures, so the session keys are at least bound to the presented key.

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use once_cell::sync::Lazy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::{CaFile, Host};
use crate::error::{CertDetail, CertProblem, Error, ErrorKind, Result, Stage};

/// What one TLS hop negotiated, and the certificate it was shown.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite, as IANA names it (`TLS13_AES_256_GCM_SHA384`).
    pub cipher_suite: String,
    /// The peer's certificate.
    pub cert: PresentedCert,
    /// Whether TLS session resumption was used (a reconnect without a full handshake).
    pub resumed: bool,
}

/// The end-entity certificate a TLS peer presented.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresentedCert {
    /// Its subject (`CN=collector.example`).
    pub subject: String,
    /// Its issuer (`CN=Example CA, O=Example`): a TLS-inspecting proxy's CA, when one
    /// re-signed it.
    pub issuer: String,
    /// Its DNS and IP names.
    pub names: Vec<String>,
    /// Its expiry, `YYYY-MM-DD HH:MM:SS UTC`.
    pub not_after: String,
}

/// Where one handshake's verifier notes the end-entity certificate it was shown. rustls
/// drops the certificate when it rejects it, and a verifier is shared by every open of a
/// config, so the note goes to the slot of the handshake being polled (see [`capturing`]).
#[derive(Debug, Default)]
pub struct PresentedSlot(Mutex<Option<CertificateDer<'static>>>);

impl PresentedSlot {
    /// The certificate noted, if any.
    pub fn take(&self) -> Option<CertificateDer<'static>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

thread_local! {
    /// The slot of the handshake this thread is polling now, or NULL.
    static CAPTURING: Cell<*const PresentedSlot> = const { Cell::new(std::ptr::null()) };
}

/// Runs `poll` (one poll of a handshake) with `slot` as this thread's capture: the verifier
/// runs synchronously inside it, on this thread. Restores the previous capture on return.
pub fn capturing<R>(slot: &PresentedSlot, poll: impl FnOnce() -> R) -> R {
    struct Restore(*const PresentedSlot);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAPTURING.set(self.0);
        }
    }
    let _restore = Restore(CAPTURING.replace(slot));
    poll()
}

/// Notes the certificate a peer presents into the capture of the handshake being polled;
/// outside [`capturing`], nothing.
fn note_presented(cert: &CertificateDer<'_>) {
    // SAFETY: CAPTURING is non-NULL only inside `capturing`, whose `slot` outlives the call.
    if let Some(slot) = unsafe { CAPTURING.get().as_ref() } {
        *slot.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(cert.clone().into_owned());
    }
}

/// The verifier over the system's trust store, once a read of the store found certificates.
static SYSTEM_VERIFIER: Mutex<Option<Arc<WebPkiServerVerifier>>> = Mutex::new(None);

/// Why the system store gave no trust anchor: where it was looked for, and what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyStore {
    /// The places tried, in words (`SSL_CERT_FILE=...`, the distribution's files and folders).
    pub tried: String,
    /// What went wrong reading them, if anything (unreadable files, unparsable certificates).
    pub errors: Vec<String>,
}

/// The verifier over the system store: the cached one, or one built from a fresh read of the
/// store, cached only when that read found at least one certificate.
fn system_verifier() -> std::result::Result<Arc<WebPkiServerVerifier>, EmptyStore> {
    cached_or_load(&SYSTEM_VERIFIER, || {
        load_system_store().and_then(|roots| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| EmptyStore {
                    tried: places_tried(),
                    errors: vec![e.to_string()],
                })
        })
    })
}

/// The cached value, else `load()`'s, kept only on success. One load at a time: opens that
/// start together while the store is unread wait for the first read instead of repeating it.
fn cached_or_load<T: Clone, E>(
    cache: &Mutex<Option<T>>,
    load: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(value) = cached.as_ref() {
        return Ok(value.clone());
    }
    let value = load()?;
    *cached = Some(value.clone());
    Ok(value)
}

/// Reads the system store as `rustls-native-certs` finds it; an error when it holds no
/// usable certificate.
fn load_system_store() -> std::result::Result<RootCertStore, EmptyStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if added > 0 {
        crate::dtun_log!(
            DTUN_LOG_DEBUG,
            "system trust store: {added} CA certificates ({ignored} unparsable, {} read errors)",
            found.errors.len()
        );
        return Ok(roots);
    }
    let mut errors: Vec<String> = found.errors.iter().take(3).map(|e| e.to_string()).collect();
    if found.errors.len() > 3 {
        errors.push(format!("{} more errors", found.errors.len() - 3));
    }
    if ignored > 0 {
        errors.push(format!("{ignored} certificates found could not be parsed"));
    }
    Err(EmptyStore {
        tried: places_tried(),
        errors,
    })
}

/// The distribution files `rustls-native-certs` (through `openssl-probe`) reads the first
/// existing one of, on Linux, when neither `SSL_CERT_FILE` nor `SSL_CERT_DIR` is set.
#[cfg(target_os = "linux")]
const DISTRIBUTION_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
    "/opt/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/certs/cacert.pem",
];

/// The distribution folders it reads every existing one of, on Linux.
#[cfg(target_os = "linux")]
const DISTRIBUTION_DIRS: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/pki/tls/certs",
    "/etc/security/certificates",
];

/// Where the system store was looked for, in words, following `rustls-native-certs`:
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set (and nothing else), else the
/// distribution's usual files and folders.
pub fn places_tried() -> String {
    let file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
        .map(|dirs| {
            std::env::split_paths(&dirs)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if file.is_some() || !dirs.is_empty() {
        let file = match &file {
            Some(path) => format!("SSL_CERT_FILE={}", shown(path)),
            None => "SSL_CERT_FILE (not set)".to_owned(),
        };
        let dirs = if dirs.is_empty() {
            "SSL_CERT_DIR (not set)".to_owned()
        } else {
            let list: Vec<String> = dirs.iter().map(|d| shown(d)).collect();
            format!("SSL_CERT_DIR={}", list.join(":"))
        };
        return format!(
            "{file} and {dirs}; the distribution's places are not searched when either is set"
        );
    }
    format!(
        "SSL_CERT_FILE and SSL_CERT_DIR (neither set), then {}",
        distribution_places()
    )
}

#[cfg(target_os = "linux")]
fn distribution_places() -> String {
    let file = DISTRIBUTION_FILES
        .iter()
        .map(Path::new)
        .find(|path| path.exists());
    let dirs = DISTRIBUTION_DIRS
        .iter()
        .map(Path::new)
        .filter(|p| p.exists());
    let found: Vec<String> = file.into_iter().chain(dirs).map(shown).collect();
    if found.is_empty() {
        format!(
            "the distribution's usual places, none of which exists ({}, and the folders {})",
            DISTRIBUTION_FILES.join(", "),
            DISTRIBUTION_DIRS.join(", ")
        )
    } else {
        format!("the distribution's places found: {}", found.join(", "))
    }
}

#[cfg(not(target_os = "linux"))]
fn distribution_places() -> String {
    "the operating system's trust store".to_owned()
}

/// A path as shown in a message, with `(missing)` when nothing is there.
fn shown(path: &Path) -> String {
    if path.exists() {
        path.display().to_string()
    } else {
        format!("{} (missing)", path.display())
    }
}

/// Makes sure the system store can be used for a side's handshake: loads it when it is not
/// loaded yet. Its error, when the store holds no certificate, says which places were tried;
/// the next call tries again.
pub fn system_trust(stage: Stage, peer: &str) -> Result<()> {
    let Err(empty) = system_verifier() else {
        return Ok(());
    };
    let (side, ca_key) = if stage == Stage::ProxyTls {
        ("proxy", "http_proxy.ca_certificate")
    } else {
        ("collector", "ca_certificate")
    };
    let errors = if empty.errors.is_empty() {
        String::new()
    } else {
        format!(" ({})", empty.errors.join("; "))
    };
    Err(Error::new(
        stage,
        ErrorKind::Certificate(CertProblem::NoTrustAnchors),
        format!(
            "TLS to {side} {peer}: no certificate can be verified: the system trust store is empty{errors}; tried {}; {ca_key} is not set",
            empty.tried
        ),
    )
    .with_cert_detail(CertDetail {
        trust_store_tried: Some(empty.tried),
        ..CertDetail::default()
    }))
}

/// What a verifying side trusts.
#[derive(Debug)]
enum Trust {
    /// The side's CA file.
    Roots(Arc<WebPkiServerVerifier>),
    /// The system store, read at the first handshake (see [`system_trust`], which the tunnel
    /// calls first and which makes the errors), not when the configuration is loaded.
    SystemStore,
}

/// The certificate verifier of a side that verifies: the usual WebPKI checks against the
/// side's trust, after noting the presented certificate for the open's report (rustls drops
/// a rejected certificate; a TLS-inspecting proxy's re-signed one must still be shown).
#[derive(Debug)]
struct Verifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        note_presented(end_entity);
        let verifier = match &self.trust {
            Trust::Roots(verifier) => Arc::clone(verifier),
            Trust::SystemStore => system_verifier().map_err(|empty| {
                rustls::Error::General(format!(
                    "the system trust store is empty; tried {}",
                    empty.tried
                ))
            })?,
        };
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

static PROVIDER: Lazy<Arc<CryptoProvider>> = Lazy::new(|| {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = preferred_order(provider.cipher_suites, aes_in_hardware());
    Arc::new(provider)
});

/// The provider's cipher suites, TLS 1.3 ones first as before, each version's reordered by
/// cost: with AES in hardware AES-128-GCM, then AES-256-GCM, then ChaCha20-Poly1305 (rustls
/// puts AES-256 first; AES-128 runs 10 rounds instead of 14, and its TLS 1.3 suite hashes
/// the handshake with SHA-256 instead of SHA-384); without it ChaCha20-Poly1305 first (AES
/// in software is several times slower than ChaCha20). The same suites are offered either way:
/// a peer that honours its own preference still gets its choice.
fn preferred_order(
    mut suites: Vec<rustls::SupportedCipherSuite>,
    aes_hardware: bool,
) -> Vec<rustls::SupportedCipherSuite> {
    use rustls::CipherSuite as C;
    let rank = |suite: &rustls::SupportedCipherSuite| {
        let version = match suite {
            rustls::SupportedCipherSuite::Tls13(_) => 0,
            _ => 1,
        };
        let bulk = match suite.suite() {
            C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            C::TLS13_AES_256_GCM_SHA384
            | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
            _ if aes_hardware => 2,
            _ => -1,
        };
        (version, bulk)
    };
    // Stable: suites of equal rank (ECDSA before RSA) keep rustls's order.
    suites.sort_by_key(rank);
    suites
}

/// Whether this CPU has the AES and carry-less multiplication instructions that make
/// AES-GCM fast in ring.
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::clone(&PROVIDER)
}

/// The system verifier's lock, held from just before a fork until just after it.
struct HeldForFork(
    std::cell::UnsafeCell<
        Option<std::sync::MutexGuard<'static, Option<Arc<WebPkiServerVerifier>>>>,
    >,
);
// SAFETY: only the thread holding SYSTEM_VERIFIER (the forking thread, between the prepare and
// the parent/child handlers) touches the cell.
unsafe impl Sync for HeldForFork {}
static HELD_FOR_FORK: HeldForFork = HeldForFork(std::cell::UnsafeCell::new(None));

/// fork() prepare handler: waits for a read of the system store in progress (5-10 ms, under
/// the verifier's lock) and for the crypto provider's creation, so a child never inherits
/// either held by a thread that does not exist there.
pub(crate) fn before_fork() {
    Lazy::force(&PROVIDER);
    let guard = SYSTEM_VERIFIER
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // SAFETY: see HeldForFork.
    unsafe { *HELD_FOR_FORK.0.get() = Some(guard) };
}

/// fork() parent and child handler: releases what [`before_fork`] took.
pub(crate) fn after_fork() {
    // SAFETY: see HeldForFork; this thread took the lock in before_fork.
    drop(unsafe { (*HELD_FOR_FORK.0.get()).take() });
}

/// Whether a side with these settings trusts the system store (and so must call
/// [`system_trust`] before its handshake).
pub fn uses_system_store(ca: Option<&CaFile>, verify: bool) -> bool {
    verify && ca.is_none()
}

/// Builds the client config of one side: trust from `ca` (else the system store, read at the
/// first handshake), and certificate verification on or off.
pub fn client_config(ca: Option<&CaFile>, verify: bool) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup failed: {e}")))?;
    let trust = match (verify, ca) {
        (true, Some(file)) => Some(Trust::Roots(
            WebPkiServerVerifier::builder_with_provider(file.roots(), provider())
                .build()
                .map_err(|e| Error::config(format!("CA file {}: {e}", file.path().display())))?,
        )),
        (true, None) => Some(Trust::SystemStore),
        (false, _) => None,
    };
    let config = match trust {
        Some(trust) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                trust,
                provider: provider(),
            }))
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name to send as SNI and check against the certificate: DNS names as themselves, IP
/// literals as IP addresses (rustls sends no SNI for those and checks the IP SAN).
pub fn server_name(host: &Host) -> Result<ServerName<'static>> {
    match host {
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Name(name) => ServerName::try_from(name.clone())
            .map_err(|_| Error::config(format!("{name:?} is not a valid TLS server name"))),
    }
}

/// What a finished handshake negotiated, and the peer certificate as `cert` shows it
/// (read for reports; the certificate was already verified, or verification is off).
pub fn session_info(
    conn: &rustls::ClientConnection,
    cert: impl FnOnce(&CertificateDer<'_>) -> PresentedCert,
) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or_default()
        .to_owned();
    let mut info = TlsInfo {
        version,
        cipher_suite,
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        ..Default::default()
    };
    if let Some(leaf) = conn.peer_certificates().and_then(|chain| chain.first()) {
        info.cert = cert(leaf);
    }
    info
}

/// What a certificate says of itself: subject, issuer, DNS and IP names, expiry (empty
/// fields for a certificate that does not parse).
pub fn presented_cert(der: &CertificateDer<'_>) -> PresentedCert {
    let mut presented = PresentedCert::default();
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return presented;
    };
    presented.subject = cert.subject().to_string();
    presented.issuer = cert.issuer().to_string();
    presented.not_after = u64::try_from(cert.validity().not_after.timestamp())
        .map(utc_date_time)
        .unwrap_or_default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    presented.names.push((*dns).to_owned())
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        presented
                            .names
                            .push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        presented
                            .names
                            .push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    presented
}

/// Turns a failed handshake into an error of the right kind: certificate rejections (and
/// which problem, and the subject and issuer of the certificate presented) apart from every
/// other TLS failure.
pub fn handshake_error(
    stage: Stage,
    peer: &str,
    err: &io::Error,
    presented: Option<&PresentedCert>,
) -> Error {
    let side = if stage == Stage::ProxyTls {
        "proxy"
    } else {
        "collector"
    };
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            let problem = cert_problem(cert);
            let what = match problem {
                CertProblem::Untrusted => "untrusted issuer",
                CertProblem::Expired => "expired or not yet valid",
                CertProblem::WrongName => "wrong name",
                CertProblem::Other | CertProblem::NoTrustAnchors => "invalid",
            };
            let shown = match presented {
                Some(p) if !p.subject.is_empty() || !p.issuer.is_empty() => format!(
                    "; presented certificate: subject \"{}\", issuer \"{}\"",
                    p.subject, p.issuer
                ),
                _ => String::new(),
            };
            Error::new(
                stage,
                ErrorKind::Certificate(problem),
                format!("TLS to {side} {peer}: certificate rejected ({what}): {cert}{shown}"),
            )
            .with_cert_detail(cert_detail(cert))
        }
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            Error::new(
                stage,
                ErrorKind::NotTls,
                format!(
                    "TLS to {side} {peer} failed: the peer did not answer with TLS ({}); is it a plain-text port?",
                    tls.map(|e| e.to_string()).unwrap_or_default()
                ),
            )
        }
        Some(other) => Error::new(
            stage,
            ErrorKind::Tls,
            format!("TLS to {side} {peer} failed: {other}"),
        ),
        None if err.kind() == io::ErrorKind::UnexpectedEof => Error::new(
            stage,
            ErrorKind::Tls,
            format!("TLS to {side} {peer} failed: the connection closed during the handshake"),
        ),
        None => Error::new(
            stage,
            ErrorKind::Tls,
            format!("TLS to {side} {peer} failed: {err}"),
        ),
    }
}

/// What rustls tells of a rejected certificate: its validity limit, or its names.
fn cert_detail(e: &CertificateError) -> CertDetail {
    match e {
        CertificateError::ExpiredContext { not_after, .. } => CertDetail {
            expired_on: Some(utc_date_time(not_after.as_secs())),
            ..CertDetail::default()
        },
        CertificateError::NotValidYetContext { not_before, .. } => CertDetail {
            valid_from: Some(utc_date_time(not_before.as_secs())),
            ..CertDetail::default()
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => CertDetail {
            expected_name: Some(expected.to_str().into_owned()),
            presented_names: presented.iter().map(|n| bare_name(n)).collect(),
            ..CertDetail::default()
        },
        _ => CertDetail::default(),
    }
}

/// rustls lists presented names in its debug notation (`DnsName("host")`, `IpAddress(..)`):
/// keep the name alone.
fn bare_name(presented: &str) -> String {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_owned()
}

/// `YYYY-MM-DD HH:MM:SS UTC` from seconds since 1970 (civil-from-days, proleptic Gregorian).
pub fn utc_date_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn cert_problem(e: &CertificateError) -> CertProblem {
    match e {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => CertProblem::Untrusted,
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => CertProblem::Expired,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            CertProblem::WrongName
        }
        _ => CertProblem::Other,
    }
}

/// The verifier behind `ssl_verify_certificate: false`: any certificate is accepted (the
/// user's explicit choice, logged at WARN for each connection by the tunnel).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        note_presented(end_entity);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::utc_date_time;

    #[test]
    fn cipher_suites_cheapest_first_and_every_one_still_offered() {
        use rustls::CipherSuite as C;
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let names = |aes| -> Vec<C> {
            super::preferred_order(all.clone(), aes)
                .iter()
                .map(|s| s.suite())
                .collect()
        };
        let with_aes = names(true);
        assert_eq!(
            with_aes[..3],
            [
                C::TLS13_AES_128_GCM_SHA256,
                C::TLS13_AES_256_GCM_SHA384,
                C::TLS13_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(with_aes[3], C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
        let without = names(false);
        assert_eq!(without[0], C::TLS13_CHACHA20_POLY1305_SHA256);
        assert_eq!(without[3], C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);
        for order in [with_aes, without] {
            assert_eq!(order.len(), all.len());
            assert!(all.iter().all(|s| order.contains(&s.suite())));
        }
    }

    #[test]
    fn only_a_successful_load_is_cached() {
        let cache = std::sync::Mutex::new(None);
        let mut loads = 0;
        let mut load = |result: Result<u32, &'static str>| {
            loads += 1;
            move || result
        };
        assert_eq!(
            super::cached_or_load(&cache, load(Err("empty"))),
            Err("empty")
        );
        // A failure is not remembered: the next call loads again.
        assert_eq!(
            super::cached_or_load(&cache, load(Err("still empty"))),
            Err("still empty")
        );
        assert_eq!(super::cached_or_load(&cache, load(Ok(7))), Ok(7));
        assert_eq!(loads, 3);
        // A success is: later calls do not load.
        let again = super::cached_or_load(&cache, || -> Result<u32, &str> {
            panic!("loaded again after a success")
        });
        assert_eq!(again, Ok(7));
    }

    #[test]
    fn presented_names_lose_their_notation() {
        assert_eq!(
            super::bare_name("DnsName(\"other.example\")"),
            "other.example"
        );
        assert_eq!(super::bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(super::bare_name("plain.example"), "plain.example");
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_date_time(1_577_836_800), "2020-01-01 00:00:00 UTC");
        assert_eq!(
            utc_date_time(951_782_400 + 3_661),
            "2000-02-29 01:01:01 UTC"
        );
        assert_eq!(utc_date_time(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
}
