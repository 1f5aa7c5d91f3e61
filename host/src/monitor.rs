//! The monitor: what the `$MONITOR` server command shows a connection of the
//! requests, answers and publications passing through a server
//! (`docs/PROTOCOL.md`, "Monitoring").
//!
//! Each event goes to each monitor as a publication on [`MONITOR_TOPIC`],
//! offered to its queue without waiting: a monitor that does not keep up
//! misses events (its sequence numbers show the gap) and never slows the bus.
//!
//! ```
//! use bytes::Bytes;
//! use microsocket_host::Monitors;
//!
//! let monitors: Monitors<&str> = Monitors::new();
//! assert!(!monitors.is_active());
//! monitors.watch(0, "monitor", Some(b"sensor.>")).unwrap();
//! assert!(monitors.is_active());
//! let mut shown: Vec<Bytes> = Vec::new();
//! for topic in ["sensor.t", "log"] {
//!     let frame = microsocket_host::publication_frame(topic.as_bytes(), ["20"]).unwrap();
//!     // The server delivered it to 2 connections; the monitor's queue takes the event.
//!     monitors.publication(&frame, 2, |_monitor, event| { shown.extend(event()); true });
//! }
//! // One event: `sensor.t` matches the filter, `log` does not.
//! let event = microsocket_host::MonitorEvent::parse(&shown[0]).unwrap();
//! assert_eq!(event.values, ["0", "publication", "2", "sensor.t", "20"].map(|v| v.as_bytes().to_vec()));
//! assert_eq!(shown.len(), 1);
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use microsocket_core::{Args, Pattern, PatternError};

use crate::stats::ConnectionId;

/// How a server offers a monitor event to a connection: given the
/// connection and a maker of the event's frame, it queues the frame if the
/// connection has room (building it only then) and says whether it did.
pub type OfferEvent<'a, Q> = dyn FnMut(&Q, &mut dyn FnMut() -> Option<Bytes>) -> bool + 'a;

/// The topic of the publications that carry monitor events.
pub const MONITOR_TOPIC: &[u8] = b"$MONITOR";

/// Requests a monitor was shown and whose answers it still waits for, kept
/// at most per monitor (past it, the oldest is forgotten and its answer not
/// shown).
pub const MONITOR_PENDING: usize = 4096;

/// The connections watching a server, each with its filter and sequence
/// number. A server keeps one and tells it of each request, answer and
/// publication; [`Monitors::is_active`] is one atomic load, so a server
/// nobody monitors pays nothing more.
///
/// `Q` is how the adapter reaches a connection's output queue.
#[derive(Debug)]
pub struct Monitors<Q> {
    /// How many monitors there are.
    active: AtomicUsize,
    table: Mutex<Vec<Monitor<Q>>>,
}

#[derive(Debug)]
struct Monitor<Q> {
    /// The monitoring connection's slot.
    slot: usize,
    conn: Q,
    /// Only requests whose command and publications whose topic match this
    /// pattern are shown.
    filter: Option<Vec<u8>>,
    /// The sequence number of its next event.
    next: u64,
    /// Shown requests awaiting their answers: (connection, tag).
    pending: VecDeque<(ConnectionId, TagKey)>,
}

/// A request's tag, kept for its answer in a fixed size whatever the tag's:
/// the tag itself when short, as clients' tags are; a longer one (a peer may
/// send megabytes) as its length and a hash, so a monitor's pending table
/// stays small.
#[derive(Debug)]
enum TagKey {
    Inline(u8, [u8; 16]),
    Hashed(usize, u64),
}

impl TagKey {
    fn new(tag: &[u8]) -> Self {
        match u8::try_from(tag.len()) {
            Ok(len) if tag.len() <= 16 => {
                let mut inline = [0; 16];
                inline[..tag.len()].copy_from_slice(tag);
                Self::Inline(len, inline)
            }
            _ => Self::Hashed(tag.len(), fnv1a(tag)),
        }
    }

    fn is(&self, tag: &[u8]) -> bool {
        match self {
            Self::Inline(len, inline) => &inline[..usize::from(*len)] == tag,
            Self::Hashed(len, hash) => *len == tag.len() && *hash == fnv1a(tag),
        }
    }
}

/// The 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<Q> Monitor<Q> {
    fn shows(&self, name: &[u8]) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| Pattern::new(f).is_ok_and(|p| p.matches(name)))
    }
}

