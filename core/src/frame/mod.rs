//! The wire format: frames, their arguments, and the streaming codec.
//!
//! Every message is one frame (see `docs/PROTOCOL.md` for the full protocol):
//!
//! ```text
//! +-------+------+------------+---------+------------+---------+-----
//! | sigil | argc | len(arg 0) | arg 0   | len(arg 1) | arg 1   | ...
//! | u8    | u8   | u32 BE     | bytes   | u32 BE     | bytes   |
//! +-------+------+------------+---------+------------+---------+-----
//! ```
//!
//! - `sigil` names the kind of message ([`Sigil`]); unknown sigils are valid frames
//!   that receivers ignore.
//! - `argc` is 0 to 255. Each argument is opaque bytes, possibly empty.
//! - There is no frame-level length: a receiver finds the end of a frame by walking
//!   its arguments. [`Decoder`] remembers how far it walked, so bytes arriving in
//!   small pieces are walked once.
//!
//! Any byte sequence is a sequence of frames, so decoding never fails: a frame
//! larger than the receiver accepts is reported once ([`Decoded::Oversized`]) and
//! its remaining bytes are discarded as they arrive ([`Decoded::Skipped`]).

mod decode;
mod encode;
mod parts;
#[cfg(test)]
mod tests;

pub use decode::{Decoded, Decoder};
pub use encode::{encode, encode_raw, encode_to_slice, encoded_len, FrameSink, SliceSink};
pub(crate) use encode::{encode_parts, encode_slices};
#[cfg(feature = "embedded-io")]
pub use encode::{encode_to_writer, WriteError};
pub use parts::{Args, Frame, Sigil, HEADER_LEN, LENGTH_PREFIX_LEN};
