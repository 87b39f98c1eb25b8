//! The CONNECT reply parser fed arbitrary bytes in arbitrary splits: it never panics, never
//! buffers past its cap, a completed reply is a final one (interim `1xx` replies skipped,
//! every head together within the cap) handing back exactly the bytes that followed it, a
//! body delimited by the close (or chunked in HTTP/1.0) marks the connection as closing,
//! and the split makes no difference to the outcome.
#![no_main]

use dragent_tunnel::proxy::{BodyLength, ParseError, ReplyHead, ReplyParser, MAX_REPLY_HEAD};
use libfuzzer_sys::fuzz_target;

/// What a run of the parser came to, comparable across splits (a `Malformed` text previews
/// the bytes seen so far, which depends on the split; its kind does not).
#[derive(Debug, PartialEq, Eq)]
enum Run {
    Done(ReplyHead, Vec<u8>, usize),
    Failed(Option<ParseError>),
    NeedMore(ParseError, usize),
}

fn run<'a>(chunks: impl Iterator<Item = &'a [u8]>, input: &[u8]) -> Run {
    let mut parser = ReplyParser::new();
    let mut fed = 0;
    for chunk in chunks {
        let result = parser.feed(chunk);
        fed += chunk.len();
        assert!(parser.buffered() <= MAX_REPLY_HEAD);
        match result {
            Ok(None) => continue,
            Ok(Some((head, rest))) => {
                // The rest is a suffix of what was fed, every head together fit under the
                // cap, and the reply that counts is a final one.
                assert!(input[..fed].ends_with(&rest));
                assert!(fed - rest.len() <= MAX_REPLY_HEAD);
                assert!(!head.is_interim(), "{head:?}");
                assert!(head.code == 101 || head.code >= 200, "{head:?}");
                // A body delimited by the close means the connection closes; a 2xx has none.
                if head.body == BodyLength::UntilClose {
                    assert!(head.closes, "{head:?}");
                    assert!(!(200..=299).contains(&head.code), "{head:?}");
                }
                // Chunked framing in an HTTP/1.0 reply is faulty (RFC 9112 6.1): the
                // connection closes after it.
                if head.body == BodyLength::Chunked
                    && head.minor_version == 0
                    && !(200..=299).contains(&head.code)
                {
                    assert!(head.closes, "{head:?}");
                }
                let mut rest = rest;
                rest.extend_from_slice(&input[fed..]);
                return Run::Done(head, rest, parser.interim_replies());
            }
            Err(ParseError::Malformed(_)) => return Run::Failed(None),
            Err(e) => return Run::Failed(Some(e)),
        }
    }
    let eof = parser.eof();
    let _ = eof.to_string();
    Run::NeedMore(eof, parser.interim_replies())
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the split sizes, so every framing of the same reply is explored.
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let split = run(input.chunks(step), input);
    let whole = run(std::iter::once(input), input);
    assert_eq!(split, whole);
});
