//! Host names and IP literals as they appear in the config, checked so that nothing a user
//! writes can inject bytes into the CONNECT request.

use std::fmt;
use std::net::IpAddr;

use rustls_pki_types::ServerName;

/// A host: a DNS name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, as written (the proxy resolves the collector's name, not us).
    Name(String),
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
}

impl Host {
    /// Parses a host from the config: a name of letters, digits, `-`, `_` and `.`, or an IP
    /// literal (IPv6 with or without brackets). `key` is named in errors.
    pub fn parse(key: &str, text: &str) -> Result<Host, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("{key}: must not be empty"));
        }
        let unbracketed = t
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(t);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let valid_name = t.len() <= 253
            && t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !t.starts_with('.')
            && !t.contains("..")
            // Also a valid DNS name for TLS (no all-numeric last label like `999`, which
            // resolvers read as an IPv4 address; no label starting or ending with '-'), so
            // that a bad name is reported here, with its key, and not when the plan is built.
            && ServerName::try_from(t).is_ok();
        if valid_name {
            Ok(Host::Name(t.to_owned()))
        } else if let Some(why) = numeric_last_label(t) {
            Err(format!("{key}: {why}"))
        } else {
            // A proxy written as a URL (`http://user:password@host:port`, as curl takes it)
            // carries credentials: show only what follows the last '@'.
            let shown = match t.rfind('@') {
                Some(at) => format!(
                    "\"<credentials hidden>@{}\"",
                    super::scalar::quote_whole_or_count(&t[at + 1..]).trim_matches('"')
                ),
                None => super::scalar::quote_whole_or_count(t),
            };
            Err(format!(
                "{key}: {shown} is neither a host name (letters, digits, '-', '_', '.') nor an IP address"
            ))
        }
    }

    /// The `host:port` form used in `CONNECT` and `Host:` (IPv6 in brackets).
    pub fn authority(&self, port: u16) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            other => format!("{other}:{port}"),
        }
    }

    /// Whether this is an IP literal (no SNI is sent for those).
    pub fn is_ip(&self) -> bool {
        matches!(self, Host::Ip(_))
    }
}

/// Why a name made of valid characters whose last label is all digits (`test.80`) is not a
/// host name, or `None` for any other text: resolvers read such a name as an IPv4 address, and
/// it is not a valid DNS name for TLS. Only a name of valid characters qualifies, so nothing
/// quoted here can hide a credential.
fn numeric_last_label(t: &str) -> Option<String> {
    let plain = t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    let last = t.trim_end_matches('.').rsplit('.').next()?;
    if !plain || t.len() > 253 || last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "\"{t}\" is not a host name: its last label \"{last}\" is all digits (a host name's \
         last label must contain a letter; a numeric one reads as part of an IPv4 address), \
         and it is not a valid IP address either"
    ))
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_literals() {
        assert_eq!(
            Host::parse("k", "collector.sysdigcloud.com").unwrap(),
            Host::Name("collector.sysdigcloud.com".into())
        );
        assert!(Host::parse("k", "10.0.0.1").unwrap().is_ip());
        assert_eq!(
            Host::parse("k", "::1").unwrap().authority(6443),
            "[::1]:6443"
        );
        assert_eq!(
            Host::parse("k", "[2001:db8::1]").unwrap().authority(1),
            "[2001:db8::1]:1"
        );
        assert_eq!(
            Host::parse("k", "10.0.0.1").unwrap().authority(80),
            "10.0.0.1:80"
        );
    }

    #[test]
    fn an_all_digit_last_label_is_named_as_such() {
        for (bad, last) in [("test.80", "80"), ("a.b.999", "999"), ("1.2.3.4.5", "5")] {
            let e = Host::parse("collector", bad).unwrap_err();
            assert!(e.starts_with("collector:"), "{e}");
            assert!(
                e.contains(&format!("last label \"{last}\" is all digits")),
                "{e}"
            );
            assert!(!e.contains("neither a host name"), "{e}");
        }
        // Other junk keeps the general message.
        let e = Host::parse("collector", "a b.80").unwrap_err();
        assert!(e.contains("neither a host name"), "{e}");
    }

    #[test]
    fn injection_and_junk_rejected() {
        for bad in [
            "",
            "a b",
            "evil\r\nX-Injected: 1",
            "host/path",
            "user@host",
            "a..b",
            ".a",
            "h\0",
        ] {
            let e = Host::parse("collector", bad).unwrap_err();
            assert!(e.starts_with("collector:"), "{e}");
        }
    }
}
