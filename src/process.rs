//! Which process this is: a counter that moves on in every child after `fork()`.
//!
//! A child of `fork()` inherits the parent's memory but only the thread that forked: the
//! runtime's scheduler may be held by a parent thread that does not exist there, its
//! resolver threads are gone, and its epoll instance is *shared* with the parent, so a
//! child that deregisters an inherited socket removes the parent's registration. Everything
//! that belongs to one process (the runtime, every handle) records the generation it was
//! made in; a different generation means "made before a fork, in another process", and is
//! never touched again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static WATCH: Once = Once::new();

extern "C" fn in_child() {
    // Async-signal-safe: one atomic add, run by fork() in the child before it returns.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's generation: 0 in the process that loaded the library, one more in each
/// child forked since (counted from the first call, which installs the fork handler).
pub fn generation() -> u64 {
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic. A failure (ENOMEM) leaves
        // fork undetected, which is what every earlier version did.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    GENERATION.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_sees_a_new_generation_and_the_parent_keeps_its_own() {
        let before = generation();
        // SAFETY: the child only reads an atomic and calls _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if generation() == before + 1 { 0 } else { 1 };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(generation(), before);
    }
}
