//! The bodies of microsocket's fuzz targets.
//!
//! Each `pub fn <target>(data: &[u8])` is one target: `fuzz_targets/<target>.rs`
//! hands it libFuzzer's input, and `core/tests/fuzz_corpus.rs` (which includes this
//! file as a module) replays every committed corpus and regression file through it
//! on stable, as part of `cargo test --workspace`. A target panics when an
//! invariant breaks; nothing a peer sends may make the core itself panic.
//!
//! The invariants checked:
//! - the decoder always makes progress: every call consumes at least one byte,
//!   or says it needs more only when the bytes it has end inside a frame;
//! - it never holds back `max_frame` bytes or more of an unfinished frame (so a
//!   receive buffer of `max_frame` bytes never stalls), and skips oversized frames
//!   without buffering them;
//! - any chunking of a stream yields the same frames as one piece;
//! - every decoded frame re-encodes to the same bytes, and every encoded frame
//!   decodes to the same arguments;
//! - the client and server machines, driven by any sequence of commands and
//!   received bytes, keep their books straight (responses only for pending
//!   requests, limits respected, commands that fail change nothing) and only
//!   ever transmit well-formed frames.

#![allow(unreachable_pub, missing_docs, missing_debug_implementations)]
#![allow(clippy::missing_panics_doc, clippy::too_many_lines)]

use std::collections::BTreeSet;
use std::vec::Vec;

use arbitrary::{Arbitrary, Unstructured};
use microsocket_core::frame::{encode, encoded_len, Decoded, Decoder, FrameSink, SliceSink, HEADER_LEN};
use microsocket_core::{
    Client, ClientEvent, EncodeError, Message, RequestError, RequestId, ServerConnection, ServerEvent, ServerLimits,
    Sigil, SubscribeError, SubscriptionId, SubscriptionKind,
};

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// A growable [`FrameSink`] (the core's own `Vec` sink needs the `alloc` feature).
#[derive(Debug, Default)]
pub struct VecSink(pub Vec<u8>);

impl FrameSink for VecSink {
    fn available(&self) -> usize {
        usize::MAX - self.0.len()
    }

    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Builds a frame by hand, independently of the encoder (any sigil byte).
#[must_use]
pub fn raw_frame<A: AsRef<[u8]>>(sigil: u8, args: &[A]) -> Vec<u8> {
    let mut out = vec![sigil, u8::try_from(args.len()).expect("at most 255 arguments")];
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(&u32::try_from(arg.len()).expect("short argument").to_be_bytes());
        out.extend_from_slice(arg);
    }
    out
}

/// What a decoder reported, owned, for comparing decodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A whole frame's bytes.
    Frame(Vec<u8>),
    /// An oversized frame's sigil and tag.
    Oversized { sigil: u8, tag: Option<Vec<u8>> },
}

/// The outcome of decoding a whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoding {
    /// Frames and oversize reports, in order.
    pub items: Vec<Item>,
    /// Bytes left over at the end (part of a frame).
    pub leftover: usize,
}

/// Checks one decoded frame against the bytes it came from.
fn check_frame(frame: &microsocket_core::Frame<'_>, bytes: &[u8], max_frame: usize) {
    assert_eq!(frame.encoded_len(), bytes.len(), "frame length disagrees with consumed");
    assert!(
        bytes.len() <= max_frame,
        "frame of {} bytes passed a limit of {max_frame}",
        bytes.len()
    );
    assert_eq!(frame.sigil_byte(), bytes[0]);
    assert_eq!(frame.argc(), usize::from(bytes[1]));
    let args: Vec<&[u8]> = frame.args().collect();
    assert_eq!(args.len(), frame.argc(), "arguments iterator ended early");
    assert_eq!(
        raw_frame(frame.sigil_byte(), &args),
        bytes,
        "frame does not re-encode to its bytes"
    );
    if let Some(sigil) = frame.sigil() {
        let mut sink = VecSink::default();
        let n = encode(sigil, args.iter(), &mut sink).expect("a decoded frame encodes");
        assert_eq!(n, bytes.len());
        assert_eq!(sink.0, bytes);
    }
    // Parsing as a message agrees with the arguments.
    match Message::parse(frame) {
        Message::Request {
            tag,
            command,
            args: rest,
        } => {
            assert_eq!(Sigil::from_byte(bytes[0]), Some(Sigil::Request));
            assert_eq!((tag, command), (args[0], args[1]));
            assert!(rest.eq(args[2..].iter().copied()));
        }
        Message::Response { tag, values } | Message::Publication { topic: tag, values } => {
            assert_eq!(tag, args[0]);
            assert!(values.eq(args[1..].iter().copied()));
        }
        Message::Failure { tag, message, .. } => {
            assert_eq!(tag, args[0]);
            assert_eq!(message, args.get(1).copied().unwrap_or_default());
        }
        Message::Subscribe { topic }
        | Message::Unsubscribe { topic }
        | Message::PatternSubscribe { pattern: topic } => {
            assert_eq!(topic, args[0]);
        }
        Message::Malformed { tag, .. } => {
            assert!(args.len() < 2);
            assert_eq!(tag, args.first().copied());
        }
        Message::Unknown { sigil, args: rest } => {
            assert_eq!(Sigil::from_byte(sigil), None);
            assert!(rest.eq(args.iter().copied()));
        }
    }
}

