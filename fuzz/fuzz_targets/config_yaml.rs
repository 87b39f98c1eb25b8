//! dragent.yaml text of any shape: loading returns a config or an error, never panics, and
//! an error never echoes the password written in the text.
#![no_main]

use dragent_tunnel::TunnelConfig;
use libfuzzer_sys::fuzz_target;

const PLANTED: &str = "Zq9-planted-secret-Zq9";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TunnelConfig::from_yaml(text);
    let with_password = format!("{text}\nhttp_proxy:\n  proxy_password: {PLANTED}\n");
    if let Err(e) = TunnelConfig::from_yaml(&with_password) {
        assert!(!e.message().contains(PLANTED), "{}", e.message());
    }
});
