//! Proxy authentication without I/O: the challenges of a 407 (`Proxy-Authenticate`), the
//! choice of a scheme, and the per-open exchange that turns each 407 into the next
//! request's `Proxy-Authorization` or a final decision.
//!
//! Rules the exchange keeps (issue 12):
//! - a bounded number of rounds ([`MAX_ROUNDS`] CONNECTs per open);
//! - never two attempts with the same credentials in one open (a wrong password must not
//!   lock the account: proxies count failures); Digest's `stale=true` (the nonce expired,
//!   the credentials were good) is retried once with the new nonce;
//! - credentials go in clear (Basic) only to a proxy that asked for Basic, except with
//!   `proxy_auth: basic`, where Basic goes with the first CONNECT as the agent always did;
//! - a failure says what was sent and what the proxy offered, and never claims credentials
//!   were rejected when the proxy asked for another scheme than the one sent.

pub mod digest;

use std::fmt;

use base64::Engine as _;

use crate::config::{ProxyAuth, Secret};
use digest::DigestChallenge;

/// The most CONNECTs one open sends.
pub const MAX_ROUNDS: u32 = 4;

/// The most challenges read from one reply, and parameters from one challenge.
const MAX_CHALLENGES: usize = 32;
const MAX_PARAMS: usize = 32;

/// One challenge of a `Proxy-Authenticate` header: `scheme [token68 | #auth-param]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme as the proxy wrote it.
    pub scheme: String,
    /// The token68 (NTLM's and Negotiate's base64 tokens).
    pub token68: Option<String>,
    /// The parameters, names lowercased, quoted values unescaped.
    pub params: Vec<(String, String)>,
}

impl fmt::Debug for Challenge {
    // The values are the proxy's (a nonce, an NTLM challenge): shown by name only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("scheme", &self.scheme)
            .field("token68", &self.token68.as_ref().map(|_| "<token>"))
            .field(
                "params",
                &self
                    .params
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Challenge {
    /// A parameter's value by (case-insensitive) name: the first one.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The scheme, when it is one we know.
    pub fn kind(&self) -> Option<Scheme> {
        Scheme::from_name(&self.scheme)
    }
}

/// The schemes this library knows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Basic (RFC 7617).
    Basic,
    /// Digest (RFC 7616).
    Digest,
    /// NTLM.
    Ntlm,
    /// Negotiate (SPNEGO, Kerberos).
    Negotiate,
}

impl Scheme {
    /// The scheme of a challenge's name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Scheme> {
        [
            Scheme::Basic,
            Scheme::Digest,
            Scheme::Ntlm,
            Scheme::Negotiate,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Basic => "Basic",
            Scheme::Digest => "Digest",
            Scheme::Ntlm => "NTLM",
            Scheme::Negotiate => "Negotiate",
        }
    }

    /// Whether this build can answer the scheme.
    pub fn available(self) -> bool {
        match self {
            Scheme::Basic | Scheme::Digest | Scheme::Ntlm => true,
            Scheme::Negotiate => cfg!(feature = "gssapi"),
        }
    }

    /// The scheme a `proxy_auth` value names (`any`: none).
    pub fn of_mode(mode: ProxyAuth) -> Option<Scheme> {
        match mode {
            ProxyAuth::Basic => Some(Scheme::Basic),
            ProxyAuth::Digest => Some(Scheme::Digest),
            ProxyAuth::Ntlm => Some(Scheme::Ntlm),
            ProxyAuth::Negotiate => Some(Scheme::Negotiate),
            ProxyAuth::Any => None,
        }
    }

