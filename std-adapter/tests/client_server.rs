//! Client and server over real sockets in one process.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, start};
use microsocket_std::{Client, ClientConfig, Error, ServerConfig};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn requests_failures_and_dropped_responders() {
    let server = start(ServerConfig::default());
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = Client::connect_unix(&path).unwrap();
        assert_eq!(client.request("ECHO", ["a", "", "c"]).unwrap(), ["a", "", "c"]);
        assert!(client.request("ECHO", [b""; 0]).unwrap().is_empty());
        match client.request("FAIL", ["bad thing", "d1", "d2"]) {
            Err(Error::Failed { message, details }) => {
                assert_eq!(message, "bad thing");
                assert_eq!(details, ["d1", "d2"]);
            }
            other => panic!("{other:?}"),
        }
        match client.request("DROP", [b""; 0]) {
            Err(Error::Failed { message, .. }) => assert_eq!(message, microsocket_std::DROPPED_UNANSWERED),
            other => panic!("{other:?}"),
        }
        match client.request("NOPE", [b""; 0]) {
            Err(Error::Failed { message, details }) => {
                assert_eq!(message, "no such command");
                assert_eq!(details, ["NOPE"]);
            }
            other => panic!("{other:?}"),
        }
        // The empty command is the server's own no-op.
        assert!(client.request("", [b""; 0]).unwrap().is_empty());
        let big = client.request("BIG", ["1000000"]).unwrap();
        assert_eq!(big[0].len(), 1_000_000);
    });
}