/// Decodes `data` given in one piece, checking that every call makes progress.
#[must_use]
pub fn decode_one_piece(data: &[u8], max_frame: usize) -> Decoding {
    let mut decoder = Decoder::new(max_frame);
    let max_frame = decoder.max_frame();
    let mut items = Vec::new();
    let mut pos = 0;
    // Every call but the last consumes at least one byte.
    for _ in 0..=data.len() {
        let rest = &data[pos..];
        match decoder.decode(rest) {
            Decoded::NeedMore => {
                check_need_more(&decoder, rest.len(), max_frame);
                return Decoding {
                    items,
                    leftover: rest.len(),
                };
            }
            Decoded::Frame { frame, consumed } => {
                assert!(consumed >= HEADER_LEN && consumed <= rest.len());
                check_frame(&frame, &rest[..consumed], max_frame);
                items.push(Item::Frame(rest[..consumed].to_vec()));
                pos += consumed;
            }
            Decoded::Oversized { sigil, tag, consumed } => {
                assert!(consumed >= HEADER_LEN && consumed <= rest.len());
                assert_eq!(sigil, rest[0]);
                assert!(consumed <= max_frame, "oversize report of {consumed} bytes");
                items.push(Item::Oversized {
                    sigil,
                    tag: tag.map(<[u8]>::to_vec),
                });
                pos += consumed;
            }
            Decoded::Skipped { consumed } => {
                assert!(
                    consumed > 0 && consumed <= rest.len(),
                    "skipped {consumed} of {}",
                    rest.len()
                );
                pos += consumed;
            }
        }
    }
    panic!("the decoder made no progress");
}

/// After `NeedMore`, the bytes held back are part of one frame, fewer than the limit
/// (or, while skipping, fewer than a length prefix).
fn check_need_more(decoder: &Decoder, held: usize, max_frame: usize) {
    if decoder.is_skipping() {
        assert!(held < 4, "skipping with {held} bytes available yet needing more");
    } else {
        assert!(held < max_frame, "holding {held} bytes of a frame, limit {max_frame}");
    }
}

/// Decodes `data` arriving in chunks whose sizes `chunks` gives (0 counts as 1),
/// through a buffer that keeps only unconsumed bytes.
#[must_use]
pub fn decode_chunked(data: &[u8], max_frame: usize, chunks: &[u8]) -> Decoding {
    let mut decoder = Decoder::new(max_frame);
    let max_frame = decoder.max_frame();
    let mut items = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut sizes = chunks.iter().cycle().map(|&c| usize::from(c).max(1));
    while fed < data.len() {
        let n = if chunks.is_empty() {
            data.len()
        } else {
            sizes.next().unwrap_or(1)
        }
        .min(data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        let mut done = false;
        for _ in 0..=buf.len() {
            match decoder.decode(&buf) {
                Decoded::NeedMore => {
                    check_need_more(&decoder, buf.len(), max_frame);
                    done = true;
                    break;
                }
                Decoded::Frame { frame, consumed } => {
                    check_frame(&frame, &buf[..consumed], max_frame);
                    items.push(Item::Frame(buf[..consumed].to_vec()));
                    buf.drain(..consumed);
                }
                Decoded::Oversized { sigil, tag, consumed } => {
                    items.push(Item::Oversized {
                        sigil,
                        tag: tag.map(<[u8]>::to_vec),
                    });
                    assert!(consumed > 0);
                    buf.drain(..consumed);
                }
                Decoded::Skipped { consumed } => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    buf.drain(..consumed);
                }
            }
        }
        assert!(done, "the decoder made no progress");
    }
    Decoding {
        items,
        leftover: buf.len(),
    }
}