    /// Whether the scheme authenticates the connection, not the request (NTLM, Negotiate):
    /// its legs must stay on one connection.
    pub fn is_connection_bound(self) -> bool {
        matches!(self, Scheme::Ntlm | Scheme::Negotiate)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The challenges of every `Proxy-Authenticate` value of a reply, in order. Several headers,
/// several challenges per header, quoted strings with escapes and commas, token68s and
/// auth-params (RFC 9110 11.6.1). Junk is skipped; nothing panics.
pub fn parse_challenges(values: &[String]) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    for value in values {
        for part in crate::proxy::reply::split_list(value) {
            let part = part.trim_matches([' ', '\t']);
            if part.is_empty() {
                continue;
            }
            let len = part.bytes().take_while(|&b| is_tchar(b)).count();
            let (name, after) = part.split_at(len);
            let after_ws = after.trim_start_matches([' ', '\t']);
            if name.is_empty() {
                continue;
            }
            if let Some(value_text) = after_ws.strip_prefix('=') {
                // `name=value`: a parameter of the challenge being read.
                if let Some(current) = out.last_mut() {
                    if current.token68.is_none() && current.params.len() < MAX_PARAMS {
                        if let Some(value) = param_value(value_text) {
                            current.params.push((name.to_ascii_lowercase(), value));
                        }
                    }
                }
                continue;
            }
            if !after.is_empty() && after_ws.len() == after.len() {
                // The token runs into something that is no separator: junk.
                continue;
            }
            if out.len() >= MAX_CHALLENGES {
                break;
            }
            let mut challenge = Challenge {
                scheme: name.to_owned(),
                token68: None,
                params: Vec::new(),
            };
            if !after_ws.is_empty() {
                // A token68, or the first parameter.
                let plen = after_ws.bytes().take_while(|&b| is_tchar(b)).count();
                let (pname, prest) = after_ws.split_at(plen);
                let prest = prest.trim_start_matches([' ', '\t']);
                let token68_tail = prest.trim_start_matches('=').trim();
                if plen > 0 && prest.starts_with('=') && !token68_tail.is_empty() {
                    if let Some(value) = param_value(&prest[1..]) {
                        challenge.params.push((pname.to_ascii_lowercase(), value));
                    }
                } else if after_ws.trim_end().bytes().all(is_token68_char) {
                    challenge.token68 = Some(after_ws.trim_end().to_owned());
                }
            }
            out.push(challenge);
        }
    }
    out
}

/// A parameter's value after its `=`: a token or a quoted string (unescaped).
fn param_value(text: &str) -> Option<String> {
    let text = text.trim_matches([' ', '\t']);
    if let Some(inner) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else if !text.is_empty() && text.bytes().all(is_tchar) {
        Some(text.to_owned())
    } else {
        None
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// Why the exchange ended without a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No credentials are configured; `answerable`: the proxy offers a scheme we could answer
    /// with credentials.
    NoCredentials {
        /// Whether setting `proxy_user`/`proxy_password` could help.
        answerable: bool,
    },
    /// Credentials of `scheme` were sent and the proxy asked again for that same scheme.
    Rejected(Scheme),
    /// Credentials of `scheme` were sent and the proxy's 407 names no scheme at all (no
    /// `Proxy-Authenticate`): a refusal of those credentials, not a request for another
    /// scheme.
    RejectedNoScheme(Scheme),
    /// The proxy asks for other schemes than the one `proxy_auth` selects (or than the one
    /// sent): nothing was rejected.
    OtherScheme {
        /// What `proxy_auth` selects.
        wanted: Option<Scheme>,
        /// What was sent, if anything.
        sent: Option<Scheme>,
    },
    /// `proxy_auth: any`: none of the offered schemes is one this build can answer.
    Unsupported,
    /// A challenge of a scheme we answer that we cannot answer (a Digest challenge without
    /// a nonce).
    BadChallenge {
        /// The scheme.
        scheme: Scheme,
        /// What is wrong.
        why: String,
    },
    /// [`MAX_ROUNDS`] CONNECTs were sent.
    TooManyRounds,
    /// The proxy's 407 carries the next step of a scheme that needs one connection for all
    /// its steps (NTLM's CHALLENGE, a Negotiate continuation) but closes that connection
    /// (`Connection: close`, a body delimited by the close): the answer would have nowhere
    /// to go.
    ClosedMidExchange(Scheme),
    /// Negotiate (Kerberos) failed: the negotiate module's message, which ends with its hint
    /// (`...; hint: ...`). It never holds a token.
    Negotiate {
        /// The whole message.
        message: String,
    },
    /// `any`: Negotiate was offered but passed over (no token could be made: no ticket, an
    /// expired one), and the scheme used instead failed too.
    AfterNegotiateSkipped {
        /// Why Negotiate was passed over: the negotiate module's message, with its hint.
        negotiate: String,
        /// How the scheme used instead failed.
        failure: Box<Failure>,
    },
}

/// What to do after a 407.
#[derive(Debug)]
pub enum Decision {
    /// Send CONNECT again with this `Proxy-Authorization` value.
    Retry(Secret),
    /// Give up.
    Fail(Failure),
}

/// The proxy credentials of a config.
pub struct Credentials<'a> {
    /// `proxy_user`.
    pub user: &'a str,
    /// `proxy_password`.
    pub password: &'a Secret,
}

/// Where Negotiate's Kerberos credentials come from, and the service's host.
#[derive(Debug, Clone, Default)]
pub struct NegotiateSetup {
    /// `http_proxy.proxy_host`: the service is `HTTP@<host>`.
    pub host: String,
    /// `http_proxy.proxy_keytab` with `proxy_user` as the client principal; `None`: the
    /// process's credential cache.
    pub keytab: Option<(String, std::path::PathBuf)>,
}

/// The authentication of one open: fed each 407's challenges, it answers the next
/// `Proxy-Authorization` or gives up.
pub struct Exchange<'a> {
    mode: Option<ProxyAuth>,
    credentials: Option<Credentials<'a>>,
    /// The CONNECT target, Digest's `uri`.
    authority: &'a str,
    /// The scheme of the last `Proxy-Authorization` sent.
    sent: Option<Scheme>,
    /// CONNECTs sent so far.
    rounds: u32,
    stale_retried: bool,
    nc: u32,
    /// The nonce of the last Digest answer: a `stale=true` with the same nonce is no new
    /// nonce, and answering it would repeat the same credentials.
    last_nonce: Option<String>,
    /// NTLM: the NEGOTIATE (type 1) was sent, and the AUTHENTICATE (type 3) too.
    ntlm_negotiated: bool,
    ntlm_authenticated: bool,
    /// Whether the request now due answers a challenge of this very connection (NTLM's
    /// AUTHENTICATE): then it cannot go on a new one.
    bound: bool,
    /// Whether the connection of the 407 being answered closes after it.
    closing: bool,
    /// The scheme of the credentials in the request now due (`None`: none, or NTLM's
    /// NEGOTIATE, which proves nothing).
    carrying: Option<Scheme>,
    /// Every `Proxy-Authorization` value sent, to redact from messages.
    sent_values: Vec<Secret>,
    /// Negotiate's service and credentials.
    negotiate: NegotiateSetup,
    /// `any`: why Negotiate, offered, was passed over for another scheme (no token could be
    /// made).
    negotiate_skipped: Option<Failure>,
    /// Whether the last 407 is the one Negotiate was passed over on.
    negotiate_skipped_now: bool,
    /// The Negotiate context of this open, once its first token was made (in a mutex only
    /// to be `Sync`: GSSAPI contexts are `Send`, not `Sync`).
    #[cfg(feature = "gssapi")]
    negotiate_client: Option<std::sync::Mutex<super::negotiate::NegotiateClient>>,
}

