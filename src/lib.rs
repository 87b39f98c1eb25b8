//! dragent-tunnel: a byte stream from a monitoring agent to its collector, directly or
//! through an HTTP CONNECT proxy, with optional Basic auth, optional TLS to the proxy, and
//! end-to-end TLS to the collector inside the tunnel (TLS in TLS).
//!
//! The Rust API: build a [`TunnelConfig`] from a dragent.yaml, [`Connection::open`] it,
//! then `send`/`recv`/`close`. The C API in [`ffi`] is a thin layer over exactly this.

pub mod backoff;
pub mod config;
pub mod conn;
pub mod error;
mod eyeballs;
pub mod ffi;
pub mod log;
mod net;
pub mod plan;
mod process;
pub mod proxy;
pub mod report;
mod resolve;
mod runtime;
pub mod tls;
pub mod tunnel;

pub use config::TunnelConfig;
pub use conn::{Connection, Transfer, Wait};
pub use error::{Error, ErrorKind, Result, Stage, Status};

/// The library's version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