/// The decoder limit that an input's first byte picks: small limits make
/// oversized frames common, the largest makes huge declared lengths wait.
#[must_use]
pub fn pick_max_frame(byte: u8) -> usize {
    match byte {
        0..=127 => usize::from(byte),
        128..=254 => usize::from(byte - 127) * 32,
        255 => usize::MAX,
    }
}

// ---------------------------------------------------------------------------
// decode, decode_fragmented, roundtrip
// ---------------------------------------------------------------------------

/// `decode`: the first byte picks the limit, the rest is a byte stream.
pub fn decode(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let _ = decode_one_piece(stream, pick_max_frame(first));
}

/// `decode_fragmented`: the first byte picks the limit, the second how many of the
/// following bytes are chunk sizes; the rest is the stream, which must decode the
/// same in those chunks, byte by byte, and in one piece.
pub fn decode_fragmented(data: &[u8]) {
    let [first, count, rest @ ..] = data else {
        return;
    };
    let max_frame = pick_max_frame(*first);
    let (chunks, stream) = rest.split_at(usize::from(*count % 16).min(rest.len()));
    let whole = decode_one_piece(stream, max_frame);
    assert_eq!(decode_chunked(stream, max_frame, chunks), whole, "chunks {chunks:?}");
    assert_eq!(decode_chunked(stream, max_frame, &[1]), whole, "byte by byte");
}

/// One frame for [`roundtrip`].
#[derive(Debug, Arbitrary)]
pub struct AnyFrame {
    sigil: u8,
    args: Vec<Vec<u8>>,
}

/// `roundtrip`: arbitrary frames encode, and decode back to the same arguments in
/// one piece and in chunks; a sink that is too small gets nothing.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(chunks) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let Ok(frames) = Vec::<AnyFrame>::arbitrary_take_rest(u) else {
        return;
    };
    let mut wire = VecSink::default();
    let mut expected = Vec::new();
    for f in &frames {
        let len = encoded_len(&f.args);
        if f.args.len() > 255 {
            assert_eq!(
                len,
                Err(EncodeError::TooManyArguments {
                    count: f.args.len(),
                    max: 255
                })
            );
            continue;
        }
        let len = len.expect("short arguments encode");
        let bytes = raw_frame(f.sigil, &f.args);
        assert_eq!(len, bytes.len());
        if let Some(sigil) = Sigil::from_byte(f.sigil) {
            // A sink one byte short gets nothing.
            let mut small = vec![0xAA; len - 1];
            let mut sink = SliceSink::new(&mut small);
            assert_eq!(
                encode(sigil, &f.args, &mut sink),
                Err(EncodeError::FrameTooLarge {
                    required: len,
                    capacity: len - 1
                })
            );
            assert!(sink.is_empty());
            assert!(small.iter().all(|&b| b == 0xAA));
            let before = wire.0.len();
            assert_eq!(encode(sigil, &f.args, &mut wire), Ok(len));
            assert_eq!(&wire.0[before..], &bytes[..]);
        } else {
            wire.0.extend_from_slice(&bytes);
        }
        expected.push(Item::Frame(bytes));
    }
    let whole = decode_one_piece(&wire.0, usize::MAX);
    assert_eq!(whole.items, expected);
    assert_eq!(whole.leftover, 0);
    assert_eq!(decode_chunked(&wire.0, usize::MAX, &chunks), whole);
}

// ---------------------------------------------------------------------------
// client_ops
// ---------------------------------------------------------------------------

/// A command or input applied to a [`Client`].
#[derive(Debug, Arbitrary)]
pub enum ClientOp {
    Request {
        command: Vec<u8>,
        args: Vec<Vec<u8>>,
    },
    Barrier,
    /// Cancels the n-th request issued (modulo their number).
    Cancel(u16),
    Subscribe(Vec<u8>),
    SubscribePattern(Vec<u8>),
    /// Drops the n-th subscription made (modulo their number).
    Unsubscribe(u16),
    /// The server answers the n-th request issued, well formed.
    Answer {
        request: u16,
        fail: bool,
        values: Vec<Vec<u8>>,
    },
    /// The server publishes, well formed.
    Publication {
        topic: Vec<u8>,
        values: Vec<Vec<u8>>,
    },
    /// Any frame.
    Frame {
        sigil: u8,
        args: Vec<Vec<u8>>,
    },
    /// Any bytes.
    Raw(Vec<u8>),
    /// The transport takes up to n bytes.
    Transmit(u16),
    TransmitAll,
    Eof,
    Reconnected,
}

