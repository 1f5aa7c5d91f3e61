//! The encoder: frames written into a buffer the caller owns, never partially.

use super::parts::{Sigil, HEADER_LEN, LENGTH_PREFIX_LEN};
use crate::error::EncodeError;

/// Somewhere to append encoded frames: a fixed buffer, a `heapless::Vec`, a
/// growable `Vec<u8>` (feature `alloc`), or an adapter's own buffer.
///
/// The encoder checks [`FrameSink::available`] before it writes, so a frame is
/// either appended whole or not at all.
pub trait FrameSink {
    /// How many more bytes the sink can take.
    fn available(&self) -> usize;
    /// The most bytes the sink could take were it empty: a frame larger than
    /// this can never be encoded into it, however much is flushed (the default,
    /// `usize::MAX`, suits growable sinks).
    fn capacity(&self) -> usize {
        usize::MAX
    }
    /// Appends `bytes`; called only with at most [`FrameSink::available`] bytes in
    /// all for one frame. The encoder appends each argument's bytes with one
    /// call of their own, in order (a sink may note where a long argument goes
    /// and send it from where it lies instead of copying it).
    fn put(&mut self, bytes: &[u8]);
}

impl<const N: usize> FrameSink for heapless::Vec<u8, N> {
    #[inline]
    fn available(&self) -> usize {
        N - self.len()
    }

    fn capacity(&self) -> usize {
        N
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        // The encoder checked `available` first, so this cannot fail.
        let _ = self.extend_from_slice(bytes);
    }
}

#[cfg(feature = "alloc")]
impl FrameSink for alloc::vec::Vec<u8> {
    #[inline]
    fn available(&self) -> usize {
        usize::MAX - self.len()
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A [`FrameSink`] over a plain byte slice, filled from the front.
#[derive(Debug)]
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceSink<'a> {
    /// An empty sink over `buf`.
    #[must_use]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written so far.
    #[must_use]
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl FrameSink for SliceSink<'_> {
    #[inline]
    fn available(&self) -> usize {
        self.buf.len() - self.len
    }

    fn capacity(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }
}

/// The size on the wire of a frame with these arguments.
///
/// # Errors
/// [`EncodeError::TooManyArguments`] past 255 arguments,
/// [`EncodeError::ArgumentTooLong`] for an argument over `u32::MAX` bytes.
pub fn encoded_len<I>(args: I) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    parts_len(&[], args)
}

fn parts_len<I>(head: &[&[u8]], tail: I) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut len = PartsLen::new(head)?;
    for arg in tail {
        len.add(arg.as_ref())?;
    }
    len.finish(head.len())
}

/// A frame's size and argument count as its arguments are counted: the
/// part of the encoder that does not depend on the arguments' type, so
/// that it is compiled once.
struct PartsLen {
    count: usize,
    len: usize,
}

impl PartsLen {
    #[inline]
    fn new(head: &[&[u8]]) -> Result<Self, EncodeError> {
        let mut len = Self {
            count: 0,
            len: HEADER_LEN,
        };
        for arg in head {
            len.add(arg)?;
        }
        Ok(len)
    }

    #[inline]
    fn add(&mut self, arg: &[u8]) -> Result<(), EncodeError> {
        if u32::try_from(arg.len()).is_err() {
            return Err(EncodeError::ArgumentTooLong);
        }
        self.count += 1;
        self.len = self.len.saturating_add(LENGTH_PREFIX_LEN + arg.len());
        Ok(())
    }

    /// The frame's size; `head` is how many arguments the frame adds itself.
    #[inline]
    fn finish(&self, head: usize) -> Result<usize, EncodeError> {
        if self.count > usize::from(u8::MAX) {
            // Counted as the caller gave them: without the parts the frame adds
            // itself (a request's tag and command).
            return Err(EncodeError::TooManyArguments {
                count: self.count - head,
                max: usize::from(u8::MAX) - head,
            });
        }
        Ok(self.len)
    }
}

/// Checks that a frame of `required` bytes fits `sink` now.
fn check_room<S: FrameSink + ?Sized>(required: usize, sink: &S) -> Result<(), EncodeError> {
    let available = sink.available();
    if required > available {
        let capacity = sink.capacity();
        if required > capacity {
            // Flushing cannot help: a distinct error, so a caller that retries
            // after draining on `BufferTooSmall` does not retry forever.
            return Err(EncodeError::FrameTooLarge { required, capacity });
        }
        return Err(EncodeError::BufferTooSmall { required, available });
    }
    Ok(())
}

/// Appends one argument: its length prefix, then its bytes.
fn put_arg<S: FrameSink + ?Sized>(sink: &mut S, arg: &[u8]) {
    // The length was checked to fit a u32.
    sink.put(&(arg.len() as u32).to_be_bytes());
    sink.put(arg);
}

/// Appends a frame's header and its first arguments, `head`.
fn put_head<S: FrameSink + ?Sized>(sink: &mut S, sigil: u8, argc: usize, head: &[&[u8]]) {
    // `PartsLen::finish` checked the count fits a byte.
    sink.put(&[sigil, argc as u8]);
    for arg in head {
        put_arg(sink, arg);
    }
}

