//! The client side of HTTP Negotiate (RFC 4559: SPNEGO carrying Kerberos) through the
//! system GSSAPI (MIT krb5's `libgssapi_krb5`), compiled only with the `gssapi` feature.
//!
//! No network I/O of ours: tokens in, tokens out. (The GSSAPI library itself talks to the
//! KDC to get a service ticket during the first [`NegotiateClient::step`]; that is its own
//! blocking I/O, bounded by krb5.conf's timeouts, not ours.) base64 and the
//! `Proxy-Authorization: Negotiate ...` header are the caller's.
//!
//! # The exchange
//! 1. [`NegotiateClient::new`] names the service `HTTP@<proxy_host>`
//!    (`GSS_C_NT_HOSTBASED_SERVICE`, which krb5 maps to the principal `HTTP/<host>@REALM`) and
//!    picks the credentials: the process's credential cache (`KRB5CCNAME`, else the default
//!    cache), or, with [`Credentials::Keytab`], tickets obtained from that client keytab for the
//!    named principal (MIT's `gss_acquire_cred_from` with the `client_keytab` cred-store key;
//!    the tickets go to a fresh in-memory cache or the principal's cache in the collection,
//!    never over the default cache of another principal).
//! 2. [`NegotiateClient::step`]`(None)` gives the first token, for the first CONNECT.
//! 3. A 407 carrying `Negotiate <token>` is fed to `step(Some(token))`, which gives the next
//!    token or says [`Step::Done`]. A 407 with a bare `Negotiate` after our token means the
//!    proxy refused it: [`NegotiateClient::rejected`] gives the error with the hints.
//! 4. On the 2xx, [`NegotiateClient::finish`] takes the final token if the proxy sent one
//!    and checks it (mutual authentication: the proxy proves it holds the service key). A
//!    final token that does not verify is an error; no final token is accepted (many proxies
//!    never send one) and reported as [`MutualAuth::NotOffered`].
//!
//! # Secrets
//! Tokens hold a Kerberos authenticator (a service ticket and session-key material): they
//! are [`Token`]s, whose Debug output is redacted and whose bytes are zeroed when dropped.
//! No error message or Debug output carries a token. Error messages carry GSSAPI's own
//! status text (which names principals and credential caches, never keys) and a hint.

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr;

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::credential::Cred;
use libgssapi::error::{Error as GssError, MajorFlags};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE};

use crate::config::Secret;

/// Where the client's Kerberos credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The process's credential cache: `KRB5CCNAME`, else krb5's default cache (what `kinit`
    /// fills).
    Default,
    /// Tickets obtained from a client keytab for one principal (`http_proxy.proxy_keytab`
    /// with `proxy_user` as the principal, e.g. `agent@EXAMPLE.COM`). krb5 gets a fresh
    /// ticket from the keytab whenever the cached one is missing or expired.
    Keytab {
        /// The client principal, `name@REALM` (or `name`, in the default realm).
        principal: String,
        /// The keytab file holding that principal's keys.
        keytab: PathBuf,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Default => f.write_str("Default"),
            Credentials::Keytab { principal, keytab } => f
                .debug_struct("Keytab")
                .field("principal", principal)
                .field("keytab", keytab)
                .finish(),
        }
    }
}

/// A token for the proxy (`Proxy-Authorization: Negotiate <base64 of it>`). Redacted in
/// Debug output, zeroed when dropped.
pub struct Token(Secret);

impl Token {
    /// The token's bytes, for the one place that encodes them into the header.
    pub fn expose(&self) -> &[u8] {
        self.0.expose()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes redacted>)", self.0.expose().len())
    }
}

/// What [`NegotiateClient::step`] asks the caller to do.
#[derive(Debug)]
pub enum Step {
    /// Send this token in the next CONNECT.
    Send(Token),
    /// Our side of the context is complete: nothing more to send.
    Done,
}

