//! The Digest (RFC 7616) side of the in-repo test proxy: the challenge it sends and the check
//! of the client's answer, written from the RFC independently of the library's own code
//! (the real squid and Apache tests check the library against other implementations).

use std::fmt::Write as _;

use md5::{Digest as _, Md5};

/// How the 407 of a Digest-requiring [`crate::proxy::TestProxy`] carries its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body407 {
    /// `Content-Length: 0`.
    #[default]
    Empty,
    /// An HTML page with its `Content-Length`.
    Length,
    /// The same page, `Transfer-Encoding: chunked`, in several chunks with a trailer.
    Chunked,
    /// `Transfer-Encoding: chunked`, chunks forever (bounded at 1 GiB).
    Endless,
}

/// Digest credentials a test proxy requires instead of Basic.
#[derive(Debug, Clone)]
pub struct DigestAuth {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
    /// `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`, `SHA-512-256`...
    pub algorithm: String,
    /// Whether the 407 keeps the connection (else `Connection: close`).
    pub keep_alive: bool,
    /// Answer the first valid response with `stale=true` and a new nonce.
    pub stale_first: bool,
    /// The body of the 407.
    pub body: Body407,
    /// The nonce generation in force, shared by every connection to the proxy (a real
    /// proxy's nonce outlives a connection); [`DigestAuth::stale_first`] moves it on once.
    pub generation: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl DigestAuth {
    /// MD5, keep-alive, no stale, empty body.
    pub fn new(user: &str, password: &str) -> DigestAuth {
        DigestAuth {
            user: user.into(),
            password: password.into(),
            algorithm: "MD5".into(),
            keep_alive: true,
            stale_first: false,
            body: Body407::Empty,
            generation: Default::default(),
        }
    }
}

/// The HTML page of a 407 with a body.
pub const PAGE_407: &str =
    "<html><body><h1>407</h1><p>Proxy authentication required</p></body></html>\n";

/// The 407 head and (finite) body for `nonce`.
pub fn challenge(auth: &DigestAuth, nonce: &str, stale: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 407 Proxy Authentication Required\r\n\
         Proxy-Authenticate: Digest realm=\"dtun digest\", qop=\"auth\", algorithm={}, nonce=\"{nonce}\", opaque=\"op4que\"{}\r\n",
        auth.algorithm,
        if stale { ", stale=true" } else { "" }
    );
    if !auth.keep_alive {
        head.push_str("Connection: close\r\n");
    }
    match auth.body {
        Body407::Empty => head.push_str("Content-Length: 0\r\n\r\n"),
        Body407::Length => {
            let _ = write!(head, "Content-Length: {}\r\n\r\n{PAGE_407}", PAGE_407.len());
        }
        Body407::Chunked => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            let (a, b) = PAGE_407.split_at(10);
            let _ = write!(
                head,
                "{:x};ext=1\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
                a.len(),
                b.len()
            );
        }
        Body407::Endless => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    head.into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hash(algorithm: &str, data: &str) -> Option<String> {
    let base = algorithm
        .trim_end_matches("-sess")
        .trim_end_matches("-SESS");
    Some(match base.to_ascii_uppercase().as_str() {
        "MD5" => hex(&Md5::digest(data.as_bytes())),
        "SHA-256" => hex(ring::digest::digest(&ring::digest::SHA256, data.as_bytes()).as_ref()),
        "SHA-512-256" => {
            hex(ring::digest::digest(&ring::digest::SHA512_256, data.as_bytes()).as_ref())
        }
        _ => return None,
    })
}

/// The parameters of a `Digest` credentials value (quoted values unescaped).
pub fn params(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("Digest ")?;
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        chars.next()?;
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => val.push(chars.next()?),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_ascii_lowercase(), val.trim().to_owned()));
    }
    Some(out)
}

/// What a Digest `Proxy-Authorization` value is worth.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Right user, password, nonce and uri.
    Ok,
    /// Right credentials, for another nonce than the current one.
    StaleNonce,
    /// Wrong, or not Digest.
    Wrong,
}

/// Checks `value` for `CONNECT target` against the nonce in force.
pub fn check(auth: &DigestAuth, value: &str, target: &str, nonce: &str) -> Check {
    let Some(p) = params(value) else {
        return Check::Wrong;
    };
    let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let (Some(user), Some(realm), Some(uri), Some(their_nonce), Some(response)) = (
        get("username"),
        get("realm"),
        get("uri"),
        get("nonce"),
        get("response"),
    ) else {
        return Check::Wrong;
    };
    let alg = get("algorithm").unwrap_or("MD5");
    if !alg.eq_ignore_ascii_case(&auth.algorithm) || user != auth.user || uri != target {
        return Check::Wrong;
    }
    let (nc, cnonce, qop) = (
        get("nc").unwrap_or(""),
        get("cnonce").unwrap_or(""),
        get("qop").unwrap_or(""),
    );
    if qop != "auth" || get("opaque") != Some("op4que") {
        return Check::Wrong;
    }
    let Some(mut ha1) = hash(alg, &format!("{user}:{realm}:{}", auth.password)) else {
        return Check::Wrong;
    };
    if alg.to_ascii_lowercase().ends_with("-sess") {
        ha1 = hash(alg, &format!("{ha1}:{their_nonce}:{cnonce}")).unwrap_or_default();
    }
    let ha2 = hash(alg, &format!("CONNECT:{uri}")).unwrap_or_default();
    let expected = hash(
        alg,
        &format!("{ha1}:{their_nonce}:{nc}:{cnonce}:{qop}:{ha2}"),
    )
    .unwrap_or_default();
    if expected != response {
        Check::Wrong
    } else if their_nonce != nonce {
        Check::StaleNonce
    } else {
        Check::Ok
    }
}
