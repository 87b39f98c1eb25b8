//! Which process this is: a counter that moves on in every child after `fork()`.
//!
//! A child of `fork()` inherits the parent's memory but only the thread that forked: the
//! runtime's scheduler may be held by a parent thread that does not exist there, its
//! resolver threads are gone, and its epoll instance is *shared* with the parent, so a
//! child that deregisters an inherited socket removes the parent's registration. Everything
//! that belongs to one process (the runtime, every handle) records the generation it was
//! made in; a different generation means "made before a fork, in another process", and is
//! never touched again.

//!
//! The fork handlers also hold the library's few process-wide locks across the fork, so a
//! child never inherits one held by a thread that does not exist there. Children made
//! without fork handlers (raw `clone`, glibc `_Fork`) are not noticed.

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALLED: std::sync::Once = std::sync::Once::new();

// Always in this order (the reverse to release), so two forking threads cannot deadlock.
extern "C" fn before_fork() {
    crate::runtime::before_fork();
    crate::tls::before_fork();
    crate::log::before_fork();
}

extern "C" fn in_parent() {
    crate::log::after_fork();
    crate::tls::after_fork();
    crate::runtime::after_fork();
}

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::log::after_fork();
    crate::tls::after_fork();
    crate::runtime::after_fork();
}

/// Installs the fork handlers when the library is loaded, before any thread of the program
/// can fork (a lazy installation could race with a fork in another thread).
extern "C" fn install_fork_handlers() {
    INSTALLED.call_once(|| {
        // SAFETY: the handlers only take and release the library's own locks and add to an
        // atomic. A failure (ENOMEM) leaves fork undetected, as in every earlier version.
        let _ = unsafe { libc::pthread_atfork(Some(before_fork), Some(in_parent), Some(in_child)) };
    });
}

#[used]
#[link_section = ".init_array"]
static INSTALL_FORK_HANDLERS: extern "C" fn() = install_fork_handlers;

/// This process's generation: 0 in the process that loaded the library, one more in each
/// child forked since.
pub fn generation() -> u64 {
    // Normally done at load time; a static link may leave out the constructor's object file.
    install_fork_handlers();
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
