//! Codec tests: every sigil, every prefix, byte-by-byte feeding, oversized frames,
//! empty and huge lengths.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::error::EncodeError;
use crate::message::Message;

/// Exhaustive loops take every `MIRI_STEP`-th case under Miri, which is slow.
const MIRI_STEP: usize = if cfg!(miri) { 5 } else { 1 };

/// A frame built by hand, independently of the encoder.
fn raw(sigil: u8, args: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![sigil, u8::try_from(args.len()).unwrap()];
    for arg in args {
        out.extend_from_slice(&u32::try_from(arg.len()).unwrap().to_be_bytes());
        out.extend_from_slice(arg);
    }
    out
}

/// Decodes one complete frame from `input`, returning its sigil byte, arguments
/// and size.
fn decode_one(decoder: &mut Decoder, input: &[u8]) -> (u8, Vec<Vec<u8>>, usize) {
    match decoder.decode(input) {
        Decoded::Frame { frame, consumed } => {
            (frame.sigil_byte(), frame.args().map(<[u8]>::to_vec).collect(), consumed)
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

const ALL_SIGILS: [Sigil; 7] = Sigil::ALL;

/// A few frames of every shape: all sigils, no arguments, empty arguments, an
/// unknown sigil, a 255-argument frame.
fn samples() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = ALL_SIGILS
        .iter()
        .map(|s| raw(s.byte(), &[b"\x07", b"PING", b"arg"]))
        .collect();
    out.push(raw(b'(', &[]));
    out.push(raw(b'(', &[b"", b""]));
    out.push(raw(b'!', &[b"news", b"", b"hello", b""]));
    out.push(raw(0x00, &[b"unknown"]));
    out.push(raw(0xff, &[]));
    let many: Vec<&[u8]> = (0..255)
        .map(|i| if i % 2 == 0 { &b""[..] } else { &b"x"[..] })
        .collect();
    out.push(raw(b')', &many));
    out
}

#[test]
fn sigil_bytes_round_trip() {
    for s in ALL_SIGILS {
        assert_eq!(Sigil::from_byte(s.byte()), Some(s));
    }
    let known = (0..=255u8).filter(|&b| Sigil::from_byte(b).is_some()).count();
    assert_eq!(known, ALL_SIGILS.len());
    assert_eq!(
        ALL_SIGILS.map(Sigil::byte),
        [0x28, 0x29, 0x23, 0x2B, 0x21, 0x2D, 0x2A],
        "the bytes of PROTOCOL.md"
    );
}

#[test]
fn decodes_every_sigil() {
    for s in ALL_SIGILS {
        let bytes = raw(s.byte(), &[b"\x07", b"PING"]);
        let mut decoder = Decoder::new(1024);
        let Decoded::Frame { frame, consumed } = decoder.decode(&bytes) else {
            panic!("{s:?} did not decode");
        };
        assert_eq!(consumed, bytes.len());
        assert_eq!(frame.sigil(), Some(s));
        assert_eq!(frame.sigil_byte(), s.byte());
        assert_eq!(frame.argc(), 2);
        assert_eq!(frame.encoded_len(), bytes.len());
        assert!(frame.args().eq([&b"\x07"[..], b"PING"]));
        assert!(!decoder.in_frame());
        // The encoder writes the same bytes.
        let mut out = [0u8; 64];
        assert_eq!(encode_to_slice(s, [&b"\x07"[..], b"PING"], &mut out), Ok(bytes.len()));
        assert_eq!(&out[..bytes.len()], &bytes[..]);
    }
}

#[test]
fn unknown_sigils_are_frames_too() {
    let bytes = raw(b'?', &[b"a", b"bc"]);
    let (sigil, args, consumed) = decode_one(&mut Decoder::new(64), &bytes);
    assert_eq!((sigil, consumed), (b'?', bytes.len()));
    assert_eq!(args, [b"a".to_vec(), b"bc".to_vec()]);
}

#[test]
fn every_strict_prefix_needs_more_and_resuming_gives_the_same_frame() {
    for bytes in samples().into_iter().step_by(MIRI_STEP) {
        let mut whole = Decoder::new(usize::MAX);
        let expected = decode_one(&mut whole, &bytes);
        for cut in 0..bytes.len() {
            // A fresh decoder over the prefix alone.
            let mut decoder = Decoder::new(usize::MAX);
            assert_eq!(
                decoder.decode(&bytes[..cut]),
                Decoded::NeedMore,
                "prefix of {cut} bytes"
            );
            assert_eq!(decoder.in_frame(), cut >= HEADER_LEN);
            // The same decoder, resumed over the whole frame.
            assert_eq!(decode_one(&mut decoder, &bytes), expected, "resumed after {cut} bytes");
            // The same decoder fed the prefix twice (no new bytes) stays put.
            let mut twice = Decoder::new(usize::MAX);
            assert_eq!(twice.decode(&bytes[..cut]), Decoded::NeedMore);
            assert_eq!(twice.decode(&bytes[..cut]), Decoded::NeedMore);
            assert_eq!(decode_one(&mut twice, &bytes), expected);
        }
    }
}

#[test]
fn byte_by_byte_feeding() {
    let mut stream = Vec::new();
    for s in samples() {
        stream.extend_from_slice(&s);
    }
    let mut decoder = Decoder::new(usize::MAX);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for &b in &stream {
        buf.push(b);
        match decoder.decode(&buf) {
            Decoded::NeedMore => {}
            Decoded::Frame { frame, consumed } => {
                assert_eq!(consumed, buf.len(), "a frame completes on its last byte");
                frames.push(raw(frame.sigil_byte(), &frame.args().collect::<Vec<_>>()));
                buf.clear();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(buf.is_empty());
    assert_eq!(frames, samples());
}

#[test]
fn a_stream_split_at_any_point_gives_the_same_frames() {
    let mut stream = Vec::new();
    for s in samples().iter().take(10) {
        stream.extend_from_slice(s);
    }
    for cut in (0..=stream.len()).step_by(MIRI_STEP) {
        let mut decoder = Decoder::new(usize::MAX);
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        for piece in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(piece);
            while let Decoded::Frame { frame, consumed } = decoder.decode(&buf) {
                frames.push(raw(frame.sigil_byte(), &frame.args().collect::<Vec<_>>()));
                buf.drain(..consumed);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(frames, samples()[..10], "split at {cut}");
    }
}

#[test]
fn zero_argument_frames() {
    for sigil in [b'(', b')', b'#', b'+', b'!', b'-', b'*', b'x'] {
        let mut decoder = Decoder::new(HEADER_LEN);
        let input = [sigil, 0, 0xAA];
        let Decoded::Frame { frame, consumed } = decoder.decode(&input) else {
            panic!("no frame");
        };
        assert_eq!(consumed, HEADER_LEN);
        assert_eq!(frame.argc(), 0);
        assert!(frame.args().is_empty());
        assert_eq!(frame.args().next(), None);
        match Message::parse(&frame) {
            Message::Malformed { tag: None, .. } => assert!(frame.sigil().is_some()),
            Message::Unknown { .. } => assert!(frame.sigil().is_none()),
            other => panic!("zero arguments parsed as {other:?}"),
        }
    }
}

#[test]
fn empty_arguments() {
    let bytes = raw(b'(', &[b"", b"", b""]);
    assert_eq!(bytes.len(), HEADER_LEN + 3 * LENGTH_PREFIX_LEN);
    let (_, args, consumed) = decode_one(&mut Decoder::new(bytes.len()), &bytes);
    assert_eq!(consumed, bytes.len());
    assert_eq!(args, [vec![], vec![], vec![]]);
    let mut out = [0u8; 32];
    assert_eq!(encode_to_slice(Sigil::Request, [b""; 3], &mut out), Ok(bytes.len()));
    assert_eq!(&out[..bytes.len()], &bytes[..]);
}

#[test]
fn a_frame_of_exactly_the_limit_is_accepted() {
    let bytes = raw(b'(', &[b"\x01", b"CMD"]);
    let (_, _, consumed) = decode_one(&mut Decoder::new(bytes.len()), &bytes);
    assert_eq!(consumed, bytes.len());
    let mut smaller = Decoder::new(bytes.len() - 1);
    assert!(matches!(smaller.decode(&bytes), Decoded::Oversized { .. }));
}

/// Feeds `input` through a decoder in pieces of at most `chunk` bytes, keeping only
/// unconsumed bytes, and returns what it reported plus the most bytes it held.
fn drive(decoder: &mut Decoder, input: &[u8], chunk: usize) -> (Vec<std::string::String>, usize) {
    let mut reports = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut held = 0;
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        held = held.max(buf.len());
        for _ in 0..=buf.len() {
            match decoder.decode(&buf) {
                Decoded::NeedMore => break,
                Decoded::Frame { frame, consumed } => {
                    reports.push(std::format!("frame {frame:?}"));
                    buf.drain(..consumed);
                }
                Decoded::Oversized { sigil, tag, consumed } => {
                    reports.push(std::format!("oversized {} {:?}", sigil as char, tag));
                    buf.drain(..consumed);
                }
                Decoded::Skipped { consumed } => {
                    assert!(consumed > 0, "skipping must make progress");
                    buf.drain(..consumed);
                }
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    (reports, held)
}

#[test]
fn oversized_frames_are_reported_once_with_their_tag_then_skipped() {
    let big = vec![b'X'; 1000];
    let oversized = raw(b'(', &[b"\x07", b"BIG", &big, b"tail"]);
    let ping = raw(b'(', &[b"\x08", b"PING"]);
    let mut stream = oversized.clone();
    stream.extend_from_slice(&ping);
    for chunk in [1, 2, 3, 7, 64, 4096].into_iter().skip(if cfg!(miri) { 3 } else { 0 }) {
        let mut decoder = Decoder::new(32);
        let (reports, held) = drive(&mut decoder, &stream, chunk);
        assert_eq!(
            reports,
            [
                "oversized ( Some([7])",
                "frame Frame { sigil: '(', args: [b\"\\u{8}\", b\"PING\"] }"
            ],
            "chunk {chunk}"
        );
        // Nothing of the oversized frame was buffered beyond one read.
        assert!(held <= 32.max(chunk), "held {held} bytes with chunks of {chunk}");
    }
}

#[test]
fn oversized_report_happens_as_soon_as_the_length_is_read() {
    let mut decoder = Decoder::new(16);
    let head = b"(\x02\x00\x00\x00\x01\x07\x00\x00\x10\x00";
    assert_eq!(
        decoder.decode(head),
        Decoded::Oversized {
            sigil: b'(',
            tag: Some(b"\x07"),
            consumed: head.len()
        }
    );
    assert!(decoder.is_skipping());
    // The 4096 bytes are skipped as they arrive, in any pieces.
    assert_eq!(decoder.decode(&[]), Decoded::NeedMore);
    assert_eq!(decoder.decode(&[0; 100]), Decoded::Skipped { consumed: 100 });
    assert_eq!(decoder.decode(&[0; 3996]), Decoded::Skipped { consumed: 3996 });
    assert!(!decoder.in_frame());
}

#[test]
fn oversized_first_argument_has_no_tag() {
    let mut decoder = Decoder::new(8);
    let bytes = raw(b'(', &[b"0123456789", b"CMD"]);
    assert_eq!(
        decoder.decode(&bytes),
        Decoded::Oversized {
            sigil: b'(',
            tag: None,
            consumed: HEADER_LEN + LENGTH_PREFIX_LEN
        }
    );
    assert_eq!(
        decoder.decode(&bytes[6..]),
        Decoded::Skipped {
            consumed: bytes.len() - 6
        }
    );
    assert!(!decoder.in_frame());
}

/// Regression: a frame whose next length prefix would end past the limit used to
/// wait for that prefix, which a receive buffer of `max_frame` bytes can never
/// hold, stalling the connection. It is now reported as oversized at once.
#[test]
fn a_length_prefix_past_the_limit_is_oversized_not_awaited() {
    // walked = 2 + 4 + 6 = 12 = the limit, and a second argument follows.
    let bytes = raw(b'(', &[b"abcdef", b"", b"q"]);
    let mut decoder = Decoder::new(12);
    assert_eq!(
        decoder.decode(&bytes[..12]),
        Decoded::Oversized {
            sigil: b'(',
            tag: Some(b"abcdef"),
            consumed: 12
        }
    );
    assert_eq!(decoder.decode(&bytes[12..]), Decoded::Skipped { consumed: 9 });
    assert!(!decoder.in_frame());
    // Limit 14: the prefix (12..16) passes it though the frame's first bytes fit.
    let mut decoder = Decoder::new(14);
    assert!(matches!(
        decoder.decode(&bytes[..14]),
        Decoded::Oversized { consumed: 12, .. }
    ));
}

/// Regression: an oversized frame whose last argument is empty used to leave the
/// decoder skipping nothing, reporting `Skipped { consumed: 0 }` on the next call.
#[test]
fn an_oversized_frame_ending_in_an_empty_argument_ends_cleanly() {
    let bytes = raw(b'(', &[b"abcdef", b""]);
    let mut decoder = Decoder::new(14);
    assert_eq!(
        decoder.decode(&bytes),
        Decoded::Oversized {
            sigil: b'(',
            tag: Some(b"abcdef"),
            consumed: 12
        }
    );
    assert_eq!(decoder.decode(&bytes[12..]), Decoded::Skipped { consumed: 4 });
    assert!(!decoder.in_frame(), "nothing is left to skip");
    assert_eq!(decoder.decode(&[]), Decoded::NeedMore);
}

#[test]
fn skipping_walks_later_arguments_in_pieces() {
    // Oversized at the first argument; three more follow, one empty.
    let bytes = raw(b'!', &[&[1; 40], b"", &[2; 9], b"xyz"]);
    let ping = raw(b')', &[b"\x01"]);
    let mut stream = bytes.clone();
    stream.extend_from_slice(&ping);
    for chunk in (1..=bytes.len()).step_by(MIRI_STEP) {
        let mut decoder = Decoder::new(20);
        let (reports, held) = drive(&mut decoder, &stream, chunk);
        assert_eq!(reports.len(), 2, "chunk {chunk}: {reports:?}");
        assert_eq!(reports[0], "oversized ! None");
        assert!(held <= 20.max(chunk) + LENGTH_PREFIX_LEN);
    }
}

#[test]
fn lengths_near_u32_max_do_not_overflow() {
    for len in [u32::MAX, u32::MAX - 1, u32::MAX - 6, 1 << 31] {
        let mut head = vec![b'(', 2, 0, 0, 0, 1, 7];
        head.extend_from_slice(&len.to_be_bytes());
        head.extend_from_slice(b"some bytes");
        // Unlimited: the decoder waits for the bytes (on 32-bit targets the frame
        // passes usize::MAX and is oversized instead).
        let mut decoder = Decoder::new(usize::MAX);
        match decoder.decode(&head) {
            Decoded::NeedMore => assert!(usize::BITS > 32 || (len as usize) < usize::MAX - 11),
            Decoded::Oversized { tag, consumed, .. } => {
                assert_eq!(tag, Some(&b"\x07"[..]));
                assert_eq!(consumed, 11);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Limited: oversized at once, then everything given is skipped.
        let mut decoder = Decoder::new(1 << 20);
        assert_eq!(
            decoder.decode(&head),
            Decoded::Oversized {
                sigil: b'(',
                tag: Some(b"\x07"),
                consumed: 11
            }
        );
        assert_eq!(decoder.decode(&head[11..]), Decoded::Skipped { consumed: 10 });
        assert!(decoder.is_skipping());
    }
    // A limit of usize::MAX and a prefix right at it.
    let mut decoder = Decoder::new(usize::MAX);
    assert_eq!(decoder.decode(b"(\x01\xff\xff\xff"), Decoded::NeedMore);
    assert_eq!(decoder.max_frame(), usize::MAX);
}

#[test]
fn a_tiny_limit_is_raised_to_the_header() {
    let mut decoder = Decoder::new(0);
    assert_eq!(decoder.max_frame(), HEADER_LEN);
    assert!(matches!(decoder.decode(b"(\x00"), Decoded::Frame { consumed: 2, .. }));
    assert_eq!(
        decoder.decode(b"(\x01\x00\x00\x00\x00"),
        Decoded::Oversized {
            sigil: b'(',
            tag: None,
            consumed: 2
        }
    );
    assert_eq!(decoder.decode(b"\x00\x00\x00\x00"), Decoded::Skipped { consumed: 4 });
    assert!(!decoder.in_frame());
}

#[test]
fn reset_forgets_a_partial_frame() {
    let bytes = raw(b'(', &[b"\x01", b"CMD"]);
    let mut decoder = Decoder::new(64);
    assert_eq!(decoder.decode(&bytes[..8]), Decoded::NeedMore);
    assert!(decoder.in_frame());
    decoder.reset();
    assert!(!decoder.in_frame());
    let (_, args, _) = decode_one(&mut decoder, &bytes);
    assert_eq!(args.len(), 2);
}

#[test]
fn args_iterator_is_exact_and_cloneable() {
    let bytes = raw(b'!', &[b"t", b"", b"v"]);
    let mut decoder = Decoder::new(64);
    let Decoded::Frame { frame, .. } = decoder.decode(&bytes) else {
        panic!()
    };
    let mut args = frame.args();
    assert_eq!(args.len(), 3);
    let copy = args.clone();
    assert_eq!(args.next(), Some(&b"t"[..]));
    assert_eq!(args.len(), 2);
    assert_eq!(copy.count(), 3);
    assert_eq!(std::format!("{:?}", frame.args()), "[b\"t\", b\"\", b\"v\"]");
    assert!(Args::empty().is_empty());
}

#[test]
fn encoder_errors_write_nothing() {
    let mut out = [0xAAu8; 10];
    assert_eq!(
        encode_to_slice(Sigil::Request, [&b"\x01"[..], b"PING"], &mut out),
        Err(EncodeError::FrameTooLarge {
            required: 15,
            capacity: 10
        })
    );
    assert!(out.iter().all(|&b| b == 0xAA));
    let many = [b""; 256];
    assert_eq!(
        encoded_len(many),
        Err(EncodeError::TooManyArguments { count: 256, max: 255 })
    );
    assert_eq!(
        encode_to_slice(Sigil::Response, many, &mut [0u8; 2048]),
        Err(EncodeError::TooManyArguments { count: 256, max: 255 })
    );
    assert_eq!(encoded_len([b""; 255]), Ok(HEADER_LEN + 255 * LENGTH_PREFIX_LEN));
    let mut sink: heapless::Vec<u8, 8> = heapless::Vec::new();
    assert!(encode(Sigil::Subscribe, [b"news"], &mut sink).is_err());
    assert!(sink.is_empty());
}

#[test]
fn too_many_arguments_counts_what_the_caller_gave() {
    let args = [[0u8; 0]; 300];
    let mut client: crate::ClientProtocol = crate::ClientProtocol::new();
    let mut out = [0u8; 64];
    let mut sink = SliceSink::new(&mut out);
    match client.request(b"ECHO", args, &mut sink) {
        Err(crate::RequestError::Encode(e)) => {
            assert_eq!(e, EncodeError::TooManyArguments { count: 300, max: 253 });
            assert_eq!(std::format!("{e}"), "300 arguments, at most 253 fit in a frame");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_frame_no_flush_can_fit_is_its_own_error() {
    let mut out = [0u8; 16];
    let mut sink = SliceSink::new(&mut out);
    assert_eq!(
        encode(Sigil::Request, [[0u8; 20]], &mut sink),
        Err(EncodeError::FrameTooLarge {
            required: 26,
            capacity: 16
        })
    );
    encode(Sigil::Request, [b"0123"], &mut sink).unwrap();
    assert_eq!(
        encode(Sigil::Request, [b"0123"], &mut sink),
        Err(EncodeError::BufferTooSmall {
            required: 10,
            available: 6
        })
    );
}
