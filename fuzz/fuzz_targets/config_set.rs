//! Set-by-key with any key and value: never panics, and a failed set changes nothing.
#![no_main]

use dragent_tunnel::config::KEYS;
use dragent_tunnel::TunnelConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(mut cfg) = TunnelConfig::new() else {
        return;
    };
    let key = KEYS.get(usize::from(pick)).copied().unwrap_or(value);
    let before = format!("{:?}", cfg.settings());
    if cfg.set(key, value).is_err() {
        assert_eq!(before, format!("{:?}", cfg.settings()));
    }
});
