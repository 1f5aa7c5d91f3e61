//! A hostile server cannot make a client hold much more than what its
//! subscriptions queue: small publications arriving between large frames
//! nobody subscribed to are copied out of the read buffer, not left pinning
//! it. One test per process (this file), so resident memory is the client's.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::{bounded, frame, LIMIT, STEP};

/// Rounds of (a large publication on a topic the client did not subscribe
/// to, then a small one on the topic it did).
const ROUNDS: usize = 1_000;
/// The large publication's value.
const LARGE: usize = 256 << 10;
/// What the client may grow by: the small publications queued, buffers, and
/// the allocator's caching; far below the ROUNDS x 64 KiB (and x 256 KiB)
/// that pinning would hold.
const ALLOWED_GROWTH: u64 = 24 << 20;

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// A fake server on a new socket: answers the client's subscription barrier,
/// then sends the rounds and keeps the connection open until the client
/// goes. Returns the socket path, its thread, and a receiver told when every
/// round was written (the client has then read all but what the socket's
/// buffers hold).
fn hostile_server(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Receiver<()>,
) {
    let path = dir.join("hostile.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (written, all_written) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(STEP)).unwrap();
        // `+` "t", then the barrier `(` tag "": answer the barrier.
        let mut tag = None;
        while tag.is_none() {
            let got = common::read_frame(&mut s).unwrap().expect("the client's subscription");
            if got.sigil == b'(' {
                tag = Some(got.args[0].clone());
            }
        }
        s.write_all(&frame(b')', &[&tag.unwrap()])).unwrap();
        let large = frame(b'!', &[b"other", &vec![b'x'; LARGE]]);
        let small = frame(b'!', &[b"t", b"12345678"]);
        for _ in 0..ROUNDS {
            s.write_all(&large).unwrap();
            s.write_all(&small).unwrap();
        }
        let _ = written.send(());
        // Stay until the client goes.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    (path, writer, all_written)
}

#[test]
fn small_publications_do_not_pin_large_read_buffers() {
    bounded(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();

        // The Tokio client: its driver reads everything while the application
        // does not read the subscription.
        let (path, writer, all_written) = hostile_server(dir.path());
        let before = rss();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (client, subscription) = rt.block_on(async {
            let client = microsocket_tokio::Client::connect_unix(&path).await.unwrap();
            let subscription = client.subscribe("t").await.unwrap();
            (client, subscription)
        });
        all_written.recv_timeout(STEP).unwrap();
        // What the socket still held is read and handed out.
        std::thread::sleep(Duration::from_millis(100));
        let grown = rss().saturating_sub(before);
        eprintln!("Tokio client: +{} KiB", grown >> 10);
        assert!(grown < ALLOWED_GROWTH, "Tokio client grew by {} KiB", grown >> 10);
        client.close();
        drop(subscription);
        drop(client);
        let _ = writer.join();
        drop(rt);
        std::fs::remove_file(&path).unwrap();

        // The std client: a thread waiting on another subscription reads the
        // socket; the subscription to "t" is not read.
        let (path, writer, all_written) = hostile_server(dir.path());
        let before = rss();
        let client = microsocket_std::Client::connect_unix(&path).unwrap();
        let unread = client.subscribe("t").unwrap();
        let reader = {
            let client = client.clone();
            std::thread::spawn(move || {
                // Never published: this only makes the thread read.
                let mut other = client.subscribe_pattern("never.>").ok();
                while let Some(s) = other.as_mut() {
                    if matches!(
                        s.recv_timeout(Duration::from_millis(50)),
                        Err(microsocket_std::Error::Closed)
                    ) {
                        break;
                    }
                }
            })
        };
        all_written.recv_timeout(STEP).unwrap();
        // What the socket still held is read and handed out.
        std::thread::sleep(Duration::from_millis(100));
        let grown = rss().saturating_sub(before);
        eprintln!("std client: +{} KiB", grown >> 10);
        assert!(grown < ALLOWED_GROWTH, "std client grew by {} KiB", grown >> 10);
        client.close();
        drop(unread);
        let _ = reader.join();
        let _ = writer.join();
    });
}
