//! Received values as shared bytes: the answer to a request, the values of a
//! publication, a request's arguments. Every adapter hands out these.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use microsocket_core::frame::{Args, HEADER_LEN, LENGTH_PREFIX_LEN};

/// The values of a response, a publication or a request's arguments: a view of
/// the received frame, handed out as [`Bytes`] without copying.
///
/// Cloning is cheap (a reference count or two). Holding on to `Values` keeps
/// the bytes of the frame it came from alive. Every accessor costs O(1): the
/// values are located once, when the `Values` is made (a single value needs
/// nothing more; two or more, one shared allocation).
///
/// ```
/// use microsocket_host::Values;
/// use bytes::Bytes;
///
/// // `)` tag=7, values "21.5" and "ok", as received.
/// let frame = Bytes::from_static(b")\x03\x00\x00\x00\x01\x07\x00\x00\x00\x0421.5\x00\x00\x00\x02ok");
/// let values = Values::from_frame(frame, 1);
/// assert_eq!(values.len(), 2);
/// assert_eq!(values, ["21.5", "ok"]);
/// assert_eq!(values.str(1), Some("ok"));
/// assert_eq!(values.parse::<f64>(0), Some(21.5));
/// ```
#[derive(Clone, Default)]
pub struct Values {
    /// The whole frame the values come from.
    frame: Bytes,
    /// Where the first value's length prefix starts in `frame`.
    start: u32,
    len: u8,
    /// Where each value's bytes start in `frame` (after its length prefix),
    /// for two values or more; one starts right after `start`'s prefix.
    starts: Option<Arc<[u32]>>,
}

impl Values {
    /// The `len` values starting at `position` of `frame` (a whole frame a
    /// decoder walked; the position as [`Args::position`] gave it).
    #[must_use]
    #[inline]
    pub fn at(frame: Bytes, position: usize, len: usize) -> Self {
        let start = u32::try_from(position).unwrap_or(u32::MAX);
        let wanted = u8::try_from(len).unwrap_or(u8::MAX);
        if wanted <= 1 {
            // The common case, one value (or none): its place is known, so
            // only whether it is whole needs checking.
            let value_at = position.saturating_add(LENGTH_PREFIX_LEN);
            let whole = wanted == 1
                && frame
                    .get(position..value_at)
                    .and_then(|p| <[u8; 4]>::try_from(p).ok())
                    .and_then(|p| value_at.checked_add(u32::from_be_bytes(p) as usize))
                    .is_some_and(|end| end <= frame.len());
            return Self {
                frame,
                start,
                len: u8::from(whole),
                starts: None,
            };
        }
        // Locate each value once; a frame cut short has fewer than announced.
        let mut args = Args::resume(&frame, start as usize, wanted);
        let mut starts = Vec::with_capacity(usize::from(wanted));
        loop {
            let at = args.position() + LENGTH_PREFIX_LEN;
            if args.next().is_none() {
                break;
            }
            starts.push(u32::try_from(at).unwrap_or(u32::MAX));
        }
        Self {
            frame,
            start,
            len: u8::try_from(starts.len()).unwrap_or(u8::MAX),
            starts: Some(starts.into()),
        }
    }

    /// The values of `frame` (a whole frame a decoder walked) after its first
    /// `skip` arguments (the tag of an answer, the topic of a publication).
    #[must_use]
    pub fn from_frame(frame: Bytes, skip: u8) -> Self {
        let argc = frame.get(1).copied().unwrap_or(0);
        let mut args = Args::resume(&frame, HEADER_LEN, argc);
        for _ in 0..skip {
            args.next();
        }
        let (position, len) = (args.position(), args.len());
        Self::at(frame, position, len)
    }

    /// No values.
    #[must_use]
    #[inline]
    pub fn empty() -> Self {
        Self::default()
    }

