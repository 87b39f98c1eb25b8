//! The plan of a tunnel: everything one open needs, built once per config (TLS configs, the
//! CONNECT request with its credentials) and shared by every open through an `Arc`, so that
//! opens do no per-connection setup and a freed config leaves its connections untouched.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::config::environment::{self, EnvironmentProxy};
use crate::config::{Host, NoProxy, Secret, Settings};
use crate::error::{Error, Result};
use crate::proxy;
use crate::tls;

/// TLS on one hop.
pub struct TlsHop {
    /// The side's own client config (its session cache gives resumption across opens).
    pub config: Arc<ClientConfig>,
    /// SNI and the name checked against the certificate.
    pub name: ServerName<'static>,
    /// Whether the certificate is verified.
    pub verify: bool,
    /// Whether it is verified against the system store (no CA file set), which the tunnel
    /// makes sure is loaded before the handshake ([`tls::system_trust`]).
    pub system_store: bool,
}

/// The proxy hop.
pub struct ProxyHop {
    /// The proxy's host.
    pub host: Host,
    /// The proxy's port.
    pub port: u16,
    /// TLS to the proxy, when `http_proxy.ssl` is on.
    pub tls: Option<TlsHop>,
    /// The CONNECT request head, credentials included.
    pub request: Secret,
    /// Whether credentials are configured (sent as `auth` says).
    pub authenticates: bool,
    /// The auth scheme in force (`http_proxy.proxy_auth`, or Basic with a user).
    pub auth: Option<crate::config::ProxyAuth>,
    /// The user of the credentials.
    pub user: String,
    /// The password.
    pub password: Secret,
    /// `http_proxy.proxy_keytab`: Negotiate's client keytab (`user` is its principal).
    pub keytab: Option<std::path::PathBuf>,
    /// The CONNECT target, `host:port`.
    pub authority: String,
    /// The `User-Agent` of every CONNECT.
    pub user_agent: Option<String>,
    /// The extra CONNECT headers.
    pub headers: Vec<(String, Secret)>,
    /// Where the proxy came from.
    pub source: ProxySource,
    /// Texts that must never reach a message: the password and the Authorization value.
    secrets: Vec<Secret>,
}

/// Where the proxy of a plan came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySource {
    /// `http_proxy.proxy_host` and `proxy_port`.
    Config,
    /// An environment variable (`http_proxy.from_environment: true`), by name.
    Environment(&'static str),
}

impl std::fmt::Display for ProxySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxySource::Config => f.write_str("config http_proxy.proxy_host"),
            ProxySource::Environment(name) => write!(f, "environment {name}"),
        }
    }
}

/// The proxy an open would use before `no_proxy` is applied.
struct Chosen {
    host: Host,
    port: u16,
    tls: bool,
    user: String,
    password: Secret,
    /// The password as written in a URL (percent-encoded), to redact too.
    password_as_written: Secret,
    source: ProxySource,
}

/// The options of every TCP socket an open makes (`tcp_keepalive_s`, `tcp_user_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    /// Keepalive probes after this long idle; `None`: keepalive off.
    pub keepalive_idle: Option<std::time::Duration>,
    /// `TCP_USER_TIMEOUT`; `None`: the kernel's default.
    pub user_timeout: Option<std::time::Duration>,
}

impl TcpOptions {
    /// The options of a checked configuration.
    pub fn of(s: &Settings) -> TcpOptions {
        let nonzero =
            |n: u32, unit: fn(u64) -> std::time::Duration| (n > 0).then(|| unit(n.into()));
        TcpOptions {
            keepalive_idle: nonzero(s.tcp_keepalive_s, std::time::Duration::from_secs),
            user_timeout: nonzero(s.tcp_user_timeout_ms, std::time::Duration::from_millis),
        }
    }
}

/// What one open does, in order.
pub struct Plan {
    /// The collector's host, sent to the proxy as written.
    pub collector: Host,
    /// The collector's port.
    pub collector_port: u16,
    /// TLS to the collector, when `ssl` is on.
    pub collector_tls: Option<TlsHop>,
    /// The proxy, when one is configured.
    pub proxy: Option<ProxyHop>,
    /// The options of the TCP socket.
    pub tcp: TcpOptions,
    /// Why a configured proxy is not used: the collector matched a `no_proxy` list
    /// (`proxy host:port`, and the list's source).
    pub bypassed: Option<String>,
}

