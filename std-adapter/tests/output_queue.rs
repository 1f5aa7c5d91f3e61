//! The server's per-connection output queue: answers and publications leave
//! whole and in the order they were queued, also when the socket takes frames
//! in part.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{bounded, start};
use microsocket_core::frame::{Decoded, Decoder};
use microsocket_std::ServerConfig;

/// A server whose connections queue up to `bytes` each.
fn queueing(bytes: usize) -> common::TestServer {
    start({
        let mut config = ServerConfig::default();
        config.max_queued_bytes = bytes;
        config
    })
}

/// A raw connection subscribed to "feed", its subscription confirmed by a
/// barrier (empty command, tag 1).
fn subscribed_to_feed(path: &std::path::Path) -> UnixStream {
    let mut raw = UnixStream::connect(path).unwrap();
    raw.write_all(b"+\x01\x00\x00\x00\x04feed(\x02\x00\x00\x00\x01\x01\x00\x00\x00\x00")
        .unwrap();
    let mut ack = [0u8; 7];
    raw.read_exact(&mut ack).unwrap();
    raw
}

/// Reads and decodes frames from `raw` (each must be well formed), handing
/// each frame's sigil and arguments to `frame`, until it says all that was
/// expected has come.
fn read_frames(raw: &mut UnixStream, read_size: usize, mut frame: impl FnMut(u8, &[&[u8]]) -> bool) {
    let mut decoder = Decoder::new(16 << 20);
    let mut data = Vec::new();
    let mut buf = vec![0u8; read_size];
    let mut done = false;
    while !done {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early");
        data.extend_from_slice(&buf[..n]);
        loop {
            let consumed = match decoder.decode(&data) {
                Decoded::NeedMore => break,
                Decoded::Frame { frame: f, consumed } => {
                    let args: Vec<&[u8]> = f.args().collect();
                    done = frame(f.sigil_byte(), &args);
                    consumed
                }
                other => panic!("bad frame: {other:?}"),
            };
            data.drain(..consumed);
        }
    }
}

#[test]
fn answers_and_a_backlog_larger_than_the_socket_arrive_whole_and_in_order() {
    let server = queueing(64 << 20);
    let publisher = server.publisher.clone();
    let path = server.path.clone();
    bounded(Duration::from_secs(60), move || {
        let mut raw = subscribed_to_feed(&path);
        // Publications of odd sizes, far more than the socket buffers, interleaved
        // with requests whose answers join the queue behind them.
        const N: usize = 3000;
        let mut requests = Vec::new();
        for i in 0..N {
            let value = vec![b'a' + (i % 26) as u8; 700 + i % 301];
            assert_eq!(
                publisher
                    .publish("feed", [i.to_string().as_bytes(), &value[..]])
                    .unwrap(),
                1
            );
            if i % 500 == 250 {
                let tag = [2 + (i / 500) as u8];
                let mut frame = Vec::new();
                microsocket_core::frame::encode(
                    microsocket_core::frame::Sigil::Request,
                    [&tag[..], b"ECHO", i.to_string().as_bytes()],
                    &mut frame,
                )
                .unwrap();
                raw.write_all(&frame).unwrap();
                requests.push((tag[0], i));
            }
        }
        // Read and decode everything; every frame must be well formed.
        let mut next_publication = 0;
        let mut answered = Vec::new();
        read_frames(&mut raw, 4096, |sigil, args| {
            match sigil {
                b'!' => {
                    assert_eq!(args[0], b"feed");
                    assert_eq!(args[1], next_publication.to_string().as_bytes());
                    let expected = vec![b'a' + (next_publication % 26) as u8; 700 + next_publication % 301];
                    assert_eq!(args[2], &expected[..]);
                    next_publication += 1;
                }
                b')' => answered.push((args[0][0], std::str::from_utf8(args[1]).unwrap().to_owned())),
                other => panic!("unexpected frame {other}"),
            }
            next_publication >= N && answered.len() >= requests.len()
        });
        let expected: Vec<(u8, String)> = requests.iter().map(|(t, i)| (*t, i.to_string())).collect();
        assert_eq!(answered, expected);
    });
}

