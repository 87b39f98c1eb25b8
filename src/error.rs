//! One error type for the whole library: the stage that failed, the kind of failure, and a
//! message in words. The C status of every failure is derived here, in [`Error::status`].
//!
//! Messages name what failed and where (key, file, host:port, stage, the proxy's status line);
//! they never carry the proxy password or the `Proxy-Authorization` value.

use std::fmt;

/// Status codes of the C API (`dtun_status`). The numbers are a fixed contract: never reuse
/// or renumber one; add new ones with new numbers.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    DTUN_OK = 0,
    /// `dtun_send`/`dtun_recv`: the timeout passed; the connection is still usable.
    DTUN_TIMED_OUT = 1,
    /// `dtun_recv`: the collector ended the stream cleanly; `*received == 0`.
    DTUN_CLOSED = 2,
    /// `dtun_send`/`dtun_recv`: `dtun_conn_shutdown` was called on the connection (now or
    /// while the call waited); not an error. `dtun_close` it.
    DTUN_SHUT_DOWN = 3,
    /// A NULL pointer, an unknown config key, a bad timeout, or misuse of a handle.
    DTUN_ERR_INVALID_ARGUMENT = 100,
    /// The configuration is unreadable, invalid or contradictory; the message names the key
    /// (and line and column for a YAML syntax error).
    DTUN_ERR_CONFIG = 101,
    /// Name resolution failed (proxy or collector).
    DTUN_ERR_RESOLVE = 110,
    /// The TCP connection was refused or the host is unreachable.
    DTUN_ERR_CONNECT = 111,
    /// `dtun_open`'s deadline passed before the tunnel was ready.
    DTUN_ERR_TIMEOUT = 112,
    /// TLS with the proxy failed for a reason other than its certificate.
    DTUN_ERR_PROXY_TLS = 120,
    /// The proxy's certificate was rejected (untrusted, expired, wrong name).
    DTUN_ERR_PROXY_CERT = 121,
    /// The proxy answered 407 Proxy Authentication Required (or 401, which tinyproxy sends
    /// for wrong credentials).
    DTUN_ERR_PROXY_AUTH = 122,
    /// The proxy answered another non-2xx status; the message carries the code and reason.
    DTUN_ERR_PROXY_REFUSED = 123,
    /// The proxy's reply was malformed, oversized, or cut short.
    DTUN_ERR_PROXY_PROTOCOL = 124,
    /// TLS with the collector failed for a reason other than its certificate.
    DTUN_ERR_COLLECTOR_TLS = 130,
    /// The collector's certificate was rejected (untrusted, expired, wrong name).
    DTUN_ERR_COLLECTOR_CERT = 131,
    /// An established connection broke (reset, TLS error mid-stream, send after the peer closed).
    DTUN_ERR_IO = 140,
    /// A bug was caught at the boundary (a Rust panic); the process keeps running.
    DTUN_ERR_INTERNAL = 199,
}