/// Whether the proxy proved its identity (see [`NegotiateClient::finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutualAuth {
    /// The proxy's final token verified.
    Verified,
    /// The proxy sent no final token (accepted: many proxies never send one).
    NotOffered,
}

/// What went wrong, each with its own hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiateErrorKind {
    /// No Kerberos ticket in the credential cache (or no cache at all).
    NoTicket,
    /// The ticket in the cache has expired.
    TicketExpired,
    /// The clocks of this host, the KDC or the proxy differ by more than krb5 allows.
    ClockSkew,
    /// The KDC does not know the service principal `HTTP/<proxy host>`.
    UnknownService,
    /// No ticket could be had from the configured keytab for the configured principal.
    Keytab,
    /// The KDC of the realm cannot be found or reached, or there is no default realm.
    KdcUnreachable,
    /// The proxy's final token did not verify: it is not the service we asked for.
    MutualAuth,
    /// The proxy refused our token (a 407 with a bare `Negotiate`).
    Rejected,
    /// A token from the proxy that GSSAPI cannot use, or a step out of order.
    Protocol,
    /// A bad argument: a proxy host or principal GSSAPI cannot take.
    InvalidInput,
    /// Anything else GSSAPI reported.
    Other,
}

/// A Negotiate failure. Its message names the service, says what happened in GSSAPI's own
/// words and gives a hint; it never holds a token.
#[derive(Clone, PartialEq, Eq)]
pub struct NegotiateError {
    kind: NegotiateErrorKind,
    message: String,
}

impl NegotiateError {
    /// The kind of failure.
    pub fn kind(&self) -> NegotiateErrorKind {
        self.kind
    }

