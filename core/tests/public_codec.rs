//! The codec property-tested the way a user of the crate would, through its
//! public API only: frames of every sigil (known or not) built from
//! `Sigil::ALL` and `encode_raw`, concatenated into a stream, split at every
//! byte boundary and fed to a `Decoder` in two pieces; every split must decode
//! to the same frames as the whole stream, one per frame encoded, each keeping
//! its sigil byte through `Message::parse` and `Message::encode`.

use microsocket_core::frame::{encode_raw, Decoded, Decoder, Sigil};
use microsocket_core::Message;
use proptest::prelude::*;

/// A frame's first byte: one of the known sigils, or any byte.
fn sigil() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(Sigil::ALL.to_vec()).prop_map(Sigil::byte),
        1 => any::<u8>(),
    ]
}

fn frame() -> impl Strategy<Value = (u8, Vec<Vec<u8>>)> {
    (
        sigil(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), 0..5),
    )
}

/// The frames of `stream`, fed in two pieces cut at `cut`, each re-encoded.
fn decode_split(stream: &[u8], cut: usize) -> Vec<Vec<u8>> {
    let mut decoder = Decoder::new(1 << 16);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for piece in [&stream[..cut], &stream[cut..]] {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&buf) {
                Decoded::Frame { frame, consumed } => {
                    let mut again = Vec::new();
                    Message::parse(&frame).encode(&mut again).unwrap();
                    frames.push(again);
                    buf.drain(..consumed);
                }
                Decoded::NeedMore => break,
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    frames
}

proptest! {
    // Miri runs a few cases only (it is some thousand times slower), and cannot
    // touch the files where proptest keeps failing cases.
    #![proptest_config(if cfg!(miri) {
        ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig::default()
    })]

    #[test]
    fn every_split_of_a_stream_decodes_to_its_frames(frames in prop::collection::vec(frame(), 1..6)) {
        let mut stream = Vec::new();
        for (sigil, args) in &frames {
            encode_raw(*sigil, args, &mut stream).unwrap();
        }
        let expected = decode_split(&stream, stream.len());
        prop_assert_eq!(expected.len(), frames.len());
        for (again, (sigil, _)) in expected.iter().zip(&frames) {
            prop_assert_eq!(again[0], *sigil);
        }
        for cut in 0..=stream.len() {
            prop_assert_eq!(&decode_split(&stream, cut), &expected, "cut at {}", cut);
        }
    }
}

/// Records every `put` the encoder makes.
struct Recording(Vec<Vec<u8>>);

impl microsocket_core::frame::FrameSink for Recording {
    fn available(&self) -> usize {
        usize::MAX
    }

    fn put(&mut self, bytes: &[u8]) {
        self.0.push(bytes.to_vec());
    }
}

proptest! {
    /// The promise sinks that send long arguments from where they lie rely on:
    /// each argument's bytes come in one `put` of their own, in order, and the
    /// puts joined are the frame.
    #[test]
    fn each_argument_is_put_whole_and_in_order((sigil, args) in frame()) {
        let mut recording = Recording(Vec::new());
        encode_raw(sigil, &args, &mut recording).unwrap();
        let mut whole = Vec::new();
        encode_raw(sigil, &args, &mut whole).unwrap();
        prop_assert_eq!(recording.0.concat(), whole);
        // Header, then each argument as its length and its bytes.
        prop_assert_eq!(recording.0.len(), 1 + 2 * args.len());
        for (i, arg) in args.iter().enumerate() {
            prop_assert_eq!(&recording.0[2 + 2 * i], arg);
        }
    }
}