impl Plan {
    /// Builds the plan of a checked configuration, reading environment variables (when
    /// `http_proxy.from_environment` is on) through `lookup`.
    pub fn build_with_environment(
        s: &Settings,
        lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Plan> {
        let collector_tls = if s.ssl {
            Some(TlsHop {
                config: tls::client_config(s.ca.as_ref(), s.verify)?,
                name: tls::server_name(&s.collector)?,
                verify: s.verify,
                system_store: tls::uses_system_store(s.ca.as_ref(), s.verify),
            })
        } else {
            None
        };
        let (chosen, env_no_proxy) = choose_proxy(s, lookup)?;
        // The key's list wins over the environment's, as curl's --noproxy does; the
        // environment's applies only to a proxy from the environment.
        let no_proxy = if !s.proxy.no_proxy.is_empty() {
            Some(("http_proxy.no_proxy", &s.proxy.no_proxy))
        } else {
            env_no_proxy.as_ref().map(|(name, list)| (*name, list))
        };
        let mut bypassed = None;
        let chosen = match (chosen, no_proxy) {
            (Some(c), Some((list_name, list))) if list.matches(&s.collector) => {
                bypassed = Some(format!(
                    "proxy {} from {} bypassed: collector {} matches {list_name}",
                    c.host.authority(c.port),
                    c.source,
                    s.collector
                ));
                None
            }
            (chosen, _) => chosen,
        };
        let proxy = match chosen {
            Some(c) => Some(proxy_hop(s, c)?),
            None => None,
        };
        Ok(Plan {
            collector: s.collector.clone(),
            collector_port: s.collector_port,
            collector_tls,
            proxy,
            tcp: TcpOptions::of(s),
            bypassed,
        })
    }

    /// Builds the plan of a checked configuration, with the environment read from this
    /// process (only when `http_proxy.from_environment` asks for it).
    pub fn build(s: &Settings) -> Result<Plan> {
        Plan::build_with_environment(s, &|name| std::env::var_os(name))
    }

    /// `host:port` of the collector.
    pub fn collector_authority(&self) -> String {
        self.collector.authority(self.collector_port)
    }

    /// The route in words, for logs and reports; never credentials.
    pub fn route(&self) -> String {
        let collector = format!(
            "collector {} ({})",
            self.collector_authority(),
            if self.collector_tls.is_some() {
                "TLS"
            } else {
                "plain"
            }
        );
        match (&self.proxy, &self.bypassed) {
            (None, None) => format!("direct to {collector}"),
            (None, Some(why)) => format!("direct to {collector} ({why})"),
            (Some(p), _) => format!(
                "via proxy {} ({}{}{}) to {collector}",
                p.host.authority(p.port),
                if p.tls.is_some() { "TLS" } else { "plain" },
                match (p.authenticates, p.auth) {
                    (true, Some(auth)) => auth.route_label(),
                    _ => "",
                },
                match p.source {
                    ProxySource::Config => String::new(),
                    source => format!(", from {source}"),
                },
            ),
        }
    }

    /// Text that came from the network, fit for a message: every secret replaced (a proxy
    /// could echo our header back in its reason phrase), then cut to `max` characters. In
    /// that order: a cut first could leave a prefix of a secret that no longer matches.
    pub fn redact_and_shorten(&self, text: &str, max: usize) -> String {
        self.redact_with(&[], text, max)
    }

    /// [`Plan::redact_and_shorten`] that also replaces the `Proxy-Authorization` values
    /// this open sent (a Digest response, for instance).
    pub fn redact_with(&self, extra: &[Secret], text: &str, max: usize) -> String {
        let planned = self.proxy.iter().flat_map(|p| p.secrets.iter());
        let out = redact_all(text, planned.chain(extra));
        if out.chars().count() <= max {
            out
        } else {
            let mut cut: String = out.chars().take(max).collect();
            cut.push_str("...");
            cut
        }
    }
}

/// Replaces a secret in a text (see [`redact_all`]).
#[cfg(test)]
fn redact_secret(out: String, secret: &Secret) -> String {
    redact_all(&out, std::iter::once(secret))
}

/// Replaces every secret in a text, in every form in which peer text reaches a message: as
/// it is, with control characters shown as `?` (how a reason phrase is printed),
/// Debug-escaped (how a preview of a malformed reply is printed), and trimmed. Every
/// non-empty secret counts, however short: a garbled message is better than a leaked
/// password.
///
/// Every form of every secret is looked for in the text as it came, and each run of
/// overlapping or touching matches is replaced once. Replacing one secret after another
/// would not do: a short secret (a header value "1") replaced inside a longer one (the
/// Basic token) leaves the rest of the longer one unmatched, and shown.
fn redact_all<'a>(text: &str, secrets: impl Iterator<Item = &'a Secret>) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for secret in secrets {
        let raw = String::from_utf8_lossy(secret.expose());
        if raw.is_empty() {
            continue;
        }
        let shown: String = raw
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let escaped: String = raw.escape_debug().collect();
        for form in [raw.as_ref(), shown.as_str(), shown.trim(), escaped.as_str()] {
            if form.is_empty() {
                continue;
            }
            // Overlapping occurrences too ("aa" twice in "aaa"): the span then covers all.
            let mut from = 0;
            while let Some(at) = text[from..].find(form) {
                let start = from + at;
                spans.push((start, start + form.len()));
                let step = text[start..].chars().next().map_or(1, char::len_utf8);
                from = start + step;
            }
        }
    }
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < spans.len() {
        let (start, mut end) = spans[i];
        i += 1;
        while i < spans.len() && spans[i].0 <= end {
            end = end.max(spans[i].1);
            i += 1;
        }
        out.push_str(&text[copied..start]);
        out.push_str("<redacted>");
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// A `no_proxy` list and the variable it came from.
type NamedList = (&'static str, NoProxy);

/// The proxy of the config, or of the environment when asked for, and the environment's
/// `no_proxy` list.
fn choose_proxy(
    s: &Settings,
    lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(Option<Chosen>, Option<NamedList>)> {
    if s.uses_proxy() {
        let host = Host::parse("http_proxy.proxy_host", &s.proxy.host).map_err(Error::config)?;
        return Ok((
            Some(Chosen {
                host,
                port: s.proxy.port,
                tls: s.proxy.ssl,
                user: s.proxy.user.clone(),
                password: s.proxy.password.clone(),
                password_as_written: Secret::default(),
                source: ProxySource::Config,
            }),
            None,
        ));
    }
    if !s.proxy.from_environment || !s.proxy.host.trim().is_empty() {
        return Ok((None, None));
    }
    let EnvironmentProxy { proxy, no_proxy } =
        environment::select(lookup).map_err(Error::config)?;
    let Some((name, url)) = proxy else {
        return Ok((None, no_proxy));
    };
    if url.tls && !s.ssl {
        return Err(Error::config(format!(
            "{name}: an https:// proxy (TLS to the proxy) requires ssl: true (TLS to the proxy \
             without end-to-end TLS would let the agent believe its metrics are encrypted to \
             the collector when they are not)"
        )));
    }
    if !url.port_given {
        crate::dtun_log!(
            DTUN_LOG_WARN,
            "{name}: the proxy URL {} has no port: using {}, curl's default for {}",
            url.shown(),
            url.port,
            if url.tls { "https://" } else { "http://" }
        );
    }
    // Credentials in the URL win; without them, the config's proxy_user and proxy_password.
    let (user, password, password_as_written) = if url.user.is_empty() {
        (
            s.proxy.user.clone(),
            s.proxy.password.clone(),
            Secret::default(),
        )
    } else {
        (url.user, url.password, url.password_as_written)
    };
    Ok((
        Some(Chosen {
            host: url.host,
            port: url.port,
            tls: url.tls,
            user,
            password,
            password_as_written,
            source: ProxySource::Environment(name),
        }),
        no_proxy,
    ))
}

/// The proxy hop of a chosen proxy: its TLS, and the CONNECT request with the credentials,
/// the user agent and the extra headers; every secret in it kept for redaction.
fn proxy_hop(s: &Settings, c: Chosen) -> Result<ProxyHop> {
    let tls = if c.tls {
        Some(TlsHop {
            config: tls::client_config(s.proxy.ca.as_ref(), s.proxy.verify)?,
            name: tls::server_name(&c.host)?,
            verify: s.proxy.verify,
            system_store: tls::uses_system_store(s.proxy.ca.as_ref(), s.proxy.verify),
        })
    } else {
        None
    };
    let authority = s.collector.authority(s.collector_port);
    let mut secrets: Vec<Secret> = s.proxy.headers.iter().map(|(_, v)| v.clone()).collect();
    let mode = s
        .proxy
        .auth
        .or_else(|| (!c.user.is_empty()).then_some(crate::config::ProxyAuth::Basic));
    if !c.password.is_empty() {
        secrets.push(c.password.clone());
    }
    // Whatever the scheme: the environment URL's percent-encoded form of the password.
    if !c.password_as_written.is_empty() {
        secrets.push(c.password_as_written.clone());
    }
    let auth = if c.user.is_empty() || mode != Some(crate::config::ProxyAuth::Basic) {
        None
    } else {
        let auth = proxy::basic_credentials(&c.user, &c.password);
        let encoded = auth.expose().strip_prefix(b"Basic ").unwrap_or_default();
        secrets.push(Secret::new(encoded.to_vec()));
        Some(auth)
    };
    let default_agent = format!("dragent-tunnel/{}", crate::VERSION);
    let user_agent = match s.proxy.user_agent.as_deref() {
        None => Some(default_agent.as_str()),
        Some("") => None,
        Some(ua) => Some(ua),
    };
    let request =
        proxy::connect_request_with(&authority, auth.as_ref(), user_agent, &s.proxy.headers);
    Ok(ProxyHop {
        host: c.host,
        port: c.port,
        tls,
        request,
        // Negotiate needs no user: the ticket is in the credential cache (also under `any`).
        authenticates: !c.user.is_empty()
            || mode == Some(crate::config::ProxyAuth::Negotiate)
            || (cfg!(feature = "gssapi") && mode == Some(crate::config::ProxyAuth::Any)),
        auth: mode,
        user: c.user.clone(),
        password: c.password.clone(),
        keytab: s.proxy.keytab.clone(),
        authority,
        user_agent: user_agent.map(str::to_owned),
        headers: s.proxy.headers.clone(),
        source: c.source,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::TunnelConfig;

    #[test]
    fn a_secret_is_redacted_in_every_form_peer_text_is_printed_in_and_however_short() {
        use super::{redact_secret, Secret};
        let tab = Secret::new(b"Tenant\tToken-4f9a2c".to_vec());
        // A reason phrase shows control characters as '?'.
        assert_eq!(
            redact_secret("403 Tenant?Token-4f9a2c".into(), &tab),
            "403 <redacted>"
        );
        let quoted = Secret::new(br#"pa"ss\wd"#.to_vec());
        let preview = format!("{:?}", r#"x pa"ss\wd y"#);
        assert!(!redact_secret(preview, &quoted).contains("ss"));
        let short = Secret::new(b"Zq".to_vec());
        assert_eq!(redact_secret("407 Zq".into(), &short), "407 <redacted>");
        assert_eq!(
            redact_secret("nothing".into(), &Secret::new(Vec::new())),
            "nothing"
        );
    }

    fn plan_with_password() -> std::sync::Arc<super::Plan> {
        TunnelConfig::from_yaml(
            "http_proxy: {proxy_host: p.example, proxy_port: 3128, proxy_user: agent, proxy_password: 'p:a@s/s%w+rd'}",
        )
        .unwrap()
        .plan()
    }

    #[test]
    fn secrets_are_redacted_before_the_cut() {
        let plan = plan_with_password();
        let b64 = "YWdlbnQ6cDphQHMvcyV3K3Jk";
        for echoed in ["p:a@s/s%w+rd", b64] {
            let text = format!("{}{echoed}", "x".repeat(75));
            let shown = plan.redact_and_shorten(&text, 80);
            assert!(!shown.contains("p:a@s"), "{shown}");
            assert!(!shown.contains("YWdlbnQ6"), "{shown}");
            assert!(shown.ends_with("..."), "{shown}");
        }
        assert_eq!(plan.redact_and_shorten("Forbidden", 80), "Forbidden");
    }

    #[test]
    fn a_short_secret_inside_a_longer_one_does_not_shadow_it() {
        // Header values "b", "K" and "f" occur inside the Basic token and the Digest
        // response: the longer secrets must still be replaced whole.
        let plan = TunnelConfig::from_yaml(
            "http_proxy: {proxy_host: p.example, proxy_port: 3128, proxy_user: agent, \
             proxy_password: 'p:a@s/s%w+rd', headers: {X-Agent-Id: 'b', X-Zone: 'K', X-B: 'f'}}",
        )
        .unwrap()
        .plan();
        let b64 = "YWdlbnQ6cDphQHMvcyV3K3Jk";
        let response = super::Secret::new(b"070f5cf8bf24e041024c52f7b556adbc".to_vec());
        let text = format!("HTTP/1.1 403 Basic {b64}");
        let shown = plan.redact_with(&[], &text, 80);
        assert_eq!(shown, "HTTP/1.1 403 Basic <redacted>");
        let text = "HTTP/1.1 403 070f5cf8bf24e041024c52f7b556adbc";
        let shown = plan.redact_with(std::slice::from_ref(&response), text, 80);
        assert_eq!(shown, "HTTP/1.1 403 <redacted>");
        // Touching and overlapping matches make one span; the short ones still count alone.
        let text = format!("x{b64}bK y b f");
        assert_eq!(
            plan.redact_and_shorten(&text, 200),
            "x<redacted> y <redacted> <redacted>"
        );
        // Near the cut: redacted first, so no prefix of the token survives the cut.
        let text = format!("{}{b64}", "x".repeat(70));
        let shown = plan.redact_with(&[], &text, 80);
        assert!(!shown.contains("YWdl"), "{shown}");
    }

    #[test]
    fn overlapping_occurrences_of_one_secret_are_all_replaced() {
        use super::{redact_all, Secret};
        let aa = Secret::new(b"aa".to_vec());
        assert_eq!(redact_all("xaaay", [&aa].into_iter()), "x<redacted>y");
        let long = Secret::new("pässwörd".as_bytes().to_vec());
        let short = Secret::new("ö".as_bytes().to_vec());
        assert_eq!(
            redact_all("[pässwörd] ö", [&short, &long].into_iter()),
            "[<redacted>] <redacted>"
        );
    }
}
