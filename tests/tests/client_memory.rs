//! A hostile server cannot make a client hold much more than what its
//! subscriptions queue: large publications the application does not read are
//! bounded in bytes and reported as lag, and small publications arriving
//! between large frames nobody subscribed to are copied out of the read
//! buffer, not left pinning it. The tests of this file run one at a time, so
//! resident memory is the client's.

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

/// One test at a time: each measures the whole process's memory.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
    let large = frame(b'!', &[b"other", &vec![b'x'; LARGE]]);
    let small = frame(b'!', &[b"t", b"12345678"]);
    fake_server(dir, move |s| {
        for _ in 0..ROUNDS {
            s.write_all(&large)?;
            s.write_all(&small)?;
        }
        Ok(())
    })
}

/// A fake server on a new socket: answers the client's subscription barrier,
/// then runs `send` and keeps the connection open until the client goes.
/// Returns the socket path, its thread, and a receiver told when `send` is
/// done (the client has then read all but what the socket's buffers hold).
fn fake_server(
    dir: &std::path::Path,
    send: impl FnOnce(&mut std::os::unix::net::UnixStream) -> std::io::Result<()> + Send + 'static,
) -> (
    std::path::PathBuf,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Receiver<()>,
) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("hostile{n}.sock"));
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
        send(&mut s).unwrap();
        let _ = written.send(());
        // Stay until the client goes.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    (path, writer, all_written)
}

#[test]
fn small_publications_do_not_pin_large_read_buffers() {
    let _serial = one_at_a_time();
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

/// Publications the application never reads, on its subscription.
const UNREAD: usize = 100;
/// Their size: 400 MiB in all.
const UNREAD_SIZE: usize = 4 << 20;
/// What the client may grow by: the subscription's queue
/// (`subscription_max_bytes`, 8 MiB, and the one publication always taken),
/// the read buffer, and the allocator's caching; far below the 400 MiB sent.
const UNREAD_GROWTH: u64 = 48 << 20;

fn unread_server(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Receiver<()>,
) {
    let publication = frame(b'!', &[b"t", &vec![b'x'; UNREAD_SIZE]]);
    fake_server(dir, move |s| {
        for _ in 0..UNREAD {
            s.write_all(&publication)?;
        }
        Ok(())
    })
}

/// A server sends 100 publications of 4 MiB that the application does not
/// read: the client keeps what its byte bounds allow, drops the rest, and
/// tells the subscriber how many it missed.
#[test]
fn large_unread_publications_are_bounded_in_bytes_and_reported() {
    let _serial = one_at_a_time();
    bounded(LIMIT * 2, || {
        let dir = tempfile::tempdir().unwrap();

        // The Tokio client.
        let (path, writer, all_written) = unread_server(dir.path());
        let before = rss();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (client, mut subscription) = rt.block_on(async {
            let client = microsocket_tokio::Client::connect_unix(&path).await.unwrap();
            let subscription = client.subscribe("t").await.unwrap();
            (client, subscription)
        });
        all_written.recv_timeout(STEP * 3).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let grown = rss().saturating_sub(before);
        eprintln!(
            "Tokio client: +{} KiB with {UNREAD} unread publications of 4 MiB",
            grown >> 10
        );
        assert!(grown < UNREAD_GROWTH, "Tokio client grew by {} KiB", grown >> 10);
        let (received, missed) = rt.block_on(async {
            let (mut received, mut missed) = (0, 0);
            while received + missed < UNREAD as u64 {
                match tokio::time::timeout(STEP, subscription.next()).await {
                    Ok(Some(Ok(_))) => received += 1,
                    Ok(Some(Err(microsocket_tokio::Error::Lagged { missed: m }))) => missed += m,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (received, missed)
        });
        eprintln!("Tokio client: {received} received, {missed} reported missed");
        assert!(missed > 0 && received > 0);
        client.close();
        drop(subscription);
        drop(client);
        let _ = writer.join();
        drop(rt);

        // The std client: a thread waiting on another subscription reads the
        // socket.
        let (path, writer, all_written) = unread_server(dir.path());
        let before = rss();
        let client = microsocket_std::Client::connect_unix(&path).unwrap();
        let mut unread = client.subscribe("t").unwrap();
        let reader = {
            let client = client.clone();
            std::thread::spawn(move || {
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
        all_written.recv_timeout(STEP * 3).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let grown = rss().saturating_sub(before);
        eprintln!(
            "std client: +{} KiB with {UNREAD} unread publications of 4 MiB",
            grown >> 10
        );
        assert!(grown < UNREAD_GROWTH, "std client grew by {} KiB", grown >> 10);
        let (mut received, mut missed) = (0, 0);
        while received + missed < UNREAD as u64 {
            match unread.recv_timeout(STEP) {
                Ok(_) => received += 1,
                Err(microsocket_std::Error::Lagged { missed: m }) => missed += m,
                other => panic!("unexpected {other:?}"),
            }
        }
        eprintln!("std client: {received} received, {missed} reported missed");
        assert!(missed > 0 && received > 0);
        client.close();
        drop(unread);
        let _ = reader.join();
        let _ = writer.join();
    });
}
