//! A frame's parts as received: its sigil, the frame itself as a view of the
//! received bytes, and its arguments.

/// Bytes of a frame header: the sigil and the argument count.
pub const HEADER_LEN: usize = 2;
/// Bytes of an argument's length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The kinds of message microsocket knows, by their first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum Sigil {
    /// `(` client to server: tag, command, arguments.
    Request = b'(',
    /// `)` server to client: tag, values.
    Response = b')',
    /// `#` server to client: tag, message, details.
    Failure = b'#',
    /// `+` client to server: topic.
    Subscribe = b'+',
    /// `!` server to client: topic, values.
    Publication = b'!',
    /// `-` client to server: topic or pattern to drop (microsocket extension).
    Unsubscribe = b'-',
    /// `*` client to server: pattern (microsocket extension).
    PatternSubscribe = b'*',
}

impl Sigil {
    /// Every sigil microsocket knows, in the order of the protocol's table.
    pub const ALL: [Sigil; 7] = [
        Sigil::Request,
        Sigil::Response,
        Sigil::Failure,
        Sigil::Subscribe,
        Sigil::Publication,
        Sigil::Unsubscribe,
        Sigil::PatternSubscribe,
    ];

    /// The sigil for a frame's first byte, if it is one microsocket knows.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'(' => Self::Request,
            b')' => Self::Response,
            b'#' => Self::Failure,
            b'+' => Self::Subscribe,
            b'!' => Self::Publication,
            b'-' => Self::Unsubscribe,
            b'*' => Self::PatternSubscribe,
            _ => return None,
        })
    }

    /// The byte this sigil is on the wire.
    #[must_use]
    pub const fn byte(self) -> u8 {
        self as u8
    }
}

/// One complete frame, borrowing its arguments from the receive buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    sigil: u8,
    argc: u8,
    /// The arguments, each with its length prefix, already walked by the decoder.
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Builds a frame from a body that the decoder has walked.
    pub(crate) const fn from_walked(sigil: u8, argc: u8, body: &'a [u8]) -> Self {
        Self { sigil, argc, body }
    }

    /// The first byte of the frame, known or not.
    #[must_use]
    pub const fn sigil_byte(&self) -> u8 {
        self.sigil
    }

    /// The sigil, if microsocket knows it.
    #[must_use]
    pub const fn sigil(&self) -> Option<Sigil> {
        Sigil::from_byte(self.sigil)
    }

    /// How many arguments the frame carries.
    #[must_use]
    pub const fn argc(&self) -> usize {
        self.argc as usize
    }

    /// The arguments, in order, borrowed from the receive buffer.
    #[must_use]
    pub const fn args(&self) -> Args<'a> {
        Args {
            rest: self.body,
            remaining: self.argc,
            position: HEADER_LEN as u32,
        }
    }

    /// The frame's size on the wire.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }
}

impl core::fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Frame")
            .field("sigil", &(self.sigil as char))
            .field("args", &self.args())
            .finish()
    }
}

/// The arguments of a frame: a borrowed, cloneable iterator of byte slices.
///
/// Built only over bytes the [`Decoder`](super::Decoder) has walked, so every length prefix is
/// known to fit; should it not, the iterator ends rather than panic.
///
/// Two are equal when they yield the same arguments, wherever in their frames
/// they start.
#[derive(Clone)]
pub struct Args<'a> {
    rest: &'a [u8],
    remaining: u8,
    /// Where `rest` starts, counted from the first byte of the frame.
    position: u32,
}

impl<'a> Args<'a> {
    /// No arguments.
    #[must_use]
    pub const fn empty() -> Self {
        Self {
            rest: &[],
            remaining: 0,
            position: 0,
        }
    }

    /// Where the next argument (its length prefix) starts, counted from the
    /// first byte of its frame: a driver that keeps a frame's bytes (as shared
    /// bytes, say) stores this and later [`Args::resume`]s from it, without
    /// walking the frame again and without computing offsets from pointers.
    ///
    /// ```
    /// use microsocket_core::frame::{Args, Decoded, Decoder};
    ///
    /// let wire = b"!\x02\x00\x00\x00\x04news\x00\x00\x00\x02hi";
    /// let Decoded::Frame { frame, .. } = Decoder::new(1024).decode(wire) else { panic!() };
    /// let mut args = frame.args();
    /// let topic = args.next().unwrap();
    /// let at = args.position();
    /// assert_eq!((topic, at), (&b"news"[..], 10));
    /// // Later, from the stored frame bytes:
    /// assert!(Args::resume(wire, at, 1).eq([&b"hi"[..]]));
    /// ```
    #[must_use]
    pub const fn position(&self) -> usize {
        self.position as usize
    }

    /// The `count` arguments that start at `position` of `frame` (as
    /// [`Args::position`] gave it), over a frame a [`Decoder`](super::Decoder) has walked. Bytes
    /// that are not well formed end the iteration early; they never panic.
    #[must_use]
    pub fn resume(frame: &'a [u8], position: usize, count: u8) -> Self {
        match frame.get(position..) {
            Some(rest) if position <= u32::MAX as usize => Self {
                rest,
                remaining: count,
                position: position as u32,
            },
            _ => Self::empty(),
        }
    }

    /// Bytes the arguments still to come take in their frame, length
    /// prefixes included: what a driver that keeps them keeps.
    ///
    /// ```
    /// use microsocket_core::frame::Args;
    ///
    /// let frame = b"\x00\x00\x00\x02hi\x00\x00\x00\x00";
    /// assert_eq!(Args::resume(frame, 0, 2).encoded_len(), 10);
    /// ```
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        self.rest.len()
    }

    /// Whether no arguments are left.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Takes the next argument, returning it and the rest.
    #[inline]
    pub(crate) fn split_first(mut self) -> Option<(&'a [u8], Self)> {
        let first = self.next()?;
        Some((first, self))
    }
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        let (prefix, rest) = self.rest.split_first_chunk::<LENGTH_PREFIX_LEN>()?;
        let len = u32::from_be_bytes(*prefix) as usize;
        let Some((arg, rest)) = rest.split_at_checked(len) else {
            self.remaining = 0;
            return None;
        };
        self.rest = rest;
        self.remaining -= 1;
        // A walked frame is at most the decoder's limit, which fits in u32.
        self.position = self.position.saturating_add((LENGTH_PREFIX_LEN + len) as u32);
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Args<'_> {}

impl PartialEq for Args<'_> {
    fn eq(&self, other: &Self) -> bool {
        // `rest` holds exactly the arguments still to come.
        self.remaining == other.remaining && self.rest == other.rest
    }
}

impl Eq for Args<'_> {}

impl core::fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut list = f.debug_list();
        for arg in self.clone() {
            list.entry(&crate::bytestr::ByteStr(arg));
        }
        list.finish()
    }
}
