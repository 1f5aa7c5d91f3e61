//! Received bytes shared by the frames cut out of them.

use bytes::Bytes;
use microsocket_core::frame::{Decoded, Decoder};

/// Received bytes shared by the answers and publications cut out of them: one
/// allocation and copy per read (up to [`CHUNK`] bytes, or one frame) rather
/// than one per frame, value or topic. A frame handed out keeps its whole chunk
/// alive while it is held, so a chunk holds whole frames only: a small
/// publication followed by the start of a large frame (one nobody subscribed
/// to, say) does not keep a copy of that start alive.
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
            let take = len.max(whole_frames(data, len));
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

/// How many bytes at the start of `data` (whose first frame is `first` bytes)
/// are whole frames, up to [`CHUNK`].
fn whole_frames(data: &[u8], first: usize) -> usize {
    let mut probe = Decoder::new(CHUNK);
    let mut end = first;
    while end < CHUNK {
        match probe.decode(&data[end..]) {
            Decoded::Frame { consumed, .. } if end + consumed <= CHUNK => end += consumed,
            _ => break,
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::{Chunk, CHUNK};
    use microsocket_core::frame::encode;
    use microsocket_core::Sigil;

    /// A publication frame of exactly `len` bytes (at least 11).
    fn frame(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(Sigil::Publication, [&b"t"[..], &vec![b'v'; len - 11]], &mut out).unwrap();
        assert_eq!(out.len(), len);
        out
    }

    #[test]
    fn frames_share_one_copy_until_it_runs_out() {
        let one = frame(100);
        let data: Vec<u8> = one.iter().copied().cycle().take(100 * (2 * CHUNK / 100 + 1)).collect();
        let mut chunk = Chunk::default();
        let mut at = 0;
        // Frames of 100 bytes: the first copies the whole frames that fit in
        // CHUNK bytes, the next share it.
        let first = chunk.frame(&data[at..], 100);
        assert_eq!(&first[..], &data[..100]);
        chunk.advance(100);
        at += 100;
        let second = chunk.frame(&data[at..], 100);
        assert_eq!(&second[..], &data[100..200]);
        // The same copy: the second frame follows the first in memory.
        assert_eq!(second.as_ptr(), first.as_ptr().wrapping_add(100));
        // Skipping past the copy's end makes a new copy.
        chunk.advance(CHUNK / 100 * 100);
        at += CHUNK / 100 * 100;
        let third = chunk.frame(&data[at..], 100);
        assert_eq!(&third[..], &data[at..at + 100]);
        // A frame larger than CHUNK is copied whole.
        let big_frame = frame(CHUNK + 5);
        let mut big = Chunk::default();
        assert_eq!(big.frame(&big_frame, CHUNK + 5).len(), CHUNK + 5);
    }

    #[test]
    fn a_small_frame_before_a_large_one_is_copied_alone() {
        let mut data = frame(20);
        data.extend_from_slice(&frame(1 << 20)[..CHUNK * 2]);
        let mut chunk = Chunk::default();
        let small = chunk.frame(&data, 20);
        assert_eq!(&small[..], &data[..20]);
        // Only the small frame was copied: the next frame needs a copy of its own.
        chunk.advance(20);
        assert_eq!(chunk.bytes.len(), 20);
    }
}