impl fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("mode", &self.mode)
            .field("sent", &self.sent)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

impl<'a> Exchange<'a> {
    /// The exchange of one open with `mode` (`None`: no auth configured).
    pub fn new(
        mode: Option<ProxyAuth>,
        credentials: Option<Credentials<'a>>,
        authority: &'a str,
    ) -> Exchange<'a> {
        Exchange {
            mode,
            credentials,
            authority,
            sent: None,
            rounds: 0,
            stale_retried: false,
            nc: 0,
            last_nonce: None,
            ntlm_negotiated: false,
            ntlm_authenticated: false,
            bound: false,
            closing: false,
            carrying: None,
            sent_values: Vec::new(),
            negotiate: NegotiateSetup::default(),
            negotiate_skipped: None,
            negotiate_skipped_now: false,
            #[cfg(feature = "gssapi")]
            negotiate_client: None,
        }
    }

    /// Negotiate's service host and credentials (without it the service host is empty and
    /// Negotiate fails with the negotiate module's message).
    pub fn with_negotiate(mut self, setup: NegotiateSetup) -> Exchange<'a> {
        self.negotiate = setup;
        self
    }

    /// The `Proxy-Authorization` of the first CONNECT: Basic under `proxy_auth: basic`,
    /// nothing otherwise (the proxy's challenge comes first).
    pub fn first(&mut self) -> Option<Secret> {
        self.rounds = 1;
        match (&self.mode, &self.credentials) {
            (Some(ProxyAuth::Basic), Some(c)) => {
                self.carrying = Some(Scheme::Basic);
                Some(self.send_basic(c.user, c.password))
            }
            // NTLM's NEGOTIATE waits for the proxy's 407 too: squid 5.7 answers a NEGOTIATE
            // on a connection it has not challenged yet with a bare `NTLM` (no CHALLENGE).
            _ => None,
        }
    }

    fn send_ntlm_negotiate(&mut self, proxy_user: &str) -> Secret {
        let (domain, _) = super::ntlm::split_user(proxy_user);
        let message = super::ntlm::negotiate_message(domain, "");
        self.sent = Some(Scheme::Ntlm);
        self.ntlm_negotiated = true;
        self.bound = false;
        let encoded = base64::engine::general_purpose::STANDARD.encode(message);
        Secret::from(format!("NTLM {encoded}"))
    }

    fn answer_ntlm(&mut self, challenges: &[Challenge], user: &str, password: &Secret) -> Decision {
        if !self.ntlm_negotiated {
            return Decision::Retry(self.send_ntlm_negotiate(user));
        }
        if self.ntlm_authenticated {
            return Decision::Fail(Failure::Rejected(Scheme::Ntlm));
        }
        if self.closing {
            // The AUTHENTICATE answers this connection's CHALLENGE: not made, not sent.
            return Decision::Fail(Failure::ClosedMidExchange(Scheme::Ntlm));
        }
        let bad = |why: String| {
            Decision::Fail(Failure::BadChallenge {
                scheme: Scheme::Ntlm,
                why,
            })
        };
        // The CHALLENGE (type 2) rides in the NTLM challenge's token.
        let Some(token) = challenges
            .iter()
            .filter(|c| c.kind() == Some(Scheme::Ntlm))
            .find_map(|c| c.token68.as_deref())
        else {
            // A bare NTLM after our NEGOTIATE: the proxy started over (a new connection
            // on its side): nothing was rejected, but the exchange cannot go on.
            return bad("the proxy answered the NTLM NEGOTIATE without a CHALLENGE".into());
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token) else {
            return bad("the NTLM CHALLENGE is not base64".into());
        };
        let challenge = match super::ntlm::Challenge::parse(&bytes) {
            Ok(c) => c,
            Err(e) => return bad(format!("malformed NTLM CHALLENGE: {e}")),
        };
        let Ok(password) = std::str::from_utf8(password.expose()) else {
            return bad("http_proxy.proxy_password is not UTF-8 text, which NTLM needs".into());
        };
        let (domain, name) = super::ntlm::split_user(user);
        let mut client_challenge = [0u8; 8];
        {
            use ring::rand::SecureRandom;
            let _ = ring::rand::SystemRandom::new().fill(&mut client_challenge);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let message = match super::ntlm::authenticate_message(
            &challenge,
            name,
            domain,
            password,
            "",
            client_challenge,
            super::ntlm::filetime(now),
        ) {
            Ok(m) => Secret::new(m),
            Err(e) => return bad(format!("cannot answer the NTLM CHALLENGE: {e}")),
        };
        let encoded =
            Secret::from(base64::engine::general_purpose::STANDARD.encode(message.expose()));
        let mut value = Vec::with_capacity(encoded.expose().len() + 5);
        value.extend_from_slice(b"NTLM ");
        value.extend_from_slice(encoded.expose());
        self.sent_values.push(encoded);
        self.ntlm_authenticated = true;
        self.bound = true;
        Decision::Retry(Secret::new(value))
    }

    /// The scheme of the credentials last sent.
    pub fn scheme(&self) -> Option<Scheme> {
        self.sent
    }

    /// CONNECTs sent so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Whether the request now due answers a challenge of the current connection (NTLM's
    /// AUTHENTICATE after its CHALLENGE), so it cannot go on a new connection.
    pub fn needs_same_connection(&self) -> bool {
        self.bound
    }

    /// Every `Proxy-Authorization` value sent so far (secrets, for redaction).
    pub fn sent_values(&self) -> &[Secret] {
        &self.sent_values
    }

    fn send_basic(&mut self, user: &str, password: &Secret) -> Secret {
        let value = super::basic_credentials(user, password);
        self.sent = Some(Scheme::Basic);
        // The base64 part alone, as a proxy could echo it.
        if let Some(encoded) = value.expose().strip_prefix(b"Basic ") {
            self.sent_values.push(Secret::new(encoded.to_vec()));
        }
        value
    }

    /// Tells whether the connection of the 407 about to be answered closes after it
    /// ([`crate::proxy::ReplyHead::closes`]): then the next step of NTLM or Negotiate, which
    /// belongs to that connection, is not made ([`Failure::ClosedMidExchange`]). Unset, the
    /// connection is taken to stay.
    pub fn reply_closes(&mut self, closes: bool) {
        self.closing = closes;
    }

    /// The next step after a 407 carrying `challenges`.
    pub fn on_challenge(&mut self, challenges: &[Challenge]) -> Decision {
        self.negotiate_skipped_now = false;
        let decision = match self.decide(challenges) {
            // The user learns that Negotiate was passed over, not only how the scheme used
            // instead failed.
            Decision::Fail(failure) => Decision::Fail(match self.negotiate_skipped() {
                Some(negotiate) if !matches!(failure, Failure::Negotiate { .. }) => {
                    Failure::AfterNegotiateSkipped {
                        negotiate,
                        failure: Box::new(failure),
                    }
                }
                _ => failure,
            }),
            retry => retry,
        };
        if matches!(decision, Decision::Retry(_)) {
            self.rounds += 1;
            self.carrying = match self.sent {
                Some(Scheme::Ntlm) if !self.ntlm_authenticated => None,
                sent => sent,
            };
        }
        decision
    }

    /// After the proxy closed the connection without a byte of reply to the CONNECT just
    /// sent. `None`: that CONNECT carried no credentials (the first one, or NTLM's NEGOTIATE),
    /// so it may go again on a new connection. Otherwise why the open ends here: the
    /// credentials were written and may have reached the proxy, which may have counted
    /// them; the same credentials twice in one open could lock the account.
    pub fn unanswered(&self) -> Option<String> {
        let scheme = self.carrying?;
        Some(if self.bound {
            format!(
                "closed the connection in the middle of {scheme} authentication (one connection for all its steps) without answering the CONNECT"
            )
        } else {
            format!(
                "closed the connection without answering the CONNECT with {scheme} credentials; not sent again (the proxy may count a failed login)"
            )
        })
    }

    fn decide(&mut self, challenges: &[Challenge]) -> Decision {
        self.bound = false;
        let offers = |s: Scheme| challenges.iter().any(|c| c.kind() == Some(s));
        let answerable = offers(Scheme::Basic) || offers(Scheme::Digest) || offers(Scheme::Ntlm);
        // Negotiate needs no user or password (the ticket is in the credential cache).
        let negotiates = Scheme::Negotiate.available()
            && matches!(self.mode, Some(ProxyAuth::Negotiate | ProxyAuth::Any));
        let has_credentials = self.mode.is_some() && self.credentials.is_some();
        if !has_credentials && !negotiates {
            return Decision::Fail(Failure::NoCredentials { answerable });
        }
        if self.rounds >= MAX_ROUNDS {
            return Decision::Fail(Failure::TooManyRounds);
        }
        let wanted = self.mode.and_then(Scheme::of_mode);
        let scheme = match (self.sent, wanted) {
            (Some(sent), _) => sent,
            (None, Some(wanted)) => wanted,
            (None, None) => {
                // `any`: the strongest offered that we can answer (curl's order). Negotiate
                // first when this build has it; when no token can be made (no ticket, an
                // expired one, no KDC), nothing went to the proxy, and the next scheme the
                // config can answer is used instead, within the same round.
                let order = [
                    Scheme::Negotiate,
                    Scheme::Digest,
                    Scheme::Ntlm,
                    Scheme::Basic,
                ];
                // With a keytab, proxy_user is a Kerberos principal: a password scheme is
                // answered only when a password is set too.
                let password_set = self
                    .credentials
                    .as_ref()
                    .is_some_and(|c| !c.password.expose().is_empty());
                let password_schemes =
                    has_credentials && (self.negotiate.keytab.is_none() || password_set);
                let usable = |s: Scheme| {
                    s.available() && offers(s) && (s == Scheme::Negotiate || password_schemes)
                };
                let mut negotiate_failure = None;
                let mut chosen = None;
                for s in order.into_iter().filter(|&s| usable(s)) {
                    if s == Scheme::Negotiate {
                        match self.answer_negotiate(challenges) {
                            Decision::Fail(failure) => {
                                self.forget_negotiate();
                                negotiate_failure = Some(failure);
                                continue;
                            }
                            retry => return retry,
                        }
                    }
                    chosen = Some(s);
                    break;
                }
                match (chosen, negotiate_failure) {
                    (Some(s), failure) => {
                        self.negotiate_skipped_now = failure.is_some();
                        self.negotiate_skipped = failure;
                        s
                    }
                    (None, Some(failure)) => return Decision::Fail(failure),
                    (None, None) if !has_credentials => {
                        return Decision::Fail(Failure::NoCredentials { answerable })
                    }
                    (None, None) => return Decision::Fail(Failure::Unsupported),
                }
            }
        };
        if !offers(scheme) {
            // The request this 407 answers carried credentials, and the 407 names no scheme
            // at all: those credentials were refused (no other scheme is asked for).
            if let (true, Some(carried)) = (challenges.is_empty(), self.carrying) {
                return Decision::Fail(Failure::RejectedNoScheme(carried));
            }
            return Decision::Fail(Failure::OtherScheme {
                wanted,
                sent: self.sent,
            });
        }
        if scheme == Scheme::Negotiate {
            return self.answer_negotiate(challenges);
        }
        let Some(credentials) = self.credentials.as_ref().filter(|_| has_credentials) else {
            return Decision::Fail(Failure::NoCredentials { answerable });
        };
        let (user, password) = (credentials.user, credentials.password);
        match scheme {
            Scheme::Basic if self.sent.is_some() => Decision::Fail(Failure::Rejected(scheme)),
            Scheme::Basic => Decision::Retry(self.send_basic(user, password)),
            Scheme::Digest => self.answer_digest(challenges, user, password),
            Scheme::Ntlm => self.answer_ntlm(challenges, user, password),
            Scheme::Negotiate => Decision::Fail(Failure::Unsupported),
        }
    }

    /// Under `any`, why Negotiate was offered but not used (its token could not be made:
    /// no ticket, say); the message ends with its hint. `None` when it was used, not offered,
    /// or not compiled in.
    pub fn negotiate_skipped(&self) -> Option<String> {
        self.negotiate_skipped.as_ref().map(|f| f.describe(""))
    }

    /// The scheme of the answer now due, for the log line of a 407 answered: its name, and
    /// why Negotiate was passed over when that happened on this 407 (`any`, no ticket).
    pub fn answering(&self) -> String {
        let scheme = self.scheme().map_or("?", Scheme::name);
        match self.negotiate_skipped() {
            Some(why) if self.negotiate_skipped_now => format!(
                "{scheme}: Negotiate was offered but passed over, no Kerberos ticket could be used ({})",
                before_hint(&why)
            ),
            _ => scheme.to_owned(),
        }
    }

    /// Drops the Negotiate context of a first token that could not be made.
    fn forget_negotiate(&mut self) {
        #[cfg(feature = "gssapi")]
        {
            self.negotiate_client = None;
        }
    }

    #[cfg(not(feature = "gssapi"))]
    fn answer_negotiate(&mut self, _challenges: &[Challenge]) -> Decision {
        Decision::Fail(Failure::Unsupported)
    }

    /// Negotiate: the first token after the proxy's first 407; then each 407's
    /// `Negotiate <token>` fed to the context (on the same connection), its answer sent.
    #[cfg(feature = "gssapi")]
    fn answer_negotiate(&mut self, challenges: &[Challenge]) -> Decision {
        use super::negotiate::{Credentials as Krb, NegotiateClient, NegotiateError, Step};
        let fail = |e: NegotiateError| {
            Decision::Fail(Failure::Negotiate {
                message: e.message().to_owned(),
            })
        };
        let continuing = self.negotiate_client.is_some();
        let client = match self.negotiate_client.as_mut() {
            Some(client) => client,
            None => {
                let credentials = match &self.negotiate.keytab {
                    Some((principal, keytab)) => Krb::Keytab {
                        principal: principal.clone(),
                        keytab: keytab.clone(),
                    },
                    None => Krb::Default,
                };
                match NegotiateClient::new(&self.negotiate.host, &credentials) {
                    Ok(client) => self.negotiate_client.insert(std::sync::Mutex::new(client)),
                    Err(e) => return fail(e),
                }
            }
        };
        let client = client
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let step = if continuing {
            // The proxy's next token rides in its Negotiate challenge; a bare `Negotiate`
            // after our token is a refusal.
            let Some(token) = challenges
                .iter()
                .filter(|c| c.kind() == Some(Scheme::Negotiate))
                .find_map(|c| c.token68.as_deref())
            else {
                return fail(client.rejected());
            };
            if self.closing {
                // The next token would answer this connection's context: not made.
                return Decision::Fail(Failure::ClosedMidExchange(Scheme::Negotiate));
            }
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token) else {
                return Decision::Fail(Failure::BadChallenge {
                    scheme: Scheme::Negotiate,
                    why: "the proxy's Negotiate token is not base64".into(),
                });
            };
            client.step(Some(&bytes))
        } else {
            client.step(None)
        };
        let token = match step {
            Ok(Step::Send(token)) => token,
            Ok(Step::Done) => return fail(client.rejected()),
            Err(e) => return fail(e),
        };
        let encoded =
            Secret::from(base64::engine::general_purpose::STANDARD.encode(token.expose()));
        let mut value = Vec::with_capacity(encoded.expose().len() + 10);
        value.extend_from_slice(b"Negotiate ");
        value.extend_from_slice(encoded.expose());
        self.sent_values.push(encoded);
        self.sent = Some(Scheme::Negotiate);
        // A continuation token answers this connection's context; the first one may go on
        // a new connection.
        self.bound = continuing;
        Decision::Retry(Secret::new(value))
    }

    /// On the proxy's 2xx, with its `Proxy-Authenticate` challenges: after Negotiate, the
    /// final token (when the proxy sent one) must prove the proxy is the service asked for
    /// (mutual authentication). `Ok(Some(verified))` after Negotiate, `Ok(None)` otherwise.
    pub fn on_tunnel(&mut self, challenges: &[Challenge]) -> Result<Option<bool>, Failure> {
        #[cfg(feature = "gssapi")]
        if self.sent == Some(Scheme::Negotiate) {
            if let Some(client) = self.negotiate_client.as_mut() {
                let client = client
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let token = challenges
                    .iter()
                    .filter(|c| c.kind() == Some(Scheme::Negotiate))
                    .find_map(|c| c.token68.as_deref());
                let bytes = match token
                    .map(|t| base64::engine::general_purpose::STANDARD.decode(t))
                    .transpose()
                {
                    Ok(bytes) => bytes,
                    Err(_) => {
                        return Err(Failure::BadChallenge {
                            scheme: Scheme::Negotiate,
                            why: "the final Negotiate token of the proxy's 2xx is not base64"
                                .into(),
                        })
                    }
                };
                return match client.finish(bytes.as_deref()) {
                    Ok(mutual) => Ok(Some(mutual == super::negotiate::MutualAuth::Verified)),
                    Err(e) => Err(Failure::Negotiate {
                        message: e.message().to_owned(),
                    }),
                };
            }
        }
        let _ = challenges;
        Ok(None)
    }

    fn answer_digest(
        &mut self,
        challenges: &[Challenge],
        user: &str,
        password: &Secret,
    ) -> Decision {
        let mut best: Option<DigestChallenge> = None;
        let mut first_error = None;
        for c in challenges
            .iter()
            .filter(|c| c.kind() == Some(Scheme::Digest))
        {
            match DigestChallenge::from_challenge(c) {
                Ok(d) if best.as_ref().is_none_or(|b| d.strength() > b.strength()) => {
                    best = Some(d)
                }
                Ok(_) => {}
                Err(why) => {
                    first_error.get_or_insert(why);
                }
            }
        }
        let Some(challenge) = best else {
            return Decision::Fail(Failure::BadChallenge {
                scheme: Scheme::Digest,
                why: first_error.unwrap_or_default(),
            });
        };
        if self.sent == Some(Scheme::Digest) {
            let same_nonce = self.last_nonce.as_deref() == Some(challenge.nonce.as_str());
            if !challenge.stale || self.stale_retried || same_nonce {
                return Decision::Fail(Failure::Rejected(Scheme::Digest));
            }
            self.stale_retried = true;
        }
        self.nc += 1;
        self.last_nonce = Some(challenge.nonce.clone());
        let cnonce = digest::new_cnonce();
        let answer = challenge.answer(user, password, self.authority, &cnonce, self.nc);
        self.sent = Some(Scheme::Digest);
        // The whole value and the response alone, as a proxy could echo either.
        self.sent_values.push(answer.value.clone());
        self.sent_values.push(answer.response);
        Decision::Retry(answer.value)
    }
}