    /// How many values there are.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values as borrowed slices.
    #[inline]
    pub fn iter_slices(&self) -> Args<'_> {
        Args::resume(&self.frame, self.start as usize, self.len)
    }

    /// The values as [`Bytes`], each sharing the received frame.
    #[must_use]
    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            frame: &self.frame,
            args: self.iter_slices(),
        }
    }

    /// The value at `index`, borrowed.
    #[must_use]
    #[inline]
    pub fn slice(&self, index: usize) -> Option<&[u8]> {
        if index >= self.len() {
            return None;
        }
        let at = match &self.starts {
            None => (self.start as usize).checked_add(LENGTH_PREFIX_LEN)?,
            Some(starts) => *starts.get(index)? as usize,
        };
        let prefix = self.frame.get(at.checked_sub(LENGTH_PREFIX_LEN)?..at)?;
        let len = u32::from_be_bytes(prefix.try_into().ok()?) as usize;
        self.frame.get(at..at.checked_add(len)?)
    }

    /// The value at `index` as [`Bytes`] sharing the frame.
    #[must_use]
    #[inline]
    pub fn get(&self, index: usize) -> Option<Bytes> {
        self.slice(index).map(|value| self.frame.slice_ref(value))
    }

    /// The first value, if any.
    #[must_use]
    #[inline]
    pub fn first(&self) -> Option<Bytes> {
        self.get(0)
    }

    /// The value at `index` as text, if it is there and is UTF-8.
    #[must_use]
    #[inline]
    pub fn str(&self, index: usize) -> Option<&str> {
        std::str::from_utf8(self.slice(index)?).ok()
    }

    /// The value at `index` parsed from its text (`"42"` as a number, say), if
    /// it is there, is UTF-8 and parses.
    #[must_use]
    #[inline]
    pub fn parse<T: FromStr>(&self, index: usize) -> Option<T> {
        self.str(index)?.parse().ok()
    }

    /// Every value, collected.
    #[must_use]
    pub fn to_vec(&self) -> Vec<Bytes> {
        self.iter().collect()
    }

    /// The whole frame the values are a view of.
    #[must_use]
    #[inline]
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Values {
    /// Equal when they hold the same values, whatever frames they come from.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter_slices().eq(other.iter_slices())
    }
}

impl Eq for Values {}

impl std::ops::Index<usize> for Values {
    type Output = [u8];

    /// The value at `index`, borrowed.
    ///
    /// # Panics
    /// If there is no value at `index` (as indexing a slice does); see
    /// [`Values::slice`] for the checked form.
    #[inline]
    fn index(&self, index: usize) -> &[u8] {
        match self.slice(index) {
            Some(value) => value,
            None => panic!("index {index} out of range for {} values", self.len()),
        }
    }
}

impl<'a> IntoIterator for &'a Values {
    type Item = Bytes;
    type IntoIter = Iter<'a>;

