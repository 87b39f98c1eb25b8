//! `http_proxy.proxy_auth` and `http_proxy.proxy_keytab`: which scheme answers the proxy's
//! challenge, and what is available in this build.

use std::fmt;

use crate::error::{Error, Result};

/// The value of `http_proxy.proxy_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAuth {
    /// Basic, sent with the first CONNECT (the agent's behaviour, the default with a user).
    Basic,
    /// Digest (RFC 7616): the first CONNECT goes without credentials, the 407's challenge is
    /// answered.
    Digest,
    /// NTLMv2.
    Ntlm,
    /// Negotiate (Kerberos through GSSAPI).
    Negotiate,
    /// A first CONNECT without credentials, then the strongest scheme the 407 offers that
    /// this build can answer: Negotiate > Digest > NTLM > Basic (curl's order).
    Any,
}

impl ProxyAuth {
    /// Parses the key's text (case-insensitive, surrounding blanks ignored).
    pub fn parse(key: &str, text: &str) -> Result<ProxyAuth> {
        let value = match text.trim().to_ascii_lowercase().as_str() {
            "basic" => ProxyAuth::Basic,
            "digest" => ProxyAuth::Digest,
            "ntlm" => ProxyAuth::Ntlm,
            "negotiate" => ProxyAuth::Negotiate,
            "any" => ProxyAuth::Any,
            _ => {
                return Err(Error::config(format!(
                    "{key}: expected one of basic, digest, ntlm, negotiate, any, found {}",
                    super::scalar::describe(text)
                )))
            }
        };
        Ok(value)
    }

    /// The value as written in dragent.yaml.
    pub fn name(self) -> &'static str {
        match self {
            ProxyAuth::Basic => "basic",
            ProxyAuth::Digest => "digest",
            ProxyAuth::Ntlm => "ntlm",
            ProxyAuth::Negotiate => "negotiate",
            ProxyAuth::Any => "any",
        }
    }

    /// The route's words for it (`, Basic auth`).
    pub fn route_label(self) -> &'static str {
        match self {
            ProxyAuth::Basic => ", Basic auth",
            ProxyAuth::Digest => ", Digest auth",
            ProxyAuth::Ntlm => ", NTLM auth",
            ProxyAuth::Negotiate => ", Negotiate auth",
            ProxyAuth::Any => ", any auth",
        }
    }

    /// Whether this build can do the scheme; the error says how to get it when not.
    pub fn check_available(self, key: &str) -> Result<()> {
        match self {
            ProxyAuth::Negotiate if !cfg!(feature = "gssapi") => Err(Error::config(format!(
                "{key}: negotiate support is not compiled in (build with the `gssapi` feature: cargo build --features gssapi, or CMake with -DDTUN_GSSAPI=ON, the default, and MIT krb5's GSSAPI development files installed, Debian libkrb5-dev)"
            ))),
            ProxyAuth::Negotiate
            | ProxyAuth::Basic
            | ProxyAuth::Digest
            | ProxyAuth::Ntlm
            | ProxyAuth::Any => Ok(()),
        }
    }
}

