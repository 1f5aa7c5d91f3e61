//! Typed messages over frames.

use crate::frame::{Args, Frame, Sigil};

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
}
