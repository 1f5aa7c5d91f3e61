//! Waiting for answers and publications: who reads the socket, who sleeps,
//! and how what is read reaches the threads that wait for it.

use super::chunk::Chunk;
use super::state::*;
use crate::rx::read_within;
use microsocket_core::frame::Decoded;
use microsocket_core::{ClientEvent, RequestId};
use microsocket_host::{ClientConfig, Publication, Values};
use microsocket_host::{Error, Result};
use microsocket_socket::Stream;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// The per-slot parts of [`State`] answers are handed out through.
pub(super) struct Slots<'a> {
    pub(super) slots: &'a mut [Option<RequestId>],
    pub(super) ticketed: &'a mut [bool],
    pub(super) done: &'a mut [Answers],
    pub(super) sleeping: &'a mut [u16],
    pub(super) wakes: &'a mut Vec<WaitKey>,
    pub(super) uncollected: &'a mut usize,
}

/// Takes the answer for `id` from its slot's list of answers not yet collected.
pub(super) fn take_done(st: &mut State, id: RequestId) -> Option<Result<Values>> {
    let list = &mut st.done[usize::from(id.slot())];
    let i = list.iter().position(|(got, _, _)| *got == id)?;
    let (_, result, counted) = list.swap_remove(i);
    if counted {
        st.uncollected = st.uncollected.saturating_sub(1);
    }
    Some(result)
}

impl State {
    /// Whether a request (or a subscription and its barrier) may be sent now.
    fn check_can_send(&self, config: &ClientConfig) -> Result<()> {
        if self.reconnecting && !self.closed {
            // Not closed for good: the caller may retry once reconnected.
            return Err(Error::Reconnecting);
        }
        if self.closed || self.send_closed {
            return Err(Error::Closed);
        }
        microsocket_host::check_in_flight(
            self.protocol.requests_in_flight(),
            self.protocol.requests_abandoned(),
            config.max_in_flight,
        )
    }

    /// Whether there is no socket to read or write: closed, or reconnecting.
    pub(super) fn down(&self) -> bool {
        self.closed || self.reconnecting
    }

    /// How many threads waiting with `key` sleep on its condition variable.
    pub(super) fn sleeping(&mut self, key: &WaitKey) -> &mut u16 {
        match key {
            WaitKey::Slot(s) => &mut self.sleeping[usize::from(*s)],
            WaitKey::Sub(h) => match self.queues.get_mut(&h.key) {
                Some(q) => &mut q.sleeping,
                None => &mut self.sub_sleeping_gone,
            },
        }
    }
}

