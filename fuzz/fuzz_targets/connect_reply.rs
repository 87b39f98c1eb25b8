//! The CONNECT reply parser fed arbitrary bytes in arbitrary splits: it never panics, never
//! buffers past its cap, and a completed head hands back exactly the bytes that followed it.
#![no_main]

use dragent_tunnel::proxy::{ReplyParser, MAX_REPLY_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the split sizes, so every framing of the same reply is explored.
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let mut parser = ReplyParser::new();
    let mut fed = 0;
    for chunk in input.chunks(step) {
        let result = parser.feed(chunk);
        fed += chunk.len();
        assert!(parser.buffered() <= MAX_REPLY_HEAD);
        match result {
            Ok(None) => continue,
            Ok(Some((_head, rest))) => {
                // The rest is a suffix of what was fed, and the head fit under the cap.
                assert!(input[..fed].ends_with(&rest));
                assert!(fed - rest.len() <= MAX_REPLY_HEAD);
                return;
            }
            Err(_) => return,
        }
    }
    let _ = parser.eof().to_string();
});