/// One monitor event, read back from its publication frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorEvent {
    /// Its values: the sequence number, the kind (`request`, `answer`,
    /// `failure` or `publication`), then what the kind carries.
    pub values: Vec<Vec<u8>>,
}

impl MonitorEvent {
    /// Reads a monitor event from a publication frame on [`MONITOR_TOPIC`];
    /// `None` for any other frame.
    #[must_use]
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let mut args = frame_args(frame, b'!')?;
        if args.next()? != MONITOR_TOPIC {
            return None;
        }
        Some(Self {
            values: args.map(<[u8]>::to_vec).collect(),
        })
    }
}

impl<Q> Default for Monitors<Q> {
    fn default() -> Self {
        Self::new()
    }
}

/// The arguments of an encoded frame whose sigil is `sigil`.
fn frame_args(frame: &[u8], sigil: u8) -> Option<Args<'_>> {
    match frame {
        [s, argc, ..] if *s == sigil => Some(Args::resume(frame, 2, *argc)),
        _ => None,
    }
}

/// The most values a frame carries.
const MAX_VALUES: usize = 254;

/// The event frame: a publication on [`MONITOR_TOPIC`] of `head` then
/// `rest`, as many of them as a frame carries.
fn event_frame<'a>(head: &[&'a [u8]], rest: impl Iterator<Item = &'a [u8]> + Clone) -> Option<Bytes> {
    let values = head.iter().copied().chain(rest).take(MAX_VALUES - 1);
    crate::frames::publication_frame(MONITOR_TOPIC, values).ok()
}

