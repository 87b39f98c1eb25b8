//! The NTLM CHALLENGE (type 2) parser fed arbitrary bytes: it never panics; what it accepts
//! is consistent (its TargetInfo lies inside the message, its server challenge is the
//! message's), and answering it never panics either, with the AUTHENTICATE message's security
//! buffers all inside the message.
#![no_main]

use dragent_tunnel::proxy::ntlm::{authenticate_message, Challenge};
use libfuzzer_sys::fuzz_target;

fn field(msg: &[u8], at: usize) -> (usize, usize) {
    let len = usize::from(u16::from_le_bytes([msg[at], msg[at + 1]]));
    let offset = u32::from_le_bytes([msg[at + 4], msg[at + 5], msg[at + 6], msg[at + 7]]);
    (offset as usize, len)
}

fuzz_target!(|data: &[u8]| {
    let Ok(challenge) = Challenge::parse(data) else {
        return;
    };
    assert!(challenge.target_info.len() <= data.len());
    assert_eq!(&data[24..32], &challenge.server_challenge[..]);
    let msg = match authenticate_message(&challenge, "user", "DOMAIN", "password", "WS", [7; 8], 1)
    {
        Ok(msg) => msg,
        Err(e) => {
            // Only a TargetInfo too big to echo inside the 16-bit NtChallengeResponse length.
            assert!(
                challenge.target_info.len() + 48 > usize::from(u16::MAX),
                "{e}"
            );
            return;
        }
    };
    assert_eq!(&msg[..8], b"NTLMSSP\0");
    for at in [12, 20, 28, 36, 44, 52] {
        let (offset, len) = field(&msg, at);
        assert!(
            offset + len <= msg.len(),
            "buffer at {at} outside the message"
        );
    }
    let (_, lm_len) = field(&msg, 12);
    assert_eq!(lm_len, 24);
    let (nt_at, nt_len) = field(&msg, 20);
    assert_eq!(nt_len, 16 + 28 + challenge.target_info.len() + 4);
    let nt = &msg[nt_at..nt_at + nt_len];
    if let Some(t) = challenge.av.timestamp {
        assert_eq!(&nt[24..32], &t.to_le_bytes()[..]);
    }
});