    /// The whole message (the same as Display).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for NegotiateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NegotiateError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for NegotiateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NegotiateError {}

/// The hint for each kind, for the service `HTTP/<host>`.
fn hint(kind: NegotiateErrorKind, host: &str, keytab: bool) -> String {
    match kind {
        NegotiateErrorKind::NoTicket | NegotiateErrorKind::TicketExpired if keytab => {
            format!(
                "check that http_proxy.proxy_keytab holds the keys of the principal in \
                 http_proxy.proxy_user (klist -k KEYTAB), and that the KDC knows HTTP/{host}"
            )
        }
        NegotiateErrorKind::NoTicket => "run kinit, or set KRB5CCNAME to the credential cache \
             that holds a ticket (klist shows it), or set http_proxy.proxy_keytab"
            .to_string(),
        NegotiateErrorKind::TicketExpired => "the Kerberos ticket expired: run kinit again \
             (or set http_proxy.proxy_keytab so that tickets are renewed from a keytab)"
            .to_string(),
        NegotiateErrorKind::ClockSkew => "the clocks of this host, the KDC and the proxy \
             differ by more than krb5 allows (5 minutes by default): synchronise them (NTP)"
            .to_string(),
        NegotiateErrorKind::UnknownService => format!(
            "the KDC has no service principal HTTP/{host}: use the proxy's name as its \
             keytab knows it in http_proxy.proxy_host (not an IP address or an alias), or ask \
             for HTTP/{host} to be created"
        ),
        NegotiateErrorKind::Keytab => format!(
            "check http_proxy.proxy_keytab (readable, holding the keys of the principal in \
             http_proxy.proxy_user: klist -k KEYTAB) and the principal's realm; the service is \
             HTTP/{host}"
        ),
        NegotiateErrorKind::KdcUnreachable => "check krb5.conf (KRB5_CONFIG): the default \
             realm and its kdc entries, and that the KDC is reachable from this host"
            .to_string(),
        NegotiateErrorKind::MutualAuth => format!(
            "the proxy's reply did not prove that it is HTTP/{host}: something between us and \
             the proxy answered in its place, or its keytab is stale"
        ),
        NegotiateErrorKind::Rejected => format!(
            "check that the ticket is fresh (kinit), that the clocks agree (skew), and that \
             the proxy's keytab holds the current key of HTTP/{host}"
        ),
        NegotiateErrorKind::Protocol | NegotiateErrorKind::Other => format!(
            "see the GSSAPI message; the service is HTTP/{host}, credentials come from {}",
            if keytab {
                "http_proxy.proxy_keytab"
            } else {
                "the credential cache (KRB5CCNAME)"
            }
        ),
        NegotiateErrorKind::InvalidInput => {
            "http_proxy.proxy_host must be a host name, http_proxy.proxy_user a principal"
                .to_string()
        }
    }
}

// MIT krb5 com_err codes (krb5.h, ERROR_TABLE_BASE_krb5 = -1765328384): the minor status
// GSSAPI's krb5 mechanism reports.
const KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN: i32 = -1765328378;
const KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN: i32 = -1765328377;
const KRB5KDC_ERR_PREAUTH_FAILED: i32 = -1765328360;
const KRB5KRB_AP_ERR_TKT_EXPIRED: i32 = -1765328352;
const KRB5KRB_AP_ERR_SKEW: i32 = -1765328347;
const KRB5KRB_AP_ERR_MODIFIED: i32 = -1765328343;
const KRB5_CC_NOTFOUND: i32 = -1765328243;
const KRB5_CC_END: i32 = -1765328242;
const KRB5_REALM_UNKNOWN: i32 = -1765328230;
const KRB5_KDC_UNREACH: i32 = -1765328228;
const KRB5_KT_NOTFOUND: i32 = -1765328203;
const KRB5_KT_END: i32 = -1765328202;
const KRB5_FCC_PERM: i32 = -1765328190;
const KRB5_FCC_NOFILE: i32 = -1765328189;
const KRB5_CONFIG_NODEFREALM: i32 = -1765328160;

/// Sorts a GSSAPI failure into a kind: from the krb5 minor code (what a bare krb5 mechanism
/// reports), else from GSSAPI's status text (MIT's mechglue maps the minor codes of a mechanism
/// under SPNEGO to numbers of its own, but keeps krb5's message), else from the major status.
fn classify(err: &GssError, keytab: bool) -> NegotiateErrorKind {
    if let Some(kind) = classify_minor(err.minor as i32, keytab) {
        return kind;
    }
    if let Some(kind) = classify_text(&err.to_string(), keytab) {
        return kind;
    }
    classify_major(err.major, keytab)
}

fn classify_minor(minor: i32, keytab: bool) -> Option<NegotiateErrorKind> {
    // The minor status is a krb5 com_err code, an i32 carried in an OM_uint32.
    Some(match minor {
        KRB5KRB_AP_ERR_SKEW => NegotiateErrorKind::ClockSkew,
        KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN => NegotiateErrorKind::UnknownService,
        KRB5KRB_AP_ERR_TKT_EXPIRED => NegotiateErrorKind::TicketExpired,
        KRB5_KDC_UNREACH | KRB5_REALM_UNKNOWN | KRB5_CONFIG_NODEFREALM => {
            NegotiateErrorKind::KdcUnreachable
        }
        KRB5_KT_NOTFOUND
        | KRB5_KT_END
        | KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN
        | KRB5KDC_ERR_PREAUTH_FAILED
            if keytab =>
        {
            NegotiateErrorKind::Keytab
        }
        KRB5_FCC_NOFILE | KRB5_FCC_PERM | KRB5_CC_NOTFOUND | KRB5_CC_END if keytab => {
            NegotiateErrorKind::Keytab
        }
        KRB5_FCC_NOFILE | KRB5_FCC_PERM | KRB5_CC_NOTFOUND | KRB5_CC_END => {
            NegotiateErrorKind::NoTicket
        }
        KRB5KRB_AP_ERR_MODIFIED => NegotiateErrorKind::MutualAuth,
        _ => return None,
    })
}

/// krb5's English messages (krb5_err.et), which MIT does not translate by default.
fn classify_text(text: &str, keytab: bool) -> Option<NegotiateErrorKind> {
    let text = text.to_ascii_lowercase();
    let has = |needle: &str| text.contains(needle);
    Some(if has("clock skew") {
        NegotiateErrorKind::ClockSkew
    } else if has("server ") && has("not found in kerberos database") {
        NegotiateErrorKind::UnknownService
    } else if has("ticket expired") || has("credentials have expired") {
        NegotiateErrorKind::TicketExpired
    } else if has("cannot contact any kdc")
        || has("cannot find kdc")
        || has("cannot resolve network address for kdc")
        || has("configuration file does not specify default realm")
    {
        NegotiateErrorKind::KdcUnreachable
    } else if keytab
        && (has("keytab")
            || has("client ") && has("not found in kerberos database")
            || has("preauthentication failed"))
    {
        NegotiateErrorKind::Keytab
    } else if has("no kerberos credentials available")
        || has("no credentials cache found")
        || has("matching credential not found")
        || has("no credentials were supplied")
    {
        if keytab {
            NegotiateErrorKind::Keytab
        } else {
            NegotiateErrorKind::NoTicket
        }
    } else if has("message stream modified") {
        NegotiateErrorKind::MutualAuth
    } else {
        return None;
    })
}

/// The routine error is a number in bits 16-23 of the major status, not a set of flags.
fn classify_major(major: MajorFlags, keytab: bool) -> NegotiateErrorKind {
    const ROUTINE_MASK: u32 = 0x00ff_0000;
    let routine = major.bits() & ROUTINE_MASK;
    let is = |flag: MajorFlags| routine == flag.bits() & ROUTINE_MASK;
    if is(MajorFlags::GSS_S_CREDENTIALS_EXPIRED) {
        NegotiateErrorKind::TicketExpired
    } else if is(MajorFlags::GSS_S_NO_CRED) {
        if keytab {
            NegotiateErrorKind::Keytab
        } else {
            NegotiateErrorKind::NoTicket
        }
    } else if is(MajorFlags::GSS_S_BAD_NAME) || is(MajorFlags::GSS_S_BAD_NAMETYPE) {
        NegotiateErrorKind::InvalidInput
    } else if is(MajorFlags::GSS_S_DEFECTIVE_TOKEN)
        || is(MajorFlags::GSS_S_BAD_SIG)
        || is(MajorFlags::GSS_S_BAD_MIC)
    {
        NegotiateErrorKind::Protocol
    } else {
        NegotiateErrorKind::Other
    }
}

/// A client security context for one CONNECT exchange with one proxy.
pub struct NegotiateClient {
    ctx: ClientCtx,
    host: String,
    keytab: bool,
    started: bool,
}

impl fmt::Debug for NegotiateClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NegotiateClient")
            .field("service", &format_args!("HTTP@{}", self.host))
            .field("keytab", &self.keytab)
            .field("started", &self.started)
            .field("complete", &self.ctx.is_complete())
            .finish()
    }
}

