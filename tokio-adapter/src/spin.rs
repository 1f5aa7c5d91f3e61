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

    /// The task made progress that does not restart the window (a subscriber's
    /// publications written, say): its next idle turns start without yielding
    /// the CPU again, as after [`Spin::busy`], but the window keeps its start.
    pub(crate) fn progressed(&mut self) {
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

/// Reads after one that brought several frames during which a server
/// connection still counts as busy.
const BURST_READS: u8 = 8;

/// Whether a server connection's client keeps several requests in flight: a
/// read that brought more than one frame says so for the next
/// [`BURST_READS`] reads. Such a client sends its next batch within
/// microseconds, worth polling for; one sending a request at a time is not
/// (and an occasional single frame among batches does not end the burst).
#[derive(Debug, Default)]
pub(crate) struct Burst {
    reads_left: u8,
}

impl Burst {
    /// Notes a read that brought `frames` whole frames.
    pub(crate) fn record(&mut self, frames: usize) {
        self.reads_left = if frames > 1 {
            BURST_READS
        } else {
            self.reads_left.saturating_sub(1)
        };
    }

    /// Whether the connection is in a burst.
    pub(crate) fn active(&self) -> bool {
        self.reads_left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::{Burst, BURST_READS};

    #[test]
    fn a_burst_starts_with_a_batch_and_outlasts_a_few_single_frames() {
        let mut burst = Burst::default();
        burst.record(1);
        assert!(!burst.active(), "one frame at a time is no burst");
        burst.record(3);
        for _ in 1..BURST_READS {
            burst.record(1);
            assert!(burst.active());
        }
        burst.record(1);
        assert!(!burst.active());
        burst.record(0);
        assert!(!burst.active());
    }
}
