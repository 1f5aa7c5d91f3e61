//! The fixed-capacity queue of publications a blocking client keeps while it
//! waits for an answer.

use crate::frame::{encoded_len, Args, Decoded, Decoder, SliceSink};
use crate::{encode_publication, Message};

// ---------------------------------------------------------------------------
// Publication queue
// ---------------------------------------------------------------------------

/// Publications received while waiting for something else, kept as publication
/// frames in `N` bytes, oldest first.
#[derive(Debug, Clone)]
pub(super) struct PublicationQueue<const N: usize> {
    pub(super) buf: [u8; N],
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) queued: usize,
    pub(super) lost: u32,
}

impl<const N: usize> PublicationQueue<N> {
    pub(super) const fn new() -> Self {
        Self {
            buf: [0; N],
            start: 0,
            end: 0,
            queued: 0,
            lost: 0,
        }
    }

    /// Appends a publication, or counts it as lost when it does not fit.
    pub(super) fn push(&mut self, topic: &[u8], values: Args<'_>) -> bool {
        let Ok(needed) = encoded_len(core::iter::once(topic).chain(values.clone())) else {
            self.lost = self.lost.saturating_add(1);
            return false;
        };
        if needed > N - (self.end - self.start) {
            self.lost = self.lost.saturating_add(1);
            return false;
        }
        if self.end + needed > N {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match encode_publication(topic, values, &mut SliceSink::new(&mut self.buf[self.end..])) {
            Ok(n) => {
                self.end += n;
                self.queued += 1;
                true
            }
            Err(_) => {
                self.lost = self.lost.saturating_add(1);
                false
            }
        }
    }

    /// The oldest publication: its topic, values and size in the queue.
    pub(super) fn front(&self) -> Option<(&[u8], Args<'_>, usize)> {
        if self.queued == 0 {
            return None;
        }
        // The queue holds whole frames this queue encoded, so the first decodes.
        match Decoder::new(N).decode(&self.buf[self.start..self.end]) {
            Decoded::Frame { frame, consumed } => match Message::parse(&frame) {
                Message::Publication { topic, values } => Some((topic, values, consumed)),
                _ => None,
            },
            _ => None,
        }
    }

    pub(super) fn pop(&mut self, consumed: usize) {
        self.start = (self.start + consumed).min(self.end);
        self.queued = self.queued.saturating_sub(1);
        if self.queued == 0 {
            self.start = 0;
            self.end = 0;
        }
    }

    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.queued = 0;
    }
}