impl Inner {
    pub(super) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the frames in `pending`, unless another thread is writing: that
    /// thread then writes them too before it stops (write combining: threads
    /// requesting at once share system calls). The lock is not held while
    /// writing. A failed write closes the connection: part of a frame may be on
    /// the wire. Except `EPIPE`: the server stopped reading, and the connection
    /// stays open for reading the answers it still sends (see `State::send_closed`).
    pub(super) fn flush_pending<'a>(&'a self, st: MutexGuard<'a, State>) -> Result<()> {
        self.flush_pending_then(st, || {})
    }

    /// As [`Inner::flush_pending`], running `unlocked` once the lock is first
    /// released.
    pub(super) fn flush_pending_then<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        unlocked: impl FnOnce(),
    ) -> Result<()> {
        if st.send_closed {
            st.pending.clear();
        }
        if st.writing || st.pending.is_empty() {
            drop(st);
            unlocked();
            return Ok(());
        }
        st.writing = true;
        let mut buf = std::mem::take(&mut st.spare);
        let mut unlocked = Some(unlocked);
        loop {
            std::mem::swap(&mut buf, &mut st.pending);
            // The socket is looked up each round: frames queued after a
            // reconnect go to the new one.
            let (stream, generation) = (st.stream.clone(), st.generation);
            drop(st);
            if let Some(f) = unlocked.take() {
                f();
            }
            let result = (&*stream).write_all(&buf);
            buf.clear();
            st = self.lock_state();
            if result.is_err() && generation != st.generation {
                // That socket was lost and replaced meanwhile; its requests
                // have failed already.
                if st.pending.is_empty() || st.down() {
                    break;
                }
                continue;
            }
            if let Err(e) = result {
                st.writing = false;
                st.pending.clear();
                if e.kind() == io::ErrorKind::BrokenPipe {
                    // The server stopped reading but may still answer what it
                    // read: keep reading until it closes (then requests it did not
                    // read fail with `Closed`); write nothing more.
                    st.send_closed = true;
                    return Ok(());
                }
                let _ = stream.shutdown(Shutdown::Both);
                self.lost(&mut st, generation);
                return Err(match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::TimedOut,
                    io::ErrorKind::ConnectionReset => Error::Closed,
                    _ => Error::Io(e),
                });
            }
            if st.pending.is_empty() || st.down() {
                break;
            }
        }
        st.writing = false;
        if buf.capacity() <= MAX_KEPT_BUFFER {
            st.spare = buf;
        }
        if st.pending.capacity() > MAX_KEPT_BUFFER && st.pending.is_empty() {
            st.pending = Vec::new();
        }
        Ok(())
    }

    /// Locks the state if a request (or a subscription and its barrier) may
    /// be sent now. With every slot taken and nobody reading, late answers may
    /// wait in the socket: what is there is read first.
    pub(super) fn lock_for_sending(&self) -> Result<MutexGuard<'_, State>> {
        let mut st = self.lock_state();
        let full = matches!(
            st.check_can_send(&self.config),
            Err(Error::InflightFull | Error::Unresponsive { .. })
        );
        if full && !st.reading && !st.down() {
            st.reading = true;
            let socket = (st.stream.clone(), st.generation);
            self.release(st);
            st = self.read_once(&socket, None, None, true, false);
            st.reading = false;
            self.progress.fetch_add(1, Ordering::Release);
            if let Some(next) = st.idle.last().cloned() {
                self.notify(&mut st, &next);
            }
            self.release(st);
            st = self.lock_state();
        }
        self.check_can_send(&mut st)?;
        Ok(st)
    }

    /// Whether a request (or a subscription and its barrier) may be sent now.
    /// A server that stopped answering (every slot held by a timed-out
    /// request) costs a client set to reconnect its connection, which it then
    /// makes again.
    fn check_can_send(&self, st: &mut State) -> Result<()> {
        let checked = st.check_can_send(&self.config);
        if let Err(Error::Unresponsive { .. }) = checked {
            if self.config.reconnect.is_some() && self.connector.is_some() {
                let _ = st.stream.shutdown(Shutdown::Both);
                let generation = st.generation;
                self.lost(st, generation);
            }
        }
        checked
    }

    /// Marks the connection closed for good and wakes everyone.
    pub(super) fn close_locked(&self, st: &mut State) {
        if st.closed {
            return;
        }
        st.closed = true;
        self.end_connection(st);
    }

    /// The socket of `generation` failed or the server closed it: reconnects
    /// if the client was set to, otherwise closes. Ignored for a socket
    /// already replaced, or a connection already down.
    pub(super) fn lost(&self, st: &mut State, generation: u64) {
        if generation != st.generation || st.down() {
            return;
        }
        match (&self.connector, self.config.reconnect) {
            (Some(_), Some(policy)) => {
                st.reconnecting = true;
                self.end_connection(st);
                for queue in st.queues.values_mut() {
                    queue.queue.notify(Error::Reconnecting);
                }
                self.wake_everyone(st);
                if !self.start_reconnecting(policy) {
                    self.close_locked(st);
                }
            }
            _ => self.close_locked(st),
        }
    }

    /// The socket is gone: requests waiting for an answer fail with
    /// [`Error::Closed`], and every waiter wakes to see it.
    fn end_connection(&self, st: &mut State) {
        self.progress.fetch_add(1, Ordering::Release);
        st.protocol.handle_eof();
        st.pending.clear();
        let State {
            slots, ticketed, done, ..
        } = st;
        for (((slot, ticketed), done), cv) in slots
            .iter_mut()
            .zip(ticketed.iter_mut())
            .zip(done.iter_mut())
            .zip(self.slot_cvs.iter())
        {
            if let Some(id) = slot.take() {
                let counted = !std::mem::take(ticketed);
                done.push((id, Err(Error::Closed), counted));
                st.uncollected += usize::from(counted);
                cv.notify_all();
            }
        }
        self.wake_everyone(st);
    }

    /// Wakes every thread waiting for a publication or to lead the reads.
    pub(super) fn wake_everyone(&self, st: &State) {
        for list in st.handles.values() {
            for h in list {
                h.cv.notify_all();
            }
        }
        for key in &st.idle {
            self.notify_now(key);
        }
    }

    /// Owes a wake-up to the thread waiting with `key` if it sleeps (a
    /// notification is a system call even when nobody waits, so it is made only
    /// when needed); it is sent once the state is unlocked.
    pub(super) fn notify(&self, st: &mut State, key: &WaitKey) {
        if *st.sleeping(key) > 0 {
            st.wakes.push(key.clone());
        }
    }

    pub(super) fn notify_now(&self, key: &WaitKey) {
        match key {
            // Two threads may wait on one slot: one whose answer is in but not yet
            // collected, and one whose new request reuses the freed slot.
            WaitKey::Slot(s) => self.slot_cvs[usize::from(*s)].notify_all(),
            WaitKey::Sub(h) => h.cv.notify_one(),
        }
    }

    /// Waits until `poll` yields (`Some`) or the deadline passes (`None`), leading
    /// the reads whenever nobody else does. With `nonblocking`, reads only what is
    /// already there and returns `None` if that was not enough.
    pub(super) fn wait<T>(
        &self,
        key: WaitKey,
        deadline: Option<Instant>,
        nonblocking: bool,
        mut poll: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let for_answer = matches!(key, WaitKey::Slot(_));
        let mut st = self.lock_state();
        st.awaiting_answers += usize::from(for_answer);
        let mut registered = false;
        let mut tried = false;
        let mut spins = 0;
        let result = loop {
            if let Some(v) = poll(&mut st) {
                break Some(v);
            }
            if nonblocking && (tried || st.down() || st.reading) {
                break None;
            }
            // The clock is read only where there is a deadline.
            let now = deadline.map(|_| Instant::now());
            if deadline.zip(now).is_some_and(|(d, now)| now >= d) {
                break None;
            }
            if !st.reading && !st.down() {
                st.reading = true;
                if registered {
                    st.idle.retain(|k| !k.same(&key));
                    registered = false;
                }
                // Several threads awaiting answers means answers are coming
                // back as a stream, the next batch within microseconds: worth
                // polling for. A lone request's answer comes when the server is
                // done with it, and publications whenever they are made.
                let spin = st.awaiting_answers > 1;
                let socket = (st.stream.clone(), st.generation);
                self.release(st);
                st = self.read_once(&socket, deadline, now, nonblocking, spin);
                tried = true;
                st.reading = false;
                self.progress.fetch_add(1, Ordering::Release);
                continue;
            }
            if spins < SPIN_YIELDS && matches!(key, WaitKey::Slot(_)) {
                let seen = self.progress.load(Ordering::Acquire);
                self.release(st);
                // Every pass yields at least once and counts, so a wait makes at
                // most SPIN_YIELDS passes however busy the leader is, and none
                // past its deadline.
                loop {
                    spins += 1;
                    std::thread::yield_now();
                    if spins >= SPIN_YIELDS
                        || self.progress.load(Ordering::Acquire) != seen
                        || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        break;
                    }
                }
                st = self.lock_state();
                continue;
            }
            if !registered {
                st.idle.push(key.clone());
                registered = true;
            }
            let cv = match &key {
                WaitKey::Slot(s) => &self.slot_cvs[usize::from(*s)],
                WaitKey::Sub(h) => &h.cv,
            };
            // Wake-ups still owed go out now (under the lock: rare).
            for wake in std::mem::take(&mut st.wakes) {
                self.notify_now(&wake);
            }
            *st.sleeping(&key) += 1;
            st = match deadline {
                Some(d) => {
                    cv.wait_timeout(st, d.saturating_duration_since(now.unwrap_or(d)))
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => cv.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner),
            };
            let sleeping = st.sleeping(&key);
            *sleeping = sleeping.saturating_sub(1);
        };
        if registered {
            st.idle.retain(|k| !k.same(&key));
        }
        st.awaiting_answers -= usize::from(for_answer);
        if !st.reading {
            // Someone must take over reading for those still waiting.
            if let Some(next) = st.idle.last().cloned() {
                self.notify(&mut st, &next);
            }
        }
        self.release_and_flush(st);
        result
    }

    /// Unlocks the state, then sends the wake-ups owed (so woken threads do not
    /// find the lock still held).
    pub(super) fn release(&self, mut st: MutexGuard<'_, State>) {
        if st.wakes.is_empty() {
            return;
        }
        let wakes = std::mem::take(&mut st.wakes);
        drop(st);
        for wake in &wakes {
            self.notify_now(wake);
        }
    }

    /// As [`Inner::release`], but first writes the requests that waited for every
    /// handed-out answer to be collected (see [`Client::request`]'s write
    /// combining).
    pub(super) fn release_and_flush(&self, mut st: MutexGuard<'_, State>) {
        if st.uncollected == 0 && !st.pending.is_empty() && !st.writing && !st.down() {
            let wakes = std::mem::take(&mut st.wakes);
            let _ = self.flush_pending_then(st, || {
                for wake in &wakes {
                    self.notify_now(wake);
                }
            });
        } else {
            self.release(st);
        }
    }

    /// One read as the leader, then hands out every complete frame. With
    /// `spin`, polls within [`ClientConfig::spin_before_sleep`] before blocking.
    pub(super) fn read_once(
        &self,
        (stream, generation): &(Arc<Stream>, u64),
        deadline: Option<Instant>,
        now: Option<Instant>,
        nonblocking: bool,
        spin: bool,
    ) -> MutexGuard<'_, State> {
        let mut rx = self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rx = &mut *rx;
        let read = if nonblocking {
            let spare = rx.buf.spare();
            rustix::net::recv(&**stream, spare, rustix::net::RecvFlags::DONTWAIT)
                .map(|(n, _)| n)
                .map_err(io::Error::from)
        } else {
            // Keep the socket's read timeout between a quarter of the time left and
            // all of it: a leader never oversleeps its deadline, and the timeout is
            // rarely changed (a syscall). Without a deadline there is none, so an
            // idle leader sleeps until something arrives.
            let left = deadline
                .zip(now)
                .map(|(d, now)| d.saturating_duration_since(now).max(Duration::from_millis(1)));
            let wanted = match left {
                Some(left) if rx.timeout.is_some_and(|t| t <= left && t >= left / 4) => rx.timeout,
                Some(left) => Some((left / 2).max(Duration::from_millis(1))),
                None => None,
            };
            if wanted != rx.timeout && stream.set_read_timeout(wanted).is_ok() {
                rx.timeout = wanted;
            }
            // Poll within the window before blocking: the polling and the
            // blocking read together stay within the time left.
            let window = match (left, rx.timeout) {
                _ if !spin => Duration::ZERO,
                (Some(left), Some(t)) => self.config.spin_before_sleep.min(left.saturating_sub(t)),
                (Some(left), None) => self.config.spin_before_sleep.min(left),
                (None, _) => self.config.spin_before_sleep,
            };
            let spare = rx.buf.spare();
            match read_within(stream, spare, window) {
                Some(read) => read,
                None => (&**stream).read(spare),
            }
        };
        let mut st = self.lock_state();
        if *generation != st.generation {
            // Read from a socket since replaced (cannot happen while this
            // thread holds the reader, which a reconnect takes first).
            return st;
        }
        match read {
            Ok(0) => {
                rx.decoder.reset();
                self.lost(&mut st, *generation);
                return st;
            }
            Ok(n) => rx.buf.commit(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                return st
            }
            Err(_) => {
                let _ = stream.shutdown(Shutdown::Both);
                rx.decoder.reset();
                self.lost(&mut st, *generation);
                return st;
            }
        }
        self.dispatch(rx, &mut st);
        st
    }

    /// Hands every complete frame in the buffer to its waiter.
    pub(super) fn dispatch(&self, rx: &mut Reader, st: &mut State) {
        let mut chunk = Chunk::default();
        loop {
            let State {
                protocol,
                slots,
                ticketed,
                done,
                sleeping,
                handles,
                queues,
                wakes,
                uncollected,
                publications,
                ..
            } = &mut *st;
            let mut answers = Slots {
                slots,
                ticketed,
                done,
                sleeping,
                wakes,
                uncollected,
            };
            let (event, consumed) = match rx.decoder.decode(rx.buf.data()) {
                Decoded::NeedMore => {
                    return;
                }
                Decoded::Skipped { consumed } => (None, consumed),
                Decoded::Oversized { sigil, tag, consumed } => (protocol.handle_oversized_frame(sigil, tag), consumed),
                Decoded::Frame { frame, consumed } => (protocol.handle_frame(frame), consumed),
            };
            // Positions come from the core's walk of the frame; the frame's
            // bytes are cut from the chunk, which follows the buffer.
            match event {
                None => {}
                Some(ClientEvent::Response { id, values }) => {
                    let (at, len) = (values.position(), values.len());
                    let frame = chunk.frame(rx.buf.data(), consumed);
                    self.complete(&mut answers, id, Ok(Values::at(frame, at, len)));
                }
                Some(ClientEvent::Failure { id, message, details }) => {
                    // The message is the argument right before the details.
                    let (at, len, count) = (details.position() - message.len(), message.len(), details.len());
                    let frame = chunk.frame(rx.buf.data(), consumed);
                    let error = Error::Failed {
                        message: frame.slice(at..at + len),
                        details: Values::at(frame, at + len, count).to_vec(),
                    };
                    self.complete(&mut answers, id, Err(error));
                }
                Some(ClientEvent::ResponseTooLarge { id }) => {
                    self.complete(&mut answers, id, Err(Error::FrameTooLarge))
                }
                Some(ClientEvent::Publication {
                    values, subscriptions, ..
                }) => {
                    let (at, len) = (values.position(), values.len());
                    let mut publication = Some(Publication::at(chunk.frame(rx.buf.data(), consumed), at, len));
                    *publications += 1;
                    let number = *publications;
                    let weight = consumed;
                    let mut targets = subscriptions
                        .flat_map(|id| handles.get(&id).into_iter().flatten())
                        .peekable();
                    while let Some(h) = targets.next() {
                        let Some(q) = queues.get_mut(&h.key) else { continue };
                        if q.last == number {
                            // Fed by another of the matched subscriptions.
                            continue;
                        }
                        q.last = number;
                        // The last queue takes the publication itself; the others a copy.
                        let last = targets.peek().is_none();
                        let queued = q.queue.push_weighed(weight, || {
                            if last { publication.take() } else { publication.clone() }
                                .expect("the publication is taken only by the last queue")
                        });
                        if !queued {
                            continue;
                        }
                        if q.sleeping > 0 {
                            answers.wakes.push(WaitKey::Sub(h.clone()));
                        }
                    }
                }
            }
            rx.buf.consume(consumed);
            chunk.advance(consumed);
        }
    }

    pub(super) fn complete(&self, st: &mut Slots<'_>, id: RequestId, result: Result<Values>) {
        let i = usize::from(id.slot());
        if let Some(slot) = st.slots.get_mut(i) {
            if *slot == Some(id) {
                *slot = None;
                let counted = !std::mem::take(&mut st.ticketed[i]);
                st.done[i].push((id, result, counted));
                *st.uncollected += usize::from(counted);
                self.progress.fetch_add(1, Ordering::Release);
                if st.sleeping[i] > 0 {
                    st.wakes.push(WaitKey::Slot(id.slot()));
                }
            }
        }
    }
}
