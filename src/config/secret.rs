//! Secret bytes (the proxy password, the `Proxy-Authorization` value, the CONNECT request
//! that carries it): never printed, wiped from memory when dropped.

use std::fmt;

/// Bytes that must never be printed and are zeroed when dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of the bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The secret bytes, for the one place that needs them (encoding, the wire).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s.into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroes a string's bytes in place (for transient copies of the password, such as the
/// value read from YAML), then empties it.
pub(crate) fn wipe_string(s: &mut String) {
    let mut bytes = std::mem::take(s).into_bytes();
    wipe(&mut bytes);
}

/// Overwrites bytes with zeros in a way the optimiser may not remove.
pub(crate) fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    #[cfg(test)]
    observed::record(bytes);
}

/// For tests: which byte ranges this thread wiped, to check that a buffer that held the
/// password was among them.
#[cfg(test)]
pub(crate) mod observed {
    use std::cell::RefCell;
    use std::ops::Range;

    thread_local! {
        static WIPED: RefCell<Option<Vec<Range<usize>>>> = const { RefCell::new(None) };
    }

    /// Runs `f` and returns what it returned and the address ranges it wiped (each checked
    /// to be all zeros when its wipe finished).
    pub(crate) fn wipes_of<T>(f: impl FnOnce() -> T) -> (T, Vec<Range<usize>>) {
        WIPED.with(|w| *w.borrow_mut() = Some(Vec::new()));
        let out = f();
        let wiped = WIPED.with(|w| w.borrow_mut().take()).unwrap_or_default();
        (out, wiped)
    }

    pub(super) fn record(bytes: &[u8]) {
        assert!(bytes.iter().all(|&b| b == 0), "a wipe left bytes behind");
        let start = bytes.as_ptr() as usize;
        // `try_with`: a secret may be dropped while the thread's locals are torn down.
        let _ = WIPED.try_with(|w| {
            if let Some(log) = w.borrow_mut().as_mut() {
                log.push(start..start + bytes.len());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::from("hunter2".to_string());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn wipe_zeroes() {
        let mut v = b"hunter2".to_vec();
        wipe(&mut v);
        assert!(v.iter().all(|&b| b == 0));
    }
}
