//! Proxy URLs as the environment carries them (`https_proxy=http://user:pa%40ss@proxy:3128`).
//! No I/O: text in, a checked proxy (or an error that never shows the password) out.
//!
//! Accepted: `http://[user[:password]@]host[:port][/]` and the same with `https://` (TLS to
//! the proxy); the scheme in any case; a URL without a scheme is `http://`, as curl reads it.
//! IPv6 literals in brackets (`http://[::1]:3128`); user and password percent-decoded (`%40`
//! for `@`, `%3A` for `:`, `%25` for `%`). Without a port, curl's default: 1080 for `http://`,
//! 443 for `https://` (the caller warns, naming the port). Refused, with an error that names
//! the variable and hides the credentials: other schemes (`socks5://`), a path, a query or a
//! fragment, blanks or control characters, bad percent escapes, a raw `@`, `/`, `?`, `#` in
//! the user or password, a user name holding `:` (Basic auth cannot carry it), a password
//! without a user, credentials that are not UTF-8 once decoded, port 0 or out of range.

use std::net::{IpAddr, Ipv6Addr};

use super::{Host, Secret};

/// curl's default port for an `http://` proxy without one.
pub const DEFAULT_HTTP_PROXY_PORT: u16 = 1080;
/// curl's default port for an `https://` proxy without one.
pub const DEFAULT_HTTPS_PROXY_PORT: u16 = 443;

/// A parsed proxy URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `https://`: TLS to the proxy.
    pub tls: bool,
    /// The proxy's host.
    pub host: Host,
    /// The proxy's port (the default when none was written).
    pub port: u16,
    /// Whether the URL wrote the port.
    pub port_given: bool,
    /// The decoded user name; empty: no credentials.
    pub user: String,
    /// The decoded password.
    pub password: Secret,
    /// The password as written (percent-encoded), kept only to be redacted from messages.
    pub password_as_written: Secret,
}

impl ProxyUrl {
    /// Parses a proxy URL; `source` (a variable or key name) is named in errors.
    pub fn parse(source: &str, text: &str) -> Result<ProxyUrl, String> {
        let err = |why: &str| format!("{source}: the proxy URL {why}");
        if text.is_empty() {
            return Err(err("is empty"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(
                "holds a blank or a control character, which a URL cannot hold",
            ));
        }
        let (tls, rest) = match text.find("://") {
            Some(i) => {
                let scheme = &text[..i];
                match scheme.to_ascii_lowercase().as_str() {
                    "http" => (false, &text[i + 3..]),
                    "https" => (true, &text[i + 3..]),
                    _ => {
                        let shown = if !scheme.is_empty()
                            && scheme.len() <= 16
                            && scheme
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                        {
                            format!("\"{scheme}://\"")
                        } else {
                            "its scheme".to_owned()
                        };
                        return Err(err(&format!(
                            "has an unsupported scheme: {shown} (only http:// and https:// \
                             proxies are supported)"
                        )));
                    }
                }
            }
            None => (false, text),
        };
        let (userinfo, hostport) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
        if hostport.contains(['/', '?', '#']) {
            return Err(err(
                "has a path, a query or a fragment: a proxy URL is scheme://[user[:password]@]host[:port]",
            ));
        }
        let (host, port) = split_host_port(hostport).map_err(|why| err(&why))?;
        let host = match host {
            HostText::V6(ip) => Host::Ip(IpAddr::V6(ip)),
            HostText::Other(h) => {
                if h.is_empty() {
                    return Err(err("has no host"));
                }
                Host::parse(source, h)?
            }
        };
        let (port, port_given) = match port {
            Some(p) => (p, true),
            None if tls => (DEFAULT_HTTPS_PROXY_PORT, false),
            None => (DEFAULT_HTTP_PROXY_PORT, false),
        };
        let (user, password, password_as_written) = match userinfo {
            None => (String::new(), Secret::default(), Secret::default()),
            Some(info) => credentials(info).map_err(|why| err(&why))?,
        };
        Ok(ProxyUrl {
            tls,
            host,
            port,
            port_given,
            user,
            password,
            password_as_written,
        })
    }

    /// The URL fit for a log or a report: `http://<credentials hidden>@host:port`.
    pub fn shown(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            if self.user.is_empty() {
                ""
            } else {
                "<credentials hidden>@"
            },
            self.host.authority(self.port)
        )
    }
}

enum HostText<'a> {
    V6(Ipv6Addr),
    Other(&'a str),
}

fn split_host_port(hostport: &str) -> Result<(HostText<'_>, Option<u16>), String> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or("has a '[' without its ']' (an IPv6 address is written [2001:db8::1])")?;
        let ip = inner[..close]
            .parse::<Ipv6Addr>()
            .map_err(|_| "has brackets that do not hold an IPv6 address".to_owned())?;
        let after = &inner[close + 1..];
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("has something other than ':port' after the IPv6 address's ']'")?,
            ),
        };
        (HostText::V6(ip), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(
                    "has an IPv6 address without brackets (write http://[2001:db8::1]:3128)".into(),
                )
            }
            Some((h, p)) => (HostText::Other(h), Some(p)),
            None => (HostText::Other(hostport), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
                .filter(|p| *p != 0)
                .ok_or("has a port that is not a number from 1 to 65535")?,
        ),
    };
    Ok((host, port))
}

