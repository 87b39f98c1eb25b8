//! Proxy-Authenticate values (the bytes split into several headers at each NUL) through the
//! challenge-list parser, then the per-open exchange of every mode fed the result until it
//! gives up, and the 407 body drain fed the same bytes: no panic, the challenge and
//! parameter counts bounded, the rounds bounded, and never the same credentials twice.
#![no_main]

use dragent_tunnel::config::{ProxyAuth, Secret};
use dragent_tunnel::proxy::auth::{parse_challenges, Credentials, Decision, Exchange, MAX_ROUNDS};
use dragent_tunnel::proxy::body::BodyDrain;
use dragent_tunnel::proxy::BodyLength;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<String> = text.split('\0').map(str::to_owned).collect();
    let challenges = parse_challenges(&values);
    assert!(challenges.len() <= 32);
    assert!(challenges.iter().all(|c| c.params.len() <= 32));
    let password = Secret::from("fuzz-password".to_string());
    for mode in [ProxyAuth::Basic, ProxyAuth::Digest, ProxyAuth::Any] {
        let credentials = Credentials {
            user: "agent",
            password: &password,
        };
        let mut exchange = Exchange::new(Some(mode), Some(credentials), "c.example:443");
        let mut sent = Vec::new();
        if let Some(first) = exchange.first() {
            sent.push(first.expose().to_vec());
        }
        for _ in 0..10 {
            match exchange.on_challenge(&challenges) {
                Decision::Retry(value) => {
                    // The same challenges again: only a Digest stale retry may follow, with
                    // a fresh cnonce, so no value repeats.
                    assert!(!sent.contains(&value.expose().to_vec()));
                    sent.push(value.expose().to_vec());
                }
                Decision::Fail(_) => break,
            }
        }
        assert!(exchange.rounds() <= MAX_ROUNDS);
    }
    for length in [
        BodyLength::Chunked,
        BodyLength::Length(data.len() as u64 / 2),
        BodyLength::UntilClose,
    ] {
        let mut drain = BodyDrain::new(length);
        if let Ok(used) = drain.feed(data) {
            assert!(used <= data.len());
        }
    }
});
