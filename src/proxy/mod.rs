//! HTTP CONNECT without I/O: the request we send and the incremental parser of the proxy's
//! reply. Bytes in, decisions out, so every case is unit-tested and fuzzed on its own.

pub mod auth;
pub mod body;
#[cfg(feature = "gssapi")]
pub mod negotiate;
pub mod ntlm;
mod reply;
mod request;

pub use reply::{BodyLength, Outcome, ParseError, ReplyHead, ReplyParser, MAX_REPLY_HEAD};
pub use request::connect_request_with;
pub use request::{basic_credentials, connect_request};
