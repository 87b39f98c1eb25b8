//! The CONNECT request.

use base64::Engine;

use crate::config::Secret;

/// The `Proxy-Authorization` value for Basic auth: `Basic base64(user ":" password)`, UTF-8,
/// on one line whatever the length (the agent's own encoder wraps lines past 72 characters,
/// which breaks long credentials on the wire).
pub fn basic_credentials(user: &str, password: &Secret) -> Secret {
    let mut plain = Vec::with_capacity(user.len() + 1 + password.expose().len());
    plain.extend_from_slice(user.as_bytes());
    plain.push(b':');
    plain.extend_from_slice(password.expose());
    let plain = Secret::new(plain);
    let mut value = b"Basic ".to_vec();
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain.expose());
    value.extend_from_slice(encoded.as_bytes());
    let encoded = Secret::from(encoded);
    drop(encoded);
    Secret::new(value)
}

/// The full request head: `CONNECT authority HTTP/1.1`, `Host: authority`, and the
/// `Proxy-Authorization` line when credentials are given. `authority` is `host:port` with
/// IPv6 literals in brackets, the name unresolved.
pub fn connect_request(authority: &str, authorization: Option<&Secret>) -> Secret {
    // Sized up front: a reallocation would free a copy of the credentials unwiped.
    let auth_len = authorization.map_or(0, |a| a.expose().len() + 23);
    let mut req = Vec::with_capacity(2 * authority.len() + auth_len + 40);
    req.extend_from_slice(b"CONNECT ");
    req.extend_from_slice(authority.as_bytes());
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(authority.as_bytes());
    req.extend_from_slice(b"\r\n");
    if let Some(auth) = authorization {
        req.extend_from_slice(b"Proxy-Authorization: ");
        req.extend_from_slice(auth.expose());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    Secret::new(req)
}

/// As [`connect_request`], with a `User-Agent` line (`None`: none) and extra header lines
/// (names and values checked by the config), in this order: request line, `Host`,
/// `User-Agent`, the extra headers as given, `Proxy-Authorization`. The header values may be
/// secrets: the request is a [`Secret`], sized up front so no unwiped copy is left behind.
pub fn connect_request_with(
    authority: &str,
    authorization: Option<&Secret>,
    user_agent: Option<&str>,
    headers: &[(String, Secret)],
) -> Secret {
    let plain = connect_request(authority, authorization);
    if user_agent.is_none() && headers.is_empty() {
        return plain;
    }
    let extra = user_agent.map_or(0, |ua| ua.len() + 14)
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.expose().len() + 4)
            .sum::<usize>();
    let base = plain.expose();
    // Everything after the Host line goes behind the new lines.
    let host_end = base
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == b"\r\n")
        .nth(1)
        .map_or(base.len(), |(i, _)| i + 2);
    let mut req = Vec::with_capacity(base.len() + extra);
    req.extend_from_slice(&base[..host_end]);
    if let Some(ua) = user_agent {
        req.extend_from_slice(b"User-Agent: ");
        req.extend_from_slice(ua.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value.expose());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(&base[host_end..]);
    Secret::new(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_and_headers_in_order() {
        let auth = basic_credentials("a", &Secret::from("b".to_string()));
        let headers = [
            ("X-Tenant".to_string(), Secret::from("t1".to_string())),
            ("X-Token".to_string(), Secret::from("s3cr3t".to_string())),
        ];
        let r = connect_request_with(
            "[::1]:443",
            Some(&auth),
            Some("dragent-tunnel/0.1.0"),
            &headers,
        );
        assert_eq!(
            text(&r),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nUser-Agent: dragent-tunnel/0.1.0\r\n\
             X-Tenant: t1\r\nX-Token: s3cr3t\r\nProxy-Authorization: Basic YTpi\r\n\r\n"
        );
        let r = connect_request_with("c:1", None, None, &[]);
        assert_eq!(text(&r), "CONNECT c:1 HTTP/1.1\r\nHost: c:1\r\n\r\n");
        let r = connect_request_with("c:1", None, Some("ua"), &[]);
        assert_eq!(
            text(&r),
            "CONNECT c:1 HTTP/1.1\r\nHost: c:1\r\nUser-Agent: ua\r\n\r\n"
        );
    }

    fn text(s: &Secret) -> String {
        String::from_utf8(s.expose().to_vec()).unwrap()
    }

    #[test]
    fn request_without_credentials() {
        let r = connect_request("collector.example:6443", None);
        assert_eq!(
            text(&r),
            "CONNECT collector.example:6443 HTTP/1.1\r\nHost: collector.example:6443\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_authority_is_passed_through_bracketed() {
        let r = connect_request("[2001:db8::1]:443", None);
        assert!(text(&r)
            .starts_with("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n"));
    }

    #[test]
    fn basic_auth_rfc7617_example() {
        let auth = basic_credentials("Aladdin", &Secret::from("open sesame".to_string()));
        assert_eq!(text(&auth), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn long_utf8_credentials_stay_on_one_line() {
        let user = "ü".repeat(100);
        let password = Secret::from("p:a@s/s%w+rd".repeat(30));
        let auth = basic_credentials(&user, &password);
        let req = text(&connect_request("c:1", Some(&auth)));
        let line = req
            .lines()
            .find(|l| l.starts_with("Proxy-Authorization: Basic "))
            .unwrap();
        assert!(line.len() > 500);
        assert_eq!(req.matches("\r\n").count(), 4);
        let b64 = line.trim_start_matches("Proxy-Authorization: Basic ");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(
            decoded,
            format!("{user}:{}", "p:a@s/s%w+rd".repeat(30)).into_bytes()
        );
    }
}