/// The wire tag of a request (see the core's request table).
#[must_use]
pub fn tag_of(id: RequestId) -> Vec<u8> {
    match u8::try_from(id.slot()) {
        Ok(b) => vec![b],
        Err(_) => id.slot().to_be_bytes().to_vec(),
    }
}

/// Checks bytes a machine transmitted: whole frames with the allowed sigils.
struct WireCheck {
    decoder: Decoder,
    buf: Vec<u8>,
    allowed: &'static [Sigil],
    frames: usize,
}

impl WireCheck {
    fn new(allowed: &'static [Sigil]) -> Self {
        Self {
            decoder: Decoder::new(usize::MAX),
            buf: Vec::new(),
            allowed,
            frames: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        for _ in 0..=self.buf.len() {
            match self.decoder.decode(&self.buf) {
                Decoded::NeedMore => return,
                Decoded::Frame { frame, consumed } => {
                    let sigil = frame.sigil().expect("a machine sent an unknown sigil");
                    assert!(self.allowed.contains(&sigil), "a machine sent {sigil:?}");
                    assert!(
                        !matches!(Message::parse(&frame), Message::Malformed { .. }),
                        "a machine sent a malformed {sigil:?}"
                    );
                    self.frames += 1;
                    self.buf.drain(..consumed);
                }
                other => panic!("a machine sent an oversized frame: {other:?}"),
            }
        }
        panic!("the wire check made no progress");
    }

    /// A new connection: whatever was cut off is gone.
    fn reset(&mut self) {
        self.decoder.reset();
        self.buf.clear();
    }
}

struct ClientModel {
    issued: Vec<RequestId>,
    pending: BTreeSet<RequestId>,
    subs: Vec<SubscriptionId>,
    wire: WireCheck,
    chunk: usize,
    /// Whether the received stream is at a frame boundary before each feed: true
    /// until raw bytes arrive, and again after end of stream.
    aligned: bool,
    /// While aligned, the only request slot the bytes being fed may answer
    /// (`None`: they answer none, as a publication). A slot, not an id: an answer
    /// built from a stale id carries the slot's tag, which now names the newer
    /// request in that slot.
    answering: Option<Option<u16>>,
}

const CLIENT_SIGILS: &[Sigil] = &[
    Sigil::Request,
    Sigil::Subscribe,
    Sigil::PatternSubscribe,
    Sigil::Unsubscribe,
];
const SERVER_SIGILS: &[Sigil] = &[Sigil::Response, Sigil::Failure, Sigil::Publication];

/// `client_ops`: a sequence of [`ClientOp`]s on a small client (or, if the first
/// byte is odd, one with more than 256 request slots, so two-byte tags occur).
pub fn client_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(config) = u8::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<ClientOp>::arbitrary_take_rest(u) else {
        return;
    };
    let chunk = usize::from(config >> 1) % 64;
    if config & 1 == 0 {
        run_client::<64, 64, 4, 3, 24>(&ops, chunk);
    } else {
        run_client::<256, 512, 300, 8, 64>(&ops, chunk);
    }
}

