//! Large answers written straight from the handler's values.
//!
//! An answer is normally encoded into the connection's answer buffer and
//! written from there: one copy of every value, which for a large value costs
//! more than the system call that sends it. When nothing is queued ahead of a
//! large answer, its framing bytes alone are encoded and the socket is handed
//! the values where they lie, in one vectored write; only what the socket does
//! not take at once is copied into the queue.

use std::io::IoSlice;
use std::sync::Arc;

use microsocket_core::frame::FrameSink;

use super::state::*;

/// A value at least this long is written from where it is, not copied.
const DIRECT_VALUE: usize = 16 << 10;

/// Values written from where they are in one answer, at most: past it, the
/// answer is copied (a vectored write takes a bounded number of slices).
const MAX_DIRECT_VALUES: usize = 16;

/// Encodes a frame's framing bytes and small arguments, and notes where each
/// long argument goes instead of copying it. The encoder appends each
/// argument with one [`FrameSink::put`] call, in order, so the long arguments
/// noted are, in order, the frame's arguments at least [`DIRECT_VALUE`] long.
struct FramingSink<'a> {
    framing: &'a mut Vec<u8>,
    /// Where each long argument goes in `framing`.
    cuts: &'a mut Vec<usize>,
}

impl FrameSink for FramingSink<'_> {
    fn available(&self) -> usize {
        usize::MAX - self.framing.len()
    }

    fn put(&mut self, bytes: &[u8]) {
        if bytes.len() >= DIRECT_VALUE {
            self.cuts.push(self.framing.len());
        } else {
            self.framing.extend_from_slice(bytes);
        }
    }
}

/// Whether an answer with these values is worth writing from where they are.
pub(super) fn worth_it<V>(values: V) -> bool
where
    V: Iterator,
    V::Item: AsRef<[u8]>,
{
    let mut long = 0;
    for value in values {
        if value.as_ref().len() >= DIRECT_VALUE {
            long += 1;
            if long > MAX_DIRECT_VALUES {
                return false;
            }
        }
    }
    long > 0
}

/// Answers `tag` with `values` on `conn`, writing the long values from where
/// they are, if nothing is queued ahead of the answer. Returns `None`, having
/// done nothing, when the answer must take the usual way: something is queued
/// or being written, monitors want a copy, or the frame cannot be encoded.
/// `charged`, the request's bytes held against the account, is given back
/// once the answer is taken this way.
pub(super) fn respond<V>(conn: &Arc<Conn>, tag: &[u8], values: V, charged: usize) -> Option<()>
where
    V: Iterator + Clone,
    V::Item: AsRef<[u8]>,
{
    let mut out = conn.lock();
    let idle = !out.dead && !out.flushing && out.answers_sent == out.answers.len() && out.pubs_sent == out.pubs.len();
    if !idle || conn.shared.monitors.is_active() {
        return None;
    }
    let mut framing = Vec::with_capacity(64);
    let mut cuts = Vec::with_capacity(4);
    let mut sink = FramingSink {
        framing: &mut framing,
        cuts: &mut cuts,
    };
    out.protocol.respond(tag, values.clone(), &mut sink).ok()?;
    conn.account.release(charged);
    // The answer is the connection's next bytes: appended meanwhile, others
    // queue behind it (see `Out::answer_sink`).
    out.flushing = true;
    drop(out);
    // The long arguments, in the order the encoder met them: the tag first
    // (a tag that long is unusual but valid), then the values. The values are
    // kept while their slices are written (an iterator may make them afresh).
    let long: Vec<V::Item> = values.filter(|v| v.as_ref().len() >= DIRECT_VALUE).collect();
    let tag_is_long = tag.len() >= DIRECT_VALUE;
    let mut slices: Vec<&[u8]> = Vec::with_capacity(long.len() + 1);
    if tag_is_long {
        slices.push(tag);
    }
    slices.extend(long.iter().map(AsRef::as_ref));
    let mut pieces: Vec<&[u8]> = Vec::with_capacity(2 * cuts.len() + 1);
    let mut at = 0;
    for (&cut, slice) in cuts.iter().zip(&slices) {
        pieces.push(&framing[at..cut]);
        pieces.push(slice);
        at = cut;
    }
    pieces.push(&framing[at..]);
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let written = if cuts.len() == slices.len() {
        send_all(conn, &pieces)
    } else {
        // The values changed between two walks: the frame cannot be sent as
        // encoded, and the stream is lost with it.
        Err(())
    };
    let mut out = conn.lock();
    out.flushing = false;
    if out.dead {
        // Closed meanwhile (the peer hung up): nothing is left to queue for.
        return Some(());
    }
    let written = match written {
        Ok(n) => n,
        Err(()) => {
            conn.kill_locked(&mut out);
            return Some(());
        }
    };
    if written < total {
        // Nothing was appended to `answers` while `flushing` was set.
        for piece in unsent(&pieces, written) {
            out.answers.extend_from_slice(piece);
        }
        out.answers_sent = 0;
        let rest = total - written;
        out.queued += rest;
        conn.account.charge(rest);
    }
    let unsent = out.answers_sent < out.answers.len() || out.pubs_sent < out.pubs.len();
    if unsent && !out.corked {
        conn.flush_answers(out);
    }
    Some(())
}

/// What is left of `pieces` once their first `written` bytes are sent.
fn unsent<'a>(pieces: &'a [&'a [u8]], written: usize) -> impl Iterator<Item = &'a [u8]> {
    let mut skip = written;
    pieces.iter().filter_map(move |piece| {
        if skip >= piece.len() {
            skip -= piece.len();
            None
        } else {
            let rest = &piece[skip..];
            skip = 0;
            Some(rest)
        }
    })
}

/// Writes `pieces` until the socket takes no more without blocking; returns
/// the bytes written, or `Err` if the connection failed.
fn send_all(conn: &Conn, pieces: &[&[u8]]) -> Result<usize, ()> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut written = 0;
    while written < total {
        let slices: Vec<IoSlice<'_>> = unsent(pieces, written).map(IoSlice::new).collect();
        let mut control = rustix::net::SendAncillaryBuffer::default();
        match rustix::net::sendmsg(&conn.stream, &slices, &mut control, SEND_FLAGS) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(_) => return Err(()),
        }
    }
    Ok(written)
}
