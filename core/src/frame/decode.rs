//! The streaming decoder.
//!
//! The frame's fixed-size fields are read by nom parsers (`header`,
//! `length_prefix`), each in one load, so input that ends part way through a
//! frame is nom's `Incomplete` (more bytes needed), never an error. An argument's bytes are checked to be all there, never copied. The
//! decoder keeps how far it walked the current frame ([`State::Args`]), so
//! when more bytes arrive it resumes at the first argument it has not seen
//! whole: a frame arriving byte by byte is still walked once.

use nom::{IResult, Needed};

use super::parts::{Args, Frame, HEADER_LEN, LENGTH_PREFIX_LEN};

/// A frame's header: its sigil, then its argument count.
#[inline(always)]
fn header(input: &[u8]) -> IResult<&[u8], (u8, u8), ()> {
    match input.split_first_chunk::<HEADER_LEN>() {
        Some((&[sigil, argc], rest)) => Ok((rest, (sigil, argc))),
        None => Err(nom::Err::Incomplete(Needed::Unknown)),
    }
}

/// An argument's length: four bytes, big-endian. Read as one load (nom's
/// generic `be_u32` assembles it byte by byte, several times slower on the
/// per-argument path), with nom's meaning for input that ends early.
#[inline(always)]
fn length_prefix(input: &[u8]) -> IResult<&[u8], u32, ()> {
    match input.split_first_chunk::<LENGTH_PREFIX_LEN>() {
        Some((prefix, rest)) => Ok((rest, u32::from_be_bytes(*prefix))),
        None => Err(nom::Err::Incomplete(Needed::Unknown)),
    }
}

/// What [`Decoder::decode`] found at the start of the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decoded<'a> {
    /// A complete frame, borrowing from the input; drop its first `consumed` bytes.
    Frame {
        /// The frame.
        frame: Frame<'a>,
        /// Bytes of input the frame occupied.
        consumed: usize,
    },
    /// The input holds only part of a frame. Call again with the same bytes and more
    /// appended; the decoder resumes where it stopped.
    NeedMore,
    /// The frame is larger than the decoder accepts. Its first `consumed` bytes are
    /// done with; the decoder now discards the rest of it as it arrives.
    Oversized {
        /// The frame's first byte.
        sigil: u8,
        /// The first argument (a request's tag), if it was read before the frame
        /// grew too large.
        tag: Option<&'a [u8]>,
        /// Bytes of input to drop.
        consumed: usize,
    },
    /// Bytes of an oversized frame that were discarded. Drop them and call again.
    Skipped {
        /// Bytes of input to drop.
        consumed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary.
    Header,
    /// In a frame whose first `walked` bytes (header and whole arguments) are known.
    Args {
        sigil: u8,
        argc: u8,
        args_left: u8,
        walked: usize,
    },
    /// Discarding an oversized frame: `remaining` bytes of the current argument, then
    /// `args_left` more arguments.
    Skip { remaining: u32, args_left: u8 },
}

/// A resumable, zero-copy frame decoder with a size limit.
///
/// The caller owns the bytes. Each call gets the unconsumed input from the start of
/// the current frame; after [`Decoded::NeedMore`] the next call must get those same
/// bytes with more appended (the buffer may move, its contents may not change).
///
/// ```
/// use microsocket_core::frame::{Decoded, Decoder};
///
/// let wire = b"\x28\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04PING";
/// let mut decoder = Decoder::new(1024);
/// assert_eq!(decoder.decode(&wire[..5]), Decoded::NeedMore);
/// let Decoded::Frame { frame, consumed } = decoder.decode(wire) else { panic!() };
/// assert_eq!(consumed, wire.len());
/// assert!(frame.args().eq([&b"\x07"[..], b"PING"]));
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    /// The largest frame accepted; 0 (only inside a receive buffer, see
    /// [`Decoder::within_buffer`]) for "as large as the buffer", which keeps
    /// a fresh machine's state all zero bytes so that it lands in `.bss`.
    max_frame: usize,
    state: State,
}

impl Decoder {
    /// A decoder that accepts frames of up to `max_frame` bytes (at least the
    /// two-byte header).
    #[must_use]
    pub const fn new(max_frame: usize) -> Self {
        Self {
            max_frame: if max_frame < HEADER_LEN { HEADER_LEN } else { max_frame },
            state: State::Header,
        }
    }

    /// A decoder bounded only by the receive buffer it decodes from, whose
    /// size [`Decoder::decode_within`] is given.
    pub(crate) const fn within_buffer() -> Self {
        Self {
            max_frame: 0,
            state: State::Header,
        }
    }

    /// The largest frame this decoder accepts (`usize::MAX` for one bounded
    /// only by its receive buffer).
    #[must_use]
    pub const fn max_frame(&self) -> usize {
        if self.max_frame == 0 {
            usize::MAX
        } else {
            self.max_frame
        }
    }

