//! The proxy from the environment (`http_proxy.from_environment: true`), chosen with curl's
//! precedence for an `https://` transfer, which is what a tunnel to the collector is:
//! `https_proxy`, then `HTTPS_PROXY`, then `all_proxy`, then `ALL_PROXY` (lowercase first);
//! `http_proxy` / `HTTP_PROXY` never (curl ignores uppercase `HTTP_PROXY` because CGI
//! programs receive a request's `Proxy:` header under that name, and `http_proxy` is for
//! plain-HTTP transfers, which this is not). The bypass list: `no_proxy`, then `NO_PROXY`.
//! A variable set to an empty (or blank) value counts as unset, as in curl.
//!
//! No I/O: the variables come in through a lookup function, so tests never touch the
//! process environment; [`from_process`] is the one place that reads it.

use std::ffi::OsString;

use super::no_proxy::NoProxy;
use super::proxy_url::ProxyUrl;

/// The proxy variables, in the order they are tried.
pub const PROXY_VARIABLES: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// The bypass variables, in the order they are tried.
pub const NO_PROXY_VARIABLES: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// What the environment says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentProxy {
    /// The proxy and the variable it came from.
    pub proxy: Option<(&'static str, ProxyUrl)>,
    /// The bypass list and the variable it came from.
    pub no_proxy: Option<(&'static str, NoProxy)>,
}

/// Reads the variables through `lookup`. A variable that is set but not UTF-8, or whose
/// value does not parse, is an error naming it (the password hidden).
pub fn select(lookup: impl Fn(&str) -> Option<OsString>) -> Result<EnvironmentProxy, String> {
    let first = |names: &[&'static str]| -> Result<Option<(&'static str, String)>, String> {
        for name in names {
            if let Some(value) = lookup(name) {
                let value = value
                    .into_string()
                    .map_err(|_| format!("{name}: the environment variable is not UTF-8 text"))?;
                if !value.trim().is_empty() {
                    return Ok(Some((*name, value)));
                }
            }
        }
        Ok(None)
    };
    let proxy = match first(&PROXY_VARIABLES)? {
        Some((name, mut value)) => {
            let parsed = ProxyUrl::parse(name, value.trim());
            super::secret::wipe_string(&mut value);
            Some((name, parsed?))
        }
        None => None,
    };
    let no_proxy = match first(&NO_PROXY_VARIABLES)? {
        Some((name, value)) => Some((name, NoProxy::parse(name, &value)?)),
        None => None,
    };
    Ok(EnvironmentProxy { proxy, no_proxy })
}

/// Reads the variables from this process's environment.
pub fn from_process() -> Result<EnvironmentProxy, String> {
    select(|name| std::env::var_os(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<EnvironmentProxy, String> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        select(|name| map.get(name).cloned())
    }

    fn variable(pairs: &[(&str, &str)]) -> Option<&'static str> {
        env(pairs).unwrap().proxy.map(|(name, _)| name)
    }

    #[test]
    fn curl_precedence() {
        let all = [
            ("https_proxy", "http://a:1"),
            ("HTTPS_PROXY", "http://b:1"),
            ("all_proxy", "http://c:1"),
            ("ALL_PROXY", "http://d:1"),
            ("http_proxy", "http://e:1"),
            ("HTTP_PROXY", "http://f:1"),
        ];
        assert_eq!(variable(&all), Some("https_proxy"));
        assert_eq!(variable(&all[1..]), Some("HTTPS_PROXY"));
        assert_eq!(variable(&all[2..]), Some("all_proxy"));
        assert_eq!(variable(&all[3..]), Some("ALL_PROXY"));
        assert_eq!(variable(&all[4..]), None, "never http_proxy nor HTTP_PROXY");
        assert_eq!(variable(&[]), None);
        let e = env(&all[..1]).unwrap();
        let (_, url) = e.proxy.unwrap();
        assert_eq!(url.host.to_string(), "a");
    }

    #[test]
    fn empty_counts_as_unset() {
        assert_eq!(
            variable(&[("https_proxy", ""), ("HTTPS_PROXY", "http://b:1")]),
            Some("HTTPS_PROXY")
        );
        assert_eq!(
            variable(&[("https_proxy", "  "), ("all_proxy", "http://c:1")]),
            Some("all_proxy")
        );
        let e = env(&[("no_proxy", ""), ("NO_PROXY", "example.com")]).unwrap();
        assert_eq!(e.no_proxy.unwrap().0, "NO_PROXY");
    }

    #[test]
    fn no_proxy_lowercase_first() {
        let e = env(&[("no_proxy", "a.example"), ("NO_PROXY", "b.example")]).unwrap();
        let (name, list) = e.no_proxy.unwrap();
        assert_eq!(name, "no_proxy");
        assert_eq!(list.describe(), "a.example");
        assert!(env(&[]).unwrap().no_proxy.is_none());
    }

    #[test]
    fn errors_name_the_variable_and_hide_the_password() {
        let e = env(&[("HTTPS_PROXY", "socks5://u:Secret123@p:1080")]).unwrap_err();
        assert!(e.starts_with("HTTPS_PROXY: "), "{e}");
        assert!(!e.contains("Secret123"), "{e}");
        let e = env(&[("all_proxy", "http://u:Secret123@p:1/x")]).unwrap_err();
        assert!(e.starts_with("all_proxy: "), "{e}");
        assert!(!e.contains("Secret123"), "{e}");
        let e = env(&[("NO_PROXY", "10.0.0.0/99")]).unwrap_err();
        assert!(e.starts_with("NO_PROXY: "), "{e}");
    }

    #[test]
    fn not_utf8_is_an_error() {
        use std::os::unix::ffi::OsStringExt;
        let e = select(|name| {
            (name == "https_proxy").then(|| OsString::from_vec(b"http://\xff:1".to_vec()))
        })
        .unwrap_err();
        assert!(e.starts_with("https_proxy: "), "{e}");
    }
}
