//! Client against server over real UNIX sockets in temporary directories.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use microsocket_tokio::{
    handler_fn, Client, Error, ReconnectPolicy, Reply, Request, Server, ServerConfig, SubscriptionChange,
};

fn socket() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.sock");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_with_out_of_order_responses() {
    within(async {
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        let mut tasks = Vec::new();
        for c in 0..500u32 {
            let path = path.clone();
            tasks.push(tokio::spawn(async move {
                let client = Client::connect_unix(&path).await.unwrap();
                // Longest first: the answers come back in reverse order.
                let order = Arc::new(std::sync::Mutex::new(Vec::new()));
                let mut futures = Vec::new();
                for (i, ms) in [400u32, 200, 0].into_iter().enumerate() {
                    let value = format!("{c}-{i}");
                    let response = client.request("SLEEP", [ms.to_string(), value.clone()]);
                    let order = order.clone();
                    futures.push(tokio::spawn(async move {
                        let v = response.await.unwrap();
                        assert_eq!(v.first().unwrap(), value.as_bytes());
                        order.lock().unwrap().push(i);
                    }));
                }
                for f in futures {
                    f.await.unwrap();
                }
                let order = order.lock().unwrap().clone();
                order == [2, 1, 0]
            }));
        }
        let mut reversed = 0;
        for t in tasks {
            reversed += usize::from(t.await.unwrap());
        }
        assert_eq!(reversed, 500, "answers must come back in completion order");
        assert_eq!(server.stats().requests, 1500);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn many_tasks_share_one_connection() {
    within(async {
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        let client = Client::connect_unix(&path).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let arg = format!("{t}:{i}");
                    let v = client.request("ECHO", [&arg]).await.unwrap();
                    assert_eq!(v, [arg.as_bytes()]);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // A pending answer keeps the connection open after the last handle goes.
        let pending = {
            let temporary = Client::connect_unix(&path).await.unwrap();
            temporary.request("SLEEP", ["50", "kept"])
        };
        assert_eq!(pending.await.unwrap(), [b"kept"]);
        let err = client.request("FAIL", ["bad", "d1", "d2"]).await.unwrap_err();
        match err {
            Error::Failed { message, details } => {
                assert_eq!(message, "bad");
                assert_eq!(details, vec![Bytes::from("d1"), Bytes::from("d2")]);
            }
            other => panic!("unexpected {other:?}"),
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn exact_and_pattern_subscriptions_and_unsubscribe() {
    within(async {
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        let client = Client::connect_unix(&path).await.unwrap();
        let mut news = client.subscribe("news").await.unwrap();
        let mut news2 = client.subscribe("news").await.unwrap();
        let mut temps = client.subscribe_pattern("sensor.*.temp").await.unwrap();
        let mut sensors = client.subscribe_pattern("sensor.>").await.unwrap();

        // One connection: each publication reaches it once.
        assert_eq!(server.publish("news", ["hello"]).unwrap(), 1);
        assert_eq!(server.publish("sensor.kitchen.temp", ["21"]).unwrap(), 1);
        assert_eq!(server.publish("sensor.kitchen", ["on"]).unwrap(), 1);
        assert_eq!(server.publish("sensor", ["x"]).unwrap(), 0);
        assert_eq!(server.publish("other", ["x"]).unwrap(), 0);

        for sub in [&mut news, &mut news2] {
            let p = sub.next().await.unwrap().unwrap();
            assert_eq!(p.topic(), b"news");
            assert_eq!(*p.values(), [b"hello"]);
        }
        let p = temps.next().await.unwrap().unwrap();
        assert_eq!(
            (p.topic(), p.values().first().unwrap().as_ref()),
            (&b"sensor.kitchen.temp"[..], &b"21"[..])
        );
        let p = sensors.next().await.unwrap().unwrap();
        assert_eq!(p.topic(), b"sensor.kitchen.temp");
        let p = sensors.next().await.unwrap().unwrap();
        assert_eq!(p.topic(), b"sensor.kitchen");

        // Two local subscriptions share one wire subscription: dropping one keeps it.
        drop(news2);
        client.request("PING", [b""; 0]).await.unwrap();
        assert!(server.publisher().has_subscribers("news"));
        drop(news);
        // The `-` went out before this request, so the server has handled it.
        client.request("PING", [b""; 0]).await.unwrap();
        assert!(!server.publisher().has_subscribers("news"));
        assert_eq!(server.publish("news", ["again"]).unwrap(), 0);
        drop(temps);
        client.request("PING", [b""; 0]).await.unwrap();
        assert!(!server.publisher().has_subscribers("sensor.a.temp") || server.publisher().has_subscribers("sensor.a"));
        assert_eq!(
            server.publish("sensor.a.temp", ["1"]).unwrap(),
            1,
            "sensor.> still matches"
        );
        let p = sensors.next().await.unwrap().unwrap();
        assert_eq!(p.topic(), b"sensor.a.temp");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_topic_under_concurrent_publishing_loses_nothing_and_repeats_nothing() {
    within(async {
        const N: u32 = 3000;
        const DEPTH: usize = 50;
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default());
        server.set_buffer("log.*", DEPTH).unwrap();
        server.listen_unix(&path).unwrap();
        let publisher = server.publisher();
        let published = Arc::new(AtomicUsize::new(0));
        let counter = published.clone();
        let pub_task = tokio::spawn(async move {
            for i in 0..N {
                publisher.publish("log.app", [i.to_be_bytes()]).unwrap();
                counter.store(i as usize + 1, Ordering::SeqCst);
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut subs = Vec::new();
        for s in 0..12u32 {
            let path = path.clone();
            let published = published.clone();
            subs.push(tokio::spawn(async move {
                // Stagger the subscriptions across the publishing.
                while published.load(Ordering::SeqCst) < (s * N / 12) as usize {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let client = Client::builder()
                    .subscription_capacity(N as usize + 10)
                    .subscription_max_bytes(usize::MAX)
                    .connect_unix(&path)
                    .await
                    .unwrap();
                let mut sub = if s % 2 == 0 {
                    client.subscribe("log.app").await.unwrap()
                } else {
                    client.subscribe_pattern("log.>").await.unwrap()
                };
                let mut seen = Vec::new();
                while seen.last() != Some(&(N - 1)) {
                    let p = sub.next().await.unwrap().unwrap();
                    seen.push(u32::from_be_bytes(p.values().first().unwrap()[..].try_into().unwrap()));
                }
                seen
            }));
        }
        pub_task.await.unwrap();
        for s in subs {
            let seen = s.await.unwrap();
            let first = seen[0];
            let expected: Vec<u32> = (first..N).collect();
            assert_eq!(seen, expected, "gap or duplicate");
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_stays_bounded_and_others_are_unaffected() {
    within(async {
        use std::io::Write;
        const LIMIT_BYTES: usize = 128 * 1024;
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default().max_queued_bytes(LIMIT_BYTES));
        server.listen_unix(&path).unwrap();

        // A raw subscriber that never reads.
        let mut stuck = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stuck.write_all(b"\x2b\x01\x00\x00\x00\x04fire").unwrap();
        // A normal subscriber.
        let client = Client::builder()
            .subscription_capacity(100_000)
            .subscription_max_bytes(64 << 20)
            .connect_unix(&path)
            .await
            .unwrap();
        let mut sub = client.subscribe("fire").await.unwrap();
        // The raw `+` was handled once the server counts two subscribers.
        let deadline = Instant::now() + LIMIT;
        while server.publish("fire", [b""; 0]).unwrap() < 2 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let payload = vec![7u8; 1024];
        let mut max_queued = 0;
        for i in 0..20_000u32 {
            server.publish("fire", [&i.to_be_bytes()[..], &payload]).unwrap();
            if i % 32 == 31 {
                // A round trip on the reading client: its publications so far
                // were delivered before the answer.
                client.request("PING", [b""; 0]).await.unwrap();
                max_queued = max_queued.max(server.stats().queued_bytes);
            }
        }
        let stats = server.stats();
        assert!(stats.publications_dropped > 10_000, "{stats:?}");
        // The stuck connection holds at most its limit, the reader a round's worth.
        assert!(max_queued <= (LIMIT_BYTES + 40 * 1100) as u64, "queued {max_queued}");
        // The reading subscriber got every publication, in order, none missed.
        let mut expect = 0u32;
        let mut skipped_ping = false;
        while expect < 20_000 {
            let p = sub.next().await.unwrap().unwrap();
            if p.values().is_empty() {
                skipped_ping = true;
                continue;
            }
            assert_eq!(p.values().first().unwrap()[..], expect.to_be_bytes());
            expect += 1;
        }
        assert!(skipped_ping);
        drop(stuck);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_removes_the_socket() {
    within(async {
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default().shutdown_timeout(Duration::from_millis(500)));
        server.listen_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client = Client::connect_unix(&path).await.unwrap();
        let slow: Vec<_> = (0..10)
            .map(|i| client.request("SLEEP", ["150", &i.to_string()]))
            .collect();
        let hung = client.request("HANG", [b""; 0]);
        // Let the server read them.
        client.request("PING", [b""; 0]).await.unwrap();
        let started = Instant::now();
        server.shutdown().await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(5),
            "{took:?}"
        );
        for (i, f) in slow.into_iter().enumerate() {
            assert_eq!(f.await.unwrap(), [i.to_string().as_bytes()]);
        }
        assert!(matches!(hung.await, Err(Error::Closed)));
        assert!(!path.exists(), "socket file removed");
        assert!(matches!(client.request("PING", [b""; 0]).await, Err(Error::Closed)));
        assert!(Client::connect_unix(&path).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn socket_file_rules() {
    within(async {
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default().socket_mode(0o660));
        server.listen_unix(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
        // A live server is never replaced.
        let second = app_server(ServerConfig::default());
        let err = second.listen_unix(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        server.shutdown().await;
        // A stale socket file is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let third = app_server(ServerConfig::default());
        third.listen_unix(&path).unwrap();
        let client = Client::connect_unix(&path).await.unwrap();
        assert_eq!(client.request("PING", [b""; 0]).await.unwrap(), [b"PONG"]);
        third.shutdown().await;
        assert!(!path.exists());
    })
    .await;
}

#[tokio::test]
async fn connection_dying_mid_request_fails_everything_promptly() {
    within(async {
        let (_dir, path) = socket();
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            // Wait for the request, then die without answering.
            let _ = s.read(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(s);
        });
        let client = Client::builder()
            .request_timeout(None)
            .connect_unix(&path)
            .await
            .unwrap();
        let pending = client.request("HANG", [b""; 0]);
        let started = Instant::now();
        let err = pending.await.unwrap_err();
        assert!(matches!(err, Error::Closed), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(client.request("PING", [b""; 0]).await, Err(Error::Closed)));
        assert!(!client.is_connected());
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn subscription_stream_ends_with_an_error_when_the_server_goes() {
    within(async {
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        let client = Client::connect_unix(&path).await.unwrap();
        let mut sub = client.subscribe("news").await.unwrap();
        server.publish("news", ["1"]).unwrap();
        server.shutdown().await;
        assert_eq!(*sub.next().await.unwrap().unwrap().values(), [b"1"]);
        assert!(matches!(sub.next().await, Some(Err(Error::Closed))));
        assert!(sub.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn timeouts_hold_while_the_server_reads_nothing() {
    within(async {
        let (_dir, path) = socket();
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let client = Client::builder()
            .request_timeout(Some(Duration::from_millis(200)))
            .connect_unix(&path)
            .await
            .unwrap();
        // A peer that never reads: a large request fills the socket buffers
        // and the connection cannot write anything more.
        let (_peer, _) = listener.accept().await.unwrap();
        let big = client.request_with_timeout("BIG", [vec![0u8; 8 << 20]], Some(Duration::from_secs(60)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A request queued behind it still fails at its own deadline, not early.
        let started = Instant::now();
        assert!(matches!(client.request("PING", [b""; 0]).await, Err(Error::TimedOut)));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{took:?}"
        );
        drop(big);
    })
    .await;
}

#[tokio::test]
async fn timeouts_cancellation_and_in_flight_limit() {
    within(async {
        let (_dir, path) = socket();
        let server = app_server(ServerConfig::default());
        server.listen_unix(&path).unwrap();
        let client = Client::builder()
            .request_timeout(Some(Duration::from_millis(100)))
            .max_in_flight(3)
            .connect_unix(&path)
            .await
            .unwrap();
        // A late answer to an abandoned request is dropped and frees its tag.
        let late = client.request("SLEEP", ["300", "late"]);
        assert!(matches!(late.await, Err(Error::TimedOut)));
        assert_eq!(client.in_flight(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(client.in_flight(), 0);
        let started = Instant::now();
        assert!(matches!(client.request("HANG", [b""; 0]).await, Err(Error::TimedOut)));
        assert!(started.elapsed() < Duration::from_secs(2));
        // The timed-out tag stays reserved until its late answer (never here).
        assert_eq!(client.in_flight(), 1);
        // Dropping a request future abandons it the same way.
        drop(client.request("HANG", [b""; 0]));
        assert_eq!(client.in_flight(), 2);
        let third = client.request_with_timeout("HANG", [b""; 0], None);
        assert!(matches!(
            client.request("PING", [b""; 0]).await,
            Err(Error::InflightFull)
        ));
        drop(third);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn in_process_clients_without_a_socket_file() {
    within(async {
        let server = app_server(ServerConfig::default());
        let client = server.connect_in_process().unwrap();
        assert_eq!(client.request("PING", [b""; 0]).await.unwrap(), [b"PONG"]);
        // No socket, yet the requests carry this process's credentials.
        let me = strings(&client.request("WHO", [b""; 0]).await.unwrap());
        assert_eq!(me[1], std::process::id().to_string().into_bytes());
        assert_eq!(me[2], microsocket_socket::own_uid().to_string().into_bytes());
        let (a, b) = tokio::io::duplex(4096);
        server.serve_stream(a).unwrap();
        let other = Client::new(b);
        let mut sub = other.subscribe("t").await.unwrap();
        client.request("PUB", ["t", "v"]).await.unwrap();
        assert_eq!(*sub.next().await.unwrap().unwrap().values(), [b"v"]);
        let v = strings(&other.request("WHO", [b""; 0]).await.unwrap());
        assert!(v[1].is_empty(), "no credentials on a duplex stream");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn subscription_hook_refuses_and_observes() {
    within(async {
        let (_dir, path) = socket();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        let handler = handler_fn(|_: Request| async { Ok(Reply::one("ok")) })
            .authorize_subscription(|_, _, topic| !topic.starts_with(b"secret"))
            .on_subscription_change(move |_, change| {
                let s = match change {
                    SubscriptionChange::Subscribed { topic, .. } => format!("+{}", String::from_utf8_lossy(topic)),
                    SubscriptionChange::Unsubscribed { topic } => format!("-{}", String::from_utf8_lossy(topic)),
                };
                log.lock().unwrap().push(s);
            });
        let server = Server::new(handler);
        server.listen_unix(&path).unwrap();
        let client = Client::connect_unix(&path).await.unwrap();
        assert!(matches!(
            client.subscribe("secret.plans").await,
            Err(microsocket_tokio::Error::SubscriptionRefused { .. })
        ));
        let open = client.subscribe("open").await.unwrap();
        assert_eq!(server.publish("secret.plans", ["x"]).unwrap(), 0);
        assert_eq!(server.publish("open", ["x"]).unwrap(), 1);
        assert_eq!(server.stats().subscriptions_refused, 1);
        drop(open);
        client.request("X", [b""; 0]).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec!["+open".to_string(), "-open".to_string()]);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn reconnects_and_subscribes_again() {
    within(async {
        let (_dir, path) = socket();
        let first = app_server(ServerConfig::default());
        first.listen_unix(&path).unwrap();
        let client = Client::builder()
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
                max_attempts: None,
            })
            .connect_unix(&path)
            .await
            .unwrap();
        let mut sub = client.subscribe("news").await.unwrap();
        first.shutdown().await;
        assert!(matches!(sub.next().await, Some(Err(Error::Reconnecting))));
        // While it reconnects, requests fail with a distinct, retryable error.
        assert!(matches!(
            client.request("PING", [b""; 0]).await,
            Err(Error::Reconnecting)
        ));
        let second = app_server(ServerConfig::default());
        second.listen_unix(&path).unwrap();
        let deadline = Instant::now() + LIMIT;
        loop {
            assert!(Instant::now() < deadline);
            if client.is_connected() && client.request("PING", [b""; 0]).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(second.publish("news", ["back"]).unwrap(), 1);
        assert_eq!(*sub.next().await.unwrap().unwrap().values(), [b"back"]);
        // Closed for good: the plain error.
        client.close();
        let closed = client.request("PING", [b""; 0]).await;
        assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
        second.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn abstract_and_tcp_listeners() {
    within(async {
        let server = app_server(ServerConfig::default());
        let name = format!("microsocket-test-{}", std::process::id());
        server.listen_abstract(&name).unwrap();
        let client = Client::connect_abstract(&name).await.unwrap();
        assert_eq!(client.request("PING", [b""; 0]).await.unwrap(), [b"PONG"]);
        let addr = server.listen_tcp("127.0.0.1:0").await.unwrap();
        let tcp = Client::connect_tcp(addr).await.unwrap();
        assert_eq!(tcp.request("ECHO", ["x"]).await.unwrap(), [b"x"]);
        let v = strings(&tcp.request("WHO", [b""; 0]).await.unwrap());
        assert!(v[1].is_empty(), "no credentials over TCP");
        server.shutdown().await;
    })
    .await;
}