#[test]
fn concurrent_publishers_and_requests_keep_every_topics_order() {
    let server = queueing(64 << 20);
    let publisher = server.publisher.clone();
    let path = server.path.clone();
    bounded(Duration::from_secs(60), move || {
        const THREADS: usize = 4;
        const EACH: usize = 5000;
        let client = microsocket_std::Client::new(UnixStream::connect(&path).unwrap(), {
            let mut config = microsocket_std::ClientConfig::default();
            config.subscription_capacity = THREADS * EACH;
            config.subscription_max_bytes = usize::MAX;
            config
        })
        .unwrap();
        let mut sub = client.subscribe_pattern("t.*").unwrap();
        // Publishers on their own topics race the flusher's unlocked writes, while
        // a requester's answers are written from the reader thread.
        let publishers: Vec<_> = (0..THREADS)
            .map(|t| {
                let publisher = publisher.clone();
                std::thread::spawn(move || {
                    let topic = format!("t.{t}");
                    for i in 0..EACH {
                        assert_eq!(publisher.publish(&topic, [i.to_string()]).unwrap(), 1);
                    }
                })
            })
            .collect();
        let requester = {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let n = i.to_string();
                    assert_eq!(client.request("ECHO", [&n]).unwrap(), [n.as_str()]);
                }
            })
        };
        let mut next = [0usize; THREADS];
        for _ in 0..THREADS * EACH {
            let p = sub.recv_timeout(Duration::from_secs(20)).unwrap();
            let t: usize = std::str::from_utf8(&p.topic()[2..]).unwrap().parse().unwrap();
            assert_eq!(&p.values()[0], next[t].to_string().as_bytes());
            next[t] += 1;
        }
        assert_eq!(next, [EACH; THREADS]);
        for p in publishers {
            p.join().unwrap();
        }
        requester.join().unwrap();
    });
}

#[test]
fn large_answers_written_from_the_values_arrive_whole_among_publications() {
    let server = queueing(256 << 20);
    let publisher = server.publisher.clone();
    let path = server.path.clone();
    bounded(Duration::from_secs(120), move || {
        let mut raw = subscribed_to_feed(&path);
        // Answers carry values from 1 KiB to 300 KiB (more than the socket
        // takes at once), one a tag of 20 KiB. The first half find nothing
        // queued ahead of them; the second half race publications, and the
        // last burst is sent at once, so answers find earlier ones queued.
        const REQUESTS: usize = 40;
        const PUBLICATIONS: usize = 3000;
        let sizes = [1 << 10, 16 << 10, 100 << 10, 300 << 10, 17 << 10];
        let mut expected = Vec::new();
        let mut requests = Vec::new();
        for i in 0..REQUESTS {
            let tag = if i == 7 { vec![7u8; 20 << 10] } else { vec![i as u8] };
            let value: Vec<u8> = (0..sizes[i % sizes.len()]).map(|b| (b * 7 + i) as u8).collect();
            let mut frame = Vec::new();
            microsocket_core::frame::encode(
                microsocket_core::frame::Sigil::Request,
                [&tag[..], b"ECHO", i.to_string().as_bytes(), &value, b"end"],
                &mut frame,
            )
            .unwrap();
            requests.push(frame);
            expected.push((tag, vec![i.to_string().into_bytes(), value, b"end".to_vec()]));
        }
        let mut writer = raw.try_clone().unwrap();
        let sending = std::thread::spawn(move || {
            let mut publishing = None;
            for (i, frame) in requests.iter().enumerate() {
                if i == REQUESTS / 2 {
                    let publisher = publisher.clone();
                    publishing = Some(std::thread::spawn(move || {
                        for i in 0..PUBLICATIONS {
                            let value = vec![b'a' + (i % 26) as u8; 700 + i % 301];
                            assert_eq!(
                                publisher.publish("feed", [i.to_string().as_bytes(), &value]).unwrap(),
                                1
                            );
                        }
                    }));
                }
                writer.write_all(frame).unwrap();
                if i < REQUESTS * 3 / 4 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            publishing
        });
        let mut next_publication = 0;
        let mut answers = 0;
        read_frames(&mut raw, 64 << 10, |sigil, args| {
            match sigil {
                b'!' => {
                    assert_eq!(args[1], next_publication.to_string().as_bytes());
                    let value = vec![b'a' + (next_publication % 26) as u8; 700 + next_publication % 301];
                    assert_eq!(args[2], &value[..]);
                    next_publication += 1;
                }
                b')' => {
                    let (tag, values) = &expected[answers];
                    assert_eq!(args[0], &tag[..], "answer {answers}: its tag");
                    assert!(args[1..] == values[..], "answer {answers}: its values");
                    answers += 1;
                }
                other => panic!("unexpected frame {other}"),
            }
            next_publication >= PUBLICATIONS && answers >= expected.len()
        });
        if let Some(publishing) = sending.join().unwrap() {
            publishing.join().unwrap();
        }
    });
}
