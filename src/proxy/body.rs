//! Reading past the body of a reply that is no tunnel (a 407 with its HTML page), so the next
//! CONNECT can go on the same connection: `Content-Length`, chunked, or none. Bounded: a
//! body past [`MAX_DRAINED_BODY`] bytes (an endless one) is an error, not a wait.

use std::fmt;

use super::BodyLength;

/// The most body bytes read past (chunk framing included) before giving up.
pub const MAX_DRAINED_BODY: u64 = 1024 * 1024;

/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;

/// Why a body could not be read past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainError {
    /// Longer than [`MAX_DRAINED_BODY`].
    TooLarge,
    /// Chunked framing that is not.
    Malformed(String),
}

impl fmt::Display for DrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainError::TooLarge => write!(
                f,
                "the body of the proxy's reply is larger than {} KiB",
                MAX_DRAINED_BODY / 1024
            ),
            DrainError::Malformed(why) => write!(f, "malformed chunked body: {why}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// This many body bytes are left.
    Data(u64),
    /// A chunk-size line is being read.
    SizeLine,
    /// A chunk's data, then its CRLF.
    Chunk(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines, until an empty one.
    Trailer,
    /// Everything until the connection closes is body ([`BodyLength::UntilClose`]): never
    /// done by itself, bounded like the others.
    UntilClose,
    /// The body is over.
    Done,
}

/// The state of reading past one body.
#[derive(Debug)]
pub struct BodyDrain {
    state: State,
    /// The current line (chunk size or trailer).
    line: Vec<u8>,
    /// Bytes read so far.
    total: u64,
}

impl BodyDrain {
    /// Ready to read past a body delimited as `length` says.
    pub fn new(length: BodyLength) -> BodyDrain {
        let state = match length {
            BodyLength::None | BodyLength::Length(0) => State::Done,
            BodyLength::Length(n) => State::Data(n),
            BodyLength::Chunked => State::SizeLine,
            BodyLength::UntilClose => State::UntilClose,
        };
        BodyDrain {
            state,
            line: Vec::new(),
            total: 0,
        }
    }

    /// Whether the body is over (never, for a body delimited by the connection's close:
    /// the caller does not wait for it but closes the connection).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body ends only when the connection closes, so the connection cannot
    /// carry another request.
    pub fn until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// Feeds bytes; returns how many belonged to the body. Fewer than `data.len()` only when
    /// the body is over ([`BodyDrain::is_done`]): the rest is the next reply's.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, DrainError> {
        if let State::Data(n) = self.state {
            if n > MAX_DRAINED_BODY {
                return Err(DrainError::TooLarge);
            }
        }
        let mut used = 0;
        while used < data.len() && self.state != State::Done {
            let rest = &data[used..];
            let taken = match self.state {
                State::UntilClose => rest.len(),
                State::Data(n) | State::Chunk(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
                    let left = n - take as u64;
                    self.state = match (&self.state, left) {
                        (State::Data(_), 0) => State::Done,
                        (State::Data(_), left) => State::Data(left),
                        (_, 0) => State::ChunkEnd,
                        (_, left) => State::Chunk(left),
                    };
                    take
                }
                State::SizeLine | State::ChunkEnd | State::Trailer => {
                    let end = rest.iter().position(|&b| b == b'\n');
                    let take = end.map_or(rest.len(), |i| i + 1);
                    self.line.extend_from_slice(&rest[..take]);
                    if self.line.len() > MAX_LINE {
                        return Err(DrainError::Malformed("a line longer than 4 KiB".into()));
                    }
                    if end.is_some() {
                        self.end_of_line()?;
                    }
                    take
                }
                State::Done => 0,
            };
            used += taken;
            self.total += taken as u64;
            if self.total > MAX_DRAINED_BODY {
                return Err(DrainError::TooLarge);
            }
        }
        Ok(used)
    }

    fn end_of_line(&mut self) -> Result<(), DrainError> {
        let line = std::mem::take(&mut self.line);
        let text = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(&line);
        self.state = match self.state {
            State::SizeLine => {
                // chunk-size [; extensions]
                let size = text.split(|&b| b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size).unwrap_or("").trim();
                let n = (!size.is_empty() && size.len() <= 15)
                    .then(|| u64::from_str_radix(size, 16).ok())
                    .flatten()
                    .ok_or_else(|| DrainError::Malformed("a chunk size that is not hex".into()))?;
                if n > MAX_DRAINED_BODY {
                    return Err(DrainError::TooLarge);
                }
                if n == 0 {
                    State::Trailer
                } else {
                    State::Chunk(n)
                }
            }
            State::ChunkEnd if text.is_empty() => State::SizeLine,
            State::ChunkEnd => {
                return Err(DrainError::Malformed(
                    "chunk data longer than its size".into(),
                ))
            }
            State::Trailer if text.is_empty() => State::Done,
            State::Trailer => State::Trailer,
            ref other => other.clone(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(length: BodyLength, input: &[u8], step: usize) -> Result<usize, DrainError> {
        let mut d = BodyDrain::new(length);
        let mut used = 0;
        for piece in input.chunks(step.max(1)) {
            let n = d.feed(piece)?;
            used += n;
            if d.is_done() {
                return Ok(used);
            }
        }
        Ok(used)
    }

    #[test]
    fn content_length_and_the_next_reply_behind_it() {
        for step in [1, 3, 100] {
            let input = b"hello worldHTTP/1.1 200 OK\r\n\r\n";
            assert_eq!(drain_all(BodyLength::Length(11), input, step), Ok(11));
        }
        assert!(BodyDrain::new(BodyLength::None).is_done());
        assert!(BodyDrain::new(BodyLength::Length(0)).is_done());
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 7, 1000] {
            assert_eq!(
                drain_all(BodyLength::Chunked, input, step),
                Ok(input.len() - 4),
                "{step}"
            );
        }
    }

    #[test]
    fn a_body_until_close_never_ends_and_is_bounded() {
        let mut d = BodyDrain::new(BodyLength::UntilClose);
        assert!(d.until_close() && !d.is_done());
        let page = b"<html>HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(d.feed(page), Ok(page.len()));
        assert!(!d.is_done(), "what looks like a reply is still body");
        let page = vec![b'x'; 64 * 1024];
        let mut result = Ok(0);
        for _ in 0..100 {
            result = d.feed(&page);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DrainError::TooLarge));
        assert!(!BodyDrain::new(BodyLength::Length(3)).until_close());
    }

    #[test]
    fn bounded_and_typed() {
        let mut d = BodyDrain::new(BodyLength::Length(MAX_DRAINED_BODY + 1));
        assert_eq!(d.feed(b"x"), Err(DrainError::TooLarge));
        let mut d = BodyDrain::new(BodyLength::Chunked);
        assert_eq!(d.feed(b"fffffffff\r\n"), Err(DrainError::TooLarge));
        let mut d = BodyDrain::new(BodyLength::Chunked);
        assert!(matches!(d.feed(b"zz\r\n"), Err(DrainError::Malformed(_))));
        let mut d = BodyDrain::new(BodyLength::Chunked);
        assert!(matches!(
            d.feed(b"1\r\nab\r\n"),
            Err(DrainError::Malformed(_))
        ));
        // An endless chunked body of small chunks still ends at the cap.
        let mut d = BodyDrain::new(BodyLength::Chunked);
        let chunk = b"1\r\nx\r\n".repeat(1000);
        let mut result = Ok(0);
        for _ in 0..1000 {
            result = d.feed(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DrainError::TooLarge));
        // Endless trailers too.
        let mut d = BodyDrain::new(BodyLength::Chunked);
        d.feed(b"0\r\n").unwrap();
        let mut result = Ok(0);
        for _ in 0..200_000 {
            result = d.feed(b"X: y\r\n");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DrainError::TooLarge));
    }
}
