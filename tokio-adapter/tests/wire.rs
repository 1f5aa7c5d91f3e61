//! Byte-exact frames against raw sockets: the PROTOCOL.md examples, bad input,
//! and a client talking to a server that speaks only the original protocol.

mod common;

use std::time::Duration;

use common::*;
use microsocket_tokio::{Client, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

async fn read_exact(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    within(s.read_exact(&mut buf)).await.unwrap();
    buf
}

/// Asserts nothing more arrives within a short while.
async fn assert_silent(s: &mut UnixStream) {
    let mut buf = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
    assert!(r.is_err(), "unexpected bytes: {r:?} {buf:?}");
}

const PING: &[u8] = b"\x28\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04PING";
const PONG: &[u8] = b"\x29\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04PONG";

#[tokio::test]
async fn protocol_examples_byte_for_byte() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        let mut s = UnixStream::connect(&path).await.unwrap();
        // Request and response.
        s.write_all(PING).await.unwrap();
        assert_eq!(read_exact(&mut s, PONG.len()).await, PONG);
        // Subscribe, prove it is in place with a request, then a publication.
        s.write_all(b"\x2b\x01\x00\x00\x00\x04news").await.unwrap();
        s.write_all(PING).await.unwrap();
        assert_eq!(read_exact(&mut s, PONG.len()).await, PONG);
        assert_eq!(server.publish("news", ["hello"]).unwrap(), 1);
        let publication = b"\x21\x02\x00\x00\x00\x04news\x00\x00\x00\x05hello";
        assert_eq!(read_exact(&mut s, publication.len()).await, publication);
        // A failure with the same tag.
        s.write_all(b"\x28\x03\x00\x00\x00\x01\x07\x00\x00\x00\x04FAIL\x00\x00\x00\x07no such")
            .await
            .unwrap();
        let failure = b"\x23\x02\x00\x00\x00\x01\x07\x00\x00\x00\x07no such";
        assert_eq!(read_exact(&mut s, failure.len()).await, failure);
        // The empty command is answered by the server itself, tags of any length.
        s.write_all(b"\x28\x02\x00\x00\x00\x03abc\x00\x00\x00\x00")
            .await
            .unwrap();
        assert_eq!(read_exact(&mut s, 9).await, b"\x29\x01\x00\x00\x00\x03abc");
        // Unsubscribe: nothing reaches the connection any more.
        s.write_all(b"\x2d\x01\x00\x00\x00\x04news").await.unwrap();
        s.write_all(PING).await.unwrap();
        assert_eq!(read_exact(&mut s, PONG.len()).await, PONG);
        assert_eq!(server.publish("news", ["hello"]).unwrap(), 0);
        assert_silent(&mut s).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_answered_and_the_connection_stays_open() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        let server = app_server(ServerConfig::default().max_frame(1024));
        server.listen_unix(&path).unwrap();
        let mut s = UnixStream::connect(&path).await.unwrap();

        // An oversized request: answered with `#`, skipped without buffering.
        let mut big = b"\x28\x03\x00\x00\x00\x01\x09\x00\x00\x00\x04ECHO".to_vec();
        big.extend_from_slice(&100_000u32.to_be_bytes());
        big.extend_from_slice(&vec![b'x'; 100_000]);
        s.write_all(&big).await.unwrap();
        let too_large = b"\x23\x02\x00\x00\x00\x01\x09\x00\x00\x00\x0fframe too large";
        assert_eq!(read_exact(&mut s, too_large.len()).await, too_large);
        s.write_all(PING).await.unwrap();
        assert_eq!(read_exact(&mut s, PONG.len()).await, PONG);

        // A request without a command.
        s.write_all(b"\x28\x01\x00\x00\x00\x01\x05").await.unwrap();
        let no_command = b"\x23\x02\x00\x00\x00\x01\x05\x00\x00\x00\x16request has no command";
        assert_eq!(read_exact(&mut s, no_command.len()).await, no_command);

        // An unknown sigil and a server-only message: ignored, no answer.
        s.write_all(b"\x3f\x01\x00\x00\x00\x02hi").await.unwrap();
        s.write_all(b"\x21\x01\x00\x00\x00\x01t").await.unwrap();
        // A request with no arguments at all, and a subscription without topic.
        s.write_all(b"\x28\x00").await.unwrap();
        s.write_all(b"\x2b\x00").await.unwrap();
        // A malformed pattern subscribes to nothing.
        s.write_all(b"\x2a\x01\x00\x00\x00\x03a..").await.unwrap();
        s.write_all(PING).await.unwrap();
        assert_eq!(read_exact(&mut s, PONG.len()).await, PONG);
        assert_silent(&mut s).await;
        assert_eq!(server.stats().connections, 1);

        // A frame cut off by the end of the connection loses only that frame.
        let mut t = UnixStream::connect(&path).await.unwrap();
        t.write_all(&PING[..7]).await.unwrap();
        drop(t);
        s.write_all(PING).await.unwrap();
        assert_eq!(read_exact(&mut s, PONG.len()).await, PONG);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_frames_byte_for_byte_against_an_original_protocol_server() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orig.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            // A request with a one-byte tag.
            let head = read_exact(&mut s, 7).await;
            assert_eq!(&head[..6], b"\x28\x02\x00\x00\x00\x01");
            let tag = head[6];
            assert_eq!(read_exact(&mut s, 8).await, b"\x00\x00\x00\x04PING");
            s.write_all(&[0x29, 0x02, 0, 0, 0, 1, tag, 0, 0, 0, 4, b'P', b'O', b'N', b'G'])
                .await
                .unwrap();
            // A subscription, then the empty-command barrier, which the
            // original server hands to its application: here it fails.
            assert_eq!(read_exact(&mut s, 10).await, b"\x2b\x01\x00\x00\x00\x04news");
            let barrier = read_exact(&mut s, 11).await;
            assert_eq!(&barrier[..6], b"\x28\x02\x00\x00\x00\x01");
            assert_eq!(&barrier[7..], b"\x00\x00\x00\x00");
            let tag = barrier[6];
            s.write_all(&[0x23, 0x02, 0, 0, 0, 1, tag, 0, 0, 0, 2, b'n', b'o'])
                .await
                .unwrap();
            s.write_all(b"\x21\x02\x00\x00\x00\x04news\x00\x00\x00\x05hello")
                .await
                .unwrap();
            // A frame with an unknown sigil is ignored by the client.
            s.write_all(b"\x3f\x00").await.unwrap();
            s.write_all(b"\x21\x02\x00\x00\x00\x04news\x00\x00\x00\x05again")
                .await
                .unwrap();
            // Keep the connection until the client hangs up.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            rest
        });
        let client = Client::connect_unix(&path).await.unwrap();
        assert_eq!(client.request("PING", [b""; 0]).await.unwrap(), [b"PONG"]);
        let mut sub = client.subscribe("news").await.unwrap();
        assert_eq!(*sub.next().await.unwrap().unwrap().values(), [b"hello"]);
        assert_eq!(*sub.next().await.unwrap().unwrap().values(), [b"again"]);
        drop(sub);
        drop(client);
        // Dropping the last subscription sends `-` (ignored by an original server).
        let rest = within(peer).await.unwrap();
        assert_eq!(rest, b"\x2d\x01\x00\x00\x00\x04news");
    })
    .await;
}

#[tokio::test]
async fn oversized_response_fails_only_its_request() {
    within(async {
        let server = app_server(ServerConfig::default());
        let (a, b) = tokio::io::duplex(1 << 16);
        server.serve_stream(a).unwrap();
        let client = Client::builder().max_frame(1000).connect_stream(b);
        let big = "y".repeat(5000);
        let err = client.request("ECHO", [&big]).await.unwrap_err();
        assert!(matches!(err, microsocket_tokio::Error::FrameTooLarge), "{err:?}");
        assert_eq!(client.request("PING", [b""; 0]).await.unwrap(), [b"PONG"]);
        server.shutdown().await;
    })
    .await;
}