impl NegotiateClient {
    /// A context for the service `HTTP@<proxy_host>` with `credentials`. Credentials from a
    /// keytab are acquired here (which may ask the KDC for a ticket); the credential cache is
    /// read at the first [`step`](Self::step).
    pub fn new(
        proxy_host: &str,
        credentials: &Credentials,
    ) -> Result<NegotiateClient, NegotiateError> {
        let keytab = matches!(credentials, Credentials::Keytab { .. });
        let host = proxy_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(proxy_host);
        if host.is_empty()
            || host
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b == b'@' || b == b'/')
        {
            return Err(NegotiateError {
                kind: NegotiateErrorKind::InvalidInput,
                message: format!(
                    "Negotiate: the proxy host {proxy_host:?} cannot name a Kerberos service; \
                     hint: {}",
                    hint(NegotiateErrorKind::InvalidInput, host, keytab)
                ),
            });
        }
        let host = host.to_string();
        let cred = match credentials {
            Credentials::Default => None,
            Credentials::Keytab { principal, keytab } => {
                Some(cred_from_keytab(&host, principal, keytab)?)
            }
        };
        let client = NegotiateClient {
            ctx: ClientCtx::new(
                cred,
                service_name(&host, keytab)?,
                CtxFlags::GSS_C_MUTUAL_FLAG,
                Some(GSS_MECH_SPNEGO),
            ),
            host,
            keytab,
            started: false,
        };
        Ok(client)
    }

    /// The service this context authenticates to, `HTTP@<host>`.
    pub fn service(&self) -> String {
        format!("HTTP@{}", self.host)
    }

    /// One step: `None` for the first token (before the first CONNECT), then the token of
    /// each 407 `Proxy-Authenticate: Negotiate <token>`.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<Step, NegotiateError> {
        match (self.started, input) {
            (false, Some(_)) => {
                return Err(self.error(
                    NegotiateErrorKind::Protocol,
                    "a token from the proxy before our first one",
                ))
            }
            (true, None) => return Err(self.rejected()),
            (true, Some(_)) if self.ctx.is_complete() => {
                return Err(self.error(
                    NegotiateErrorKind::Protocol,
                    "the proxy sent another token after the context was complete",
                ))
            }
            _ => {}
        }
        self.started = true;
        match self.ctx.step(input, None) {
            Ok(Some(buf)) => Ok(Step::Send(Token(Secret::new(buf.to_vec())))),
            Ok(None) => Ok(Step::Done),
            Err(err) => Err(self.gss_error(&err)),
        }
    }

    /// On the proxy's 2xx: checks its final token (`Proxy-Authenticate: Negotiate <token>`
    /// on the 2xx), if it sent one.
    pub fn finish(&mut self, final_token: Option<&[u8]>) -> Result<MutualAuth, NegotiateError> {
        if !self.started {
            return Err(self.error(
                NegotiateErrorKind::Protocol,
                "finish before the first token was sent",
            ));
        }
        let Some(token) = final_token else {
            return Ok(MutualAuth::NotOffered);
        };
        if self.ctx.is_complete() {
            return Err(self.error(
                NegotiateErrorKind::MutualAuth,
                "the proxy sent a final token after the context was complete",
            ));
        }
        match self.ctx.step(Some(token), None) {
            Ok(None) if self.ctx.is_complete() => Ok(MutualAuth::Verified),
            Ok(_) => Err(self.error(
                NegotiateErrorKind::MutualAuth,
                "the proxy's final token did not complete the context",
            )),
            Err(err) => {
                let kind = match classify(&err, self.keytab) {
                    NegotiateErrorKind::Protocol | NegotiateErrorKind::Other => {
                        NegotiateErrorKind::MutualAuth
                    }
                    kind => kind,
                };
                Err(self.error(kind, &err.to_string()))
            }
        }
    }

    /// Whether our side of the context is complete.
    pub fn is_complete(&self) -> bool {
        self.ctx.is_complete()
    }

    /// The error for a proxy that refused our token (a 407 with a bare `Negotiate`, or no
    /// Negotiate challenge at all, after we sent one).
    pub fn rejected(&self) -> NegotiateError {
        self.error(
            NegotiateErrorKind::Rejected,
            "the proxy rejected our Kerberos ticket",
        )
    }

    fn error(&self, kind: NegotiateErrorKind, what: &str) -> NegotiateError {
        make_error(&self.host, self.keytab, kind, what)
    }

    fn gss_error(&self, err: &GssError) -> NegotiateError {
        gss_error(&self.host, self.keytab, err)
    }
}