fn run_client<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize>(
    ops: &[ClientOp],
    chunk: usize,
) {
    let mut client: Client<RX, TX, IF, S, SB> = Client::new();
    let mut m = ClientModel {
        issued: Vec::new(),
        pending: BTreeSet::new(),
        subs: Vec::new(),
        wire: WireCheck::new(CLIENT_SIGILS),
        chunk,
        aligned: true,
        answering: None,
    };
    for op in ops {
        match op {
            ClientOp::Request { command, args } => {
                let r = client_command(&mut client, |c| c.request(command, args));
                after_request(&client, &mut m, r, args.len());
            }
            ClientOp::Barrier => {
                let r = client_command(&mut client, Client::barrier);
                after_request(&client, &mut m, r, 0);
            }
            ClientOp::Cancel(i) => {
                if let Some(&id) = pick(&m.issued, *i) {
                    let was = m.pending.remove(&id);
                    assert_eq!(client.cancel(id), was);
                    assert!(!client.protocol().is_pending(id));
                }
            }
            ClientOp::Subscribe(topic) => {
                let r = client_command(&mut client, |c| c.subscribe(topic));
                after_subscribe(&client, &mut m, r, SubscriptionKind::Exact, topic);
            }
            ClientOp::SubscribePattern(pattern) => {
                let r = client_command(&mut client, |c| c.subscribe_pattern(pattern));
                after_subscribe(&client, &mut m, r, SubscriptionKind::Pattern, pattern);
            }
            ClientOp::Unsubscribe(i) => {
                if let Some(&id) = pick(&m.subs, *i) {
                    let refs = client.protocol().subscriptions().refs(id);
                    let tx_before = client.poll_transmit().map(<[u8]>::to_vec);
                    match client.unsubscribe(id) {
                        Ok(sent) => {
                            assert!(refs.is_some());
                            assert_eq!(sent, refs == Some(1));
                            assert_eq!(
                                client.protocol().subscriptions().refs(id),
                                refs.and_then(|r| r.checked_sub(1)).filter(|&r| r > 0)
                            );
                        }
                        Err(_) => {
                            assert_eq!(client.poll_transmit().map(<[u8]>::to_vec), tx_before);
                            assert_eq!(client.protocol().subscriptions().refs(id), refs);
                        }
                    }
                }
            }
            ClientOp::Answer { request, fail, values } => {
                if let Some(&id) = pick(&m.issued, *request) {
                    let tag = tag_of(id);
                    let mut args = vec![tag];
                    args.extend(values.iter().take(200).cloned());
                    let bytes = raw_frame(if *fail { b'#' } else { b')' }, &args);
                    m.answering = m.aligned.then_some(Some(id.slot()));
                    feed_client(&mut client, &mut m, &bytes);
                    m.answering = None;
                }
            }
            ClientOp::Publication { topic, values } => {
                let mut args = vec![topic.clone()];
                args.extend(values.iter().take(200).cloned());
                // A publication, oversized or not, never answers a request.
                m.answering = m.aligned.then_some(None);
                feed_client(&mut client, &mut m, &raw_frame(b'!', &args));
                m.answering = None;
            }
            ClientOp::Frame { sigil, args } => {
                let args = &args[..args.len().min(255)];
                feed_client(&mut client, &mut m, &raw_frame(*sigil, args));
            }
            ClientOp::Raw(bytes) => {
                m.aligned = false;
                feed_client(&mut client, &mut m, bytes);
            }
            ClientOp::Transmit(n) => client_transmit(&mut client, &mut m, usize::from(*n)),
            ClientOp::TransmitAll => client_transmit(&mut client, &mut m, usize::MAX),
            ClientOp::Eof => {
                let n = client.handle_eof();
                m.aligned = true;
                assert_eq!(n, m.pending.len());
                m.pending.clear();
                assert_eq!(client.protocol().requests_in_flight(), 0);
                drain_client(&mut client, &mut m);
            }
            ClientOp::Reconnected => {
                let _ = client.reconnected();
                m.aligned = true;
                m.pending.clear();
                m.wire.reset();
                assert_eq!(client.protocol().requests_in_flight(), 0);
            }
        }
        check_client(&client, &m);
    }
}

/// Whether an expectation about which request a frame answers allows `id`.
trait Answering {
    fn is_none_or_is(&self, id: RequestId) -> bool;
}

impl Answering for Option<Option<u16>> {
    fn is_none_or_is(&self, id: RequestId) -> bool {
        match self {
            None => true,
            Some(expected) => *expected == Some(id.slot()),
        }
    }
}

fn pick<T>(list: &[T], i: u16) -> Option<&T> {
    if list.is_empty() {
        None
    } else {
        list.get(usize::from(i) % list.len())
    }
}

/// Runs a command, checking that a failed one changed nothing observable.
fn client_command<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize, T, E>(
    client: &mut Client<RX, TX, IF, S, SB>,
    f: impl FnOnce(&mut Client<RX, TX, IF, S, SB>) -> Result<T, E>,
) -> Result<T, E> {
    let tx = client.poll_transmit().map(<[u8]>::to_vec);
    let in_flight = client.protocol().requests_in_flight();
    let subs: Vec<(SubscriptionId, Option<u32>)> = client
        .protocol()
        .subscriptions()
        .iter()
        .map(|(id, _, _)| (id, client.protocol().subscriptions().refs(id)))
        .collect();
    let r = f(client);
    if r.is_err() {
        assert_eq!(client.poll_transmit().map(<[u8]>::to_vec), tx, "a failed command wrote");
        assert_eq!(client.protocol().requests_in_flight(), in_flight);
        let after: Vec<(SubscriptionId, Option<u32>)> = client
            .protocol()
            .subscriptions()
            .iter()
            .map(|(id, _, _)| (id, client.protocol().subscriptions().refs(id)))
            .collect();
        assert_eq!(after, subs, "a failed command changed the subscriptions");
    }
    r
}