/// Appends one frame to `sink` and returns its length. On error nothing is written.
///
/// ```
/// use microsocket_core::frame::{encode, Sigil};
///
/// let mut out: heapless::Vec<u8, 64> = heapless::Vec::new();
/// encode(Sigil::Subscribe, [b"news"], &mut out).unwrap();
/// assert_eq!(&out[..], b"\x2b\x01\x00\x00\x00\x04news");
/// ```
///
/// # Errors
/// As [`encoded_len`], and [`EncodeError::BufferTooSmall`] when the sink lacks room.
pub fn encode<I, S>(sigil: Sigil, args: I, sink: &mut S) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
    S: FrameSink + ?Sized,
{
    encode_parts(sigil, &[], args, sink)
}

/// Appends one frame whose first byte is `sigil`, known to microsocket or not
/// (a frame of an extension, or an unknown sigil for testing a receiver), and
/// returns its length.
///
/// ```
/// use microsocket_core::frame::{encode_raw, Decoded, Decoder};
///
/// let mut out = Vec::new();
/// encode_raw(b'?', [b"x"], &mut out).unwrap();
/// assert_eq!(out, b"?\x01\x00\x00\x00\x01x");
/// let Decoded::Frame { frame, .. } = Decoder::new(64).decode(&out) else { panic!() };
/// assert_eq!((frame.sigil(), frame.sigil_byte()), (None, b'?'));
/// ```
///
/// # Errors
/// As [`encode`].
pub fn encode_raw<I, S>(sigil: u8, args: I, sink: &mut S) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
    S: FrameSink + ?Sized,
{
    encode_parts_byte(sigil, &[], args, sink)
}

/// Appends a frame whose arguments are `head` then `tail` (a tag and a command,
/// then the caller's arguments, say).
pub(crate) fn encode_parts<I, S>(sigil: Sigil, head: &[&[u8]], tail: I, sink: &mut S) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
    S: FrameSink + ?Sized,
{
    encode_parts_byte(sigil.byte(), head, tail, sink)
}

/// Appends a frame whose arguments are all in `parts`: the encoder of the
/// frames the machines make themselves, compiled once for all of them.
pub(crate) fn encode_slices<S>(sigil: Sigil, parts: &[&[u8]], sink: &mut S) -> Result<usize, EncodeError>
where
    S: FrameSink + ?Sized,
{
    encode_parts_byte(sigil.byte(), parts, core::iter::empty::<&[u8]>(), sink)
}

/// [`encode_parts`] with any first byte.
fn encode_parts_byte<I, S>(sigil: u8, head: &[&[u8]], tail: I, sink: &mut S) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
    S: FrameSink + ?Sized,
{
    let tail = tail.into_iter();
    let mut len = PartsLen::new(head)?;
    for arg in tail.clone() {
        len.add(arg.as_ref())?;
    }
    let required = start_frame(sink, sigil, &len, head)?;
    for arg in tail {
        put_arg(sink, arg.as_ref());
    }
    Ok(required)
}

/// The part of a frame's encoding that does not depend on its arguments' type:
/// checks the counted frame fits the protocol and `sink`, then appends its
/// header and `head`. Compiled once for each sink, whatever the arguments.
#[inline]
fn start_frame<S: FrameSink + ?Sized>(
    sink: &mut S,
    sigil: u8,
    len: &PartsLen,
    head: &[&[u8]],
) -> Result<usize, EncodeError> {
    let required = len.finish(head.len())?;
    check_room(required, sink)?;
    put_head(sink, sigil, len.count, head);
    Ok(required)
}

/// Writes one frame at the start of `out` and returns its length.
///
/// # Errors
/// As [`encode`]; `out` is unchanged on error.
pub fn encode_to_slice<I>(sigil: Sigil, args: I, out: &mut [u8]) -> Result<usize, EncodeError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
{
    encode(sigil, args, &mut SliceSink::new(out))
}

/// An error writing a frame to an [`embedded_io::Write`].
#[cfg(feature = "embedded-io")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError<E> {
    /// The frame cannot be encoded; nothing was written.
    Encode(EncodeError),
    /// The writer failed (part of the frame may have been written).
    Io(E),
    /// The writer accepted no bytes: the stream is closed (part of the frame may
    /// have been written).
    WriteZero,
}

/// Writes all of `bytes`, treating a write that accepts nothing as
/// [`WriteError::WriteZero`] rather than looping or panicking.
#[cfg(feature = "embedded-io")]
fn write_all<W: embedded_io::Write + ?Sized>(writer: &mut W, mut bytes: &[u8]) -> Result<(), WriteError<W::Error>> {
    while !bytes.is_empty() {
        match writer.write(bytes).map_err(WriteError::Io)? {
            0 => return Err(WriteError::WriteZero),
            n => bytes = bytes.get(n..).unwrap_or_default(),
        }
    }
    Ok(())
}

/// Writes one frame to an [`embedded_io::Write`], returning its length.
///
/// # Errors
/// [`WriteError::Encode`] if the frame cannot be encoded (nothing is written),
/// [`WriteError::Io`] if the writer fails, [`WriteError::WriteZero`] if it accepts
/// nothing.
#[cfg(feature = "embedded-io")]
pub fn encode_to_writer<I, W>(sigil: Sigil, args: I, writer: &mut W) -> Result<usize, WriteError<W::Error>>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
    I::IntoIter: Clone,
    W: embedded_io::Write + ?Sized,
{
    let args = args.into_iter();
    let len = encoded_len(args.clone()).map_err(WriteError::Encode)?;
    let argc = args.clone().count() as u8;
    write_all(writer, &[sigil.byte(), argc])?;
    for arg in args {
        let arg = arg.as_ref();
        write_all(writer, &(arg.len() as u32).to_be_bytes())?;
        write_all(writer, arg)?;
    }
    Ok(len)
}