#[test]
fn many_threads_share_one_client() {
    let server = start(ServerConfig::default());
    let client = Client::connect_unix(server.path()).unwrap();
    bounded(LIMIT, move || {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let arg = format!("{t}-{i}");
                        assert_eq!(client.request("ECHO", [&arg]).unwrap(), [arg.as_str()]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn out_of_order_answers_reach_the_right_threads() {
    let server = start(ServerConfig::default());
    let client = Client::connect_unix(server.path()).unwrap();
    bounded(LIMIT, move || {
        let start = Instant::now();
        // Delays descending: later requests are answered first.
        let threads: Vec<_> = (0..20u64)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || {
                    let ms = 400 - i * 20;
                    let got = client.request("SLEEP", [ms.to_string()]).unwrap();
                    assert_eq!(got, [ms.to_string()]);
                    (ms, Instant::now())
                })
            })
            .collect();
        let mut done: Vec<(u64, Instant)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        done.sort_by_key(|(_, at)| *at);
        // Answers arrived roughly in delay order, not request order, and in parallel.
        assert!(done.first().unwrap().0 < done.last().unwrap().0);
        assert!(start.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn timeouts_free_the_slot_and_late_answers_are_dropped() {
    let server = start(ServerConfig::default());
    let client = Client::connect_unix(server.path()).unwrap();
    bounded(LIMIT, move || {
        let t = Instant::now();
        let err = client
            .request_timeout("SLEEP", ["300"], Some(Duration::from_millis(50)))
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut), "{err:?}");
        assert!(t.elapsed() < Duration::from_millis(250));
        // The connection carries on; the late answer (after 300 ms) is ignored.
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(client.request("ECHO", ["x"]).unwrap(), ["x"]);
        // Default timeout from the config.
        let stream = UnixStream::connect(&server.path).unwrap();
        let short = Client::new(stream, {
            let mut config = ClientConfig::default();
            config.request_timeout = Some(Duration::from_millis(30));
            config
        })
        .unwrap();
        assert!(matches!(short.request("HANG", [b""; 0]), Err(Error::TimedOut)));
        assert_eq!(short.request("ECHO", ["y"]).unwrap(), ["y"]);
        drop(server);
    });
}

#[test]
fn pubsub_exact_patterns_and_unsubscribe() {
    let server = start(ServerConfig::default());
    let publisher = server.publisher.clone();
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = Client::connect_unix(&path).unwrap();
        let mut exact = client.subscribe("sensor.kitchen.temp").unwrap();
        let mut exact2 = client.subscribe("sensor.kitchen.temp").unwrap();
        let mut one = client.subscribe_pattern("sensor.*.temp").unwrap();
        let mut tail = client.subscribe_pattern("sensor.>").unwrap();
        assert!(client.subscribe_pattern("bad..pattern").is_err());

        // Publications made by a request are in place before its answer.
        client.request("PUBLISH", ["sensor.kitchen.temp", "21"]).unwrap();
        publisher.publish("sensor.hall", ["x"]).unwrap();
        publisher.publish("other", ["no"]).unwrap();

        let p = exact.recv_timeout(LIMIT).unwrap();
        assert_eq!(p.topic_str(), Some("sensor.kitchen.temp"));
        assert_eq!(p.values(), ["21"]);
        assert_eq!(exact2.recv_timeout(LIMIT).unwrap(), p);
        assert_eq!(one.recv_timeout(LIMIT).unwrap(), p);
        assert_eq!(tail.recv_timeout(LIMIT).unwrap(), p);
        assert_eq!(tail.recv_timeout(LIMIT).unwrap().topic_str(), Some("sensor.hall"));
        assert!(matches!(one.try_recv(), Ok(None)));
        assert!(matches!(
            exact.recv_timeout(Duration::from_millis(50)),
            Err(Error::TimedOut)
        ));

        // Dropping one of two handles keeps the wire subscription.
        drop(exact2);
        client.request("", [b""; 0]).unwrap();
        assert!(publisher.has_subscribers("sensor.kitchen.temp"));
        drop(one);
        drop(tail);
        client.request("", [b""; 0]).unwrap();
        assert!(!publisher.has_subscribers("sensor.hall"));
        assert!(publisher.has_subscribers("sensor.kitchen.temp"));
        drop(exact);
        client.request("", [b""; 0]).unwrap();
        assert!(!publisher.has_subscribers("sensor.kitchen.temp"));

        // The iterator yields until the connection closes.
        let mut sub = client.subscribe("t").unwrap();
        for i in 0..3 {
            publisher.publish("t", [i.to_string()]).unwrap();
        }
        let got: Vec<_> = sub
            .iter()
            .take(3)
            .map(|p| p.unwrap().values().first().unwrap())
            .collect();
        assert_eq!(got, ["0", "1", "2"]);
        client.close();
        assert!(sub.iter().next().is_none());
    });
}

#[test]
fn subscription_hook_refuses_and_buffered_topics_catch_up() {
    let server = start({
        let mut config = ServerConfig::default();
        config.buffers = vec![(b"log.>".to_vec(), 3)];
        config
    });
    let publisher = server.publisher.clone();
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = Client::connect_unix(&path).unwrap();
        assert!(matches!(
            client.subscribe("secret.plans"),
            Err(Error::SubscriptionRefused { .. })
        ));
        publisher.publish("secret.plans", ["x"]).unwrap();
        assert!(!publisher.has_subscribers("secret.plans"));

        for i in 0..5 {
            publisher.publish("log.app", [i.to_string()]).unwrap();
        }
        let mut log = client.subscribe_pattern("log.*").unwrap();
        publisher.publish("log.app", ["live"]).unwrap();
        let got: Vec<_> = (0..4)
            .map(|_| log.recv_timeout(LIMIT).unwrap().values().first().unwrap())
            .collect();
        assert_eq!(got, ["2", "3", "4", "live"]);
    });
}

