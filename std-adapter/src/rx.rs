//! A receive buffer for the frame decoder: initialised once, compacted and grown
//! only as bytes actually arrive (never on a length a peer merely declares),
//! and a bounded poll of a socket before a blocking read.

use std::io;
use std::time::{Duration, Instant};

use microsocket_socket::Stream;

/// Bytes read from a socket and not yet decoded: `buf[start..end]`.
#[derive(Debug)]
pub(crate) struct RxBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    limit: usize,
}

impl RxBuf {
    /// A buffer of `initial` bytes that may grow to hold a frame of `max_frame`.
    pub(crate) fn new(initial: usize, max_frame: usize) -> Self {
        let initial = initial.max(64);
        Self {
            buf: vec![0; initial],
            start: 0,
            end: 0,
            limit: max_frame.max(initial),
        }
    }

    /// The buffer's size.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The bytes not yet consumed.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Free space to read into; empty only if the buffer holds `limit` unconsumed
    /// bytes (then a complete frame is waiting to be decoded).
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.make_room();
        &mut self.buf[self.end..]
    }

    /// How many bytes [`RxBuf::make_room`] would grow the buffer by: nonzero
    /// only when unconsumed bytes (part of a frame) fill it.
    pub(crate) fn growth_needed(&self) -> usize {
        if self.end < self.buf.len() || self.start > 0 || self.buf.len() >= self.limit {
            return 0;
        }
        (self.buf.len() * 2).min(self.limit) - self.buf.len()
    }

    /// Makes room to read into, if there is none: compacts, or else grows
    /// (doubling, up to the limit). Returns how many bytes the buffer grew by.
    pub(crate) fn make_room(&mut self) -> usize {
        if self.end < self.buf.len() {
            return 0;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() && self.buf.len() < self.limit {
            let before = self.buf.len();
            let grown = (before * 2).min(self.limit);
            self.buf.resize(grown, 0);
            return grown - before;
        }
        0
    }

    /// Gives back what the buffer grew by beyond `keep` bytes, if it holds
    /// nothing (a large frame made it large); returns how many bytes it freed.
    pub(crate) fn shrink_if_empty(&mut self, keep: usize) -> usize {
        if self.start != self.end || self.buf.len() <= keep {
            return 0;
        }
        let freed = self.buf.len() - keep;
        self.buf = vec![0; keep];
        self.start = 0;
        self.end = 0;
        freed
    }

    /// Records `n` bytes read into [`RxBuf::spare`].
    pub(crate) fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Drops every unconsumed byte (the socket they came from is gone).
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Drops the first `n` unconsumed bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// Reads what is already there, trying again (yielding the CPU in between) for
/// up to `window` while nothing is. `None`: nothing arrived within it.
pub(crate) fn read_within(stream: &Stream, buf: &mut [u8], window: Duration) -> Option<io::Result<usize>> {
    if window.is_zero() {
        return None;
    }
    let started = Instant::now();
    loop {
        match rustix::net::recv(stream, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Some(Ok(n)),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(e) => return Some(Err(io::Error::from(e))),
        }
        if started.elapsed() >= window {
            return None;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::RxBuf;

    #[test]
    fn compacts_and_grows_to_the_limit() {
        let mut rx = RxBuf::new(64, 200);
        let n = rx.spare().len();
        assert_eq!(n, 64);
        rx.spare().fill(7);
        rx.commit(64);
        rx.consume(10);
        // Full at the end: compacts first, then grows only when still full.
        assert_eq!(rx.spare().len(), 10);
        rx.commit(10);
        assert_eq!(rx.spare().len(), 64);
        rx.commit(64);
        assert_eq!(rx.spare().len(), 200 - 128);
        rx.commit(72);
        assert!(rx.spare().is_empty());
        assert_eq!(rx.data().len(), 200);
        rx.consume(200);
        assert!(rx.data().is_empty());
    }
}