fn after_request<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize>(
    client: &Client<RX, TX, IF, S, SB>,
    m: &mut ClientModel,
    r: Result<RequestId, RequestError>,
    argc: usize,
) {
    match r {
        Ok(id) => {
            assert!(m.pending.insert(id), "a pending id was handed out again");
            assert!(client.protocol().is_pending(id));
            m.issued.push(id);
        }
        Err(RequestError::InflightFull) => {
            assert_eq!(
                client.protocol().requests_in_flight(),
                client.protocol().max_in_flight()
            );
        }
        Err(RequestError::Encode(EncodeError::TooManyArguments { .. })) => assert!(argc > 253),
        Err(RequestError::Encode(_)) => {}
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn after_subscribe<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize>(
    client: &Client<RX, TX, IF, S, SB>,
    m: &mut ClientModel,
    r: Result<SubscriptionId, SubscribeError>,
    kind: SubscriptionKind,
    bytes: &[u8],
) {
    match r {
        Ok(id) => {
            assert_eq!(client.protocol().subscriptions().get(id), Some((kind, bytes)));
            m.subs.push(id);
        }
        Err(SubscribeError::InvalidPattern(_)) => {
            assert_eq!(kind, SubscriptionKind::Pattern);
            assert!(microsocket_core::Pattern::new(bytes).is_err());
        }
        Err(_) => {}
    }
}

fn client_transmit<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize>(
    client: &mut Client<RX, TX, IF, S, SB>,
    m: &mut ClientModel,
    max: usize,
) {
    let Some(bytes) = client.poll_transmit() else {
        return;
    };
    let n = bytes.len().min(max);
    m.wire.push(&bytes[..n]);
    client.advance_transmit(n);
}

/// Feeds bytes through `rx_buf` in chunks, handling events after each.
fn feed_client<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize>(
    client: &mut Client<RX, TX, IF, S, SB>,
    m: &mut ClientModel,
    bytes: &[u8],
) {
    let mut off = 0;
    while off < bytes.len() {
        let free = client.rx_buf();
        let mut n = free.len().min(bytes.len() - off);
        if m.chunk > 0 {
            n = n.min(m.chunk);
        }
        free[..n].copy_from_slice(&bytes[off..off + n]);
        client.commit_rx(n);
        off += n;
        drain_client(client, m);
        if n == 0 {
            assert!(
                !client.rx_buf().is_empty(),
                "the client stalled with a full receive buffer"
            );
        }
    }
}

fn drain_client<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize>(
    client: &mut Client<RX, TX, IF, S, SB>,
    m: &mut ClientModel,
) {
    // Frames never change the subscriptions.
    let table: Vec<(SubscriptionId, SubscriptionKind, Vec<u8>)> = client
        .protocol()
        .subscriptions()
        .iter()
        .map(|(id, kind, bytes)| (id, kind, bytes.to_vec()))
        .collect();
    // Each event consumes at least one frame from a buffer of RX bytes.
    for _ in 0..=RX {
        let Some(event) = client.poll_event() else {
            return;
        };
        match event {
            ClientEvent::Response { id, values } => {
                assert!(values.len() <= 254);
                assert!(m.pending.remove(&id), "response for {id:?}, which is not pending");
                assert!(
                    m.answering.is_none_or_is(id),
                    "response for {id:?} from the wrong frame"
                );
            }
            ClientEvent::Failure { id, .. } | ClientEvent::ResponseTooLarge { id } => {
                assert!(m.pending.remove(&id), "failure for {id:?}, which is not pending");
                assert!(m.answering.is_none_or_is(id), "failure for {id:?} from the wrong frame");
            }
            ClientEvent::Publication {
                topic, subscriptions, ..
            } => {
                let ids: Vec<SubscriptionId> = subscriptions.collect();
                assert!(!ids.is_empty(), "publication without a matching subscription");
                for id in ids {
                    let (_, kind, bytes) = table.iter().find(|e| e.0 == id).expect("a live subscription");
                    match kind {
                        SubscriptionKind::Exact => assert_eq!(bytes, topic),
                        SubscriptionKind::Pattern => {
                            assert!(microsocket_core::Pattern::new(bytes).expect("valid").matches(topic));
                        }
                    }
                }
            }
        }
    }
    panic!("the client produced events without consuming input");
}

fn check_client<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize>(
    client: &Client<RX, TX, IF, S, SB>,
    m: &ClientModel,
) {
    let p = client.protocol();
    assert!(p.requests_in_flight() <= p.max_in_flight());
    assert!(p.requests_in_flight() >= m.pending.len());
    for &id in &m.pending {
        assert!(p.is_pending(id), "{id:?} should be pending");
    }
    for id in &m.issued {
        if !m.pending.contains(id) {
            assert!(!p.is_pending(*id), "{id:?} should not be pending");
        }
    }
    assert!(p.subscriptions().len() <= S);
    assert!(client.poll_transmit().is_none_or(|b| !b.is_empty() && b.len() <= TX));
}

// ---------------------------------------------------------------------------
// server_ops
// ---------------------------------------------------------------------------

/// A command or input applied to a [`ServerConnection`].
#[derive(Debug, Arbitrary)]
pub enum ServerOp {
    /// A well-formed request from the client.
    Request {
        tag: Vec<u8>,
        command: Vec<u8>,
        args: Vec<Vec<u8>>,
    },
    Subscribe(Vec<u8>),
    PatternSubscribe(Vec<u8>),
    Unsubscribe(Vec<u8>),
    /// Any frame.
    Frame {
        sigil: u8,
        args: Vec<Vec<u8>>,
    },
    /// Any bytes.
    Raw(Vec<u8>),
    /// The application answers the n-th request outstanding.
    Respond {
        index: u16,
        values: Vec<Vec<u8>>,
    },
    Fail {
        index: u16,
        message: Vec<u8>,
        details: Vec<Vec<u8>>,
    },
    Publish {
        topic: Vec<u8>,
        values: Vec<Vec<u8>>,
    },
    /// The transport takes up to n bytes.
    Transmit(u16),
    TransmitAll,
    Eof,
}

struct ServerModel {
    outstanding: Vec<Vec<u8>>,
    wire: WireCheck,
    chunk: usize,
    max_in_flight: usize,
}

/// `server_ops`: a sequence of [`ServerOp`]s on a server connection with small
/// buffers and limits (the first byte picks the in-flight limit and chunk size).
pub fn server_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(config) = u8::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<ServerOp>::arbitrary_take_rest(u) else {
        return;
    };
    let limits = ServerLimits {
        max_in_flight: usize::from(config & 3),
    };
    let chunk = usize::from(config >> 2) % 48;
    let mut server: ServerConnection<96, 80, 4, 32> = ServerConnection::new(limits);
    let mut m = ServerModel {
        outstanding: Vec::new(),
        wire: WireCheck::new(SERVER_SIGILS),
        chunk,
        max_in_flight: limits.max_in_flight,
    };
    for op in &ops {
        match op {
            ServerOp::Request { tag, command, args } => {
                let mut all = vec![tag.clone(), command.clone()];
                all.extend(args.iter().take(200).cloned());
                feed_server(&mut server, &mut m, &raw_frame(b'(', &all));
            }
            ServerOp::Subscribe(t) => feed_server(&mut server, &mut m, &raw_frame(b'+', &[t])),
            ServerOp::PatternSubscribe(t) => feed_server(&mut server, &mut m, &raw_frame(b'*', &[t])),
            ServerOp::Unsubscribe(t) => feed_server(&mut server, &mut m, &raw_frame(b'-', &[t])),
            ServerOp::Frame { sigil, args } => {
                let args = &args[..args.len().min(255)];
                feed_server(&mut server, &mut m, &raw_frame(*sigil, args));
            }
            ServerOp::Raw(bytes) => feed_server(&mut server, &mut m, bytes),
            ServerOp::Respond { index, values } => {
                if !m.outstanding.is_empty() {
                    let i = usize::from(*index) % m.outstanding.len();
                    let before = server_snapshot(&server);
                    if server.outbox().respond(&m.outstanding[i], values).is_ok() {
                        m.outstanding.swap_remove(i);
                    } else {
                        assert_eq!(server_snapshot(&server), before, "a failed respond changed something");
                    }
                }
            }
            ServerOp::Fail {
                index,
                message,
                details,
            } => {
                if !m.outstanding.is_empty() {
                    let i = usize::from(*index) % m.outstanding.len();
                    let before = server_snapshot(&server);
                    if server.outbox().fail(&m.outstanding[i], message, details).is_ok() {
                        m.outstanding.swap_remove(i);
                    } else {
                        assert_eq!(server_snapshot(&server), before, "a failed fail changed something");
                    }
                }
            }
            ServerOp::Publish { topic, values } => {
                let subscribed = server.protocol().is_subscribed(topic);
                let before = server_snapshot(&server);
                match server.outbox().publish(topic, values) {
                    Ok(sent) => assert_eq!(sent, subscribed),
                    Err(_) => assert_eq!(server_snapshot(&server), before),
                }
            }
            ServerOp::Transmit(n) => server_transmit(&mut server, &mut m, usize::from(*n)),
            ServerOp::TransmitAll => server_transmit(&mut server, &mut m, usize::MAX),
            ServerOp::Eof => {
                let _ = server.handle_eof();
                m.outstanding.clear();
                assert_eq!(server.protocol().requests_in_flight(), 0);
                assert!(server.protocol().subscriptions().is_empty());
            }
        }
        assert_eq!(server.protocol().requests_in_flight(), m.outstanding.len());
        assert!(m.outstanding.len() <= m.max_in_flight);
        assert!(server.protocol().subscriptions().len() <= 4);
    }
}

fn server_snapshot<const RX: usize, const TX: usize, const S: usize, const SB: usize>(
    server: &ServerConnection<RX, TX, S, SB>,
) -> (Option<Vec<u8>>, usize) {
    (
        server.poll_transmit().map(<[u8]>::to_vec),
        server.protocol().requests_in_flight(),
    )
}

fn server_transmit<const RX: usize, const TX: usize, const S: usize, const SB: usize>(
    server: &mut ServerConnection<RX, TX, S, SB>,
    m: &mut ServerModel,
    max: usize,
) {
    let Some(bytes) = server.poll_transmit() else {
        return;
    };
    let n = bytes.len().min(max);
    m.wire.push(&bytes[..n]);
    server.advance_transmit(n);
}

fn feed_server<const RX: usize, const TX: usize, const S: usize, const SB: usize>(
    server: &mut ServerConnection<RX, TX, S, SB>,
    m: &mut ServerModel,
    bytes: &[u8],
) {
    let mut off = 0;
    while off < bytes.len() {
        let free = server.rx_buf();
        let mut n = free.len().min(bytes.len() - off);
        if m.chunk > 0 {
            n = n.min(m.chunk);
        }
        free[..n].copy_from_slice(&bytes[off..off + n]);
        server.commit_rx(n);
        off += n;
        drain_server(server, m);
        if n == 0 && server.rx_buf().is_empty() {
            // A stalled server waits for its transmit buffer to drain.
            assert!(
                server.poll_transmit().is_some(),
                "the server stalled with nothing to send"
            );
            server_transmit(server, m, usize::MAX);
            drain_server(server, m);
            assert!(
                !server.rx_buf().is_empty(),
                "the server stalled after its transmit buffer drained"
            );
        }
    }
}

fn drain_server<const RX: usize, const TX: usize, const S: usize, const SB: usize>(
    server: &mut ServerConnection<RX, TX, S, SB>,
    m: &mut ServerModel,
) {
    for _ in 0..=RX {
        let Some(polled) = server.poll_event() else {
            return;
        };
        match polled.event {
            ServerEvent::Request { tag, command, .. } => {
                assert!(!command.is_empty(), "the empty command reached the application");
                m.outstanding.push(tag.to_vec());
                assert!(m.outstanding.len() <= m.max_in_flight, "over the in-flight limit");
            }
            ServerEvent::Subscribed { topic, kind, .. } => {
                if kind == SubscriptionKind::Pattern {
                    assert!(
                        microsocket_core::Pattern::new(topic).is_ok(),
                        "subscribed to a bad pattern"
                    );
                }
            }
            ServerEvent::Unsubscribed { removed, .. } => assert!(removed <= 2),
            ServerEvent::SubscribeRefused { .. } | ServerEvent::Ignored { .. } => {}
        }
    }
    panic!("the server produced events without consuming input");
}