impl Status {
    /// The constant's name as a C string, as in the header: `"DTUN_ERR_PROXY_AUTH"`.
    pub fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            Status::DTUN_OK => c"DTUN_OK",
            Status::DTUN_TIMED_OUT => c"DTUN_TIMED_OUT",
            Status::DTUN_CLOSED => c"DTUN_CLOSED",
            Status::DTUN_SHUT_DOWN => c"DTUN_SHUT_DOWN",
            Status::DTUN_ERR_INVALID_ARGUMENT => c"DTUN_ERR_INVALID_ARGUMENT",
            Status::DTUN_ERR_CONFIG => c"DTUN_ERR_CONFIG",
            Status::DTUN_ERR_RESOLVE => c"DTUN_ERR_RESOLVE",
            Status::DTUN_ERR_CONNECT => c"DTUN_ERR_CONNECT",
            Status::DTUN_ERR_TIMEOUT => c"DTUN_ERR_TIMEOUT",
            Status::DTUN_ERR_PROXY_TLS => c"DTUN_ERR_PROXY_TLS",
            Status::DTUN_ERR_PROXY_CERT => c"DTUN_ERR_PROXY_CERT",
            Status::DTUN_ERR_PROXY_AUTH => c"DTUN_ERR_PROXY_AUTH",
            Status::DTUN_ERR_PROXY_REFUSED => c"DTUN_ERR_PROXY_REFUSED",
            Status::DTUN_ERR_PROXY_PROTOCOL => c"DTUN_ERR_PROXY_PROTOCOL",
            Status::DTUN_ERR_COLLECTOR_TLS => c"DTUN_ERR_COLLECTOR_TLS",
            Status::DTUN_ERR_COLLECTOR_CERT => c"DTUN_ERR_COLLECTOR_CERT",
            Status::DTUN_ERR_IO => c"DTUN_ERR_IO",
            Status::DTUN_ERR_INTERNAL => c"DTUN_ERR_INTERNAL",
        }
    }

    /// The constant's name, as in the header: `"DTUN_ERR_PROXY_AUTH"`.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("DTUN_UNKNOWN")
    }

    /// Every status, in numeric order (for tests and tables).
    pub const ALL: [Status; 18] = [
        Status::DTUN_OK,
        Status::DTUN_TIMED_OUT,
        Status::DTUN_CLOSED,
        Status::DTUN_SHUT_DOWN,
        Status::DTUN_ERR_INVALID_ARGUMENT,
        Status::DTUN_ERR_CONFIG,
        Status::DTUN_ERR_RESOLVE,
        Status::DTUN_ERR_CONNECT,
        Status::DTUN_ERR_TIMEOUT,
        Status::DTUN_ERR_PROXY_TLS,
        Status::DTUN_ERR_PROXY_CERT,
        Status::DTUN_ERR_PROXY_AUTH,
        Status::DTUN_ERR_PROXY_REFUSED,
        Status::DTUN_ERR_PROXY_PROTOCOL,
        Status::DTUN_ERR_COLLECTOR_TLS,
        Status::DTUN_ERR_COLLECTOR_CERT,
        Status::DTUN_ERR_IO,
        Status::DTUN_ERR_INTERNAL,
    ];
}

/// Where in the life of a tunnel a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Checking the caller's arguments.
    Argument,
    /// Reading and validating the configuration.
    Config,
    /// Resolving the first hop's name.
    Resolve,
    /// Opening TCP to the first hop.
    Connect,
    /// The TLS handshake with the proxy.
    ProxyTls,
    /// Sending CONNECT and reading the proxy's reply.
    ProxyConnect,
    /// The TLS handshake with the collector.
    CollectorTls,
    /// Sending or receiving on an open connection.
    Stream,
    /// Inside the library itself (a caught panic, the runtime).
    Internal,
}

impl Stage {
    /// A short name for messages and reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Argument => "argument",
            Stage::Config => "config",
            Stage::Resolve => "resolve",
            Stage::Connect => "tcp connect",
            Stage::ProxyTls => "tls to proxy",
            Stage::ProxyConnect => "proxy connect",
            Stage::CollectorTls => "tls to collector",
            Stage::Stream => "stream",
            Stage::Internal => "internal",
        }
    }
}

/// What went wrong; together with the stage it decides the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad argument or misuse of a handle.
    InvalidArgument,
    /// A bad configuration key, value or file.
    Config,
    /// The name did not resolve.
    Resolve,
    /// TCP could not connect.
    Connect,
    /// The open deadline passed.
    Deadline,
    /// A TLS handshake failed for a reason other than the certificate.
    Tls,
    /// The peer answered the TLS handshake with something that is not TLS (a plain port).
    NotTls,
    /// The peer's certificate was rejected.
    Certificate(CertProblem),
    /// The proxy answered 407; the schemes it offered (`Basic`, `NTLM`...).
    ProxyAuth {
        /// The schemes of the proxy's `Proxy-Authenticate` headers.
        schemes: Vec<String>,
    },
    /// The proxy answered another non-2xx status.
    ProxyRefused {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The proxy's reply was malformed, oversized or cut short.
    ProxyProtocol,
    /// The proxy answered CONNECT with TLS bytes: its port expects TLS.
    ProxySpeaksTls,
    /// An established stream broke.
    Io,
    /// A bug caught at the boundary.
    Internal,
}

/// Why a certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    /// The chain does not lead to a trusted root.
    Untrusted,
    /// The certificate has expired (or is not yet valid).
    Expired,
    /// The certificate is not valid for the name we connected to.
    WrongName,
    /// Another certificate problem (revoked, bad signature, wrong usage...).
    Other,
    /// Nothing to verify it against: the side trusts the system store (no CA file is set)
    /// and the system store holds no certificate (none found, or unreadable).
    NoTrustAnchors,
}

/// What a rejected certificate said about itself, for hints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertDetail {
    /// When it expired, as a UTC date and time.
    pub expired_on: Option<String>,
    /// When it starts being valid, for a certificate not valid yet.
    pub valid_from: Option<String>,
    /// The name we checked it against.
    pub expected_name: Option<String>,
    /// The names it holds.
    pub presented_names: Vec<String>,
    /// For [`CertProblem::NoTrustAnchors`]: the places the system store was looked for.
    pub trust_store_tried: Option<String>,
}

