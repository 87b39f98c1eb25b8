//! The incremental parser of the proxy's reply to CONNECT.
//!
//! Fed any split of the bytes (one at a time included), it answers "need more", a complete
//! final reply head plus the bytes that followed it (the first bytes of the tunnel), or an
//! error. It rejects a reply that is not HTTP as soon as the first bytes show it.
//!
//! Interim replies (`1xx`, RFC 9110 15.2: `100 Continue`, `102 Processing`, `103 Early
//! Hints`, any other `1xx`) are skipped, their headers unread; only the final reply counts.
//! `101 Switching Protocols` is the exception: it is a final reply (RFC 9110 15.2.2: the
//! connection speaks another protocol after it), and since CONNECT never asks for an
//! `Upgrade` it is a protocol error, not a tunnel: [`Outcome::SwitchedProtocols`].
//!
//! [`MAX_REPLY_HEAD`] bounds every head together, interim ones included, so an endless
//! stream of `100 Continue` ends in [`ParseError::TooLarge`] like endless headers do.

use std::fmt;

/// The largest reply head accepted, blank line included: the total of every head, the
/// skipped interim (`1xx`) heads and the final one.
pub const MAX_REPLY_HEAD: usize = 64 * 1024;

/// The parts of a reply head that matter for CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHead {
    /// The minor HTTP version: 0 for `HTTP/1.0`, 1 for `HTTP/1.1`.
    pub minor_version: u8,
    /// The status code: 101 or 200..=999 (other `1xx` are interim replies, skipped).
    pub code: u16,
    /// The reason phrase, lossily decoded, control characters replaced, not shortened
    /// (it may echo credentials: redact before showing, then shorten).
    pub reason: String,
    /// The schemes of `Proxy-Authenticate` headers (`Basic`, `NTLM`, `Negotiate`...).
    pub auth_schemes: Vec<String>,
    /// The raw values of the `Proxy-Authenticate` headers (of `WWW-Authenticate` in a 401),
    /// in order, for [`crate::proxy::auth::parse_challenges`].
    pub challenges: Vec<String>,
    /// How the body that follows this head is delimited (what must be read past before the
    /// next request goes on the same connection).
    pub body: BodyLength,
    /// Whether the proxy closes the connection after this reply: `Connection: close` or
    /// `Proxy-Connection: close`, HTTP/1.0 without `keep-alive`, a body delimited by the
    /// close ([`BodyLength::UntilClose`]), or chunked framing that must not be trusted for
    /// another request (with a `Content-Length` too, or in an HTTP/1.0 reply).
    pub closes: bool,
}

/// How the body of a (non-2xx) reply to CONNECT is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body: a 2xx (its bytes are the tunnel's), a `1xx`, `204` or `304`.
    None,
    /// A reply that may have a body (a 407) without `Content-Length` nor chunked
    /// `Transfer-Encoding`: its body runs until the proxy closes the connection (RFC 9112
    /// 6.3, rule 8), so the connection cannot carry another request; [`ReplyHead::closes`]
    /// is set.
    UntilClose,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What a complete reply means for the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Any 2xx: the tunnel is open.
    Tunnel,
    /// 407 (or 401, as tinyproxy answers wrong credentials): the proxy wants (other) credentials.
    AuthRequired,
    /// `101 Switching Protocols`: the proxy switched the connection to a protocol nobody
    /// asked for (CONNECT sends no `Upgrade`), so what follows is no tunnel; a protocol
    /// error.
    SwitchedProtocols,
    /// Any other status.
    Refused,
}

impl ReplyHead {
    /// What this reply means for the tunnel.
    pub fn outcome(&self) -> Outcome {
        match self.code {
            200..=299 => Outcome::Tunnel,
            // 407 is the proxy's own auth challenge; tinyproxy answers wrong credentials
            // with 401, which to the agent means the same: the proxy wants other credentials.
            401 | 407 => Outcome::AuthRequired,
            101 => Outcome::SwitchedProtocols,
            _ => Outcome::Refused,
        }
    }

    /// Whether this is an interim reply, skipped while waiting for the final one: any `1xx`
    /// but `101`.
    pub fn is_interim(&self) -> bool {
        is_interim(self.code)
    }

    /// The status line as `HTTP/1.x CODE REASON`.
    pub fn status_line(&self) -> String {
        self.status_line_with(&self.reason)
    }

    /// The status line with another reason text (the reason redacted and shortened for a
    /// message).
    pub fn status_line_with(&self, reason: &str) -> String {
        format!("HTTP/1.{} {} {reason}", self.minor_version, self.code)
            .trim_end()
            .to_owned()
    }
}

