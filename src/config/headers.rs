//! Extra CONNECT headers (`http_proxy.headers`, a map) and the `User-Agent`
//! (`http_proxy.user_agent`): checked so that nothing a user writes can split the request or
//! override what the library owns. Header values are secrets (a tenant token): no message
//! here ever quotes one, only the header's name.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::scalar::Scalar;

/// The dotted prefix of one header in `dtun_config_set`: `http_proxy.headers.X-Tenant`.
pub const HEADER_KEY_PREFIX: &str = "http_proxy.headers.";

/// Headers the library writes itself, or that would change the request's framing.
const OWNED: [(&str, &str); 11] = [
    (
        "host",
        "the library writes Host: from collector and collector_port",
    ),
    ("content-length", "a CONNECT request has no body"),
    ("transfer-encoding", "a CONNECT request has no body"),
    (
        "proxy-authorization",
        "set http_proxy.proxy_user and http_proxy.proxy_password instead",
    ),
    ("user-agent", "set http_proxy.user_agent instead"),
    ("connection", "the library manages the connection"),
    (
        "proxy-connection",
        "the library manages the connection (it would change how a 407 is answered)",
    ),
    ("keep-alive", "the library manages the connection"),
    (
        "upgrade",
        "a CONNECT asks for no protocol switch (a proxy may answer 101)",
    ),
    ("te", "a CONNECT request has no body"),
    ("expect", "a CONNECT request has no body to announce"),
];

/// Checks a header name: an RFC 9110 token (letters, digits and ``!#$%&'*+-.^_`|~``), at
/// most 256 characters, not one the library owns. Names are not secret and are quoted.
pub fn check_name(name: &str) -> Result<(), String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 256 || !name.bytes().all(tchar) {
        let shown: String = name.chars().take(64).collect();
        return Err(format!(
            "http_proxy.headers: {:?} is not a valid header name (letters, digits and \
             !#$%&'*+-.^_`|~, at most 256 characters)",
            shown
        ));
    }
    if let Some((_, why)) = OWNED
        .iter()
        .find(|(owned, _)| owned.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "http_proxy.headers: {name} may not be set here: {why}"
        ));
    }
    Ok(())
}

/// Checks a header value (or the user agent): no CR, LF, NUL or other control character but
/// the tab, at most 8 KiB. `what` names it in errors; the value is never quoted.
pub fn check_value(what: &str, value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "{what}: the value holds a line break, NUL or another control character, which \
             would split or end the CONNECT request (the value is not shown: it may be a secret)"
        ));
    }
    if value.len() > 8192 {
        return Err(format!(
            "{what}: the value is longer than 8192 bytes (the value is not shown: it may be a secret)"
        ));
    }
    Ok(())
}

/// The `http_proxy.headers` map as written, in document order (values `None` for YAML null).
#[derive(Debug, Default)]
pub(crate) struct RawHeaders(pub Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawHeaders, D::Error> {
        d.deserialize_map(HeadersVisitor)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = RawHeaders;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of header names to values (http_proxy.headers)")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawHeaders, E> {
        Ok(RawHeaders::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeaders, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<Scalar>()? {
            let value = map.next_value::<Option<Scalar>>()?;
            out.push((name.0, value.map(|v| v.0)));
        }
        Ok(RawHeaders(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["X-Tenant", "x-api-key", "X_Token.1", "a!#$%&'*+-.^_`|~"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "X Tenant",
            "X:Tenant",
            "X\r\nInjected",
            "X\0",
            "Ü",
            "(x)",
        ] {
            assert!(check_name(bad)
                .unwrap_err()
                .starts_with("http_proxy.headers:"));
        }
        assert!(check_name(&"x".repeat(257)).is_err());
        for owned in [
            "Host",
            "CONTENT-LENGTH",
            "proxy-authorization",
            "Transfer-Encoding",
            "User-Agent",
            "Connection",
        ] {
            let e = check_name(owned).unwrap_err();
            assert!(e.contains("may not be set"), "{e}");
        }
    }

    #[test]
    fn values_are_never_quoted() {
        let secret = "tok3n-Secret-Value";
        for bad in [
            format!("{secret}\r\nX-Injected: 1"),
            format!("{secret}\n"),
            format!("{secret}\r"),
            format!("{secret}\0"),
            format!("{secret}\u{7f}"),
            format!("{secret}{}", "x".repeat(9000)),
        ] {
            let e = check_value("http_proxy.headers.X-Tenant", &bad).unwrap_err();
            assert!(e.starts_with("http_proxy.headers.X-Tenant:"), "{e}");
            assert!(!e.contains("tok3n"), "{e}");
        }
        assert!(check_value("k", "a\tb ü €").is_ok());
        assert!(check_value("k", "").is_ok());
    }

    #[test]
    fn yaml_map_in_order() {
        let h: RawHeaders =
            serde_yaml::from_str("{X-B: 2, X-A: 'one', X-N: ~, X-T: true}").unwrap();
        assert_eq!(
            h.0,
            [
                ("X-B".to_string(), Some("2".to_string())),
                ("X-A".into(), Some("one".into())),
                ("X-N".into(), None),
                ("X-T".into(), Some("true".into())),
            ]
        );
        assert!(serde_yaml::from_str::<RawHeaders>("{X-A: [1, 2]}").is_err());
        assert!(serde_yaml::from_str::<RawHeaders>("[a, b]").is_err());
    }
}
