//! Typed messages over frames.

use crate::error::EncodeError;
use crate::frame::{encode, encode_parts, encode_raw, Args, Frame, FrameSink, Sigil};

/// A frame read as a protocol message. Parsing never fails: a well-framed message
/// with the wrong arguments is [`Message::Malformed`], an unknown sigil is
/// [`Message::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// `(` a request.
    Request {
        /// Chosen by the client, echoed in the answer.
        tag: &'a [u8],
        /// The command name; empty means "no-op" (answered by the server itself).
        command: &'a [u8],
        /// The command's arguments.
        args: Args<'a>,
    },
    /// `)` a successful response.
    Response {
        /// The request's tag.
        tag: &'a [u8],
        /// The values.
        values: Args<'a>,
    },
    /// `#` a failed request.
    Failure {
        /// The request's tag.
        tag: &'a [u8],
        /// Human-readable message (empty if the peer sent none).
        message: &'a [u8],
        /// Optional further details.
        details: Args<'a>,
    },
    /// `+` subscribe to an exact topic.
    Subscribe {
        /// The topic.
        topic: &'a [u8],
    },
    /// `-` drop the subscriptions made with exactly this string.
    Unsubscribe {
        /// The topic or pattern.
        topic: &'a [u8],
    },
    /// `*` subscribe to a topic pattern.
    PatternSubscribe {
        /// The pattern, not yet validated.
        pattern: &'a [u8],
    },
    /// `!` a publication.
    Publication {
        /// The topic.
        topic: &'a [u8],
        /// The published values.
        values: Args<'a>,
    },
    /// A known sigil with too few arguments.
    Malformed {
        /// The sigil.
        sigil: Sigil,
        /// The first argument, where there is one (a request's tag).
        tag: Option<&'a [u8]>,
    },
    /// A sigil microsocket does not know; receivers ignore it.
    Unknown {
        /// The first byte of the frame.
        sigil: u8,
        /// Its arguments.
        args: Args<'a>,
    },
}

impl<'a> Message<'a> {
    /// Reads a frame as a message.
    #[must_use]
    #[inline]
    pub fn parse(frame: &Frame<'a>) -> Self {
        let Some(sigil) = frame.sigil() else {
            return Self::Unknown {
                sigil: frame.sigil_byte(),
                args: frame.args(),
            };
        };
        let Some((first, rest)) = frame.args().split_first() else {
            return Self::Malformed { sigil, tag: None };
        };
        match sigil {
            Sigil::Request => match rest.split_first() {
                Some((command, args)) => Self::Request {
                    tag: first,
                    command,
                    args,
                },
                None => Self::Malformed {
                    sigil,
                    tag: Some(first),
                },
            },
            Sigil::Response => Self::Response {
                tag: first,
                values: rest,
            },
            Sigil::Failure => match rest.clone().split_first() {
                Some((message, details)) => Self::Failure {
                    tag: first,
                    message,
                    details,
                },
                None => Self::Failure {
                    tag: first,
                    message: b"",
                    details: rest,
                },
            },
            Sigil::Subscribe => Self::Subscribe { topic: first },
            Sigil::Unsubscribe => Self::Unsubscribe { topic: first },
            Sigil::PatternSubscribe => Self::PatternSubscribe { pattern: first },
            Sigil::Publication => Self::Publication {
                topic: first,
                values: rest,
            },
        }
    }

    /// Appends this message as a frame to `sink`; returns the frame's length.
    /// A message parsed from a frame encodes to the same bytes, except a
    /// failure that came without a message, which gains an empty one.
    ///
    /// ```
    /// use microsocket_core::frame::{Decoded, Decoder};
    /// use microsocket_core::Message;
    ///
    /// let wire = b"!\x02\x00\x00\x00\x04news\x00\x00\x00\x02hi";
    /// let Decoded::Frame { frame, .. } = Decoder::new(64).decode(wire) else { panic!() };
    /// let mut out = Vec::new();
    /// Message::parse(&frame).encode(&mut out).unwrap();
    /// assert_eq!(out, wire);
    /// ```
    ///
    /// # Errors
    /// As [`encode`]; nothing is written on error.
    pub fn encode<S: FrameSink + ?Sized>(&self, sink: &mut S) -> Result<usize, EncodeError> {
        match self {
            Self::Request { tag, command, args } => encode_parts(Sigil::Request, &[tag, command], args.clone(), sink),
            Self::Response { tag, values } => encode_parts(Sigil::Response, &[tag], values.clone(), sink),
            Self::Failure { tag, message, details } => {
                encode_parts(Sigil::Failure, &[tag, message], details.clone(), sink)
            }
            Self::Subscribe { topic } => encode(Sigil::Subscribe, [topic], sink),
            Self::Unsubscribe { topic } => encode(Sigil::Unsubscribe, [topic], sink),
            Self::PatternSubscribe { pattern } => encode(Sigil::PatternSubscribe, [pattern], sink),
            Self::Publication { topic, values } => encode_parts(Sigil::Publication, &[topic], values.clone(), sink),
            Self::Malformed { sigil, tag } => encode(*sigil, tag.iter(), sink),
            Self::Unknown { sigil, args } => encode_raw(*sigil, args.clone(), sink),
        }
    }
}