/// Why a reply was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes are not an HTTP/1.x reply; the text says what was wrong.
    Malformed(String),
    /// The head grew past [`MAX_REPLY_HEAD`] without a blank line.
    TooLarge,
    /// The stream ended before the blank line; how many bytes had arrived.
    CutShort(usize),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Malformed(why) => write!(f, "malformed reply to CONNECT: {why}"),
            ParseError::TooLarge => write!(
                f,
                "reply head to CONNECT larger than {} KiB without an end",
                MAX_REPLY_HEAD / 1024
            ),
            ParseError::CutShort(0) => write!(f, "connection closed before any reply to CONNECT"),
            ParseError::CutShort(n) => write!(
                f,
                "connection closed after {n} bytes of reply to CONNECT, before the end of its head"
            ),
        }
    }
}

/// Incremental parser state: the bytes of the head being read, and what the skipped interim
/// heads took of the cap.
#[derive(Debug, Default)]
pub struct ReplyParser {
    head: Vec<u8>,
    /// Where to resume searching for the blank line.
    scanned: usize,
    /// Bytes of the interim heads already skipped for the reply being read: they count
    /// against [`MAX_REPLY_HEAD`].
    skipped: usize,
    /// How many interim heads were skipped before the last final reply (or so far).
    interim: usize,
}

impl ReplyParser {
    /// A parser waiting for the first byte.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// How many head bytes are buffered (never more than [`MAX_REPLY_HEAD`], less what the
    /// skipped interim heads took).
    pub fn buffered(&self) -> usize {
        self.head.len()
    }

    /// How many interim (`1xx`) replies were skipped: so far, or before the final reply
    /// once [`ReplyParser::feed`] returned it.
    pub fn interim_replies(&self) -> usize {
        self.interim
    }

    /// Feeds the next bytes. `Ok(None)`: need more. `Ok(Some((head, rest)))`: the final reply
    /// is complete and `rest` holds the bytes that followed it, which belong to the tunnel.
    /// Interim replies in between are skipped.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Option<(ReplyHead, Vec<u8>)>, ParseError> {
        if self.head.is_empty() && self.skipped == 0 && !data.is_empty() {
            // The first bytes of a new reply.
            self.interim = 0;
        }
        loop {
            let room = MAX_REPLY_HEAD - self.skipped - self.head.len();
            let take = data.len().min(room);
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            let end = find_head_end(&self.head, self.scanned);
            // Only the head is checked: the bytes after the blank line belong to the tunnel
            // (or to the next head, checked in its turn) and may hold anything (a TLS
            // record's NUL bytes).
            check_status_prefix(&self.head[..end.unwrap_or(self.head.len())])?;
            let Some(end) = end else {
                if self.skipped + self.head.len() >= MAX_REPLY_HEAD {
                    return Err(ParseError::TooLarge);
                }
                self.scanned = self.head.len();
                return Ok(None);
            };
            let mut rest = self.head.split_off(end);
            let head = parse_head(&self.head)?;
            if head.is_interim() {
                // Skipped; what follows is the next head, within what is left of the cap.
                self.skipped += end;
                self.interim += 1;
                self.head = rest;
                self.scanned = 0;
                continue;
            }
            rest.extend_from_slice(data);
            self.head.clear();
            self.scanned = 0;
            self.skipped = 0;
            return Ok(Some((head, rest)));
        }
    }

    /// The error for a stream that ended before the final reply was complete.
    pub fn eof(&self) -> ParseError {
        ParseError::CutShort(self.skipped + self.head.len())
    }
}

/// An interim status (RFC 9110 15.2): `1xx`, except `101 Switching Protocols`, which ends
/// the exchange.
fn is_interim(code: u16) -> bool {
    (100..200).contains(&code) && code != 101
}

/// Finds the index just past the blank line (`\r\n\r\n` or a bare `\n\n`), searching from a
/// little before `from` so a terminator split across feeds is found.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Rejects, from the first bytes, a reply that cannot be `HTTP/1.x DDD`.
fn check_status_prefix(buf: &[u8]) -> Result<(), ParseError> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(ParseError::Malformed(format!(
            "expected a status line starting with HTTP/1., received {}",
            preview(buf)
        )));
    }
    if buf.len() > PREFIX.len() && !matches!(buf[7], b'0' | b'1') {
        return Err(ParseError::Malformed(format!(
            "unsupported HTTP version in {}",
            preview(buf)
        )));
    }
    if buf.len() > 8 && buf[8] != b' ' {
        return Err(ParseError::Malformed(format!(
            "no space after the HTTP version in {}",
            preview(buf)
        )));
    }
    let code_digits = &buf[buf.len().min(9)..buf.len().min(12)];
    if code_digits.iter().any(|b| !b.is_ascii_digit()) {
        return Err(ParseError::Malformed(format!(
            "the status code is not three digits in {}",
            preview(buf)
        )));
    }
    if let Some(&b) = buf.get(12) {
        if !matches!(b, b' ' | b'\r' | b'\n') {
            return Err(ParseError::Malformed(format!(
                "the status code is not three digits in {}",
                preview(buf)
            )));
        }
    }
    if buf.contains(&0) {
        return Err(ParseError::Malformed("NUL byte in the reply head".into()));
    }
    Ok(())
}

