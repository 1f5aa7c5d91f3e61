//! Received bytes shared by the publications cut out of them.

use super::*;

/// Received bytes shared by the publications cut out of them: one allocation
/// and copy per read rather than one per topic and value. A publication keeps
/// its whole chunk (at most [`CHUNK`] bytes, or one frame) alive while queued.
#[derive(Default)]
pub(super) struct Chunk {
    pub(super) bytes: Bytes,
    /// Where `bytes` was copied from (the receive buffer does not move while a
    /// read's frames are handed out).
    pub(super) from: usize,
}

/// The most bytes copied into one [`Chunk`], unless a single frame is larger.
pub(super) const CHUNK: usize = 64 << 10;

impl Chunk {
    /// Makes sure the frame at the start of `data` (`len` bytes) lies inside the
    /// chunk, copying it and the frames after it (up to [`CHUNK`] bytes) if not.
    pub(super) fn cut(&mut self, data: &[u8], len: usize) -> &Self {
        let start = data.as_ptr() as usize;
        let inside = start >= self.from && start + len <= self.from + self.bytes.len();
        if !inside || self.bytes.is_empty() {
            let take = data.len().min(len.max(CHUNK));
            self.bytes = Bytes::copy_from_slice(&data[..take]);
            self.from = start;
        }
        self
    }

    /// `part` (a slice of the frame last given to [`Chunk::cut`]) as a view of
    /// the chunk.
    pub(super) fn slice(&self, part: &[u8]) -> Bytes {
        let at = (part.as_ptr() as usize).wrapping_sub(self.from);
        if part.is_empty() {
            Bytes::new()
        } else if at <= self.bytes.len() && part.len() <= self.bytes.len() - at {
            self.bytes.slice(at..at + part.len())
        } else {
            Bytes::copy_from_slice(part)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Chunk, CHUNK};

    #[test]
    fn chunk_slices_share_one_copy_and_recut_past_its_end() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 251) as u8).collect();
        let mut chunk = Chunk::default();
        // A 100-byte frame at the start: the chunk copies CHUNK bytes.
        let c = chunk.cut(&data, 100);
        assert_eq!(c.bytes.len(), CHUNK);
        let part = c.slice(&data[10..20]);
        assert_eq!(&part[..], &data[10..20]);
        let first = c.bytes.as_ptr();
        // A later frame inside the chunk reuses it.
        let c = chunk.cut(&data[500..], 100);
        assert_eq!(c.bytes.as_ptr(), first);
        assert_eq!(&c.slice(&data[510..530])[..], &data[510..530]);
        // A frame crossing the chunk's end makes a new chunk from its start.
        let at = CHUNK - 50;
        let c = chunk.cut(&data[at..], 100);
        assert_ne!(c.bytes.as_ptr(), first);
        assert_eq!(&c.slice(&data[at + 60..at + 100])[..], &data[at + 60..at + 100]);
        // A frame larger than CHUNK is copied whole.
        let c = chunk.cut(&data, CHUNK + 5);
        assert_eq!(c.bytes.len(), CHUNK + 5);
        assert_eq!(&c.slice(&data[CHUNK..CHUNK + 5])[..], &data[CHUNK..CHUNK + 5]);
        // Empty parts and parts from elsewhere are handled without the chunk.
        assert!(c.slice(&[]).is_empty());
        let elsewhere = [1u8, 2, 3];
        assert_eq!(&c.slice(&elsewhere)[..], &elsewhere);
    }
}