impl fmt::Display for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::ProxyAuth;
    use crate::config::TunnelConfig;
    use crate::error::Status;

    fn yaml(auth: &str, user: &str) -> String {
        format!(
            "http_proxy: {{proxy_host: p.example, proxy_port: 3128, proxy_user: '{user}', proxy_password: pw, proxy_auth: {auth}}}"
        )
    }

    #[test]
    fn default_is_basic_with_a_user_and_none_without() {
        let with = TunnelConfig::from_yaml(
            "http_proxy: {proxy_host: p.example, proxy_port: 3128, proxy_user: agent}",
        )
        .unwrap();
        assert_eq!(with.settings().proxy_auth(), Some(ProxyAuth::Basic));
        let without =
            TunnelConfig::from_yaml("http_proxy: {proxy_host: p.example, proxy_port: 3128}")
                .unwrap();
        assert_eq!(without.settings().proxy_auth(), None);
    }

    #[test]
    fn each_available_value_parses_in_any_case() {
        for (text, want) in [
            ("basic", ProxyAuth::Basic),
            ("Digest", ProxyAuth::Digest),
            ("ANY", ProxyAuth::Any),
            ("' digest '", ProxyAuth::Digest),
        ] {
            let cfg = TunnelConfig::from_yaml(&yaml(text, "agent")).unwrap();
            assert_eq!(cfg.settings().proxy_auth(), Some(want), "{text}");
        }
        let any = TunnelConfig::from_yaml(&yaml("any", "")).unwrap();
        assert_eq!(any.settings().proxy_auth(), Some(ProxyAuth::Any));
    }

    #[test]
    fn bad_values_name_the_key() {
        for text in ["kerberos", "'basic,digest'", "1", "true"] {
            let e = TunnelConfig::from_yaml(&yaml(text, "agent")).unwrap_err();
            assert_eq!(e.status(), Status::DTUN_ERR_CONFIG, "{e}");
            assert!(e.message().contains("http_proxy.proxy_auth"), "{e}");
            assert!(e.message().contains("basic, digest, ntlm"), "{e}");
        }
    }

    #[cfg(feature = "gssapi")]
    #[test]
    fn negotiate_is_accepted_without_a_user_and_a_keytab_needs_the_principal() {
        let cfg = TunnelConfig::from_yaml(&yaml("negotiate", "")).unwrap();
        assert_eq!(cfg.settings().proxy_auth(), Some(ProxyAuth::Negotiate));
        let e = TunnelConfig::from_yaml(
            "http_proxy: {proxy_host: p.example, proxy_port: 3128, proxy_auth: negotiate, proxy_keytab: /k}",
        )
        .unwrap_err();
        assert_eq!(e.status(), Status::DTUN_ERR_CONFIG, "{e}");
        assert!(e.message().contains("http_proxy.proxy_keytab"), "{e}");
        assert!(e.message().contains("http_proxy.proxy_user"), "{e}");
        let cfg = TunnelConfig::from_yaml(
            "http_proxy: {proxy_host: p.example, proxy_port: 3128, proxy_auth: negotiate, proxy_keytab: /k, proxy_user: agent@R}",
        )
        .unwrap();
        assert_eq!(cfg.settings().proxy_auth(), Some(ProxyAuth::Negotiate));
    }

    #[cfg(not(feature = "gssapi"))]
    #[test]
    fn negotiate_says_how_to_enable_it_and_ntlm_is_accepted() {
        let e = TunnelConfig::from_yaml(&yaml("negotiate", "")).unwrap_err();
        assert_eq!(e.status(), Status::DTUN_ERR_CONFIG, "{e}");
        assert!(
            e.message()
                .contains("negotiate support is not compiled in (build with the `gssapi` feature"),
            "{e}"
        );
        assert!(e.message().contains("-DDTUN_GSSAPI=ON"), "{e}");
        assert!(e.message().contains("libkrb5-dev"), "{e}");
        let cfg = TunnelConfig::from_yaml(&yaml("ntlm", "DOM\\agent")).unwrap();
        assert_eq!(cfg.settings().proxy_auth(), Some(ProxyAuth::Ntlm));
        assert_eq!(cfg.settings().proxy.user, "DOM\\agent");
    }

    #[test]
    fn basic_and_digest_need_a_user() {
        for text in ["basic", "digest", "ntlm"] {
            let e = TunnelConfig::from_yaml(&yaml(text, "")).unwrap_err();
            assert!(e.message().contains("http_proxy.proxy_user"), "{e}");
        }
    }

    #[test]
    fn keytab_is_read_and_resolved_against_root_dir() {
        let cfg = TunnelConfig::from_yaml(
            "root_dir: /opt/x\nhttp_proxy: {proxy_host: p, proxy_port: 1, proxy_keytab: etc/agent.keytab}",
        )
        .unwrap();
        assert_eq!(
            cfg.settings().proxy.keytab.as_deref(),
            Some(std::path::Path::new("/opt/x/etc/agent.keytab"))
        );
        let mut cfg = cfg;
        cfg.set("http_proxy.proxy_keytab", "").unwrap();
        assert_eq!(cfg.settings().proxy.keytab, None);
        cfg.set("http_proxy.proxy_auth", "any").unwrap();
        assert_eq!(cfg.settings().proxy.auth, Some(ProxyAuth::Any));
        cfg.set("http_proxy.proxy_auth", "~").unwrap();
        assert_eq!(cfg.settings().proxy.auth, None);
    }
}
