//! Test environment for dragent-tunnel: a throwaway PKI, a fault-injecting CONNECT proxy,
//! echo and framing collectors, and harnesses that run the real squid and tinyproxy.
//!
//! Used by the integration tests, the C tests (through the `dtun-testenv` binary) and the demo.
//! It never depends on the library under test, so it can judge it.

pub mod collector;
pub mod pki;
pub mod ports;
pub mod proxy;
pub mod squid;
pub mod tinyproxy;