#[test]
fn slow_subscriber_lags_and_others_are_unaffected() {
    let server = start({
        let mut config = ServerConfig::default();
        config.max_queued_bytes = 64 << 10;
        config
    });
    let publisher = server.publisher.clone();
    let path = server.path.clone();
    bounded(LIMIT, move || {
        // A client-side queue of 10 that is not read while 100 arrive.
        let lagging = Client::new(UnixStream::connect(&path).unwrap(), {
            let mut config = ClientConfig::default();
            config.subscription_capacity = 10;
            config
        })
        .unwrap();
        let mut slow = lagging.subscribe("feed").unwrap();
        // A raw connection that subscribes and never reads at all.
        let mut raw = UnixStream::connect(&path).unwrap();
        raw.write_all(b"+\x01\x00\x00\x00\x04feed(\x02\x00\x00\x00\x01\x01\x00\x00\x00\x00")
            .unwrap();
        let mut ack = [0u8; 7];
        raw.read_exact(&mut ack).unwrap();
        // A healthy subscriber that keeps up.
        let healthy = Client::connect_unix(&path).unwrap();
        let mut fast = healthy.subscribe("feed").unwrap();
        // How far the healthy subscriber got: the publisher stays within 100
        // publications (about 22 KiB, well under its queue's 64 KiB) of it, so it
        // keeps up however busy the machine is, while the others fall behind.
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = progress.clone();
        let reader = std::thread::spawn(move || {
            let mut n = 0;
            while n < 2000 {
                match fast.recv_timeout(LIMIT) {
                    Ok(p) => {
                        assert_eq!(p.values().str(0), Some(&*n.to_string()));
                        n += 1;
                        seen.store(n, std::sync::atomic::Ordering::Release);
                    }
                    Err(e) => panic!("healthy subscriber: {e}"),
                }
            }
            n
        });
        let payload = [b'p'; 200];
        for i in 0..2000 {
            let deadline = std::time::Instant::now() + LIMIT;
            while i > progress.load(std::sync::atomic::Ordering::Acquire) + 100 {
                assert!(std::time::Instant::now() < deadline, "healthy subscriber stalled");
                std::thread::sleep(Duration::from_micros(200));
            }
            publisher
                .publish("feed", [i.to_string().as_bytes(), &payload[..]])
                .unwrap();
        }
        assert_eq!(reader.join().unwrap(), 2000);
        // The raw connection's queue stayed bounded: publications were dropped.
        assert!(publisher.stats().publications_dropped > 0);
        // The lagging client gets what fit, then a lag report, then carries on.
        let mut received = 0;
        let mut missed = 0;
        loop {
            match slow.recv_timeout(Duration::from_millis(300)) {
                Ok(_) => received += 1,
                Err(Error::Lagged { missed: m }) => missed += m,
                Err(Error::TimedOut) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(missed > 0, "received {received}");
        assert!(received >= 10);
        drop(raw);
    });
}

#[test]
fn bad_input_gets_answers_and_the_connection_stays_open() {
    let server = start({
        let mut config = ServerConfig::default();
        config.max_frame = 1024;
        config
    });
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Oversized request, tag 0x07: answered with `#` frame too large.
        let mut frame = b"(\x02\x00\x00\x00\x01\x07\x00\x00\x08\x00".to_vec();
        frame.extend(vec![b'z'; 2048]);
        s.write_all(&frame).unwrap();
        let want = b"#\x02\x00\x00\x00\x01\x07\x00\x00\x00\x0fframe too large";
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        // A request without a command.
        s.write_all(b"(\x01\x00\x00\x00\x01\x08").unwrap();
        let want = b"#\x02\x00\x00\x00\x01\x08\x00\x00\x00\x16request has no command";
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        // An unknown sigil and a server-only message are ignored.
        s.write_all(b"?\x01\x00\x00\x00\x01x").unwrap();
        s.write_all(b")\x01\x00\x00\x00\x01\x09").unwrap();
        // The worked example of the protocol still works.
        s.write_all(b"\x28\x02\x00\x00\x00\x01\x07\x00\x00\x00\x04ECHO")
            .unwrap();
        let want = b"\x29\x01\x00\x00\x00\x01\x07";
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
    });
}

#[test]
fn client_rejects_oversized_responses() {
    let server = start(ServerConfig::default());
    let stream = UnixStream::connect(server.path()).unwrap();
    let client = Client::new(stream, {
        let mut config = ClientConfig::default();
        config.max_frame = 4096;
        config
    })
    .unwrap();
    bounded(LIMIT, move || {
        assert!(matches!(client.request("BIG", ["100000"]), Err(Error::FrameTooLarge)));
        assert_eq!(client.request("ECHO", ["ok"]).unwrap(), ["ok"]);
    });
}

