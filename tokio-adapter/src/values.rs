//! Zero-copy values: slices of the received frame.

use std::fmt;

use bytes::{Bytes, BytesMut};
use microsocket_core::frame::{Decoded, Decoder, FrameSink};
use microsocket_core::Args;

/// The values of a response, a publication or a request's arguments: a frozen
/// slice of the received bytes, handed out as [`Bytes`] without copying.
///
/// Cloning is cheap (a reference count). Holding on to `Values` keeps the receive
/// buffer chunk it came from alive.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Values {
    /// The whole frame the values come from.
    frame: Bytes,
    /// Leading arguments that are not values (a tag, a topic, a command).
    skip: u8,
    len: u8,
}

impl Values {
    /// Values over a complete, decoded frame, skipping its first `skip` arguments.
    pub(crate) fn new(frame: Bytes, argc: usize, skip: u8) -> Self {
        let len = argc.saturating_sub(usize::from(skip)) as u8;
        Self { frame, skip, len }
    }

    /// No values.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    fn args(&self) -> Args<'_> {
        match Decoder::new(usize::MAX).decode(&self.frame) {
            Decoded::Frame { frame, .. } => frame.args(),
            _ => Args::empty(),
        }
    }

    /// How many values there are.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values as borrowed slices.
    pub fn iter_slices(&self) -> impl ExactSizeIterator<Item = &[u8]> + Clone + '_ {
        let mut args = self.args();
        for _ in 0..self.skip {
            args.next();
        }
        args
    }

    /// The values as [`Bytes`], each sharing the received buffer.
    #[must_use]
    pub fn iter(&self) -> Iter<'_> {
        let mut args = self.args();
        for _ in 0..self.skip {
            args.next();
        }
        Iter {
            frame: &self.frame,
            args,
        }
    }

    /// The value at `index`, if there is one.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<Bytes> {
        self.iter().nth(index)
    }

    /// The first value, if any.
    #[must_use]
    pub fn first(&self) -> Option<Bytes> {
        self.get(0)
    }

    /// Every value, collected.
    #[must_use]
    pub fn to_vec(&self) -> Vec<Bytes> {
        self.iter().collect()
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Values {
    type Item = Bytes;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// An iterator over [`Values`] as [`Bytes`] (see [`Values::iter`]).
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    frame: &'a Bytes,
    args: Args<'a>,
}

impl Iterator for Iter<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        self.args.next().map(|s| self.frame.slice_ref(s))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.args.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<T: AsRef<[u8]>> PartialEq<[T]> for Values {
    fn eq(&self, other: &[T]) -> bool {
        self.len() == other.len() && self.iter_slices().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

impl<T: AsRef<[u8]>, const N: usize> PartialEq<[T; N]> for Values {
    fn eq(&self, other: &[T; N]) -> bool {
        *self == other[..]
    }
}

/// A publication received on a subscription.
///
/// Its topic and values are views of one received frame: receiving it costs
/// no copy and one reference count, and [`Publication::topic`] borrows.
#[derive(Clone)]
pub struct Publication {
    /// The published values; their frame holds the topic too, hence private.
    values: Values,
    /// Where the topic lies in the values' frame.
    topic: Span,
}

impl Publication {
    /// A publication of `frame`, a whole publication frame of `argc`
    /// arguments whose first, the topic, is at `topic`.
    pub(crate) fn new(frame: Bytes, argc: usize, topic: Span) -> Self {
        Self {
            values: Values::new(frame, argc, 1),
            topic,
        }
    }

    /// The topic it was published on.
    #[must_use]
    pub fn topic(&self) -> &[u8] {
        self.topic.get(&self.values.frame)
    }

    /// The topic as [`Bytes`] sharing the received frame (no copy).
    #[must_use]
    pub fn topic_bytes(&self) -> Bytes {
        self.topic.slice(&self.values.frame)
    }

    /// The published values.
    #[must_use]
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The published values, keeping the received frame alive.
    #[must_use]
    pub fn into_values(self) -> Values {
        self.values
    }
}

impl PartialEq for Publication {
    fn eq(&self, other: &Self) -> bool {
        self.topic() == other.topic() && self.values == other.values
    }
}

impl Eq for Publication {}

impl fmt::Debug for Publication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publication")
            .field("topic", &self.topic_bytes())
            .field("values", &self.values)
            .finish()
    }
}

/// A [`FrameSink`] appending to a growable `BytesMut`.
pub(crate) struct Sink<'a>(pub(crate) &'a mut BytesMut);

impl FrameSink for Sink<'_> {
    fn available(&self) -> usize {
        usize::MAX - self.0.len()
    }

    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Where a slice lies in the receive buffer, to cut it from the frozen frame.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    start: usize,
    len: usize,
}

impl Span {
    /// `part` must lie within the buffer starting at `base`.
    pub(crate) fn of(part: &[u8], base: *const u8) -> Self {
        Self {
            start: (part.as_ptr() as usize).wrapping_sub(base as usize),
            len: part.len(),
        }
    }

    /// The same bytes borrowed from `frame`, the buffer that started at `base`.
    pub(crate) fn get(self, frame: &[u8]) -> &[u8] {
        self.start
            .checked_add(self.len)
            .and_then(|end| frame.get(self.start..end))
            .unwrap_or_default()
    }

    /// The same bytes in `frame`, the frozen buffer that started at `base`.
    pub(crate) fn slice(self, frame: &Bytes) -> Bytes {
        match self.start.checked_add(self.len) {
            Some(end) if self.len > 0 && end <= frame.len() => frame.slice(self.start..end),
            _ => Bytes::new(),
        }
    }
}