    #[inline]
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

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

impl<T: AsRef<[u8]>, const N: usize> PartialEq<[T; N]> for &Values {
    fn eq(&self, other: &[T; N]) -> bool {
        **self == other[..]
    }
}

impl<T: AsRef<[u8]>> PartialEq<Vec<T>> for Values {
    fn eq(&self, other: &Vec<T>) -> bool {
        *self == other[..]
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

    #[inline]
    fn next(&mut self) -> Option<Bytes> {
        self.args.next().map(|s| self.frame.slice_ref(s))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.args.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Whether a received frame of `len` bytes should be copied out of the read
/// buffer it arrived in (an allocation of about `allocation` bytes) rather
/// than handed out as a slice of it, which keeps the whole allocation alive
/// while the frame is held: true for a small frame in a buffer a large frame
/// made larger than `shared_up_to`, the size the reader's buffer reaches by
/// itself. So a frame held keeps at most four times its size, or
/// `shared_up_to`, alive, whatever arrived around it. Every adapter cuts
/// frames by this rule.
#[must_use]
#[inline]
pub fn copy_out(len: usize, allocation: usize, shared_up_to: usize) -> bool {
    allocation > shared_up_to && len < allocation / 4
}

/// Cuts the first `len` bytes (a whole frame) off `buffer`, a read buffer of
/// an allocation of about `allocation` bytes: as a slice sharing it, or as a
/// copy where [`copy_out`] says so.
#[inline]
pub fn cut_frame(buffer: &mut bytes::BytesMut, len: usize, allocation: usize, shared_up_to: usize) -> Bytes {
    if copy_out(len, allocation, shared_up_to) {
        let frame = Bytes::copy_from_slice(&buffer[..len]);
        bytes::Buf::advance(buffer, len);
        frame
    } else {
        buffer.split_to(len).freeze()
    }
}

/// Where a publication frame's topic starts: after the header and the topic's
/// length prefix.
const TOPIC_START: usize = HEADER_LEN + LENGTH_PREFIX_LEN;

/// A publication received on a subscription.
///
/// Its topic and values are views of one received frame: receiving it costs
/// no copy and one reference count, and [`Publication::topic`] borrows.
///
/// ```
/// use microsocket_host::Publication;
/// use bytes::Bytes;
///
/// let frame = Bytes::from_static(b"!\x02\x00\x00\x00\x04news\x00\x00\x00\x05hello");
/// let p = Publication::from_frame(frame);
/// assert_eq!(p.topic(), b"news");
/// assert_eq!(p.topic_str(), Some("news"));
/// assert_eq!(*p.values(), ["hello"]);
/// ```
#[derive(Clone)]
pub struct Publication {
    /// The published values; their frame holds the topic too, from
    /// [`TOPIC_START`] to where the values start.
    values: Values,
}

impl Publication {
    /// The publication `frame` holds (a whole `!` frame a decoder walked),
    /// whose `values_len` values start at `values_position` (as
    /// [`Args::position`] gave it, right after the topic).
    #[must_use]
    #[inline]
    pub fn at(frame: Bytes, values_position: usize, values_len: usize) -> Self {
        Self {
            values: Values::at(frame, values_position, values_len),
        }
    }

    /// The publication `frame` holds (a whole `!` frame a decoder walked).
    #[must_use]
    pub fn from_frame(frame: Bytes) -> Self {
        let argc = frame.get(1).copied().unwrap_or(0);
        let mut args = Args::resume(&frame, HEADER_LEN, argc);
        let _topic = args.next();
        let (position, len) = (args.position(), args.len());
        Self {
            values: Values::at(frame, position, len),
        }
    }

    /// The topic it was published on.
    #[must_use]
    #[inline]
    pub fn topic(&self) -> &[u8] {
        self.values
            .frame
            .get(TOPIC_START..(self.values.start as usize).max(TOPIC_START))
            .unwrap_or_default()
    }

    /// The topic as text, if it is UTF-8.
    #[must_use]
    #[inline]
    pub fn topic_str(&self) -> Option<&str> {
        std::str::from_utf8(self.topic()).ok()
    }

    /// The topic as [`Bytes`] sharing the received frame (no copy).
    #[must_use]
    #[inline]
    pub fn topic_bytes(&self) -> Bytes {
        self.values.frame.slice_ref(self.topic())
    }

    /// The published values.
    #[must_use]
    #[inline]
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The published values, keeping the received frame alive.
    #[must_use]
    #[inline]
    pub fn into_values(self) -> Values {
        self.values
    }
}

impl crate::delivery::Weigh for Publication {
    /// The bytes of its frame.
    #[inline]
    fn weight(&self) -> usize {
        self.values.frame.len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use microsocket_core::frame::encode;
    use microsocket_core::Sigil;

    #[inline]
    fn frame(sigil: Sigil, args: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        encode(sigil, args, &mut out).unwrap();
        Bytes::from(out)
    }

    #[test]
    #[inline]
    fn values_skip_what_is_not_a_value() {
        let request = frame(Sigil::Request, &[b"\x01", b"ECHO", b"a", b"", b"ccc"]);
        let args = Values::from_frame(request, 2);
        assert_eq!(args, ["a", "", "ccc"]);
        assert_eq!(args.get(2).unwrap(), "ccc");
        assert_eq!(args.slice(3), None);
        assert!(Values::from_frame(frame(Sigil::Response, &[b"\x01"]), 1).is_empty());
    }

    #[test]
    #[inline]
    fn every_value_is_found_in_place_or_spilled() {
        for n in [0usize, 1, 5, 6, 7, 40, 255] {
            let owned: Vec<Vec<u8>> = (0..n).map(|i| vec![b'a' + (i % 26) as u8; i % 9]).collect();
            let mut args: Vec<&[u8]> = vec![b"\x01"];
            args.extend(owned.iter().map(Vec::as_slice));
            if args.len() > 255 {
                args.truncate(255);
            }
            let values = Values::from_frame(frame(Sigil::Response, &args), 1);
            assert_eq!(values.len(), args.len() - 1);
            for (i, expected) in args[1..].iter().enumerate() {
                assert_eq!(values.slice(i), Some(*expected), "{n} values, #{i}");
                assert_eq!(values.get(i).as_deref(), Some(*expected));
            }
            assert_eq!(values.slice(values.len()), None);
        }
        // The same values from frames that differ elsewhere are equal.
        let a = Values::from_frame(frame(Sigil::Response, &[b"\x01", b"x"]), 1);
        let b = Values::from_frame(frame(Sigil::Response, &[b"\x02", b"x"]), 1);
        assert_eq!(a, b);
    }

    #[test]
    #[inline]
    fn a_publication_without_values_and_a_truncated_frame_do_not_panic() {
        let p = Publication::from_frame(frame(Sigil::Publication, &[b"t"]));
        assert_eq!((p.topic(), p.values().len()), (&b"t"[..], 0));
        let cut = Publication::from_frame(Bytes::from_static(b"!\x02\x00\x00"));
        assert_eq!(cut.topic(), b"");
        assert!(cut.values().iter().next().is_none());
    }
}
