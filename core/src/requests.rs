//! The client's table of pending requests and their wire tags.
//!
//! Slot `i` of the table always uses the same tag: one byte (`i`) for the first 256
//! slots, two bytes (big-endian `i`) beyond, so tags stay one byte long, as the
//! original client's, while 256 requests or fewer are pending. A slot is reused only
//! once its response has arrived, so a tag is never reused while pending. Each use
//! of a slot bumps its generation, which the [`RequestId`] carries, so a stale handle
//! never matches a newer request in the same slot.

use crate::error::RequestError;

/// Identifies one request of a client; stale ids never match newer requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct RequestId {
    slot: u16,
    generation: u32,
}

impl RequestId {
    /// The table slot, which is also the wire tag's value.
    #[must_use]
    pub const fn slot(self) -> u16 {
        self.slot
    }

    /// How many times the slot had been used before this request.
    #[must_use]
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

/// A request's tag as it goes on the wire: one or two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    bytes: [u8; 2],
    len: u8,
}

impl Tag {
    fn for_slot(slot: u16) -> Self {
        match u8::try_from(slot) {
            Ok(b) => Self { bytes: [b, 0], len: 1 },
            Err(_) => Self {
                bytes: slot.to_be_bytes(),
                len: 2,
            },
        }
    }

    /// The slot a received tag names, if it is one this table could have sent.
    fn slot_of(tag: &[u8]) -> Option<u16> {
        match *tag {
            [b] => Some(u16::from(b)),
            [hi, lo] if hi != 0 => Some(u16::from_be_bytes([hi, lo])),
            _ => None,
        }
    }

    /// The tag's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Pending,
    /// Cancelled locally; the tag stays reserved until the late answer arrives.
    Cancelled,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u32,
    state: SlotState,
}

/// What a response's tag resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The pending request it answers; its slot is now free.
    Pending(RequestId),
    /// A cancelled request's late answer; its slot is now free.
    Cancelled,
    /// No request has this tag.
    Stray,
}

/// Pending requests in fixed storage: at most `N` (1 to 65,536) at once.
#[derive(Debug, Clone)]
pub(crate) struct RequestTable<const N: usize> {
    slots: [Slot; N],
    /// Where the search for a free slot starts, so tags rotate like the original
    /// client's counter instead of reusing the lowest free one at once.
    cursor: usize,
    in_use: usize,
    /// Slots held by cancelled requests awaiting a late answer.
    cancelled: usize,
}

impl<const N: usize> RequestTable<N> {
    const VALID: () = assert!(N > 0 && N <= 1 << 16, "1 to 65536 requests in flight");