impl Failure {
    /// The failure in words, for the message after "the proxy answered 407 ...: ".
    pub fn describe(&self, offered: &str) -> String {
        match self {
            Failure::NoCredentials { answerable: true } => format!(
                "no credentials are configured (set http_proxy.proxy_user and proxy_password); the proxy offers: {offered}"
            ),
            Failure::NoCredentials { answerable: false } => format!(
                "no credentials are configured, and the proxy offers only schemes this build cannot answer: {offered}"
            ),
            Failure::Rejected(scheme) => format!(
                "the {scheme} credentials of http_proxy.proxy_user were rejected; the proxy offers: {offered}"
            ),
            Failure::RejectedNoScheme(Scheme::Negotiate) => {
                "the Kerberos ticket sent with Negotiate was rejected: the proxy's 407 names no scheme (no Proxy-Authenticate)".into()
            }
            Failure::RejectedNoScheme(scheme) => format!(
                "the {scheme} credentials of http_proxy.proxy_user were rejected: the proxy's 407 names no scheme (no Proxy-Authenticate)"
            ),
            Failure::OtherScheme { wanted, sent } => {
                let sent = match sent {
                    Some(s) => format!("{s} credentials were sent, but "),
                    None => String::new(),
                };
                let wanted = wanted.map_or("the scheme chosen".to_owned(), |w| {
                    format!("{w} (http_proxy.proxy_auth)")
                });
                format!("{sent}the proxy asks for {offered}, not {wanted}; nothing was rejected")
            }
            Failure::Unsupported => format!(
                "the proxy offers only schemes this build cannot answer: {offered}"
            ),
            Failure::BadChallenge { scheme, why } => {
                format!("cannot answer the proxy's {scheme} challenge: {why}")
            }
            Failure::TooManyRounds => format!(
                "no tunnel after {MAX_ROUNDS} CONNECTs; the proxy offers: {offered}"
            ),
            Failure::Negotiate { message } => message.clone(),
            Failure::AfterNegotiateSkipped { negotiate, failure } => format!(
                "Negotiate was offered but passed over, no Kerberos ticket could be used ({}); {}",
                before_hint(negotiate),
                failure.describe(offered)
            ),
            Failure::ClosedMidExchange(scheme) => format!(
                "the proxy closes the connection in the middle of {scheme} authentication, which needs one connection for all its steps; the proxy offers: {offered}"
            ),
        }
    }

