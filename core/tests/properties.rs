//! Property tests of the codec and the machines (proptest).
//!
//! The invariant checks are the fuzz targets' (`fuzz/src/lib.rs`, included here):
//! proptest explores with structured inputs on stable, the fuzzers with coverage
//! guidance on nightly.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use microsocket_core::frame::{encode, encoded_len, Decoded, Decoder};
use microsocket_core::{Client, ServerConnection, ServerLimits, Sigil};
use proptest::collection::vec;
use proptest::prelude::*;
use targets::{decode_chunked, decode_one_piece, raw_frame, Item, VecSink};

/// A frame: any sigil byte, up to 6 arguments of up to 40 bytes (often empty).
fn frame() -> impl Strategy<Value = (u8, Vec<Vec<u8>>)> {
    let sigil = prop_oneof![
        3 => prop::sample::select(vec![b'(', b')', b'#', b'+', b'!', b'-', b'*']),
        1 => any::<u8>(),
    ];
    let arg = prop_oneof![1 => Just(Vec::new()), 4 => vec(any::<u8>(), 0..40)];
    (sigil, vec(arg, 0..6))
}

/// A stream of several frames, and the frames.
fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    vec(frame(), 0..8).prop_map(|frames| {
        let encoded: Vec<Vec<u8>> = frames.iter().map(|(s, a)| raw_frame(*s, a)).collect();
        (encoded.concat(), encoded)
    })
}

/// A decoder limit: tiny, around typical frame sizes, or none.
fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![0..16usize, 16..128usize, Just(usize::MAX)]
}