/// A failure, with its stage, kind and a message in words.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    stage: Stage,
    kind: ErrorKind,
    message: String,
    cert: Option<Box<CertDetail>>,
}

impl Error {
    /// A new error. `message` must already be free of secrets.
    pub fn new(stage: Stage, kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            stage,
            kind,
            message: message.into(),
            cert: None,
        }
    }

    /// The same error with its message rewritten (to take a secret out of it).
    pub(crate) fn map_message(mut self, f: impl FnOnce(String) -> String) -> Error {
        self.message = f(std::mem::take(&mut self.message));
        self
    }

    /// Attaches what a rejected certificate said about itself.
    pub fn with_cert_detail(mut self, detail: CertDetail) -> Error {
        self.cert = Some(Box::new(detail));
        self
    }

    /// What a rejected certificate said about itself, when that is the failure.
    pub fn cert_detail(&self) -> Option<&CertDetail> {
        self.cert.as_deref()
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Stage::Config, ErrorKind::Config, message)
    }

    /// A bad argument.
    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(Stage::Argument, ErrorKind::InvalidArgument, message)
    }

    /// A bug caught inside the library.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Stage::Internal, ErrorKind::Internal, message)
    }

    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The message in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The C status of this failure: the one place where errors map to `dtun_status`.
    pub fn status(&self) -> Status {
        let on_proxy = self.stage == Stage::ProxyTls;
        match &self.kind {
            ErrorKind::InvalidArgument => Status::DTUN_ERR_INVALID_ARGUMENT,
            ErrorKind::Config => Status::DTUN_ERR_CONFIG,
            ErrorKind::Resolve => Status::DTUN_ERR_RESOLVE,
            ErrorKind::Connect => Status::DTUN_ERR_CONNECT,
            ErrorKind::Deadline => Status::DTUN_ERR_TIMEOUT,
            ErrorKind::Tls | ErrorKind::NotTls if on_proxy => Status::DTUN_ERR_PROXY_TLS,
            ErrorKind::Tls | ErrorKind::NotTls => Status::DTUN_ERR_COLLECTOR_TLS,
            ErrorKind::Certificate(_) if on_proxy => Status::DTUN_ERR_PROXY_CERT,
            ErrorKind::Certificate(_) => Status::DTUN_ERR_COLLECTOR_CERT,
            ErrorKind::ProxyAuth { .. } => Status::DTUN_ERR_PROXY_AUTH,
            ErrorKind::ProxyRefused { .. } => Status::DTUN_ERR_PROXY_REFUSED,
            ErrorKind::ProxyProtocol | ErrorKind::ProxySpeaksTls => Status::DTUN_ERR_PROXY_PROTOCOL,
            ErrorKind::Io => Status::DTUN_ERR_IO,
            ErrorKind::Internal => Status::DTUN_ERR_INTERNAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Error {{ status: {}, stage: {}, message: {:?} }}",
            self.status().name(),
            self.stage.name(),
            self.message
        )
    }
}

impl std::error::Error for Error {}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_numbers_are_the_contract() {
        let expected = [
            0, 1, 2, 3, 100, 101, 110, 111, 112, 120, 121, 122, 123, 124, 130, 131, 140, 199,
        ];
        let actual: Vec<i32> = Status::ALL.iter().map(|s| *s as i32).collect();
        assert_eq!(actual, expected);
        for s in Status::ALL {
            assert!(s.name().starts_with("DTUN_"));
        }
    }

    #[test]
    fn tls_and_certificate_failures_map_by_side() {
        let cert = ErrorKind::Certificate(CertProblem::Expired);
        assert_eq!(
            Error::new(Stage::ProxyTls, cert.clone(), "x").status(),
            Status::DTUN_ERR_PROXY_CERT
        );
        assert_eq!(
            Error::new(Stage::CollectorTls, cert, "x").status(),
            Status::DTUN_ERR_COLLECTOR_CERT
        );
        assert_eq!(
            Error::new(Stage::ProxyTls, ErrorKind::Tls, "x").status(),
            Status::DTUN_ERR_PROXY_TLS
        );
        assert_eq!(
            Error::new(Stage::CollectorTls, ErrorKind::Tls, "x").status(),
            Status::DTUN_ERR_COLLECTOR_TLS
        );
    }
}