    /// What to change, for the report's hint.
    pub fn hint(&self, offered: &str) -> String {
        match self {
            Failure::NoCredentials { answerable: true } => format!(
                "the proxy requires credentials (it asks for {offered}): set http_proxy.proxy_user and http_proxy.proxy_password{}",
                if offered.contains("Digest") && !offered.contains("Basic") { ", and http_proxy.proxy_auth: digest (or any)" } else { "" }
            ),
            Failure::NoCredentials { answerable: false } | Failure::Unsupported => format!(
                "the proxy asks for {offered}, which this build cannot answer (it speaks Basic, Digest{}): ask for an account with one of those, or an exception for this host",
                if Scheme::Negotiate.available() { ", NTLM and Negotiate" } else { " and NTLM; Negotiate needs the `gssapi` feature" }
            ),
            Failure::Rejected(_) => format!(
                "the proxy rejected the credentials (it asks for {offered}): check http_proxy.proxy_user and http_proxy.proxy_password{}",
                if matches!(self, Failure::Rejected(Scheme::Ntlm)) { " (a domain user as DOMAIN\\user or user@domain)" } else { "" }
            ),
            Failure::RejectedNoScheme(Scheme::Negotiate) => "the proxy rejected the Kerberos ticket (its 407 names no scheme): check the ticket (klist, kinit, KRB5CCNAME) or http_proxy.proxy_keytab".into(),
            Failure::RejectedNoScheme(scheme) => format!(
                "the proxy rejected the credentials (its 407 names no scheme): check http_proxy.proxy_user and http_proxy.proxy_password{}",
                if *scheme == Scheme::Ntlm { " (a domain user as DOMAIN\\user or user@domain)" } else { "" }
            ),
            Failure::OtherScheme { .. } => format!(
                "the proxy asks for {offered}: set http_proxy.proxy_auth to one of those (or any) if this build can answer it"
            ),
            Failure::BadChallenge { .. } => "the proxy's challenge cannot be answered: see the message, and its administrator".into(),
            Failure::TooManyRounds => "the proxy kept asking for credentials: check http_proxy.proxy_user and http_proxy.proxy_password, and http_proxy.proxy_auth".into(),
            Failure::ClosedMidExchange(scheme) => format!(
                "the proxy does not keep the connection between the steps of {scheme} (its keep-alive is off, or something in between closes it): ask for client connections to be kept alive, or set http_proxy.proxy_auth to another scheme it offers ({offered})"
            ),
            Failure::Negotiate { message } => match message.rsplit_once("; hint: ") {
                Some((_, hint)) => hint.to_owned(),
                None => "see the message: the Kerberos ticket (kinit, KRB5CCNAME) or http_proxy.proxy_keytab".into(),
            },
            Failure::AfterNegotiateSkipped { negotiate, failure } => format!(
                "{}; or, for Negotiate (offered, but passed over for want of a usable Kerberos ticket): {}",
                failure.hint(offered),
                Failure::Negotiate { message: negotiate.clone() }.hint(offered)
            ),
        }
    }
}

/// A message of the negotiate module without its hint (`...; hint: ...`).
fn before_hint(message: &str) -> &str {
    message
        .rsplit_once("; hint: ")
        .map_or(message, |(what, _)| what)
}

#[cfg(test)]
mod tests;