/// The user and password of `user[:password]`, decoded, and the password as written.
fn credentials(info: &str) -> Result<(String, Secret, Secret), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%".contains(&b);
    if !info.bytes().all(allowed) {
        return Err(
            "has a user name or password holding a character that must be percent-encoded \
             (write %40 for @, %2F for /, %3F for ?, %23 for #, %5B and %5D for [ and ])"
                .into(),
        );
    }
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let user = decode(user).ok_or(
        "has a bad percent escape in its user name ('%' must be followed by two hex digits)",
    )?;
    let user = String::from_utf8(user)
        .map_err(|_| "has a user name that is not UTF-8 once percent-decoded".to_owned())?;
    if user.contains(':') || user.chars().any(char::is_control) {
        return Err(
            "has a user name holding ':' (%3A) or a control character, which Basic auth cannot carry"
                .into(),
        );
    }
    let password_as_written = Secret::new(password.unwrap_or("").as_bytes().to_vec());
    let decoded = match password {
        None => Vec::new(),
        Some(p) => decode(p).ok_or(
            "has a bad percent escape in its password ('%' must be followed by two hex digits)",
        )?,
    };
    let decoded = Secret::new(decoded);
    if std::str::from_utf8(decoded.expose()).is_err() {
        return Err("has a password that is not UTF-8 once percent-decoded".into());
    }
    if user.is_empty() && !decoded.is_empty() {
        return Err("has a password without a user name".into());
    }
    Ok((user, decoded, password_as_written))
}

/// Percent-decodes, strictly: every `%` is followed by two hex digits.
fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    // Sized up front: a reallocation would leave a copy of a password unwiped.
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&h), Some(&l)) => (hex(h), hex(l)),
                _ => (None, None),
            };
            match (hi, lo) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => {
                    super::secret::wipe(&mut out);
                    return None;
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> ProxyUrl {
        ProxyUrl::parse("https_proxy", text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn bad(text: &str) -> String {
        let e = ProxyUrl::parse("https_proxy", text).unwrap_err();
        assert!(e.starts_with("https_proxy: "), "{e}");
        e
    }

    #[test]
    fn forms() {
        let u = ok("http://proxy.example:3128");
        assert_eq!(
            (u.tls, u.host.to_string(), u.port, u.port_given),
            (false, "proxy.example".into(), 3128, true)
        );
        assert!(u.user.is_empty());
        let u = ok("HTTPS://proxy.example:8443/");
        assert!(u.tls);
        assert_eq!(u.port, 8443);
        let u = ok("proxy.example:3128");
        assert!(!u.tls);
        let u = ok("http://[::1]:3128");
        assert_eq!(u.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(u.shown(), "http://[::1]:3128");
        let u = ok("http://10.0.0.1");
        assert_eq!((u.port, u.port_given), (1080, false));
        let u = ok("https://[2001:db8::1]");
        assert_eq!((u.port, u.port_given), (443, false));
        let u = ok("http://agent@p:1");
        assert_eq!(u.user, "agent");
        assert!(u.password.is_empty());
        assert_eq!(u.shown(), "http://<credentials hidden>@p:1");
    }

    #[test]
    fn every_special_character_in_the_password() {
        // Every printable ASCII character but the alphanumerics, percent-encoded.
        let password: String = (0x20u8..0x7f)
            .filter(|b| !b.is_ascii_alphanumeric())
            .map(char::from)
            .collect();
        let encoded: String = password.bytes().map(|b| format!("%{b:02X}")).collect();
        let u = ok(&format!("http://agent:{encoded}@proxy.example:3128"));
        assert_eq!(u.password.expose(), password.as_bytes());
        assert_eq!(u.password_as_written.expose(), encoded.as_bytes());
        // Sub-delimiters and ':' may also be written raw; '%3A' and '%40' decode.
        let u = ok("http://a%40b:p:a;s=s!$&'()*+,%3A%40%25@[::1]:8080");
        assert_eq!(u.user, "a@b");
        assert_eq!(u.password.expose(), b"p:a;s=s!$&'()*+,:@%");
        // UTF-8 passwords.
        let u = ok("http://u:%C3%BC%E2%82%AC@p:1");
        assert_eq!(u.password.expose(), "ü€".as_bytes());
    }

    #[test]
    fn refused_and_the_password_never_shown() {
        let secret = "Sup3rS3cretPw";
        for text in [
            format!("socks5://u:{secret}@p:1080"),
            format!("socks5h://u:{secret}@p:1080"),
            format!("http://u:{secret}@p:3128/path"),
            format!("http://u:{secret}@p:3128/?q=1"),
            format!("http://u:{secret}@p:3128#frag"),
            format!("http://u:{secret} @p:3128"),
            format!("http://u:{secret}@p :3128"),
            format!("http://u:{secret}%4@p:3128"),
            format!("http://u:{secret}%zz@p:3128"),
            format!("http://u:{secret}%@p:3128"),
            format!("http://u:{secret}@x@p:3128"),
            format!("http://u:{secret}/x@p:3128"),
            format!("http://u:{secret}@p:0"),
            format!("http://u:{secret}@p:65536"),
            format!("http://u:{secret}@p:"),
            format!("http://u:{secret}@p:-1"),
            format!("http://u:{secret}@::1:3128"),
            format!("http://u:{secret}@[::1"),
            format!("http://u:{secret}@[nope]:1"),
            format!("http://u:{secret}@[::1]x"),
            format!("http://u:{secret}@"),
            format!("http://u:{secret}@:3128"),
            format!("http://u%3Ax:{secret}@p:3128"),
            format!("http://:{secret}@p:3128"),
            format!("http://u:{secret}%FF@p:3128"),
            format!("http://u:{secret}\n@p:3128"),
            format!("http://u:{secret}@bad_host!:3128"),
            String::new(),
        ] {
            let e = bad(&text);
            assert!(!e.contains(secret), "{e}");
            assert!(!e.contains("Sup3r"), "{e}");
        }
        assert!(bad("socks5://p:1080").contains("\"socks5://\""));
        assert!(bad("http://p:3128/x").contains("path"));
        assert!(bad("http://u:a%zz@p:1").contains("percent escape"));
    }
}
