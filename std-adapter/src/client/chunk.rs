//! Received bytes shared by the frames cut out of them.

use super::*;

/// Received bytes shared by the answers and publications cut out of them: one
/// allocation and copy per read (up to [`CHUNK`] bytes, or one frame) rather
/// than one per frame, value or topic. A frame handed out keeps its whole chunk
/// alive while it is held.
///
/// The chunk follows the receive buffer by position: [`Chunk::frame`] takes the
/// frame at the start of the unconsumed data, and [`Chunk::advance`] is told of
/// every byte consumed after it, so no offsets are computed from pointers.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    bytes: Bytes,
    /// Where the unconsumed data starts in `bytes`.
    at: usize,
}

/// The most bytes copied into one [`Chunk`], unless a single frame is larger.
pub(super) const CHUNK: usize = 64 << 10;

impl Chunk {
    /// The frame of `len` bytes at the start of `data` (the unconsumed received
    /// bytes), as shared bytes.
    pub(super) fn frame(&mut self, data: &[u8], len: usize) -> Bytes {
        let len = len.min(data.len());
        if self.bytes.is_empty() || self.at + len > self.bytes.len() {
            let take = data.len().min(len.max(CHUNK));
            self.bytes = Bytes::copy_from_slice(&data[..take]);
            self.at = 0;
        }
        self.bytes.slice(self.at..self.at + len)
    }

    /// `n` bytes at the start of the unconsumed data were consumed (cut out or
    /// not).
    pub(super) fn advance(&mut self, n: usize) {
        self.at = self.at.saturating_add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::{Chunk, CHUNK};

    #[test]
    fn frames_share_one_copy_until_it_runs_out() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 251) as u8).collect();
        let mut chunk = Chunk::default();
        let mut at = 0;
        // Frames of 100 bytes: the first copies CHUNK bytes, the next share it.
        let first = chunk.frame(&data[at..], 100);
        assert_eq!(&first[..], &data[..100]);
        chunk.advance(100);
        at += 100;
        let second = chunk.frame(&data[at..], 100);
        assert_eq!(&second[..], &data[100..200]);
        // The same copy: the second frame follows the first in memory.
        assert_eq!(second.as_ptr(), first.as_ptr().wrapping_add(100));
        // Skipping past the copy's end makes a new copy.
        chunk.advance(CHUNK);
        at += CHUNK;
        let third = chunk.frame(&data[at..], 100);
        assert_eq!(&third[..], &data[at..at + 100]);
        // A frame larger than CHUNK is copied whole.
        let mut big = Chunk::default();
        assert_eq!(big.frame(&data, CHUNK + 5).len(), CHUNK + 5);
    }
}
