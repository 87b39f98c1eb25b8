//! The plan of a tunnel: everything one open needs, built once per config (TLS configs, the
//! CONNECT request with its credentials) and shared by every open through an `Arc`, so that
//! opens do no per-connection setup and a freed config leaves its connections untouched.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::config::{Host, Secret, Settings};
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
    /// Whether the request carries Basic credentials.
    pub authenticates: bool,
    /// Texts that must never reach a message: the password and the Authorization value.
    secrets: Vec<Secret>,
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
}

impl Plan {
    /// Builds the plan of a checked configuration.
    pub fn build(s: &Settings) -> Result<Plan> {
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
        let proxy = if s.uses_proxy() {
            let host =
                Host::parse("http_proxy.proxy_host", &s.proxy.host).map_err(Error::config)?;
            let tls = if s.proxy.ssl {
                Some(TlsHop {
                    config: tls::client_config(s.proxy.ca.as_ref(), s.proxy.verify)?,
                    name: tls::server_name(&host)?,
                    verify: s.proxy.verify,
                    system_store: tls::uses_system_store(s.proxy.ca.as_ref(), s.proxy.verify),
                })
            } else {
                None
            };
            let authority = s.collector.authority(s.collector_port);
            let mut secrets = Vec::new();
            let request = if s.proxy.user.is_empty() {
                proxy::connect_request(&authority, None)
            } else {
                let auth = proxy::basic_credentials(&s.proxy.user, &s.proxy.password);
                let request = proxy::connect_request(&authority, Some(&auth));
                secrets.push(s.proxy.password.clone());
                let encoded = auth.expose().strip_prefix(b"Basic ").unwrap_or_default();
                secrets.push(Secret::new(encoded.to_vec()));
                request
            };
            Some(ProxyHop {
                host,
                port: s.proxy.port,
                tls,
                request,
                authenticates: !s.proxy.user.is_empty(),
                secrets,
            })
        } else {
            None
        };
        Ok(Plan {
            collector: s.collector.clone(),
            collector_port: s.collector_port,
            collector_tls,
            proxy,
            tcp: TcpOptions::of(s),
        })
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
        match &self.proxy {
            None => format!("direct to {collector}"),
            Some(p) => format!(
                "via proxy {} ({}{}) to {collector}",
                p.host.authority(p.port),
                if p.tls.is_some() { "TLS" } else { "plain" },
                if p.authenticates { ", Basic auth" } else { "" },
            ),
        }
    }

    /// Text that came from the network, fit for a message: every secret replaced (a proxy
    /// could echo our header back in its reason phrase), then cut to `max` characters. In
    /// that order: a cut first could leave a prefix of a secret that no longer matches.
    pub fn redact_and_shorten(&self, text: &str, max: usize) -> String {
        let redacted = self.redact(text);
        if redacted.chars().count() <= max {
            redacted
        } else {
            let mut cut: String = redacted.chars().take(max).collect();
            cut.push_str("...");
            cut
        }
    }

    /// Replaces every secret in a text.
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Some(p) = &self.proxy {
            for secret in &p.secrets {
                if let Ok(s) = std::str::from_utf8(secret.expose()) {
                    if s.len() >= 3 && out.contains(s) {
                        out = out.replace(s, "<redacted>");
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::TunnelConfig;

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
}