proptest! {
    // Miri runs a few cases only (it is some thousand times slower), and cannot
    // touch the files where proptest keeps failing cases.
    #![proptest_config(if cfg!(miri) {
        ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig::with_cases(512)
    })]

    #[test]
    fn encode_then_decode_round_trips((sigil, args) in frame()) {
        let expected = raw_frame(sigil, &args);
        prop_assert_eq!(encoded_len(&args), Ok(expected.len()));
        if let Some(known) = Sigil::from_byte(sigil) {
            let mut sink = VecSink::default();
            prop_assert_eq!(encode(known, &args, &mut sink), Ok(expected.len()));
            prop_assert_eq!(&sink.0, &expected);
        }
        let mut decoder = Decoder::new(usize::MAX);
        let Decoded::Frame { frame, consumed } = decoder.decode(&expected) else {
            return Err(TestCaseError::fail("no frame"));
        };
        prop_assert_eq!(consumed, expected.len());
        prop_assert_eq!(frame.sigil_byte(), sigil);
        prop_assert!(frame.args().eq(args.iter().map(Vec::as_slice)));
    }

    #[test]
    fn a_stream_decodes_to_its_frames((bytes, frames) in stream()) {
        let whole = decode_one_piece(&bytes, usize::MAX);
        let expected: Vec<Item> = frames.into_iter().map(Item::Frame).collect();
        prop_assert_eq!(whole.items, expected);
        prop_assert_eq!(whole.leftover, 0);
    }

    /// Random bytes never panic the decoder, and every call makes progress (checked
    /// inside `decode_one_piece`).
    #[test]
    fn byte_soup_always_makes_progress(bytes in vec(any::<u8>(), 0..512), max in limit()) {
        let whole = decode_one_piece(&bytes, max);
        prop_assert!(whole.leftover <= bytes.len());
    }

    /// Random chunking of any bytes (valid or not) gives the same result as one
    /// piece, with and without a size limit.
    #[test]
    fn random_chunking_changes_nothing(
        bytes in prop_oneof![vec(any::<u8>(), 0..400), stream().prop_map(|s| s.0)],
        chunks in vec(1u8..40, 1..8),
        max in limit(),
    ) {
        let whole = decode_one_piece(&bytes, max);
        prop_assert_eq!(decode_chunked(&bytes, max, &chunks), whole);
    }

    /// Splitting a valid stream at every point gives the same frames (and the same
    /// oversize reports under a limit).
    #[test]
    fn every_split_point_changes_nothing((bytes, _) in stream(), max in limit()) {
        let whole = decode_one_piece(&bytes, max);
        // Every 11th point only under Miri: this loop is quadratic in the stream.
        for cut in (0..=bytes.len()).step_by(if cfg!(miri) { 11 } else { 1 }) {
            let mut decoder = Decoder::new(max);
            let mut buf = Vec::new();
            let mut items = Vec::new();
            for piece in [&bytes[..cut], &bytes[cut..]] {
                buf.extend_from_slice(piece);
                for _ in 0..=buf.len() {
                    match decoder.decode(&buf) {
                        Decoded::NeedMore => break,
                        Decoded::Frame { frame, consumed } => {
                            items.push(Item::Frame(raw_frame(frame.sigil_byte(), &frame.args().collect::<Vec<_>>())));
                            buf.drain(..consumed);
                        }
                        Decoded::Oversized { sigil, tag, consumed } => {
                            items.push(Item::Oversized { sigil, tag: tag.map(<[u8]>::to_vec) });
                            buf.drain(..consumed);
                        }
                        Decoded::Skipped { consumed } => {
                            prop_assert!(consumed > 0);
                            buf.drain(..consumed);
                        }
                    }
                }
            }
            prop_assert_eq!(&items, &whole.items, "split at {}", cut);
            prop_assert_eq!(buf.len(), whole.leftover);
        }
    }

    /// A client fed random bytes in random chunks never panics and never stalls.
    #[test]
    fn client_survives_random_bytes(bytes in vec(any::<u8>(), 0..600), chunk in 1usize..80) {
        let mut client: Client<64, 64, 4, 2, 16> = Client::new();
        let _ = client.subscribe(b"a");
        let _ = client.subscribe_pattern(b"b.*");
        let _ = client.request(b"X", [b""; 0]);
        let _ = client.barrier();
        for piece in bytes.chunks(chunk) {
            let mut rest = piece;
            for _ in 0..=piece.len() {
                if rest.is_empty() {
                    break;
                }
                let buf = client.rx_buf();
                let n = buf.len().min(rest.len());
                buf[..n].copy_from_slice(&rest[..n]);
                client.commit_rx(n);
                rest = &rest[n..];
                for _ in 0..=64 {
                    if client.poll_event().is_none() {
                        break;
                    }
                }
                prop_assert!(!client.rx_buf().is_empty(), "stalled");
            }
            prop_assert!(rest.is_empty());
        }
        client.handle_eof();
        prop_assert_eq!(client.protocol().requests_in_flight(), 0);
    }

    /// A server connection fed random bytes never panics, and stalls only while
    /// its transmit buffer is full.
    #[test]
    fn server_survives_random_bytes(bytes in vec(any::<u8>(), 0..600), chunk in 1usize..80, max in 0usize..3) {
        let mut server: ServerConnection<64, 48, 2, 16> = ServerConnection::new(ServerLimits { max_in_flight: max });
        for piece in bytes.chunks(chunk) {
            let mut rest = piece;
            for _ in 0..=2 * piece.len() + 2 {
                if rest.is_empty() {
                    break;
                }
                let buf = server.rx_buf();
                let n = buf.len().min(rest.len());
                buf[..n].copy_from_slice(&rest[..n]);
                server.commit_rx(n);
                rest = &rest[n..];
                for _ in 0..=64 {
                    let Some(mut polled) = server.poll_event() else { break };
                    if let microsocket_core::ServerEvent::Request { tag, .. } = polled.event {
                        let _ = polled.outbox.respond(tag, [b"ok"]);
                    }
                }
                if server.rx_buf().is_empty() {
                    prop_assert!(server.poll_transmit().is_some(), "stalled with nothing to send");
                    let n = server.poll_transmit().map_or(0, <[u8]>::len);
                    server.advance_transmit(n);
                }
            }
            prop_assert!(rest.is_empty());
        }
        prop_assert!(server.protocol().requests_in_flight() <= max);
    }

    /// The fuzz targets' operation sequences, from random bytes.
    #[test]
    fn machine_operations_from_random_bytes(bytes in vec(any::<u8>(), 0..if cfg!(miri) { 512 } else { 2048 })) {
        targets::client_ops(&bytes);
        targets::server_ops(&bytes);
        targets::roundtrip(&bytes);
        targets::decode_fragmented(&bytes);
    }
}
