//! Test environment for dragent-tunnel: a throwaway PKI, a fault-injecting CONNECT proxy,
//! echo and framing collectors, and harnesses that run the real squid and tinyproxy.
//!
//! Used by the integration tests, the C tests (through the `dtun-testenv` binary) and the demo.
//! It never depends on the library under test, so it can judge it.
//!
//! A test that needs the real squid or tinyproxy starts with [`require_or_skip`]: it fails
//! instead of skipping under `DTUN_REQUIRE_REAL_PROXIES=1`.

pub mod apache;
pub mod collector;
pub mod digest;
pub mod gate;
pub mod kdc;
pub mod ntlm;
pub mod pki;
pub mod ports;
pub mod proxy;
pub mod require;
pub mod squid;
pub mod tinyproxy;

pub use require::{require_or_skip, RealProxy};
