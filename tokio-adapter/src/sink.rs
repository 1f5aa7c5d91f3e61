//! Encoding into a growable buffer.

use bytes::BytesMut;
use microsocket_core::frame::FrameSink;

/// A [`FrameSink`] appending to a growable `BytesMut`.
pub(crate) struct Sink<'a>(pub(crate) &'a mut BytesMut);

impl FrameSink for Sink<'_> {
    #[inline]
    fn available(&self) -> usize {
        usize::MAX - self.0.len()
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}