fn make_error(host: &str, keytab: bool, kind: NegotiateErrorKind, what: &str) -> NegotiateError {
    NegotiateError {
        kind,
        message: format!(
            "Negotiate (Kerberos) to HTTP@{host}: {what}; hint: {}",
            hint(kind, host, keytab)
        ),
    }
}

fn gss_error(host: &str, keytab: bool, err: &GssError) -> NegotiateError {
    make_error(
        host,
        keytab,
        classify(err, keytab),
        err.to_string().trim_end(),
    )
}

/// `gss_acquire_cred_from` with `client_keytab`: MIT krb5 gets an initial ticket for
/// `principal` from the keytab when no valid one is cached.
fn cred_from_keytab(host: &str, principal: &str, keytab: &Path) -> Result<Cred, NegotiateError> {
    let invalid = |what: &str| make_error(host, true, NegotiateErrorKind::InvalidInput, what);
    if principal.is_empty() {
        return Err(invalid(
            "no client principal (http_proxy.proxy_user) for the keytab",
        ));
    }
    let principal_c = CString::new(principal)
        .map_err(|_| invalid("the principal (http_proxy.proxy_user) holds a NUL byte"))?;
    let keytab_str = keytab
        .to_str()
        .ok_or_else(|| invalid("the keytab path (http_proxy.proxy_keytab) is not UTF-8"))?;
    let keytab_c = CString::new(format!("FILE:{keytab_str}"))
        .map_err(|_| invalid("the keytab path (http_proxy.proxy_keytab) holds a NUL byte"))?;
    raw::acquire_from_keytab(&principal_c, &keytab_c).map_err(|err| gss_error(host, true, &err))
}