    pub(crate) const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID;
        Self {
            slots: [Slot {
                generation: 0,
                state: SlotState::Free,
            }; N],
            cursor: 0,
            in_use: 0,
            cancelled: 0,
        }
    }

    /// Slots held by cancelled requests whose late answer has not come.
    pub(crate) const fn cancelled(&self) -> usize {
        self.cancelled
    }

    /// Slots in use (pending or cancelled awaiting a late answer).
    pub(crate) const fn in_use(&self) -> usize {
        self.in_use
    }

    pub(crate) const fn capacity(&self) -> usize {
        N
    }

    /// The slot the next request would take and its tag, without taking it.
    pub(crate) fn peek_free(&self) -> Result<(u16, Tag), RequestError> {
        if self.in_use == N {
            return Err(RequestError::InflightFull);
        }
        // Prefer one-byte tags: search the first 256 slots from the cursor, then
        // the rest.
        let short = N.min(256);
        let found = (0..short)
            .map(|k| (self.cursor + k) % short)
            .chain(short..N)
            .find(|&i| self.slots[i].state == SlotState::Free);
        // `in_use < N`, so some slot is free; the index fits u16 as N <= 65536.
        let slot = found.ok_or(RequestError::InflightFull)? as u16;
        Ok((slot, Tag::for_slot(slot)))
    }

    /// Takes the slot [`Self::peek_free`] returned.
    pub(crate) fn take(&mut self, slot: u16) -> RequestId {
        let s = &mut self.slots[usize::from(slot)];
        s.generation = s.generation.wrapping_add(1);
        s.state = SlotState::Pending;
        self.in_use += 1;
        if usize::from(slot) < 256 {
            self.cursor = (usize::from(slot) + 1) % N.min(256);
        }
        RequestId {
            slot,
            generation: s.generation,
        }
    }

    fn slot_mut(&mut self, id: RequestId) -> Option<&mut Slot> {
        self.slots
            .get_mut(usize::from(id.slot))
            .filter(|s| s.generation == id.generation)
    }

    pub(crate) fn is_pending(&self, id: RequestId) -> bool {
        self.slots
            .get(usize::from(id.slot))
            .is_some_and(|s| s.generation == id.generation && s.state == SlotState::Pending)
    }

    /// Marks a pending request cancelled; returns whether it was pending.
    pub(crate) fn cancel(&mut self, id: RequestId) -> bool {
        match self.slot_mut(id) {
            Some(s) if s.state == SlotState::Pending => {
                s.state = SlotState::Cancelled;
                self.cancelled += 1;
                true
            }
            _ => false,
        }
    }

    /// Resolves a received tag, freeing its slot.
    pub(crate) fn resolve(&mut self, tag: &[u8]) -> Resolved {
        let Some(slot) = Tag::slot_of(tag) else {
            return Resolved::Stray;
        };
        let Some(s) = self.slots.get_mut(usize::from(slot)) else {
            return Resolved::Stray;
        };
        let outcome = match s.state {
            SlotState::Free => return Resolved::Stray,
            SlotState::Pending => Resolved::Pending(RequestId {
                slot,
                generation: s.generation,
            }),
            SlotState::Cancelled => {
                self.cancelled -= 1;
                Resolved::Cancelled
            }
        };
        s.state = SlotState::Free;
        self.in_use -= 1;
        outcome
    }

    /// Frees every slot (the connection ended); returns how many were pending.
    pub(crate) fn clear(&mut self) -> usize {
        let pending = self.slots.iter().filter(|s| s.state == SlotState::Pending).count();
        for s in &mut self.slots {
            s.state = SlotState::Free;
        }
        self.in_use = 0;
        self.cancelled = 0;
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take<const N: usize>(t: &mut RequestTable<N>) -> (RequestId, Tag) {
        let (slot, tag) = t.peek_free().unwrap();
        (t.take(slot), tag)
    }

    #[test]
    fn tags_rotate_through_one_byte_values_and_wrap() {
        let mut t: RequestTable<256> = RequestTable::new();
        let mut seen = std::vec::Vec::new();
        for _ in 0..600 {
            let (id, tag) = take(&mut t);
            seen.push(tag.as_bytes()[0]);
            assert_eq!(tag.as_bytes().len(), 1);
            assert_eq!(t.resolve(tag.as_bytes()), Resolved::Pending(id));
        }
        assert_eq!(&seen[..3], &[0, 1, 2]);
        assert_eq!(seen[256], 0, "wraps after 255");
    }

    #[test]
    fn never_reuses_a_pending_tag_and_goes_two_bytes_past_256() {
        let mut t: RequestTable<300> = RequestTable::new();
        let tags: std::vec::Vec<Tag> = (0..300).map(|_| take(&mut t).1).collect();
        let mut sorted: std::vec::Vec<&[u8]> = tags.iter().map(Tag::as_bytes).collect();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 300);
        assert_eq!(tags[256].as_bytes(), &[1, 0]);
        assert_eq!(t.peek_free(), Err(RequestError::InflightFull));
    }

    #[test]
    fn stale_ids_never_match_newer_requests() {
        let mut t: RequestTable<1> = RequestTable::new();
        let (old, tag) = take(&mut t);
        assert_eq!(t.resolve(tag.as_bytes()), Resolved::Pending(old));
        let (new, _) = take(&mut t);
        assert_ne!(old, new);
        assert!(!t.cancel(old));
        assert!(!t.is_pending(old));
        assert!(t.is_pending(new));
    }

    #[test]
    fn cancelled_tags_stay_reserved_until_the_late_answer() {
        let mut t: RequestTable<1> = RequestTable::new();
        let (id, tag) = take(&mut t);
        assert!(t.cancel(id));
        assert_eq!((t.in_use(), t.cancelled()), (1, 1));
        assert_eq!(t.peek_free(), Err(RequestError::InflightFull));
        assert_eq!(t.resolve(tag.as_bytes()), Resolved::Cancelled);
        assert_eq!((t.in_use(), t.cancelled()), (0, 0));
        assert!(t.peek_free().is_ok());
        let (id, _) = take(&mut t);
        assert!(t.cancel(id));
        t.clear();
        assert_eq!(t.cancelled(), 0);
    }

    #[test]
    fn strays_are_recognised() {
        let mut t: RequestTable<4> = RequestTable::new();
        assert_eq!(t.resolve(b""), Resolved::Stray);
        assert_eq!(t.resolve(b"\x00"), Resolved::Stray);
        assert_eq!(t.resolve(b"\x00\x01"), Resolved::Stray);
        assert_eq!(t.resolve(b"\x09"), Resolved::Stray);
        assert_eq!(t.resolve(b"abc"), Resolved::Stray);
    }
}
