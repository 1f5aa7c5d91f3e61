//! One connection's shared state: its socket, its output buffers (answers and
//! publications) and how they are written.

use super::state::*;
use bytes::Bytes;
use microsocket_host::Admission;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::Shutdown;
use std::sync::{Arc, MutexGuard};

impl Out {
    pub(super) fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            answers: Vec::new(),
            answers_sent: 0,
            pubs: Vec::new(),
            pubs_sent: 0,
            pub_lens: VecDeque::new(),
            front_sent: 0,
            queued: 0,
            scheduled: false,
            flushing: false,
            spare: Vec::new(),
            corked: false,
            dead: false,
            drain_waiters: 0,
            dropped: 0,
        }
    }

    /// Records `n` more publication bytes written.
    pub(super) fn advance_pubs(&mut self, mut n: usize) {
        self.pubs_sent += n;
        while n > 0 {
            let Some(&len) = self.pub_lens.front() else { break };
            let take = n.min(len - self.front_sent);
            self.front_sent += take;
            n -= take;
            if self.front_sent == len {
                self.pub_lens.pop_front();
                self.front_sent = 0;
            }
        }
    }

    /// Drops written bytes from the front of the buffers when that is cheap or
    /// worthwhile; frees buffers a burst made large.
    pub(super) fn compact(&mut self) {
        fn tidy(buf: &mut Vec<u8>, sent: &mut usize) {
            if *sent == buf.len() {
                buf.clear();
                *sent = 0;
                if buf.capacity() > KEPT_BUFFER {
                    *buf = Vec::new();
                }
            } else if *sent >= 64 << 10 && *sent * 2 >= buf.len() {
                buf.drain(..*sent);
                *sent = 0;
            }
        }
        tidy(&mut self.answers, &mut self.answers_sent);
        tidy(&mut self.pubs, &mut self.pubs_sent);
    }

    /// Where an answer is encoded: behind publications still unsent (true), or
    /// with the other answers. Publications queued before an answer, those made
    /// while its request was handled among them, leave before it, as the
    /// protocol promises; answers are never dropped, whatever the queue holds.
    pub(super) fn answer_sink(&mut self) -> (&mut Protocol, &mut Vec<u8>, bool) {
        // While a writer holds taken bytes, anything may still be unsent.
        let behind = self.flushing || self.pubs_sent < self.pubs.len();
        let buf = if behind { &mut self.pubs } else { &mut self.answers };
        (&mut self.protocol, buf, behind)
    }

    /// Encodes one answer frame with `encode` where [`Out::answer_sink`] puts it,
    /// keeping the publication frame lengths in step; returns `encode`'s result
    /// and the bytes added.
    pub(super) fn encode_answer<T>(&mut self, encode: impl FnOnce(&mut Protocol, &mut Vec<u8>) -> T) -> (T, usize) {
        let (protocol, answers, behind) = self.answer_sink();
        let before = answers.len();
        let result = encode(protocol, answers);
        let added = answers.len() - before;
        if behind && added > 0 {
            self.pub_lens.push_back(added);
        }
        (result, added)
    }

    pub(super) fn clear(&mut self) {
        self.answers = Vec::new();
        self.answers_sent = 0;
        self.pubs = Vec::new();
        self.pubs_sent = 0;
        self.pub_lens = VecDeque::new();
        self.front_sent = 0;
        self.queued = 0;
        self.spare = Vec::new();
    }
}