fn service_name(host: &str, keytab: bool) -> Result<Name, NegotiateError> {
    Name::new(
        format!("HTTP@{host}").as_bytes(),
        Some(GSS_NT_HOSTBASED_SERVICE),
    )
    .map_err(|err| {
        let what = format!(
            "GSSAPI refused the service name ({})",
            err.to_string().trim_end()
        );
        make_error(host, keytab, NegotiateErrorKind::InvalidInput, &what)
    })
}

/// The one place that calls the C API directly: libgssapi wraps `gss_acquire_cred` but not
/// `gss_acquire_cred_from` (MIT's credential-store extension, in `gssapi_ext.h`).
mod raw {
    use super::*;
    use libgssapi_sys::{
        gss_OID_desc, gss_acquire_cred_from, gss_buffer_desc, gss_cred_id_t, gss_cred_usage_t,
        gss_import_name, gss_key_value_element_desc, gss_key_value_set_desc, gss_name_t,
        gss_release_name, OM_uint32, GSS_C_INITIATE, GSS_S_COMPLETE,
    };

    /// `GSS_KRB5_NT_PRINCIPAL_NAME`, 1.2.840.113554.1.2.2.1.
    const KRB5_NT_PRINCIPAL: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01";
    /// `GSS_C_INDEFINITE`.
    const INDEFINITE: OM_uint32 = 0xffff_ffff;

    /// Releases an imported name on every path.
    struct NameGuard(gss_name_t);

    impl Drop for NameGuard {
        fn drop(&mut self) {
            if !self.0.is_null() {
                let mut minor: OM_uint32 = 0;
                // SAFETY: `self.0` came from gss_import_name and is released only here.
                unsafe { gss_release_name(&mut minor, &mut self.0) };
            }
        }
    }

    fn failed(major: OM_uint32, minor: OM_uint32) -> GssError {
        GssError {
            major: MajorFlags::from_bits_retain(major),
            minor,
        }
    }

