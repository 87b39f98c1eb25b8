//! Tests of the CONNECT reply parser. Every case is fed all at once, one byte at a time, and
//! split at every position (two and, for short inputs, three pieces), and must give the same
//! result every way.

use super::*;
use proptest::prelude::*;

type Parsed = Result<(ReplyHead, Vec<u8>), ParseError>;

/// Feeds `chunks` in order to a fresh parser, as a socket reader would: once the head is
/// complete, the later chunks are tunnel bytes and are appended to `rest`. A stream that ends
/// before the head is complete gives the parser's EOF error. Checks the buffering cap after
/// every feed.
fn drive<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Parsed {
    let mut parser = ReplyParser::new();
    let mut done: Option<(ReplyHead, Vec<u8>)> = None;
    for chunk in chunks {
        if let Some((_, rest)) = done.as_mut() {
            rest.extend_from_slice(chunk);
            continue;
        }
        let result = parser.feed(chunk);
        assert!(
            parser.buffered() <= MAX_REPLY_HEAD,
            "buffered {} > {MAX_REPLY_HEAD}",
            parser.buffered()
        );
        if let Some(complete) = result? {
            done = Some(complete);
        }
    }
    done.ok_or_else(|| parser.eof())
}

/// The result with the text of a `Malformed` error dropped: the text previews the bytes seen
/// so far, which depends on how the input was split; the kind of error must not.
fn kind(r: &Parsed) -> Parsed {
    match r {
        Err(ParseError::Malformed(_)) => Err(ParseError::Malformed(String::new())),
        other => other.clone(),
    }
}

/// Parses `input` all at once, one byte at a time, and split at every position (also in
/// three pieces when the input is short); asserts that every way agrees and returns the
/// all-at-once result.
fn parse_every_way(input: &[u8]) -> Parsed {
    let whole = drive([input]);
    let expected = kind(&whole);
    assert_eq!(
        kind(&drive(input.chunks(1))),
        expected,
        "one byte at a time"
    );
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(kind(&drive([a, b])), expected, "split at {i}");
    }
    if input.len() <= 160 {
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let pieces = [&input[..i], &input[i..j], &input[j..]];
                assert_eq!(kind(&drive(pieces)), expected, "split at {i} and {j}");
            }
        }
    }
    whole
}

/// A complete reply: its head and the tunnel bytes that followed it.
fn parse_ok(input: &[u8]) -> (ReplyHead, Vec<u8>) {
    match parse_every_way(input) {
        Ok(done) => done,
        Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(input)),
    }
}

fn parse_err(input: &[u8]) -> ParseError {
    match parse_every_way(input) {
        Ok(done) => panic!("{:?} parsed: {done:?}", String::from_utf8_lossy(input)),
        Err(e) => e,
    }
}

