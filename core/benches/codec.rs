#![allow(missing_docs)] // criterion_group! generates an undocumented function
//! The frame codec and the client machine, measured with criterion.
//!
//! ```text
//! cargo bench -p microsocket-core --bench codec -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - `decode/*` and `encode/*`: one frame through [`Decoder::decode`] and
//!   [`encode_to_slice`]: a small request (`PING` with a one-byte tag), a frame with
//!   one 1 KiB or one 64 KiB argument (throughput in bytes of frame), and a frame of
//!   16 short arguments.
//! - `client_round/*`: what a client does per request: encode the request into a
//!   reused buffer, then take the response frame through the decoder and the
//!   machine up to its `Response` event; with [`ClientProtocol`] and a caller-owned
//!   buffer, and with the buffer-owning [`Client`].

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use microsocket_core::frame::{encode_to_slice, Decoded, Decoder, SliceSink};
use microsocket_core::{Client, ClientEvent, ClientProtocol, Sigil};

/// A request frame: tag 0x07, then `command` and `args`.
fn request_frame(command: &[u8], args: &[&[u8]]) -> Vec<u8> {
    let mut all: Vec<&[u8]> = vec![b"\x07", command];
    all.extend_from_slice(args);
    let mut out = vec![0u8; 16 + all.iter().map(|a| a.len() + 4).sum::<usize>()];
    let n = encode_to_slice(Sigil::Request, &all, &mut out).expect("fits");
    out.truncate(n);
    out
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");

    let ping = request_frame(b"PING", &[]);
    let mut decoder = Decoder::new(1 << 20);
    group.throughput(Throughput::Elements(1));
    group.bench_function("small_request", |b| {
        b.iter(|| match decoder.decode(black_box(&ping)) {
            Decoded::Frame { frame, consumed } => black_box((frame, consumed)),
            other => panic!("{other:?}"),
        });
    });

    for size in [1024usize, 64 * 1024] {
        let arg = vec![0xA5u8; size];
        let wire = request_frame(b"PUT", &[&arg]);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("one_arg", size), &wire, |b, wire| {
            b.iter(|| match decoder.decode(black_box(wire)) {
                Decoded::Frame { frame, consumed } => black_box((frame, consumed)),
                other => panic!("{other:?}"),
            });
        });
    }

    let args: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 8]).collect();
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let wire = request_frame(b"MANY", &refs[..14]);
    group.throughput(Throughput::Elements(1));
    group.bench_function("16_args", |b| {
        b.iter(|| match decoder.decode(black_box(&wire)) {
            // Walk the arguments too, as a receiver would.
            Decoded::Frame { frame, .. } => black_box(frame.args().map(<[u8]>::len).sum::<usize>()),
            other => panic!("{other:?}"),
        });
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let mut out = vec![0u8; 128 * 1024];

    group.throughput(Throughput::Elements(1));
    group.bench_function("small_request", |b| {
        b.iter(|| encode_to_slice(Sigil::Request, black_box([&b"\x07"[..], b"PING"]), &mut out).unwrap());
    });

    for size in [1024usize, 64 * 1024] {
        let arg = vec![0xA5u8; size];
        let frame_len = request_frame(b"PUT", &[&arg]).len();
        group.throughput(Throughput::Bytes(frame_len as u64));
        group.bench_with_input(BenchmarkId::new("one_arg", size), &arg, |b, arg| {
            b.iter(|| encode_to_slice(Sigil::Request, black_box([&b"\x07"[..], b"PUT", arg]), &mut out).unwrap());
        });
    }

    let args: Vec<Vec<u8>> = (0..14u8).map(|i| vec![i; 8]).collect();
    let mut all: Vec<&[u8]> = vec![b"\x07", b"MANY"];
    all.extend(args.iter().map(Vec::as_slice));
    group.throughput(Throughput::Elements(1));
    group.bench_function("16_args", |b| {
        b.iter(|| encode_to_slice(Sigil::Request, black_box(&all), &mut out).unwrap());
    });
    group.finish();
}

/// `) argc=2 tag PONG`, with the tag byte at offset 6 to patch per request.
const PONG: &[u8] = b")\x02\x00\x00\x00\x01\x00\x00\x00\x00\x04PONG";
/// Where a one-byte tag sits in a request or response frame.
const TAG_AT: usize = 6;

fn client_round(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_round");
    group.throughput(Throughput::Elements(1));

    // The sans-buffer machine: the caller owns both buffers.
    let mut protocol: ClientProtocol = ClientProtocol::new();
    let mut decoder = Decoder::new(4096);
    let mut tx = [0u8; 256];
    let mut rx = PONG.to_vec();
    group.bench_function("protocol", |b| {
        b.iter(|| {
            let mut sink = SliceSink::new(&mut tx);
            let id = protocol.request(black_box(b"PING"), [b""; 0], &mut sink).unwrap();
            // The server echoes the tag.
            rx[TAG_AT] = sink.written()[TAG_AT];
            let Decoded::Frame { frame, .. } = decoder.decode(black_box(&rx)) else {
                panic!("a whole frame");
            };
            match protocol.handle_frame(frame) {
                Some(ClientEvent::Response { id: got, values }) => black_box((got == id, values)),
                other => panic!("{other:?}"),
            };
        });
    });

    // The buffer-owning machine: its own receive and transmit buffers.
    let mut client: Client = Client::new();
    group.bench_function("buffer_owning", |b| {
        b.iter(|| {
            let id = client.request(black_box(b"PING"), [b""; 0]).unwrap();
            let tag = {
                let sent = client.poll_transmit().expect("queued");
                let tag = sent[TAG_AT];
                let n = sent.len();
                client.advance_transmit(n);
                tag
            };
            let free = client.rx_buf();
            free[..PONG.len()].copy_from_slice(PONG);
            free[TAG_AT] = tag;
            client.commit_rx(PONG.len());
            match client.poll_event() {
                Some(ClientEvent::Response { id: got, values }) => black_box((got == id, values)),
                other => panic!("{other:?}"),
            };
        });
    });
    group.finish();
}

criterion_group!(benches, decode, encode, client_round);
criterion_main!(benches);
