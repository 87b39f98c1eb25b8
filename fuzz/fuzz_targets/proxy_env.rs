//! Proxy URLs and NO_PROXY lists from the environment, any bytes: never panics; a parsed URL
//! shown for a log never holds its password; an error never quotes a password; a parsed list
//! gives the same answers once normalised and parsed again.
#![no_main]

use dragent_tunnel::config::no_proxy::NoProxy;
use dragent_tunnel::config::proxy_url::ProxyUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // First line: a host to test against; the rest: a URL and a list.
    let (host, rest) = text.split_once('\n').unwrap_or(("example.com", text));
    let marker = "Zq9Xw7Vb";
    let url = format!("http://agent:{marker}{rest}@{host}");
    // The host is not secret and may be shown: only a marker outside it counts.
    if !host.contains(marker) {
        match ProxyUrl::parse("https_proxy", &url) {
            Ok(u) => assert!(!u.shown().contains(marker)),
            Err(e) => assert!(!e.contains(marker), "{e}"),
        }
    }
    if let Ok(u) = ProxyUrl::parse("https_proxy", rest) {
        let password = String::from_utf8_lossy(u.password.expose()).into_owned();
        // The shown URL's own parts (scheme, the hidden-credentials mark, the host, the port)
        // may hold the password's text by chance ("40b:http@host" has the password "http"):
        // cut them out, with a separator no password holds, and look at what is left.
        let shown = u.shown();
        let residue = shown
            .replace("<credentials hidden>", "\0")
            .replace(&u.host.to_string(), "\0")
            .replacen("https://", "\0", 1)
            .replacen("http://", "\0", 1)
            .replace(&format!(":{}", u.port), "\0");
        if password.len() >= 4 && !password.contains('\0') {
            assert!(!residue.contains(&password), "{shown}");
        }
    }
    if let Ok(list) = NoProxy::parse("NO_PROXY", rest) {
        let again = NoProxy::parse("NO_PROXY", &list.describe()).expect("normalised list parses");
        assert_eq!(list.matches_text(host), again.matches_text(host));
        if list.matches_all() {
            assert!(list.matches_text(host));
        }
    }
});