fn assert_malformed(input: &[u8]) {
    match parse_err(input) {
        ParseError::Malformed(why) => assert!(!why.is_empty()),
        other => panic!(
            "{:?}: expected Malformed, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

fn head(minor_version: u8, code: u16, reason: &str, schemes: &[&str]) -> ReplyHead {
    ReplyHead {
        minor_version,
        code,
        reason: reason.into(),
        auth_schemes: schemes.iter().map(|s| s.to_string()).collect(),
        challenges: Vec::new(),
        body: BodyLength::None,
        closes: minor_version == 0,
    }
}

// ---------------------------------------------------------------------------------------
// 2xx: the tunnel opens

#[test]
fn http_1_1_200_opens_the_tunnel() {
    let (h, rest) = parse_ok(b"HTTP/1.1 200 Connection established\r\n\r\n");
    assert_eq!(h, head(1, 200, "Connection established", &[]));
    assert_eq!(h.outcome(), Outcome::Tunnel);
    assert_eq!(h.status_line(), "HTTP/1.1 200 Connection established");
    assert!(rest.is_empty());
}

#[test]
fn http_1_0_200_opens_the_tunnel() {
    let (h, rest) = parse_ok(b"HTTP/1.0 200 Connection established\r\n\r\n");
    assert_eq!(h, head(0, 200, "Connection established", &[]));
    assert_eq!(h.outcome(), Outcome::Tunnel);
    assert_eq!(h.status_line(), "HTTP/1.0 200 Connection established");
    assert!(rest.is_empty());
}

#[test]
fn status_line_without_reason_phrase() {
    for input in [
        &b"HTTP/1.1 200\r\n\r\n"[..],
        b"HTTP/1.1 200 \r\n\r\n",
        b"HTTP/1.1 200\n\n",
    ] {
        let (h, rest) = parse_ok(input);
        assert_eq!(h, head(1, 200, "", &[]), "{input:?}");
        assert_eq!(h.status_line(), "HTTP/1.1 200");
        assert!(rest.is_empty());
    }
}

#[test]
fn any_2xx_opens_the_tunnel() {
    for (code, reason) in [
        (200, "OK"),
        (201, "Created"),
        (202, "Accepted"),
        (204, "No Content"),
        (250, "Whatever"),
        (299, "Odd But Fine"),
    ] {
        for minor in [0u8, 1] {
            let input = format!("HTTP/1.{minor} {code} {reason}\r\nVia: 1.1 squid\r\n\r\n");
            let (h, rest) = parse_ok(input.as_bytes());
            assert_eq!(h, head(minor, code, reason, &[]), "{input:?}");
            assert_eq!(h.outcome(), Outcome::Tunnel, "{input:?}");
            assert!(rest.is_empty());
        }
    }
}

#[test]
fn headers_of_a_2xx_reply_are_ignored() {
    // A 2xx reply to CONNECT has no body (RFC 9110 9.3.6): Content-Length and
    // Transfer-Encoding must not make the parser swallow tunnel bytes.
    let input = b"HTTP/1.1 200 OK\r\n\
        Content-Length: 10\r\n\
        Transfer-Encoding: chunked\r\n\
        Content-Type: text/html\r\n\
        Connection: close\r\n\
        Proxy-Authenticate: Basic realm=\"ignored\"\r\n\
        \r\n\
        \x16\x03\x03";
    let (h, rest) = parse_ok(input);
    assert_eq!(h.code, 200);
    assert_eq!(h.outcome(), Outcome::Tunnel);
    assert_eq!(rest, b"\x16\x03\x03");
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let (h, rest) = parse_ok(b"HTTP/1.1 200 Connection established\nVia: squid\nX-A: b\n\nTUNNEL");
    assert_eq!(h, head(1, 200, "Connection established", &[]));
    assert_eq!(rest, b"TUNNEL");

    // CRLF lines ended by a bare LF blank line, and LF lines ended by a CRLF blank line.
    let (h, rest) = parse_ok(b"HTTP/1.1 200 OK\r\nVia: squid\r\n\nT");
    assert_eq!(h, head(1, 200, "OK", &[]));
    assert_eq!(rest, b"T");
    let (h, rest) = parse_ok(b"HTTP/1.0 200 OK\nVia: squid\n\r\nT");
    assert_eq!(h, head(0, 200, "OK", &[]));
    assert_eq!(rest, b"T");
}

#[test]
fn reason_phrase_is_printable_and_whole() {
    let (h, _) = parse_ok(b"HTTP/1.1 403 Forbidden\x07\x1b[31m here\r\n\r\n");
    assert_eq!(h.code, 403);
    assert!(!h.reason.chars().any(char::is_control), "{:?}", h.reason);
    assert!(h.reason.starts_with("Forbidden"));

    let long = format!("HTTP/1.1 502 {}\r\n\r\n", "x".repeat(5000));
    let (h, _) = parse_ok(long.as_bytes());
    assert_eq!(h.code, 502);
    // Whole: the message layer redacts secrets first, then shortens.
    assert_eq!(h.reason, "x".repeat(5000));
}

// ---------------------------------------------------------------------------------------
// 407: authentication required

#[test]
fn proxy_auth_required_keeps_every_scheme_of_several_headers() {
    let input = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
        Server: squid/5.7\r\n\
        Proxy-Authenticate: Negotiate\r\n\
        Proxy-Authenticate: NTLM\r\n\
        Content-Length: 3\r\n\
        proxy-authenticate: Basic realm=\"Squid proxy-caching web server\"\r\n\
        \r\n";
    let (h, rest) = parse_ok(input);
    assert_eq!(
        h,
        ReplyHead {
            challenges: vec![
                "Negotiate".into(),
                "NTLM".into(),
                "Basic realm=\"Squid proxy-caching web server\"".into()
            ],
            body: BodyLength::Length(3),
            ..head(
                1,
                407,
                "Proxy Authentication Required",
                &["Negotiate", "NTLM", "Basic"]
            )
        }
    );
    assert_eq!(h.outcome(), Outcome::AuthRequired);
    assert!(rest.is_empty());
}

#[test]
fn framing_and_connection_of_a_407() {
    let (h, _) = parse_ok(
        b"HTTP/1.1 407 x\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\nProxy-Connection: close\r\n\r\n",
    );
    assert_eq!(h.body, BodyLength::Chunked);
    assert!(h.closes);
    let (h, _) = parse_ok(b"HTTP/1.0 407 x\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n");
    assert!(!h.closes);
    assert_eq!(h.body, BodyLength::Length(0));
    let (h, _) = parse_ok(b"HTTP/1.0 407 x\r\nContent-Length: 0\r\n\r\n");
    assert!(h.closes);
    // Neither Content-Length nor chunked (RFC 9112 6.3): the body runs until the close, so
    // the connection is not kept, keep-alive or not.
    for input in [
        &b"HTTP/1.1 407 x\r\n\r\n"[..],
        b"HTTP/1.1 407 x\r\nConnection: keep-alive\r\n\r\n<html>",
        b"HTTP/1.0 407 x\r\nConnection: Keep-Alive\r\n\r\n",
        b"HTTP/1.1 401 x\r\nProxy-Connection: keep-alive\r\n\r\n",
    ] {
        let (h, _) = parse_ok(input);
        assert_eq!(h.body, BodyLength::UntilClose, "{input:?}");
        assert!(h.closes, "{input:?}");
    }
    // Statuses without a body stay bodiless (a 2xx's bytes are the tunnel's).
    for input in [
        &b"HTTP/1.1 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 204 x\r\n\r\n",
        b"HTTP/1.1 304 x\r\n\r\n",
    ] {
        let (h, _) = parse_ok(input);
        assert_eq!(h.body, BodyLength::None, "{input:?}");
        assert!(!h.closes, "{input:?}");
    }
    for bad in [
        &b"HTTP/1.1 407 x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        b"HTTP/1.1 407 x\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 407 x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"HTTP/1.1 407 x\r\nTransfer-Encoding: gzip\r\n\r\n",
    ] {
        assert_malformed(bad);
    }
    // A 2xx's framing headers are ignored, whatever they hold.
    let (h, _) =
        parse_ok(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_eq!(h.outcome(), Outcome::Tunnel);
}

#[test]
fn suspicious_chunked_framing_of_a_407_is_read_but_closes() {
    // Empty list elements are no codings: `chunked,` is chunked, and wins over the length.
    for input in [
        &b"HTTP/1.1 407 x\r\nTransfer-Encoding: chunked,\r\nContent-Length: 5\r\n\r\n"[..],
        b"HTTP/1.1 407 x\r\nTransfer-Encoding: , chunked , ,\r\nContent-Length: 5\r\n\r\n",
        // Chunked and a Content-Length (RFC 9112 6.3): chunked, then the connection closes.
        b"HTTP/1.1 407 x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 407 x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        // Chunked in HTTP/1.0 is faulty framing (RFC 9112 6.1), keep-alive or not.
        b"HTTP/1.0 407 x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 407 x\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let (h, _) = parse_ok(input);
        assert_eq!(h.body, BodyLength::Chunked, "{input:?}");
        assert!(h.closes, "{input:?}");
    }
    // Plain chunked in HTTP/1.1 keeps the connection.
    let (h, _) = parse_ok(b"HTTP/1.1 407 x\r\nTransfer-Encoding: chunked,\r\n\r\n");
    assert_eq!(h.body, BodyLength::Chunked);
    assert!(!h.closes);
    // A Transfer-Encoding with no coding at all is bad framing, not "no Transfer-Encoding".
    for bad in [
        &b"HTTP/1.1 407 x\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\n"[..],
        b"HTTP/1.1 407 x\r\nTransfer-Encoding: ,\r\nContent-Length: 3\r\n\r\n",
        b"HTTP/1.1 407 x\r\nTransfer-Encoding:  , , \r\n\r\n",
        b"HTTP/1.1 407 x\r\nTransfer-Encoding: chunked, gzip,\r\n\r\n",
    ] {
        assert_malformed(bad);
    }
    // A 2xx's framing headers are still ignored.
    let (h, rest) =
        parse_ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nT");
    assert_eq!(h.outcome(), Outcome::Tunnel);
    assert!(!h.closes);
    assert_eq!(rest, b"T");
}

#[test]
fn proxy_auth_required_with_several_challenges_in_one_header() {
    let (h, _) = parse_ok(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n\
          Proxy-Authenticate: Basic realm=\"x\", NTLM\r\n\r\n",
    );
    assert_eq!(h.auth_schemes, ["Basic", "NTLM"]);
    assert_eq!(h.outcome(), Outcome::AuthRequired);

    let (h, _) = parse_ok(
        b"HTTP/1.0 407 Proxy Authentication Required\r\n\
          Proxy-Authenticate: Digest realm=\"x\", qop=\"auth,auth-int\", nonce=\"abc\", algorithm=MD5, \
          Basic realm=\"x\", charset=\"UTF-8\"\r\n\r\n",
    );
    assert_eq!(h.auth_schemes, ["Digest", "Basic"]);
}

#[test]
fn proxy_auth_required_negotiate_with_a_token() {
    let (h, _) = parse_ok(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n\
          Proxy-Authenticate: Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXegDTALBgkqhkiG9xIBAgI=\r\n\r\n",
    );
    assert_eq!(h.auth_schemes, ["Negotiate"]);
    assert_eq!(h.code, 407);
}

#[test]
fn proxy_auth_required_realm_with_comma_and_space_is_one_scheme() {
    // A comma inside a quoted realm does not start a new challenge.
    let (h, _) = parse_ok(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n\
          Proxy-Authenticate: Basic realm=\"Acme, Inc. proxy\", NTLM\r\n\r\n",
    );
    assert_eq!(h.auth_schemes, ["Basic", "NTLM"]);
}

#[test]
fn proxy_auth_required_realm_with_escaped_quote_and_spaced_parameters() {
    let (h, _) = parse_ok(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n\
          Proxy-Authenticate: Basic realm=\"say \\\"hi, there\\\" x\", Digest realm=\"r\", \
          qop = \"auth\", nonce=\"n\", Negotiate\r\n\r\n",
    );
    assert_eq!(h.auth_schemes, ["Basic", "Digest", "Negotiate"]);
}

#[test]
fn proxy_auth_required_long_header_keeps_every_scheme() {
    // Schemes past the 80 characters kept of a reason phrase are still schemes.
    let input = format!(
        "HTTP/1.1 407 Proxy Authentication Required\r\n\
         Proxy-Authenticate: Basic realm=\"{}\", NTLM, Negotiate {}\r\n\r\n",
        "Corporate web proxy ".repeat(10),
        "YIIBhwYGKwYBBQUCoIIBezCCAXegDTALBgkqhkiG9xIBAgI".repeat(4)
    );
    let (h, _) = parse_ok(input.as_bytes());
    assert_eq!(h.auth_schemes, ["Basic", "NTLM", "Negotiate"]);
}

#[test]
fn proxy_auth_required_without_challenge_and_other_auth_headers() {
    let (h, _) = parse_ok(
        b"HTTP/1.1 407 Proxy Authentication Required\r\n\
          WWW-Authenticate: Basic realm=\"origin\"\r\n\
          X-Proxy-Authenticate: NTLM\r\n\
          \r\n",
    );
    let want = ReplyHead {
        body: BodyLength::UntilClose,
        closes: true,
        ..head(1, 407, "Proxy Authentication Required", &[])
    };
    assert_eq!(h, want);
    assert_eq!(h.outcome(), Outcome::AuthRequired);
}

// ---------------------------------------------------------------------------------------
// Other statuses: refusals with code and reason

#[test]
fn other_statuses_are_refusals_with_code_and_reason() {
    for (code, reason) in [
        (403, "Forbidden"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
        (500, "Internal Server Error"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (301, "Moved Permanently"),
        (300, "Multiple Choices"),
        (999, "Very Odd"),
    ] {
        let input = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\n<h1>"
        );
        let (h, rest) = parse_ok(input.as_bytes());
        let want = ReplyHead {
            body: BodyLength::Length(5),
            ..head(1, code, reason, &[])
        };
        assert_eq!(h, want, "{input:?}");
        assert_eq!(h.outcome(), Outcome::Refused, "{input:?}");
        assert_eq!(h.status_line(), format!("HTTP/1.1 {code} {reason}"));
        // What followed the head is handed back; the caller refuses the tunnel anyway.
        assert_eq!(rest, b"<h1>");
    }
}

// ---------------------------------------------------------------------------------------
// Interim replies (1xx): skipped, only the final reply counts (RFC 9110 15.2)

#[test]
fn interim_100_continue_is_skipped() {
    let (h, rest) =
        parse_ok(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\n\r\nTUNNEL");
    assert_eq!(h, head(1, 200, "Connection established", &[]));
    assert_eq!(h.outcome(), Outcome::Tunnel);
    assert_eq!(rest, b"TUNNEL");
}

#[test]
fn several_interim_replies_with_headers_are_skipped() {
    // 102 and 103 with headers (a Proxy-Authenticate in an interim reply is not a
    // challenge), an unknown 1xx, in both line-end styles and both versions, then a 407.
    let input = b"HTTP/1.1 100 Continue\r\n\r\n\
        HTTP/1.1 102 Processing\r\nProxy-Authenticate: NTLM\r\n\r\n\
        HTTP/1.1 103 Early Hints\nLink: </style.css>; rel=preload\n\n\
        HTTP/1.0 199 Odd\r\nX-A: b\r\n\r\n\
        HTTP/1.1 407 Proxy Authentication Required\r\n\
        Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n";
    let (h, rest) = parse_ok(input);
    let want = ReplyHead {
        challenges: vec!["Basic realm=\"x\"".into()],
        body: BodyLength::UntilClose,
        closes: true,
        ..head(1, 407, "Proxy Authentication Required", &["Basic"])
    };
    assert_eq!(h, want);
    assert_eq!(h.outcome(), Outcome::AuthRequired);
    assert!(rest.is_empty());

    let (h, rest) = parse_ok(b"HTTP/1.0 100 Continue\n\nHTTP/1.0 200 OK\n\n\x16\x03\x03");
    assert_eq!(h, head(0, 200, "OK", &[]));
    assert_eq!(rest, b"\x16\x03\x03");
}

#[test]
fn interim_replies_are_counted() {
    let mut p = ReplyParser::new();
    assert_eq!(
        p.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102"),
        Ok(None)
    );
    assert_eq!(p.interim_replies(), 1);
    let (h, rest) = p
        .feed(b" Processing\r\n\r\nHTTP/1.1 200 OK\r\n\r\nT")
        .unwrap()
        .unwrap();
    assert_eq!(h.code, 200);
    assert_eq!(rest, b"T");
    assert_eq!(p.interim_replies(), 2, "kept once the final reply came");
    assert_eq!(p.buffered(), 0);

    let mut p = ReplyParser::new();
    p.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
    assert_eq!(p.interim_replies(), 0);
}

#[test]
fn switching_protocols_is_a_final_reply_and_no_tunnel() {
    // 101 is not interim: the connection would speak another protocol after it. CONNECT
    // never asks for an Upgrade, so this is a protocol error, whatever follows.
    let (h, rest) = parse_ok(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
          HTTP/1.1 200 OK\r\n\r\n",
    );
    assert_eq!(h, head(1, 101, "Switching Protocols", &[]));
    assert!(!h.is_interim());
    assert_eq!(h.outcome(), Outcome::SwitchedProtocols);
    assert_eq!(rest, b"HTTP/1.1 200 OK\r\n\r\n");

    // After an interim reply too.
    let (h, _) = parse_ok(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n");
    assert_eq!(h.outcome(), Outcome::SwitchedProtocols);
}

#[test]
fn which_codes_are_interim() {
    for code in [100u16, 102, 103, 150, 199] {
        assert!(head(1, code, "", &[]).is_interim(), "{code}");
    }
    for code in [101u16, 200, 204, 299, 407, 500, 999] {
        assert!(!head(1, code, "", &[]).is_interim(), "{code}");
    }
}

#[test]
fn what_follows_an_interim_reply_is_checked_like_a_first_reply() {
    for input in [
        &b"HTTP/1.1 100 Continue\r\n\r\nSSH-2.0-OpenSSH_9.2p1\r\n"[..],
        b"HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/2 200\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 O\0K\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n\x16\x03\x03\x00\x02\x02\x28",
        b"HTTP/1.1 1000 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 100 Con\0tinue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    ] {
        assert_malformed(input);
    }
}

#[test]
fn eof_after_interim_replies_only_is_cut_short() {
    assert_eq!(
        parse_err(b"HTTP/1.1 100 Continue\r\n\r\n"),
        ParseError::CutShort(25)
    );
    assert_eq!(
        parse_err(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 20"),
        ParseError::CutShort(36)
    );
}

/// Interim heads (`100 Continue` with filler headers) of `total` bytes in all.
fn interim_heads_of_exactly(total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let left = total - out.len();
        let one = left.min(1000);
        // The smallest interim head, "HTTP/1.1 100 C\r\nX: \r\n\r\n", is 25 bytes: leave no
        // remainder shorter than that.
        let one = if left - one != 0 && left - one < 25 {
            left - 25
        } else {
            one
        };
        let mut h = b"HTTP/1.1 100 Continue\r\nX: ".to_vec();
        assert!(one >= h.len() + 4, "{one}");
        h.resize(one - 4, b'c');
        h.extend_from_slice(b"\r\n\r\n");
        assert_eq!(h.len(), one);
        out.extend_from_slice(&h);
    }
    assert_eq!(out.len(), total);
    out
}

#[test]
fn interim_and_final_heads_of_exactly_64_kib_in_all_parse() {
    let last = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut input = interim_heads_of_exactly(MAX_REPLY_HEAD - last.len());
    input.extend_from_slice(last);
    input.extend_from_slice(b"TUNNEL");
    let (h, rest) = parse_large(&input).expect("64 KiB of heads in all is within the cap");
    assert_eq!(h, head(1, 200, "Connection established", &[]));
    assert_eq!(rest, b"TUNNEL");
}

#[test]
fn interim_and_final_heads_one_byte_over_64_kib_are_too_large() {
    let last = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut input = interim_heads_of_exactly(MAX_REPLY_HEAD + 1 - last.len());
    input.extend_from_slice(last);
    assert_eq!(parse_large(&input), Err(ParseError::TooLarge));
}

#[test]
fn endless_100_continue_stops_at_the_cap() {
    let line = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut p = ReplyParser::new();
    let mut fed = 0usize;
    loop {
        match p.feed(line) {
            Ok(None) => {
                fed += line.len();
                assert!(fed < MAX_REPLY_HEAD, "no error after {fed} bytes");
                assert_eq!(p.interim_replies(), fed / line.len());
            }
            Err(ParseError::TooLarge) => {
                assert!(fed + line.len() >= MAX_REPLY_HEAD, "{fed}");
                break;
            }
            other => panic!("after {fed} bytes: {other:?}"),
        }
        assert!(p.buffered() <= MAX_REPLY_HEAD);
    }
    for _ in 0..3 {
        assert_eq!(p.feed(line), Err(ParseError::TooLarge));
        assert!(p.buffered() <= line.len());
    }

    // In one huge read: the same error, nothing held past the cap.
    let many = line.repeat(10_000);
    let mut p = ReplyParser::new();
    assert_eq!(p.feed(&many), Err(ParseError::TooLarge));
    assert!(p.buffered() <= line.len());
    assert_eq!(p.interim_replies(), MAX_REPLY_HEAD / line.len());
}

#[test]
fn endless_100_continue_one_byte_at_a_time_fails_exactly_at_the_cap() {
    let line = b"HTTP/1.1 100 Continue\r\n\r\n";
    let input = line.repeat(MAX_REPLY_HEAD / line.len() + 2);
    let mut p = ReplyParser::new();
    for (i, b) in input.iter().enumerate() {
        match p.feed(std::slice::from_ref(b)) {
            Ok(None) => assert!(i + 1 < MAX_REPLY_HEAD, "byte {i}"),
            Err(ParseError::TooLarge) => {
                assert_eq!(i + 1, MAX_REPLY_HEAD, "TooLarge at byte {i}");
                return;
            }
            other => panic!("byte {i}: {other:?}"),
        }
    }
    panic!("no TooLarge");
}

// ---------------------------------------------------------------------------------------
// Malformed replies

#[test]
fn status_code_of_four_digits_is_malformed() {
    assert_malformed(b"HTTP/1.1 2000 OK\r\n\r\n");
    assert_malformed(b"HTTP/1.1 2000\r\n\r\n");
}

#[test]
fn missing_or_bad_status_code_is_malformed() {
    for input in [
        &b"HTTP/1.1 \r\n\r\n"[..],
        b"HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 20\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/1.1200 OK\r\n\r\n",
        b"HTTP/1.1 -20 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 000 Zero\r\n\r\n",
        b"HTTP/1.1 200OK\r\n\r\n",
        b"HTTP/1.\r\n\r\n",
        b"HTTP/1.1\n\n",
    ] {
        assert_malformed(input);
    }
}

#[test]
fn status_line_cut_short_by_eof() {
    assert_eq!(parse_err(b"HTTP/1.1 20"), ParseError::CutShort(11));
    assert_eq!(parse_err(b"HTTP/1.1 200 OK\r\n"), ParseError::CutShort(17));
    assert_eq!(
        parse_err(b"HTTP/1.1 200 OK\r\nVia: squid\r\n\r"),
        ParseError::CutShort(30)
    );
    assert_eq!(parse_err(b"H"), ParseError::CutShort(1));
}

#[test]
fn empty_input_then_eof() {
    assert_eq!(parse_err(b""), ParseError::CutShort(0));
    let mut p = ReplyParser::new();
    assert_eq!(p.feed(b""), Ok(None));
    assert_eq!(p.buffered(), 0);
    assert_eq!(p.eof(), ParseError::CutShort(0));
    assert_eq!(
        p.eof().to_string(),
        "connection closed before any reply to CONNECT"
    );
}

#[test]
fn nul_bytes_in_the_head_are_malformed() {
    assert_malformed(b"HTTP/1.1 200 O\0K\r\n\r\n");
    assert_malformed(b"HTTP/1.1 200\0OK\r\n\r\n");
    assert_malformed(b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n");
    assert_malformed(b"HTTP/1.1 200 OK\r\n\0\r\n\r\n");
    assert_malformed(b"HTTP/1.1 407 Auth\r\nProxy-Authenticate: Basic\0\r\n\r\n");
    assert_malformed(b"\0HTTP/1.1 200 OK\r\n\r\n");
}

#[test]
fn non_http_banners_are_malformed() {
    for input in [
        &b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"[..],
        b"220 smtp.example ESMTP Postfix\r\n",
        b"+OK POP3 ready\r\n",
        b"<html><body>Hello</body></html>\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"HTTPS/1.1 200 OK\r\n\r\n",
        b" HTTP/1.1 200 OK\r\n\r\n",
        b"\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"RTSP/1.0 200 OK\r\n\r\n",
    ] {
        assert_malformed(input);
    }
}

#[test]
fn other_http_versions_are_malformed() {
    for input in [
        &b"HTTP/2 200\r\n\r\n"[..],
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"HTTP/1.9 200 OK\r\n\r\n",
        b"HTTP/0.9 200 OK\r\n\r\n",
        b"HTTP/3 200\r\n\r\n",
        b"HTTP/1.11 200 OK\r\n\r\n",
    ] {
        assert_malformed(input);
    }
}

#[test]
fn tls_record_is_malformed() {
    // A TLS alert (handshake_failure) and a ServerHello record: a TLS port answering CONNECT.
    assert_malformed(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
    assert_malformed(&[
        0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03,
    ]);
}

#[test]
fn non_http_is_rejected_as_soon_as_the_first_bytes_show_it() {
    // Without waiting for a line end (a non-HTTP server may never send one).
    for (first, expected_buffered_at_most) in [
        (&b"S"[..], 1),
        (&[0x15u8][..], 1),
        (b"HTTP/2", 6),
        (b"HTTP/1.1 2000", 13),
        (b"HTTP/1.1 2x", 11),
        (b"HTTP/1.1  ", 10),
        (b"HTTP/1.1 200 \0", 14),
    ] {
        let mut p = ReplyParser::new();
        match p.feed(first) {
            Err(ParseError::Malformed(why)) => assert!(!why.is_empty()),
            other => panic!("{first:?}: {other:?}"),
        }
        assert!(p.buffered() <= expected_buffered_at_most);
    }
}

#[test]
fn malformed_messages_show_the_bytes_printably() {
    let mut p = ReplyParser::new();
    let e = p.feed(b"SSH-2.0-OpenSSH_9.2p1\r\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("malformed reply to CONNECT: "), "{text}");
    assert!(text.contains("SSH-2.0-OpenSSH_9.2p1"), "{text}");

    let mut p = ReplyParser::new();
    let e = p
        .feed(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
        .unwrap_err();
    let text = e.to_string();
    assert!(
        !text.chars().any(|c| c.is_control() && c != ' '),
        "{text:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The 64 KiB cap on the head

/// A reply head of exactly `len` bytes, blank line included, made of a 200 status line,
/// filler headers, and a final `\r\n\r\n`.
fn head_of_exactly(len: usize) -> Vec<u8> {
    let mut h = b"HTTP/1.1 200 Connection established\r\n".to_vec();
    let line = format!("X-Filler: {}\r\n", "a".repeat(990));
    while h.len() + line.len() + 2 <= len {
        h.extend_from_slice(line.as_bytes());
    }
    // The last header line takes up what is left ("X-F: " + a's + CRLF), then the blank line.
    let left = len - h.len() - 2;
    assert!(left >= 8, "{left}");
    h.extend_from_slice(b"X-F: ");
    h.extend(std::iter::repeat_n(b'b', left - 7));
    h.extend_from_slice(b"\r\n\r\n");
    assert_eq!(h.len(), len);
    h
}

/// Parses a large input whole, one byte at a time, and split at a sample of positions
/// (every position would take too long in a debug build).
fn parse_large(input: &[u8]) -> Parsed {
    let whole = drive([input]);
    let expected = kind(&whole);
    assert_eq!(
        kind(&drive(input.chunks(1))),
        expected,
        "one byte at a time"
    );
    for size in [2, 3, 1000, 1460, 4096, 16384, 65535, 65536] {
        assert_eq!(
            kind(&drive(input.chunks(size))),
            expected,
            "chunks of {size}"
        );
    }
    let n = input.len();
    let splits = (0..n).step_by(997).chain(n.saturating_sub(8)..=n);
    for i in splits {
        let (a, b) = input.split_at(i);
        assert_eq!(kind(&drive([a, b])), expected, "split at {i}");
    }
    whole
}

#[test]
fn a_head_of_exactly_64_kib_parses() {
    let input = head_of_exactly(MAX_REPLY_HEAD);
    let (h, rest) = parse_large(&input).expect("a 64 KiB head is within the cap");
    assert_eq!(h, head(1, 200, "Connection established", &[]));
    assert!(rest.is_empty());

    // With tunnel bytes behind it, in the same read and in later ones.
    let mut with_rest = input.clone();
    with_rest.extend_from_slice(b"\x16\x03\x03\x00\x01\x00TUNNEL");
    let (_, rest) = parse_large(&with_rest).expect("a 64 KiB head is within the cap");
    assert_eq!(rest, b"\x16\x03\x03\x00\x01\x00TUNNEL");
}

#[test]
fn a_head_one_byte_over_64_kib_is_too_large() {
    let input = head_of_exactly(MAX_REPLY_HEAD + 1);
    assert_eq!(parse_large(&input), Err(ParseError::TooLarge));
}

#[test]
fn endless_headers_stop_at_the_cap() {
    let mut p = ReplyParser::new();
    assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n"), Ok(None));
    let mut fed = 17usize;
    let line = b"X-Endless: 0123456789abcdef0123456789abcdef\r\n";
    loop {
        match p.feed(line) {
            Ok(None) => {
                fed += line.len();
                assert!(fed < MAX_REPLY_HEAD, "no error after {fed} bytes");
                assert_eq!(p.buffered(), fed);
            }
            Err(ParseError::TooLarge) => {
                // The error comes once the cap is reached, and not before.
                assert!(fed + line.len() >= MAX_REPLY_HEAD, "{fed}");
                assert_eq!(p.buffered(), MAX_REPLY_HEAD);
                break;
            }
            other => panic!("after {fed} bytes: {other:?}"),
        }
    }
    // Feeding more keeps failing and never buffers more.
    for _ in 0..3 {
        assert_eq!(p.feed(line), Err(ParseError::TooLarge));
        assert_eq!(p.buffered(), MAX_REPLY_HEAD);
    }
}

#[test]
fn endless_headers_one_byte_at_a_time_fail_exactly_at_the_cap() {
    let mut p = ReplyParser::new();
    let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
    while input.len() < MAX_REPLY_HEAD + 100 {
        input.extend_from_slice(b"X-A: b\r\n");
    }
    for (i, b) in input.iter().enumerate() {
        match p.feed(std::slice::from_ref(b)) {
            Ok(None) => assert!(i + 1 < MAX_REPLY_HEAD, "byte {i}"),
            Err(ParseError::TooLarge) => {
                assert_eq!(i + 1, MAX_REPLY_HEAD, "TooLarge at byte {i}");
                break;
            }
            other => panic!("byte {i}: {other:?}"),
        }
        assert!(p.buffered() <= MAX_REPLY_HEAD);
    }
    assert_eq!(p.buffered(), MAX_REPLY_HEAD);
}

#[test]
fn one_huge_read_without_blank_line_is_too_large() {
    let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
    input.resize(1 << 20, b'a');
    let mut p = ReplyParser::new();
    assert_eq!(p.feed(&input), Err(ParseError::TooLarge));
    assert_eq!(p.buffered(), MAX_REPLY_HEAD);
}

#[test]
fn too_large_message_says_the_cap() {
    assert_eq!(
        ParseError::TooLarge.to_string(),
        "reply head to CONNECT larger than 64 KiB without an end"
    );
    assert_eq!(
        ParseError::CutShort(11).to_string(),
        "connection closed after 11 bytes of reply to CONNECT, before the end of its head"
    );
}

// ---------------------------------------------------------------------------------------
// Bytes after the blank line belong to the tunnel

#[test]
fn bytes_after_the_head_are_the_first_tunnel_bytes() {
    let (h, rest) = parse_ok(b"HTTP/1.1 200 Connection established\r\n\r\nhello collector");
    assert_eq!(h.code, 200);
    assert_eq!(rest, b"hello collector");
}

#[test]
fn tunnel_bytes_are_not_parsed_as_http() {
    // The tunnel may carry anything, a second reply included: it is not ours to read.
    let (h, rest) =
        parse_ok(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 407 No\r\nProxy-Authenticate: NTLM\r\n\r\n");
    assert_eq!(h, head(1, 200, "OK", &[]));
    assert_eq!(rest, b"HTTP/1.1 407 No\r\nProxy-Authenticate: NTLM\r\n\r\n");

    let (_, rest) = parse_ok(b"HTTP/1.1 200 OK\n\n\n\n\r\n");
    assert_eq!(rest, b"\n\n\r\n");
}

#[test]
fn binary_tunnel_bytes_with_nul_are_handed_back() {
    // A TLS ServerHello from the collector right behind the 200, in the same read: its NUL
    // bytes belong to the tunnel, not to the reply head.
    let tls = [
        0x16u8, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03, 0x00, 0xff,
    ];
    let mut input = b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec();
    input.extend_from_slice(&tls);
    let (h, rest) = parse_ok(&input);
    assert_eq!(h.code, 200);
    assert_eq!(rest, tls);

    let mut input = b"HTTP/1.0 200 OK\nVia: x\n\n".to_vec();
    input.extend_from_slice(&[0u8; 40]);
    let (_, rest) = parse_ok(&input);
    assert_eq!(rest, [0u8; 40]);
}

#[test]
fn rest_in_the_same_feed_and_in_a_later_one() {
    let mut p = ReplyParser::new();
    assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\nVia: squid\r"), Ok(None));
    let (h, rest) = p.feed(b"\n\r\nfirst bytes").unwrap().unwrap();
    assert_eq!(h, head(1, 200, "OK", &[]));
    assert_eq!(rest, b"first bytes");

    // The blank line's last byte alone: nothing follows yet.
    let mut p = ReplyParser::new();
    assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n\r"), Ok(None));
    let (_, rest) = p.feed(b"\n").unwrap().unwrap();
    assert!(rest.is_empty());
}

#[test]
fn large_rest_behind_a_small_head_is_not_capped() {
    // 1 MiB of tunnel data in the same read as the head: it is not head, so no TooLarge,
    // and every byte of it comes back.
    let mut input = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    input.extend_from_slice(&data);
    let mut p = ReplyParser::new();
    let (h, rest) = p.feed(&input).unwrap().unwrap();
    assert_eq!(h.code, 200);
    assert_eq!(rest.len(), data.len());
    assert!(rest == data);
    assert_eq!(p.buffered(), 0);
}

// ---------------------------------------------------------------------------------------
// Property tests

/// Bytes that make interesting replies: the characters of a status line and of headers,
/// line ends, NUL, and high bytes.
fn reply_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(b"HTTP/1.0 2047:\r\n\r\nabcXYZ".to_vec()),
        1 => any::<u8>(),
    ]
}

fn prefix() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b""[..],
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.0 407 Proxy Authentication Required\r\n",
        b"HTTP/1.1 ",
        b"HTTP/1.",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 ",
    ])
    .prop_map(|p| p.to_vec())
}

/// Cut points (sorted) for an input of `len` bytes, from arbitrary numbers.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &c in cuts {
        out.push(&input[at..c]);
        at = c;
    }
    out.push(&input[at..]);
    out
}

/// A valid reply head with this status: version, reason, headers, line ends chosen freely.
fn valid_head(code: impl Strategy<Value = u16>) -> impl Strategy<Value = (Vec<u8>, u8, u16)> {
    (
        0u8..=1,
        code,
        "[A-Za-z ]{0,20}",
        prop::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,30}", 0..4),
        any::<bool>(),
    )
        .prop_map(|(minor, code, reason, headers, crlf)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut h = format!("HTTP/1.{minor} {code}");
            if !reason.is_empty() {
                h.push(' ');
                h.push_str(&reason);
            }
            h.push_str(eol);
            for line in headers {
                h.push_str(&line);
                h.push_str(eol);
            }
            h.push_str(eol);
            (h.into_bytes(), minor, code)
        })
}

/// A valid reply head with a 2xx status, after up to three interim (`1xx` but 101) heads;
/// its version and code, and how many interim heads came first.
fn valid_2xx_head() -> impl Strategy<Value = (Vec<u8>, u8, u16, usize)> {
    let interim = prop_oneof![Just(100u16), 102u16..=199];
    (
        prop::collection::vec(valid_head(interim), 0..4),
        valid_head(200u16..=299),
    )
        .prop_map(|(interims, (last, minor, code))| {
            let count = interims.len();
            let mut h: Vec<u8> = interims.into_iter().flat_map(|(h, _, _)| h).collect();
            h.extend_from_slice(&last);
            (h, minor, code, count)
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_input_never_panics_nor_overbuffers(
        pre in prefix(),
        body in prop::collection::vec(reply_byte(), 0..600),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut input = pre;
        input.extend_from_slice(&body);
        let cuts = cuts(input.len(), &raw_cuts);
        // `drive` asserts the cap after every feed.
        let split = drive(pieces(&input, &cuts));
        let whole = drive([&input[..]]);
        prop_assert_eq!(kind(&split), kind(&whole));
        if let Ok((_, rest)) = &whole {
            prop_assert!(rest.len() <= input.len());
            prop_assert!(input.ends_with(rest));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..300),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let cuts = cuts(input.len(), &raw_cuts);
        let _ = drive(pieces(&input, &cuts));
        let _ = drive(input.chunks(1));
    }

    #[test]
    fn valid_reply_with_any_suffix_gives_the_exact_suffix(
        (head_bytes, minor, code, interim) in valid_2xx_head(),
        suffix in prop::collection::vec(any::<u8>(), 0..300),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut input = head_bytes.clone();
        input.extend_from_slice(&suffix);
        let cuts = cuts(input.len(), &raw_cuts);
        let mut p = ReplyParser::new();
        let mut at = 0;
        for piece in pieces(&input, &cuts) {
            at += piece.len();
            if p.feed(piece).map_err(|e| TestCaseError::fail(format!("{e:?}")))?.is_some() {
                break;
            }
        }
        prop_assert!(at >= head_bytes.len());
        prop_assert_eq!(p.interim_replies(), interim);
        for result in [drive(pieces(&input, &cuts)), drive([&input[..]]), drive(input.chunks(1))] {
            let (h, rest) = result.map_err(|e| {
                TestCaseError::fail(format!("{:?}: {e:?}", String::from_utf8_lossy(&input)))
            })?;
            prop_assert_eq!(h.minor_version, minor);
            prop_assert_eq!(h.code, code);
            prop_assert_eq!(h.outcome(), Outcome::Tunnel);
            prop_assert_eq!(&rest, &suffix);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn long_inputs_never_overbuffer(
        pre in prefix(),
        unit in prop::collection::vec(reply_byte(), 1..64),
        repeat in 500usize..2000,
        chunk in 1usize..9000,
    ) {
        let mut input = pre;
        for _ in 0..repeat {
            input.extend_from_slice(&unit);
        }
        let result = drive(input.chunks(chunk));
        if input.len() > MAX_REPLY_HEAD && result.is_ok() {
            // Complete only if the blank line came within the cap.
            let (_, rest) = result.unwrap();
            prop_assert!(input.len() - rest.len() <= MAX_REPLY_HEAD);
        }
    }
}

#[test]
fn tinyproxy_401_for_wrong_credentials_is_an_auth_failure() {
    let mut p = ReplyParser::new();
    let (h, _) = p
        .feed(b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"tinyproxy\"\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.code, 401);
    assert_eq!(h.outcome(), Outcome::AuthRequired);
    assert_eq!(h.auth_schemes, ["Basic"]);
}
