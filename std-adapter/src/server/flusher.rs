//! The flusher thread: writes what publishers queued for connections whose
//! sockets were full.

use super::state::*;
use rustix::event::{PollFd, PollFlags};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

impl Flusher {
    pub(super) fn new() -> io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Self {
            ready: Mutex::new(Vec::new()),
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        })
    }

    pub(super) fn push(&self, conn: Arc<Conn>) {
        lock(&self.ready).push(conn);
    }

    pub(super) fn wake(&self) {
        if self.asleep.swap(false, Ordering::SeqCst) {
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    pub(super) fn run(&self) {
        let mut blocked: Vec<Arc<Conn>> = Vec::new();
        let mut batch: Vec<Arc<Conn>> = Vec::new();
        let mut sink = [0u8; 64];
        let mut worked = false;
        loop {
            if worked {
                // Publications keep coming: let them gather for a moment so each
                // write (and each wake-up of a subscriber) carries many frames.
                // An isolated publication finds the flusher asleep and goes out
                // at once.
                std::thread::sleep(COALESCE);
            }
            std::mem::swap(&mut batch, &mut *lock(&self.ready));
            worked = !batch.is_empty();
            for conn in batch.drain(..) {
                let (mut out, flushed) = conn.flush(conn.lock());
                match flushed {
                    Flushed::Blocked => blocked.push(conn.clone()),
                    // A responder is writing: it hands what is left back (or
                    // finds the connection scheduled and leaves it to the next round).
                    Flushed::More | Flushed::Busy => {
                        drop(out);
                        self.push(conn.clone());
                    }
                    Flushed::Drained | Flushed::Dead => {
                        out.scheduled = false;
                        conn.notify_drained(&out);
                    }
                }
            }
            if self.stop.load(Ordering::SeqCst) && lock(&self.ready).is_empty() {
                return;
            }
            self.asleep.store(true, Ordering::SeqCst);
            if !lock(&self.ready).is_empty() {
                self.asleep.store(false, Ordering::SeqCst);
                continue;
            }
            let mut fds = Vec::with_capacity(blocked.len() + 1);
            fds.push(PollFd::new(&self.wake_rx, PollFlags::IN));
            for conn in &blocked {
                fds.push(PollFd::new(&conn.stream, PollFlags::OUT));
            }
            // Blocked sockets whose peer vanished report an error; a timeout also
            // bounds how long a stop request can go unnoticed.
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            };
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
            let ready: Vec<bool> = fds[1..].iter().map(|f| !f.revents().is_empty()).collect();
            drop(fds);
            self.asleep.store(false, Ordering::SeqCst);
            worked = false;
            while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            let mut i = 0;
            blocked.retain(|conn| {
                let keep = !ready[i];
                i += 1;
                if !keep {
                    batch.push(conn.clone());
                }
                keep
            });
            // Connections killed meanwhile leave the blocked list too.
            blocked.retain(|conn| {
                let mut out = conn.lock();
                if out.dead {
                    out.scheduled = false;
                    false
                } else {
                    true
                }
            });
            lock(&self.ready).append(&mut batch);
        }
    }
}