#[test]
fn shutdown_with_requests_in_flight() {
    let mut server = start(ServerConfig::default());
    let client = Client::connect_unix(server.path()).unwrap();
    let running = server.running.take().unwrap();
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || client.request("SLEEP", ["300"]))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let handle = running.shutdown_handle();
        let t = Instant::now();
        let stopper = std::thread::spawn(move || running.stop());
        handle.shutdown(); // twice is fine
        for w in waiters {
            assert_eq!(w.join().unwrap().unwrap(), ["300"]);
        }
        stopper.join().unwrap().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(!path.exists(), "socket file removed");
        // Closed connections wake waiters with an error.
        assert!(matches!(client.request("ECHO", ["x"]), Err(Error::Closed)));
        assert!(UnixStream::connect(&path).is_err());
    });
}

#[test]
fn shutdown_while_clients_keep_connecting() {
    let mut server = start({
        let mut config = ServerConfig::default();
        config.shutdown_timeout = Duration::from_millis(500);
        config
    });
    let running = server.running.take().unwrap();
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Connections that come faster than they are accepted: `accept` never
        // runs dry while these go on.
        let churners: Vec<_> = (0..4)
            .map(|_| {
                let (stop, path) = (stop.clone(), path.clone());
                std::thread::spawn(move || {
                    let end = Instant::now() + Duration::from_secs(20);
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                        if UnixStream::connect(&path).is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let stopped = running.stop();
        let took = t.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let connections: u64 = churners.into_iter().map(|c| c.join().unwrap()).sum();
        stopped.unwrap();
        assert!(connections > 0);
        assert!(
            took < Duration::from_secs(5),
            "shutdown took {took:?} under {connections} connects"
        );
    });
}

#[test]
fn closing_the_client_wakes_every_waiter() {
    let server = start(ServerConfig::default());
    let client = Client::connect_unix(server.path()).unwrap();
    bounded(LIMIT, move || {
        let mut sub = client.subscribe("quiet").unwrap();
        let waiters: Vec<_> = (0..6)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || client.request("HANG", [b""; 0]))
            })
            .collect();
        let recv = std::thread::spawn(move || sub.recv());
        std::thread::sleep(Duration::from_millis(100));
        client.close();
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(Error::Closed)));
        }
        assert!(matches!(recv.join().unwrap(), Err(Error::Closed)));
        drop(server);
    });
}

#[test]
fn tcp_and_abstract_addresses() {
    let handler = |r: microsocket_std::Request<'_>, resp: microsocket_std::Responder| {
        let _ = resp.respond(r.args);
    };
    let tcp = microsocket_std::Server::bind_tcp("127.0.0.1:0", handler, ServerConfig::default()).unwrap();
    let address = tcp.local_address().unwrap();
    let tcp = tcp.spawn().unwrap();
    let client = Client::connect(&address).unwrap();
    assert_eq!(client.request("X", ["tcp"]).unwrap(), ["tcp"]);
    drop(tcp);

    let name = format!("microsocket-std-test-{}", std::process::id());
    let abs = microsocket_std::Server::bind_abstract(name.as_bytes(), handler, ServerConfig::default())
        .unwrap()
        .spawn()
        .unwrap();
    let client = Client::connect(&format!("@{name}").parse().unwrap()).unwrap();
    assert_eq!(client.request("X", ["abstract"]).unwrap(), ["abstract"]);
    drop(abs);
}

#[test]
fn a_thousand_concurrent_connections() {
    let server = start({
        let mut config = ServerConfig::default();
        config.stack_size = 64 << 10;
        config
    });
    let path = server.path.clone();
    let publisher = server.publisher.clone();
    bounded(Duration::from_secs(60), move || {
        let clients: Vec<Client> = (0..1000).map(|_| Client::connect_unix(&path).unwrap()).collect();
        for (i, c) in clients.iter().enumerate() {
            assert_eq!(c.request("ECHO", [i.to_string()]).unwrap(), [i.to_string()]);
        }
        assert_eq!(publisher.stats().connections, 1000);
        // All at once, from a few threads.
        let clients = Arc::new(clients);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let clients = clients.clone();
                std::thread::spawn(move || {
                    for c in clients.iter().skip(t).step_by(4) {
                        assert_eq!(c.request("ECHO", ["again"]).unwrap(), ["again"]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(clients);
        let deadline = Instant::now() + Duration::from_secs(10);
        while publisher.stats().connections > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(publisher.stats().connections, 0);
    });
}