fn parse_head(head: &[u8]) -> Result<ReplyHead, ParseError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status = lines.next().unwrap_or_default();
    if status.len() < 12 {
        return Err(ParseError::Malformed(format!(
            "status line too short: {}",
            preview(status)
        )));
    }
    let minor_version = status[7] - b'0';
    let code = status[9..12]
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if code < 100 {
        return Err(ParseError::Malformed(format!(
            "status code {code} out of range"
        )));
    }
    let reason = status.get(13..).map(printable).unwrap_or_default();
    let mut auth_schemes = Vec::new();
    let mut challenges = Vec::new();
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut bad_framing = None;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // tinyproxy answers wrong credentials with 401 and a WWW-Authenticate challenge.
        let challenge = name.eq_ignore_ascii_case(b"proxy-authenticate")
            || (code == 401 && name.eq_ignore_ascii_case(b"www-authenticate"));
        if challenge {
            let value = String::from_utf8_lossy(value);
            auth_schemes.extend(challenge_schemes(&value));
            challenges.push(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let text = String::from_utf8_lossy(value);
            let n = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|_| text.trim().bytes().all(|b| b.is_ascii_digit()));
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    bad_framing.get_or_insert_with(|| {
                        format!("invalid or conflicting Content-Length {}", preview(value))
                    });
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let text = String::from_utf8_lossy(value).to_ascii_lowercase();
            // The last coding is the one that frames the body; empty list elements
            // (`chunked,`) are no codings (RFC 9110 5.6.1).
            match text.rsplit(',').map(str::trim).find(|c| !c.is_empty()) {
                Some("chunked") => chunked = true,
                Some(_) => {
                    bad_framing.get_or_insert_with(|| {
                        format!("unsupported Transfer-Encoding {}", preview(value))
                    });
                }
                None => {
                    bad_framing.get_or_insert_with(|| {
                        format!("Transfer-Encoding without a coding {}", preview(value))
                    });
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection")
            || name.eq_ignore_ascii_case(b"proxy-connection")
        {
            for option in String::from_utf8_lossy(value).split(',') {
                let option = option.trim();
                close |= option.eq_ignore_ascii_case("close");
                keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    // The body's framing matters only for a reply that is no tunnel: a 2xx's headers are
    // ignored (its body is the tunnel's bytes).
    if let Some(why) = bad_framing.filter(|_| !(200..=299).contains(&code)) {
        return Err(ParseError::Malformed(why));
    }
    // RFC 9112 6.3: chunked wins over Content-Length; a reply to CONNECT that is no 2xx
    // (nor 1xx, 204 or 304) and has neither runs until the connection closes.
    let bodiless = (100..=299).contains(&code) || code == 204 || code == 304;
    let body = if chunked {
        BodyLength::Chunked
    } else if let Some(n) = length {
        BodyLength::Length(n)
    } else if bodiless {
        BodyLength::None
    } else {
        BodyLength::UntilClose
    };
    // Framing that invites smuggling closes the connection after the reply, whatever it
    // says: chunked with a Content-Length too (RFC 9112 6.3, rule 3), and chunked in an
    // HTTP/1.0 reply, which is faulty framing (RFC 9112 6.1). The body is still read as
    // chunked. A 2xx's framing headers are ignored.
    let faulty_framing =
        chunked && (length.is_some() || minor_version == 0) && !(200..=299).contains(&code);
    Ok(ReplyHead {
        minor_version,
        code,
        reason,
        auth_schemes,
        challenges,
        body,
        closes: close
            || (minor_version == 0 && !keep_alive)
            || body == BodyLength::UntilClose
            || faulty_framing,
    })
}

/// Splits a header value on the commas outside quoted strings (`realm="Acme, Inc."` is one
/// parameter).
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// The auth schemes in one `Proxy-Authenticate` value, which may list several challenges:
/// `Basic realm="x", NTLM` gives `Basic` and `NTLM`; parameters (`charset="UTF-8"`) are not
/// schemes.
fn challenge_schemes(value: &str) -> Vec<String> {
    let parts = split_list(value);
    // A part starting with a token followed by the end or by whitespace then anything but
    // `=` starts a challenge; a parameter (`a=b`, `a = "b"`) or junk does not.
    parts
        .into_iter()
        .filter_map(|part| {
            let part = part.trim_start_matches([' ', '\t']);
            let len = part.bytes().take_while(|&b| is_tchar(b)).count();
            let (scheme, after) = part.split_at(len);
            let after_space = after.trim_start_matches([' ', '\t']);
            let ends = after.is_empty() || after_space.len() < after.len();
            (!scheme.is_empty() && ends && !after_space.starts_with('=')).then(|| scheme.to_owned())
        })
        .collect()
}

/// A character of an HTTP token (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Text safe to show: lossily decoded, control characters replaced. Not shortened here (the
/// head is capped anyway): a proxy may echo our credentials, and they must be redacted from
/// the whole text before anything cuts it, or a cut would leave a recognisable prefix.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn preview(buf: &[u8]) -> String {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    format!("{:?}", printable(line))
}

#[cfg(test)]
mod tests;