impl Conn {
    pub(super) fn lock(&self) -> MutexGuard<'_, Out> {
        lock(&self.out)
    }

    /// Writes what the socket takes now, without blocking: the rest of a
    /// publication frame partly written, then answers, then publications, in one
    /// `sendmsg`. The bytes are taken out of the buffers and written without the
    /// lock, so publishers and responders only wait for the lock, never for the
    /// system call; what they append meanwhile goes out after them, in order.
    pub(super) fn flush<'a>(&'a self, mut out: MutexGuard<'a, Out>) -> (MutexGuard<'a, Out>, Flushed) {
        for _ in 0..ROUNDS {
            if out.dead {
                return (out, Flushed::Dead);
            }
            if out.flushing {
                return (out, Flushed::Busy);
            }
            let head = match out.pub_lens.front() {
                Some(&len) if out.front_sent > 0 => len - out.front_sent,
                _ => 0,
            };
            let total = out.pubs.len() - out.pubs_sent + out.answers.len() - out.answers_sent;
            if total == 0 {
                out.compact();
                return (out, Flushed::Drained);
            }
            // Take the bytes out; appends meanwhile go to fresh buffers (answers
            // go behind publications while `flushing`, see `Out::answer_sink`).
            let answers = std::mem::take(&mut out.answers);
            let answers_sent = std::mem::replace(&mut out.answers_sent, 0);
            let spare = std::mem::take(&mut out.spare);
            let mut pubs = std::mem::replace(&mut out.pubs, spare);
            let pubs_sent = std::mem::replace(&mut out.pubs_sent, 0);
            out.flushing = true;
            drop(out);
            let p = pubs_sent;
            let unsent_answers = &answers[answers_sent..];
            let slices = [
                IoSlice::new(&pubs[p..p + head]),
                IoSlice::new(unsent_answers),
                IoSlice::new(&pubs[p + head..]),
            ];
            let slices: &[IoSlice<'_>] = if head == 0 { &slices[1..] } else { &slices };
            let mut control = rustix::net::SendAncillaryBuffer::default();
            let sent = rustix::net::sendmsg(&self.stream, slices, &mut control, SEND_FLAGS);
            out = self.lock();
            out.flushing = false;
            if out.dead {
                return (out, Flushed::Dead);
            }
            let written = match sent {
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => 0,
                Err(_) => {
                    self.kill_locked(&mut out);
                    return (out, Flushed::Dead);
                }
            };
            out.queued = out.queued.saturating_sub(written);
            self.account.release(written);
            let a = written.min(head);
            let rest = written - a;
            let b = rest.min(unsent_answers.len());
            let answers_sent = answers_sent + b;
            let pubs_sent = p + a + (rest - b);
            // Frame accounting only: `out.pubs_sent` counts the new buffer.
            let appended_sent = out.pubs_sent;
            out.advance_pubs(a + rest - b);
            out.pubs_sent = appended_sent;
            // Put back what the socket did not take, before what was appended.
            if answers_sent < answers.len() {
                // Nothing was appended to `answers` meanwhile (see above).
                out.answers = answers;
                out.answers_sent = answers_sent;
            } else if out.answers.is_empty() && answers.capacity() <= KEPT_BUFFER {
                out.answers = answers;
                out.answers.clear();
            }
            if pubs_sent < pubs.len() {
                if out.pubs.is_empty() {
                    let fresh = std::mem::replace(&mut out.pubs, pubs);
                    out.pubs_sent = pubs_sent;
                    out.spare = fresh;
                } else {
                    pubs.drain(..pubs_sent);
                    pubs.extend_from_slice(&out.pubs);
                    let appended = std::mem::replace(&mut out.pubs, pubs);
                    out.pubs_sent = 0;
                    out.spare = appended;
                }
                out.spare.clear();
            } else if pubs.capacity() <= KEPT_BUFFER {
                pubs.clear();
                out.spare = pubs;
            }
            if out.spare.capacity() > KEPT_BUFFER {
                out.spare = Vec::new();
            }
            match sent {
                Ok(n) if n == total => {}
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {
                    out.compact();
                    return (out, Flushed::Blocked);
                }
                _ => {}
            }
        }
        let left = out.pubs.len() - out.pubs_sent + out.answers.len() - out.answers_sent;
        let state = if left == 0 { Flushed::Drained } else { Flushed::More };
        out.compact();
        (out, state)
    }

    pub(super) fn kill_locked(&self, out: &mut Out) {
        if !out.dead {
            out.dead = true;
            out.clear();
            let _ = self.stream.shutdown(Shutdown::Both);
            self.drained.notify_all();
        }
    }

    /// Accounts for `added` bytes of answers appended to `out.answers`; returns
    /// whether they should be written now (not if the reader has corked the
    /// connection while it handles a batch of frames: then the batch's answers
    /// leave together when it uncorks).
    /// Counts answers just encoded (charged to the account whatever the
    /// budget says: answers are never dropped); returns whether to write now.
    pub(super) fn answers_added(&self, out: &mut Out, added: usize) -> bool {
        if out.dead || added == 0 {
            return false;
        }
        out.queued += added;
        self.account.charge(added);
        !out.corked
    }

    /// Writes what the socket takes now; leaves the rest to the flusher.
    pub(super) fn flush_answers(self: &Arc<Self>, out: MutexGuard<'_, Out>) {
        let (mut out, flushed) = self.flush(out);
        match flushed {
            Flushed::Drained | Flushed::Dead => self.notify_drained(&out),
            Flushed::Blocked | Flushed::More => self.schedule_locked(&mut out),
            Flushed::Busy => {}
        }
    }

    /// Signals threads waiting for the queue to drain, if any.
    pub(super) fn notify_drained(&self, out: &Out) {
        if out.drain_waiters > 0 {
            self.drained.notify_all();
        }
    }

    pub(super) fn schedule_locked(self: &Arc<Self>, out: &mut Out) {
        if !out.scheduled {
            out.scheduled = true;
            self.shared.flusher.push(self.clone());
            self.shared.flusher.wake();
        }
    }

    /// Queues a publication frame, applying the slow-consumer policy. Returns
    /// whether it was queued and whether the connection needs the flusher.
    pub(super) fn queue_publication(&self, out: &mut Out, frame: &[u8]) -> (bool, bool) {
        self.queue_publication_with(out, frame, false)
    }

    /// [`Conn::queue_publication`]; `prepaid`: the frame's bytes are already
    /// charged to the connection's account (the caller gives them back if it
    /// is not queued).
    pub(super) fn queue_publication_with(&self, out: &mut Out, frame: &[u8], prepaid: bool) -> (bool, bool) {
        if out.dead {
            return (false, false);
        }
        match self.shared.bound.admit(out.queued, frame.len()) {
            Admission::Queue if prepaid || self.account.try_charge(frame.len()) => {}
            // Short of memory: dropped for this connection, as for a slow one.
            Admission::Queue | Admission::Drop => {
                self.shared.counters.dropped(1);
                out.dropped += 1;
                return (false, false);
            }
            Admission::Disconnect => {
                self.shared.counters.dropped(1);
                out.dropped += 1;
                self.shared.counters.slow_consumer_disconnected();
                self.kill_locked(out);
                return (false, false);
            }
        }
        Self::push_publication(out, frame)
    }

    /// Queues a monitor event if the queue has room and the budget allows,
    /// without ever waiting or disconnecting; a dropped event is counted on
    /// the connection. Returns as [`Conn::queue_publication`] does.
    pub(super) fn offer_event(&self, out: &mut Out, make: &mut dyn FnMut() -> Option<Bytes>) -> (bool, bool) {
        if out.dead {
            return (false, false);
        }
        let bound = &self.shared.bound;
        // A full queue drops the event before it is built.
        let frame = if bound.is_full(out.queued) { None } else { make() };
        let Some(frame) =
            frame.filter(|f| bound.admit(out.queued, f.len()) == Admission::Queue && self.account.try_charge(f.len()))
        else {
            out.dropped += 1;
            return (false, false);
        };
        Self::push_publication(out, &frame)
    }

    /// Appends a publication frame to the queue; returns (true, whether the
    /// connection needs the flusher).
    fn push_publication(out: &mut Out, frame: &[u8]) -> (bool, bool) {
        out.queued += frame.len();
        out.pubs.extend_from_slice(frame);
        out.pub_lens.push_back(frame.len());
        let newly = !out.scheduled;
        out.scheduled = true;
        (true, newly)
    }
}
