//! Keeping SIGPIPE away from the host process.
//!
//! Writing to a socket whose peer has gone makes the kernel send SIGPIPE to the writing
//! thread, and the default action of SIGPIPE ends the process. Rust programs ignore it, but a
//! C or C++ agent may not, and a library must never kill its host. tokio writes with plain
//! `write(2)` (no `MSG_NOSIGNAL`), so every library call that may write holds a
//! [`SigpipeGuard`]: SIGPIPE is blocked in the calling thread for the duration of the call,
//! a SIGPIPE raised meanwhile is consumed, and the thread's mask is restored. The process's
//! signal dispositions are never touched. (All writes happen on the calling thread: the
//! runtime polls each call's future on the thread that made the call.)

use std::mem::MaybeUninit;

/// Blocks SIGPIPE in this thread until dropped; a SIGPIPE raised meanwhile is discarded.
pub(crate) struct SigpipeGuard {
    old_mask: libc::sigset_t,
    already_pending: bool,
    active: bool,
}

impl SigpipeGuard {
    /// Blocks SIGPIPE in the calling thread.
    pub(crate) fn new() -> SigpipeGuard {
        // SAFETY: plain libc calls on stack-owned, initialised sigset_t values.
        unsafe {
            let mut pipe_only = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            let mut old_mask = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            libc::sigemptyset(&mut pipe_only);
            libc::sigaddset(&mut pipe_only, libc::SIGPIPE);
            let active = libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_only, &mut old_mask) == 0;
            SigpipeGuard {
                old_mask,
                // A SIGPIPE that was pending before us belongs to the application: leave it.
                already_pending: active && sigpipe_pending(),
                active,
            }
        }
    }
}

impl Drop for SigpipeGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        // SAFETY: as above; sigtimedwait with a zero timeout never blocks.
        unsafe {
            if !self.already_pending && sigpipe_pending() {
                let mut pipe_only = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
                libc::sigemptyset(&mut pipe_only);
                libc::sigaddset(&mut pipe_only, libc::SIGPIPE);
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&pipe_only, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
        }
    }
}

fn sigpipe_pending() -> bool {
    // SAFETY: sigpending fills a stack-owned set.
    unsafe {
        let mut pending = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sigpipe_raised_under_the_guard_is_discarded_and_the_mask_restored() {
        // SAFETY: raising SIGPIPE at this thread while it is blocked only makes it pending.
        unsafe {
            let guard = SigpipeGuard::new();
            libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE);
            assert!(sigpipe_pending());
            drop(guard);
            assert!(!sigpipe_pending());
            let mut mask = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
            assert_eq!(libc::sigismember(&mask, libc::SIGPIPE), 0);
        }
    }
}
