//! Frames and messages made from unstructured bytes, for property tests and
//! fuzzing (the `arbitrary` feature).
//!
//! [`FrameSpec`] is any frame: a sigil byte (a known one most of the time) and
//! arguments. [`MessageSpec`] is a well-formed message of each kind, which
//! [`Message::parse`] must read back as exactly that message
//! ([`MessageSpec::matches`]). Both borrow their bytes from the input, as
//! [`Arbitrary`] allows, so making one allocates nothing.
//!
//! ```
//! use arbitrary::{Arbitrary, Unstructured};
//! use microsocket_core::arbitrary::MessageSpec;
//! use microsocket_core::frame::{Decoded, Decoder};
//! use microsocket_core::Message;
//!
//! let noise = [7u8; 64];
//! let spec = MessageSpec::arbitrary(&mut Unstructured::new(&noise)).unwrap();
//! let mut bytes: heapless::Vec<u8, 512> = heapless::Vec::new();
//! spec.encode(&mut bytes).unwrap();
//! let Decoded::Frame { frame, .. } = Decoder::new(512).decode(&bytes) else { panic!() };
//! assert!(spec.matches(&Message::parse(&frame)));
//! ```

use arbitrary::{Arbitrary, Result, Unstructured};
use heapless::Vec;

use crate::frame::{encode, encode_raw, FrameSink, Sigil};
use crate::{Args, EncodeError, Message};

/// The most arguments (after a message's fixed ones) a spec carries.
pub const MAX_SPEC_ARGS: usize = 8;

/// Arguments borrowed from the input.
pub type SpecArgs<'a> = Vec<&'a [u8], MAX_SPEC_ARGS>;

fn args<'a>(u: &mut Unstructured<'a>) -> Result<SpecArgs<'a>> {
    let n = u.int_in_range(0..=MAX_SPEC_ARGS)?;
    let mut out = Vec::new();
    for _ in 0..n {
        // Cannot fail: at most MAX_SPEC_ARGS are pushed.
        let _ = out.push(<&[u8]>::arbitrary(u)?);
    }
    Ok(out)
}

/// Whether `args` yields exactly `expected`.
fn same(args: &Args<'_>, expected: &[&[u8]]) -> bool {
    args.len() == expected.len() && args.clone().zip(expected).all(|(a, b)| a == *b)
}

/// Any frame: a sigil byte (one of [`Sigil::ALL`] three times in four) and up to
/// [`MAX_SPEC_ARGS`] arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec<'a> {
    /// The frame's first byte.
    pub sigil: u8,
    /// Its arguments.
    pub args: SpecArgs<'a>,
}

impl<'a> Arbitrary<'a> for FrameSpec<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let sigil = if u.ratio(3, 4)? {
            u.choose(&Sigil::ALL)?.byte()
        } else {
            u.arbitrary()?
        };
        Ok(Self { sigil, args: args(u)? })
    }
}

impl FrameSpec<'_> {
    /// Appends the frame to `sink`; returns its length.
    ///
    /// # Errors
    /// When `sink` lacks room.
    pub fn encode<S: FrameSink + ?Sized>(&self, sink: &mut S) -> core::result::Result<usize, EncodeError> {
        encode_raw(self.sigil, &self.args, sink)
    }
}

/// A well-formed message of any kind, with up to [`MAX_SPEC_ARGS`] variable
/// arguments.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
#[allow(missing_docs)] // The fields are those of `Message`.
pub enum MessageSpec<'a> {
    /// `(`
    Request {
        tag: &'a [u8],
        command: &'a [u8],
        #[arbitrary(with = args)]
        args: SpecArgs<'a>,
    },
    /// `)`
    Response {
        tag: &'a [u8],
        #[arbitrary(with = args)]
        values: SpecArgs<'a>,
    },
    /// `#`
    Failure {
        tag: &'a [u8],
        message: &'a [u8],
        #[arbitrary(with = args)]
        details: SpecArgs<'a>,
    },
    /// `+`
    Subscribe { topic: &'a [u8] },
    /// `-`
    Unsubscribe { topic: &'a [u8] },
    /// `*`
    PatternSubscribe { pattern: &'a [u8] },
    /// `!`
    Publication {
        topic: &'a [u8],
        #[arbitrary(with = args)]
        values: SpecArgs<'a>,
    },
}

impl MessageSpec<'_> {
    /// Appends the message's frame to `sink`; returns its length.
    ///
    /// # Errors
    /// When `sink` lacks room.
    pub fn encode<S: FrameSink + ?Sized>(&self, sink: &mut S) -> core::result::Result<usize, EncodeError> {
        let with =
            |sigil: Sigil, head: &[&[u8]], tail: &[&[u8]], sink: &mut S| encode(sigil, head.iter().chain(tail), sink);
        match self {
            Self::Request { tag, command, args } => with(Sigil::Request, &[tag, command], args, sink),
            Self::Response { tag, values } => with(Sigil::Response, &[tag], values, sink),
            Self::Failure { tag, message, details } => with(Sigil::Failure, &[tag, message], details, sink),
            Self::Subscribe { topic } => with(Sigil::Subscribe, &[topic], &[], sink),
            Self::Unsubscribe { topic } => with(Sigil::Unsubscribe, &[topic], &[], sink),
            Self::PatternSubscribe { pattern } => with(Sigil::PatternSubscribe, &[pattern], &[], sink),
            Self::Publication { topic, values } => with(Sigil::Publication, &[topic], values, sink),
        }
    }

    /// Whether `message` is this message, field by field.
    #[must_use]
    pub fn matches(&self, message: &Message<'_>) -> bool {
        match (self, message) {
            (
                Self::Request { tag, command, args },
                Message::Request {
                    tag: t,
                    command: c,
                    args: a,
                },
            ) => tag == t && command == c && same(a, args),
            (Self::Response { tag, values }, Message::Response { tag: t, values: v }) => tag == t && same(v, values),
            (
                Self::Failure { tag, message, details },
                Message::Failure {
                    tag: t,
                    message: m,
                    details: d,
                },
            ) => tag == t && message == m && same(d, details),
            (Self::Subscribe { topic }, Message::Subscribe { topic: t })
            | (Self::Unsubscribe { topic }, Message::Unsubscribe { topic: t })
            | (Self::PatternSubscribe { pattern: topic }, Message::PatternSubscribe { pattern: t }) => topic == t,
            (Self::Publication { topic, values }, Message::Publication { topic: t, values: v }) => {
                topic == t && same(v, values)
            }
            _ => false,
        }
    }
}