impl<Q> Monitors<Q> {
    /// No monitors.
    #[must_use]
    pub fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            table: Mutex::new(Vec::new()),
        }
    }

    fn table(&self) -> MutexGuard<'_, Vec<Monitor<Q>>> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether any connection is monitoring.
    #[must_use]
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) != 0
    }

    /// Makes the connection in `slot` a monitor, showing what matches
    /// `filter` (a topic or pattern; everything if `None`), or changes its
    /// filter. Its sequence numbers start at 0.
    ///
    /// # Errors
    /// [`PatternError`] if `filter` is not a valid pattern.
    pub fn watch(&self, slot: usize, conn: Q, filter: Option<&[u8]>) -> Result<(), PatternError> {
        if let Some(f) = filter {
            Pattern::new(f)?;
        }
        let monitor = Monitor {
            slot,
            conn,
            filter: filter.map(<[u8]>::to_vec),
            next: 0,
            pending: VecDeque::new(),
        };
        let mut table = self.table();
        match table.iter_mut().find(|m| m.slot == slot) {
            Some(m) => *m = monitor,
            None => table.push(monitor),
        }
        self.active.store(table.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Forgets the connection `id` in `slot`, which is closing: it stops
    /// monitoring if it did, and the monitors stop waiting for answers to its
    /// requests (which will not come). Call before the slot can be reused.
    pub fn forget(&self, slot: usize, id: ConnectionId) {
        if !self.is_active() {
            return;
        }
        let mut table = self.table();
        table.retain(|m| m.slot != slot);
        for monitor in table.iter_mut() {
            monitor.pending.retain(|(from, _)| *from != id);
        }
        self.active.store(table.len(), Ordering::Relaxed);
    }

    /// Offers each monitor that `shows` the event the frame `make` builds
    /// for it (from its sequence number); `queued` runs for each that took
    /// it.
    fn offer(
        &self,
        shows: impl Fn(&mut Monitor<Q>) -> bool,
        make: impl Fn(&[u8]) -> Option<Bytes>,
        queued: impl Fn(&mut Monitor<Q>),
        mut offer: impl FnMut(&Q, &mut dyn FnMut() -> Option<Bytes>) -> bool,
    ) {
        for monitor in self.table().iter_mut() {
            if !shows(monitor) {
                continue;
            }
            let seq = monitor.next;
            monitor.next += 1;
            // A monitor that cannot take it misses it (the frame is not even
            // built): the gap in its sequence numbers says so.
            if offer(&monitor.conn, &mut || make(seq.to_string().as_bytes())) {
                queued(monitor);
            }
        }
    }

    /// Tells the monitors of a request from connection `from`, about to
    /// reach the handler. `offer` queues an event to a monitor without
    /// waiting, building its frame only if the monitor has room for it, and
    /// says whether it did.
    pub fn request(
        &self,
        from: ConnectionId,
        tag: &[u8],
        command: &[u8],
        args: Args<'_>,
        offer: impl FnMut(&Q, &mut dyn FnMut() -> Option<Bytes>) -> bool,
    ) {
        if !self.is_active() {
            return;
        }
        self.offer(
            |m| m.shows(command),
            |seq| {
                event_frame(
                    &[seq, b"request", from.to_string().as_bytes(), tag, command],
                    args.clone(),
                )
            },
            // Its answer is shown to the monitors that were shown it.
            |m| {
                if m.pending.len() == MONITOR_PENDING {
                    m.pending.pop_front();
                }
                m.pending.push_back((from, TagKey::new(tag)));
            },
            offer,
        );
    }

    /// Tells the monitors of an answer frame (`)` or `#`) just encoded for
    /// connection `from`: those that were shown its request see it (not
    /// those that started after it, filtered it out or missed it).
    pub fn answer(
        &self,
        from: ConnectionId,
        frame: &[u8],
        offer: impl FnMut(&Q, &mut dyn FnMut() -> Option<Bytes>) -> bool,
    ) {
        if !self.is_active() {
            return;
        }
        let (kind, mut args): (&[u8], _) = match frame_args(frame, b')') {
            Some(args) => (b"answer", args),
            None => match frame_args(frame, b'#') {
                Some(args) => (b"failure", args),
                None => return,
            },
        };
        let Some(tag) = args.next() else {
            return;
        };
        self.offer(
            |m| {
                // Shown if its request was.
                let at = m.pending.iter().position(|(c, t)| *c == from && t.is(tag));
                at.and_then(|at| m.pending.remove(at)).is_some()
            },
            |seq| event_frame(&[seq, kind, from.to_string().as_bytes(), tag], args.clone()),
            |_| {},
            offer,
        );
    }

    /// Tells the monitors of a publication frame (`!`) the server delivered
    /// to `reached` connections.
    pub fn publication(
        &self,
        frame: &[u8],
        reached: usize,
        offer: impl FnMut(&Q, &mut dyn FnMut() -> Option<Bytes>) -> bool,
    ) {
        if !self.is_active() {
            return;
        }
        let Some(mut args) = frame_args(frame, b'!') else {
            return;
        };
        let Some(topic) = args.next() else {
            return;
        };
        self.offer(
            |m| m.shows(topic),
            |seq| {
                event_frame(
                    &[seq, b"publication", reached.to_string().as_bytes(), topic],
                    args.clone(),
                )
            },
            |_| {},
            offer,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(frame: &Bytes) -> Vec<String> {
        MonitorEvent::parse(frame)
            .unwrap()
            .values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    fn frame(sigil: u8, args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        microsocket_core::frame::encode_raw(sigil, args.iter(), &mut out).unwrap();
        out
    }

    /// The arguments of a request frame of these values.
    fn args(values: &[&[u8]]) -> Args<'static> {
        let frame: &'static [u8] = Vec::leak(frame(b'(', values));
        frame_args(frame, b'(').unwrap()
    }

    #[test]
    fn every_kind_of_event_in_order_with_sequence_numbers() {
        let monitors: Monitors<u8> = Monitors::new();
        monitors.watch(3, 1, None).unwrap();
        let mut seen = Vec::new();
        let mut take = |_: &u8, f: &mut dyn FnMut() -> Option<Bytes>| {
            seen.push(values(&f().unwrap()));
            true
        };
        let from = ConnectionId::new(5);
        // The answer to a request made before the monitor started is not shown.
        monitors.answer(from, &frame(b')', &[b"t0"]), &mut take);
        monitors.request(from, b"t1", b"ECHO", args(&[b"x", b"y"]), &mut take);
        monitors.answer(from, &frame(b')', &[b"t1", b"x", b"y"]), &mut take);
        monitors.request(from, b"t2", b"FAIL", args(&[b"no"]), &mut take);
        monitors.answer(from, &frame(b'#', &[b"t2", b"no", b"why"]), &mut take);
        monitors.publication(&frame(b'!', &[b"news", b"hi"]), 2, &mut take);

        assert_eq!(
            seen,
            [
                vec!["0", "request", "5", "t1", "ECHO", "x", "y"],
                vec!["1", "answer", "5", "t1", "x", "y"],
                vec!["2", "request", "5", "t2", "FAIL", "no"],
                vec!["3", "failure", "5", "t2", "no", "why"],
                vec!["4", "publication", "2", "news", "hi"],
            ]
        );
        monitors.forget(3, ConnectionId::new(9));
        assert!(!monitors.is_active());
    }

    #[test]
    fn long_tags_are_matched_and_closed_connections_forgotten() {
        let monitors: Monitors<u8> = Monitors::new();
        monitors.watch(3, 1, None).unwrap();
        let mut kinds = Vec::new();
        let from = ConnectionId::new(5);
        // A long tag is kept as its length and hash, and still matched.
        let long = [b'x'; 100];
        monitors.request(from, &long, b"ECHO", args(&[]), |_, f| {
            kinds.push(values(&f().unwrap())[1].clone());
            true
        });
        monitors.answer(from, &frame(b')', &[&long[..]]), |_, f| {
            kinds.push(values(&f().unwrap())[1].clone());
            true
        });
        assert_eq!(kinds, ["request", "answer"]);
        // The answer to a request of a connection that closed never comes:
        // nothing is kept waiting for it.
        monitors.request(from, b"t9", b"SLEEP", args(&[]), |_, _| true);
        assert_eq!(monitors.table()[0].pending.len(), 1);
        monitors.forget(1, from);
        assert!(monitors.table()[0].pending.is_empty());
    }

    #[test]
    fn a_filter_shows_matching_requests_their_answers_and_publications() {
        let monitors: Monitors<u8> = Monitors::new();
        assert_eq!(monitors.watch(0, 1, Some(b"a.*.>x")), Err(PatternError::MixedWildcard));
        monitors.watch(0, 1, Some(b"sensor.*")).unwrap();
        let mut seen = Vec::new();
        let mut take = |_: &u8, f: &mut dyn FnMut() -> Option<Bytes>| {
            seen.push(values(&f().unwrap())[..4].join(" "));
            true
        };
        let (a, b) = (ConnectionId::new(1), ConnectionId::new(2));
        monitors.request(a, b"1", b"sensor.read", args(&[]), &mut take);
        monitors.request(b, b"1", b"PING", args(&[]), &mut take);
        // Same tag, other connection: its answer is not the one shown.
        monitors.answer(b, &frame(b')', &[b"1", b"PONG"]), &mut take);
        monitors.answer(a, &frame(b')', &[b"1", b"20"]), &mut take);
        monitors.answer(a, &frame(b')', &[b"1", b"20"]), &mut take);
        monitors.publication(&frame(b'!', &[b"sensor.t"]), 0, &mut take);
        monitors.publication(&frame(b'!', &[b"log"]), 0, &mut take);
        assert_eq!(seen, ["0 request 1 1", "1 answer 1 1", "2 publication 0 sensor.t"]);
    }

    #[test]
    fn a_monitor_that_cannot_keep_up_sees_gaps_and_others_do_not() {
        let monitors: Monitors<u8> = Monitors::new();
        monitors.watch(0, 0, None).unwrap();
        monitors.watch(1, 1, None).unwrap();
        let mut seen: Vec<(u8, String)> = Vec::new();
        for i in 0..4 {
            monitors.publication(&frame(b'!', &[b"t"]), 0, |q, f| {
                // Monitor 0 takes every other event.
                let take = *q == 1 || i % 2 == 0;
                if take {
                    seen.push((*q, values(&f().unwrap())[0].clone()));
                }
                take
            });
        }
        let of = |q| {
            seen.iter()
                .filter(|(m, _)| *m == q)
                .map(|(_, s)| s.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(of(0), ["0", "2"]);
        assert_eq!(of(1), ["0", "1", "2", "3"]);
    }

    #[test]
    fn many_values_are_cut_to_what_a_frame_carries() {
        let monitors: Monitors<u8> = Monitors::new();
        monitors.watch(0, 0, None).unwrap();
        let many = frame(b'(', &[&b"v"[..]; 254]);
        let mut n = 0;
        monitors.request(
            ConnectionId::new(1),
            b"t",
            b"C",
            frame_args(&many, b'(').unwrap(),
            |_, f| {
                n = values(&f().unwrap()).len();
                true
            },
        );
        assert_eq!(n, MAX_VALUES - 1);
    }
}
