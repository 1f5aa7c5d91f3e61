//! When a server connection gives back a receive buffer that a large frame
//! made large.
//!
//! Giving it back at once, as soon as it is empty, costs a peer that sends
//! large frames one after another a new allocation for each (fresh pages,
//! and the copies of growing it again); keeping it forever costs an idle
//! connection what its largest frame needed. A buffer is kept while large
//! frames keep coming, up to a size, and given back once they stop or half
//! the memory budget (the server's, or the peer's user's share) is in use.

/// Reads without a large frame after which a grown receive buffer goes back.
pub const SHRINK_AFTER_READS: u8 = 16;

/// A grown receive buffer larger than this goes back as soon as it is empty.
pub const KEEP_AT_MOST: usize = 256 << 10;

/// Whether a connection's frames have lately needed more than its usual
/// receive buffer.
///
/// ```
/// use microsocket_host::{LargeFrames, SHRINK_AFTER_READS};
///
/// let usual = 16 << 10;
/// let mut large = LargeFrames::default();
/// large.read(64 << 10, usual); // a read left a 64 KiB frame in the buffer
/// assert!(!large.should_shrink(128 << 10, false));
/// for _ in 0..SHRINK_AFTER_READS {
///     large.read(100, usual);
/// }
/// assert!(large.should_shrink(128 << 10, false));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LargeFrames {
    reads_since: u8,
}

impl LargeFrames {
    /// Notes a read after which the buffer held `held` bytes not yet
    /// decoded; a connection's `usual` buffer is the size it shrinks back to.
    pub fn read(&mut self, held: usize, usual: usize) {
        self.reads_since = if held > usual {
            0
        } else {
            self.reads_since.saturating_add(1)
        };
    }

    /// Whether an empty receive buffer of `capacity` bytes, larger than the
    /// usual one, goes back now: no large frame came for
    /// [`SHRINK_AFTER_READS`] reads, it is over [`KEEP_AT_MOST`], or memory is
    /// short (`short_of_memory`, as [`Account::is_tight`](crate::Account::is_tight) says).
    #[must_use]
    pub fn should_shrink(&self, capacity: usize, short_of_memory: bool) -> bool {
        short_of_memory || capacity > KEEP_AT_MOST || self.reads_since >= SHRINK_AFTER_READS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_and_short_memory_go_back_at_once() {
        let mut large = LargeFrames::default();
        large.read(1 << 20, 16 << 10);
        assert!(large.should_shrink(2 << 20, false), "over KEEP_AT_MOST");
        assert!(large.should_shrink(128 << 10, true), "memory short");
        assert!(!large.should_shrink(128 << 10, false));
    }

    #[test]
    fn a_large_frame_now_and_then_keeps_the_buffer() {
        let mut large = LargeFrames::default();
        for _ in 0..10 {
            large.read(64 << 10, 16 << 10);
            for _ in 0..SHRINK_AFTER_READS - 1 {
                large.read(10, 16 << 10);
                assert!(!large.should_shrink(128 << 10, false));
            }
        }
        large.read(10, 16 << 10);
        assert!(large.should_shrink(128 << 10, false));
    }
}
