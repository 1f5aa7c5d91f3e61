//! Polling briefly before the runtime may sleep.
//!
//! A runtime thread that runs out of work sleeps in `epoll_wait`, and the next
//! readable byte must wake it: a cross-CPU wake-up and a context switch, several
//! microseconds on a VM, on every turn of a request/response exchange. A task
//! that expects input soon (a client with requests in flight, a server
//! connection that was just busy) can instead ask to be polled again once the
//! runtime has looked for I/O without blocking, for a short, bounded window.
//! Other tasks keep running meanwhile; only the thread's sleep is put off.

use std::future::Future;
use std::task::Context;
use std::time::{Duration, Instant};

/// Turns spun before each further turn also yields the CPU to other threads.
///
/// With client and server in one runtime, an answer is usually in by the
/// second turn, and a `sched_yield` per turn would only add system calls; with
/// the peer in another thread on the same CPU, yielding from then on lets it
/// run instead of waiting for the window to pass.
const TURNS_BEFORE_YIELDING_CPU: u32 = 2;

/// A task's window of polling before it lets its runtime thread sleep.
#[derive(Debug)]
pub(crate) struct Spin {
    window: Duration,
    /// When the task last ran out of work, while it keeps finding none.
    idle_since: Option<Instant>,
    /// Turns spun since then.
    turns: u32,
}

impl Spin {
    /// A window of `window` (zero: never spin).
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            idle_since: None,
            turns: 0,
        }
    }

    /// The task found work: the window starts afresh when it next runs out.
    pub(crate) fn busy(&mut self) {
        self.idle_since = None;
        self.turns = 0;
    }

    /// The task found no work and is about to return `Pending`. Within the
    /// window since it first found none, schedules it to be polled again after
    /// the runtime's next non-blocking check for I/O.
    pub(crate) fn idle(&mut self, cx: &mut Context<'_>) {
        if self.window.is_zero() {
            return;
        }
        // The system clock, not Tokio's: a paused Tokio clock would make the
        // window endless.
        let now = Instant::now();
        let since = *self.idle_since.get_or_insert(now);
        if now.duration_since(since) < self.window {
            // The thread that will send the awaited bytes may be waiting for
            // this very CPU: let it run first.
            if self.turns >= TURNS_BEFORE_YIELDING_CPU {
                std::thread::yield_now();
            }
            self.turns += 1;
            // A fresh `yield_now` registers the waker with the runtime's
            // deferred list, which the runtime polls after it checks for I/O.
            let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
        }
    }
}
