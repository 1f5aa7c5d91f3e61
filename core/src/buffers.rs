//! Fixed receive and transmit buffers for the buffer-owning machines.

use crate::frame::{Decoder, FrameSink};

/// Received bytes not yet consumed, with the decoder walking them.
#[derive(Debug, Clone)]
pub(crate) struct RxBuffer<const N: usize> {
    pub(crate) buf: [u8; N],
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) decoder: Decoder,
}

impl<const N: usize> RxBuffer<N> {
    pub(crate) const fn new(max_frame: usize) -> Self {
        Self {
            buf: [0; N],
            start: 0,
            end: 0,
            decoder: if max_frame < N {
                Decoder::new(max_frame)
            } else {
                Decoder::within_buffer()
            },
        }
    }

    /// Free space after the unconsumed bytes, moving them to the front first.
    pub(crate) fn free(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    pub(crate) fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(N);
    }

    /// Forgets a partial frame at end of stream; returns whether there was one.
    pub(crate) fn eof(&mut self) -> bool {
        let partial = self.decoder.in_frame() || self.start < self.end;
        self.decoder.reset();
        self.start = 0;
        self.end = 0;
        partial
    }
}

/// Encoded bytes awaiting the transport.
#[derive(Debug, Clone)]
pub(crate) struct TxBuffer<const N: usize> {
    pub(crate) buf: heapless::Vec<u8, N>,
}

impl<const N: usize> TxBuffer<N> {
    pub(crate) const fn new() -> Self {
        Self {
            buf: heapless::Vec::new(),
        }
    }

    pub(crate) fn pending(&self) -> Option<&[u8]> {
        (!self.buf.is_empty()).then_some(&self.buf[..])
    }

    /// Drops the first `n` bytes, which the transport took. The unsent tail moves to
    /// the front so the whole capacity is free for the next frames.
    pub(crate) fn advance(&mut self, n: usize) {
        let len = self.buf.len();
        let n = n.min(len);
        self.buf.copy_within(n..len, 0);
        self.buf.truncate(len - n);
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }
}

impl<const N: usize> FrameSink for TxBuffer<N> {
    fn available(&self) -> usize {
        self.buf.available()
    }

    fn capacity(&self) -> usize {
        N
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.put(bytes);
    }
}
