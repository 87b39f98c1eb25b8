//! The one place that decides whether a test needing the real squid or tinyproxy runs, skips
//! or fails.
//!
//! The test harness hides the output of passing tests, so a skip announced on stderr is seen
//! by nobody: a grep of `cargo test`'s output for it never matches. Under
//! `DTUN_REQUIRE_REAL_PROXIES=1` (what `scripts/test.sh` sets) a test that cannot run
//! therefore fails itself, with a panic naming what is missing.

/// The environment variable that turns every skip of a real-proxy test into a failure.
pub const REQUIRE_REAL_PROXIES: &str = "DTUN_REQUIRE_REAL_PROXIES";

/// A real program a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealProxy {
    /// squid built with OpenSSL (Debian's `squid-openssl`), its `basic_ncsa_auth` helper, and
    /// `htpasswd` or `openssl`: see [`crate::squid::squid_missing`].
    Squid,
    /// tinyproxy: see [`crate::tinyproxy::tinyproxy_missing`].
    Tinyproxy,
    /// An MIT Kerberos KDC (krb5kdc, kdb5_util, kadmin.local, kinit): see
    /// [`crate::kdc::kdc_missing`].
    Kdc,
}

impl RealProxy {
    /// `None` when this machine can run it; otherwise what is missing, with the Debian
    /// packages that provide it.
    pub fn missing(self) -> Option<String> {
        match self {
            RealProxy::Squid => crate::squid::squid_missing(),
            RealProxy::Tinyproxy => crate::tinyproxy::tinyproxy_missing(),
            RealProxy::Kdc => crate::kdc::kdc_missing(),
        }
    }
}

/// Whether `DTUN_REQUIRE_REAL_PROXIES` asks for the real proxies: `1` (or `ON`, `true`,
/// `yes`, as CMake spells it) yes; unset, empty, `0` (`OFF`, `false`, `no`) no. Any other
/// value panics, so that a typo cannot quietly allow skips.
pub fn real_proxies_required() -> bool {
    let Some(value) = std::env::var_os(REQUIRE_REAL_PROXIES) else {
        return false;
    };
    parse_flag(&value.to_string_lossy())
        .unwrap_or_else(|| panic!("{REQUIRE_REAL_PROXIES}={value:?}: expected 1 or 0"))
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "" | "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Whether the test `test`, which needs every program in `needs`, can run here.
///
/// `true` when all of them are usable. Otherwise: under `DTUN_REQUIRE_REAL_PROXIES=1` it
/// panics, failing the calling test with a message naming `test` and everything missing;
/// without it, it prints `SKIPPED: test: ...` to stderr (seen only with `--nocapture`) and
/// returns `false`, and the test should return at once.
pub fn require_or_skip(test: &str, needs: &[RealProxy]) -> bool {
    let missing: Vec<String> = needs.iter().filter_map(|need| need.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join("; ");
    assert!(
        !real_proxies_required(),
        "{test} cannot run: missing {missing}; {REQUIRE_REAL_PROXIES}=1 forbids skipping it"
    );
    eprintln!("SKIPPED: {test}: missing {missing}");
    false
}

#[cfg(test)]
mod tests {
    use super::parse_flag;

    #[test]
    fn flag_values() {
        for yes in ["1", "ON", "on", "true", "Yes", " 1 "] {
            assert_eq!(parse_flag(yes), Some(true), "{yes:?}");
        }
        for no in ["", "0", "OFF", "false", "no"] {
            assert_eq!(parse_flag(no), Some(false), "{no:?}");
        }
        for bad in ["2", "required", "1 please"] {
            assert_eq!(parse_flag(bad), None, "{bad:?}");
        }
    }
}