    /// Whether the decoder is part way through a frame (including one it
    /// skips): true from the call that saw the frame's whole two-byte header
    /// until the call that returns the frame (or its last skipped bytes).
    /// Before that, a lone first byte is only in the caller's buffer: the
    /// decoder keeps no state for it, so check the buffer too (as a driver
    /// does at end of stream to tell a truncated frame).
    #[must_use]
    pub const fn in_frame(&self) -> bool {
        !matches!(self.state, State::Header)
    }

    /// Whether the decoder is discarding an oversized frame.
    #[must_use]
    pub const fn is_skipping(&self) -> bool {
        matches!(self.state, State::Skip { .. })
    }

    /// Forgets any partial frame, as when the connection closes mid-frame.
    pub fn reset(&mut self) {
        self.state = State::Header;
    }

    /// Decodes the frame at the start of `input`.
    ///
    /// Never fails: every byte sequence is frames. Runs in time proportional to the
    /// argument count of the part of the frame not walked before.
    #[inline]
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Decoded<'a> {
        self.decode_within(input, usize::MAX)
    }

    /// [`Decoder::decode`] from a receive buffer of `buffer` bytes, which also
    /// bounds the frames accepted.
    #[inline]
    pub(crate) fn decode_within<'a>(&mut self, input: &'a [u8], buffer: usize) -> Decoded<'a> {
        let max_frame = self.max_frame().min(buffer);
        let (sigil, argc, mut args_left, mut walked) = match self.state {
            State::Skip { .. } => return self.skip(input),
            State::Args {
                sigil,
                argc,
                args_left,
                walked,
            } => (sigil, argc, args_left, walked),
            State::Header => match header(input) {
                Ok((_, (sigil, argc))) => (sigil, argc, argc, HEADER_LEN),
                Err(_) => return Decoded::NeedMore,
            },
        };
        while args_left > 0 {
            if walked.saturating_add(LENGTH_PREFIX_LEN) > max_frame {
                // The next length prefix alone passes the limit. Report it now: a
                // receive buffer of `max_frame` bytes could never hold that prefix.
                return self.oversized(input, sigil, walked, 0, args_left, walked);
            }
            let rest = input.get(walked..).unwrap_or_default();
            let Ok((body, len)) = length_prefix(rest) else {
                self.state = State::Args {
                    sigil,
                    argc,
                    args_left,
                    walked,
                };
                return Decoded::NeedMore;
            };
            let end = walked as u64 + LENGTH_PREFIX_LEN as u64 + u64::from(len);
            if end > max_frame as u64 {
                return self.oversized(input, sigil, walked, len, args_left - 1, walked + LENGTH_PREFIX_LEN);
            }
            // Whether the argument's bytes are all there (what nom's streaming
            // `take(len)` checks, without building the slice: measurably slower
            // on this per-argument path).
            if (body.len() as u64) < u64::from(len) {
                self.state = State::Args {
                    sigil,
                    argc,
                    args_left,
                    walked,
                };
                return Decoded::NeedMore;
            }
            // `end` fits in usize: it is at most `input.len()`.
            walked = end as usize;
            args_left -= 1;
        }
        self.state = State::Header;
        Decoded::Frame {
            frame: Frame::from_walked(sigil, argc, &input[HEADER_LEN..walked]),
            consumed: walked,
        }
    }

    /// Reports the current frame as too large and starts skipping it: `remaining`
    /// bytes of the current argument, then `args_left` more arguments.
    fn oversized<'a>(
        &mut self,
        input: &'a [u8],
        sigil: u8,
        walked: usize,
        remaining: u32,
        args_left: u8,
        consumed: usize,
    ) -> Decoded<'a> {
        // The tag is whole if at least one argument was walked.
        let tag = if walked > HEADER_LEN {
            input.get(HEADER_LEN..walked).and_then(|b| Args::resume(b, 0, 1).next())
        } else {
            None
        };
        self.state = if remaining == 0 && args_left == 0 {
            // Nothing of the frame is left to skip.
            State::Header
        } else {
            State::Skip { remaining, args_left }
        };
        Decoded::Oversized { sigil, tag, consumed }
    }

    fn skip(&mut self, input: &[u8]) -> Decoded<'static> {
        let State::Skip {
            mut remaining,
            mut args_left,
        } = self.state
        else {
            return Decoded::NeedMore;
        };
        let mut pos = 0usize;
        loop {
            let available = input.len() - pos;
            let dropped = (remaining as usize).min(available);
            pos += dropped;
            // `dropped <= remaining`, which is a u32.
            remaining -= dropped as u32;
            if remaining > 0 {
                break;
            }
            if args_left == 0 {
                self.state = State::Header;
                return Decoded::Skipped { consumed: pos };
            }
            match length_prefix(input.get(pos..).unwrap_or_default()) {
                Ok((_, len)) => {
                    pos += LENGTH_PREFIX_LEN;
                    remaining = len;
                    args_left -= 1;
                }
                Err(_) => break,
            }
        }
        self.state = State::Skip { remaining, args_left };
        if pos == 0 {
            Decoded::NeedMore
        } else {
            Decoded::Skipped { consumed: pos }
        }
    }
}