    pub(super) fn acquire_from_keytab(
        principal: &CString,
        keytab: &CString,
    ) -> Result<Cred, GssError> {
        let mut oid = gss_OID_desc {
            length: KRB5_NT_PRINCIPAL.len() as OM_uint32,
            elements: KRB5_NT_PRINCIPAL.as_ptr() as *mut _,
        };
        let mut buffer = gss_buffer_desc {
            length: principal.as_bytes().len(),
            value: principal.as_ptr() as *mut _,
        };
        let mut minor: OM_uint32 = 0;
        let mut name = NameGuard(ptr::null_mut());
        // SAFETY: the buffer and OID point at live memory for the call; GSSAPI copies them.
        let major = unsafe { gss_import_name(&mut minor, &mut buffer, &mut oid, &mut name.0) };
        if major != GSS_S_COMPLETE {
            return Err(failed(major, minor));
        }
        let mut elements = [gss_key_value_element_desc {
            key: c"client_keytab".as_ptr(),
            value: keytab.as_ptr(),
        }];
        let store = gss_key_value_set_desc {
            count: elements.len() as OM_uint32,
            elements: elements.as_mut_ptr(),
        };
        let mut cred: gss_cred_id_t = ptr::null_mut();
        // SAFETY: every pointer is live for the call; the cred, on success, is ours to free,
        // which Cred::from_c takes over.
        let major = unsafe {
            gss_acquire_cred_from(
                &mut minor,
                name.0,
                INDEFINITE,
                ptr::null_mut(),
                GSS_C_INITIATE as gss_cred_usage_t,
                &store,
                &mut cred,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if major != GSS_S_COMPLETE {
            return Err(failed(major, minor));
        }
        // SAFETY: `cred` was just allocated for us by gss_acquire_cred_from.
        Ok(unsafe { Cred::from_c(cred) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_hosts_are_refused_without_gssapi_calls() {
        for host in ["", "a b", "a/b", "user@host", "x\0y"] {
            let err = NegotiateClient::new(host, &Credentials::Default).unwrap_err();
            assert_eq!(err.kind(), NegotiateErrorKind::InvalidInput, "{host:?}");
        }
    }

    #[test]
    fn classification_and_hints() {
        let e = |major: MajorFlags, minor: i32| GssError {
            major,
            minor: minor as u32,
        };
        let failure = MajorFlags::GSS_S_FAILURE;
        assert_eq!(
            classify(&e(failure, KRB5KRB_AP_ERR_SKEW), false),
            NegotiateErrorKind::ClockSkew
        );
        assert_eq!(
            classify(&e(failure, KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN), false),
            NegotiateErrorKind::UnknownService
        );
        assert_eq!(
            classify(&e(MajorFlags::GSS_S_NO_CRED, KRB5_FCC_NOFILE), false),
            NegotiateErrorKind::NoTicket
        );
        assert_eq!(
            classify(&e(MajorFlags::GSS_S_NO_CRED, 0), true),
            NegotiateErrorKind::Keytab
        );
        assert_eq!(
            classify(&e(MajorFlags::GSS_S_CREDENTIALS_EXPIRED, 0), false),
            NegotiateErrorKind::TicketExpired
        );
        assert_eq!(
            classify(&e(failure, KRB5_KDC_UNREACH), false),
            NegotiateErrorKind::KdcUnreachable
        );
        // GSS_S_FAILURE's routine number shares bits with GSS_S_DEFECTIVE_TOKEN's: no match.
        assert_eq!(
            classify_major(MajorFlags::GSS_S_FAILURE, false),
            NegotiateErrorKind::Other
        );
        assert_eq!(
            classify_major(MajorFlags::GSS_S_DEFECTIVE_TOKEN, false),
            NegotiateErrorKind::Protocol
        );
        assert_eq!(
            classify_text(
                "Unspecified GSS failure (Server HTTP/p@R not found in Kerberos database)",
                false
            ),
            Some(NegotiateErrorKind::UnknownService)
        );
        assert_eq!(
            classify_text("x (Clock skew too great)", false),
            Some(NegotiateErrorKind::ClockSkew)
        );
        assert!(hint(NegotiateErrorKind::NoTicket, "proxy", false).contains("kinit"));
        assert!(hint(NegotiateErrorKind::NoTicket, "proxy", false).contains("KRB5CCNAME"));
        assert!(hint(NegotiateErrorKind::ClockSkew, "proxy", false).contains("clock"));
        assert!(hint(NegotiateErrorKind::UnknownService, "proxy", false).contains("HTTP/proxy"));
    }

    #[test]
    fn tokens_are_redacted() {
        let token = Token(Secret::new(b"YIIC-secret-ticket".to_vec()));
        let first = format!("{token:?}");
        let shown = format!("{first} {:?}", Step::Send(token));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
