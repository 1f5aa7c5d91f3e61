//! The std and Tokio adapters against each other over real UNIX sockets: the std
//! client against the Tokio server (`std_client_*`) and the Tokio client against
//! the std server (`tokio_client_*`), with the same application on both servers.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use microsocket_core::FRAME_TOO_LARGE;

type StdClient = microsocket_std::Client;
type StdError = microsocket_std::Error;
type TokioClient = microsocket_tokio::Client;
type TokioError = microsocket_tokio::Error;

const NONE: [&[u8]; 0] = [];

// ===========================================================================
// Std client against the Tokio server
// ===========================================================================

/// Receives the next publication of a std subscription as (topic, values).
fn std_next(sub: &mut microsocket_std::Subscription) -> (Bytes, Vec<Bytes>) {
    let p = sub.recv_timeout(STEP).expect("publication");
    (p.topic_bytes(), p.values().to_vec())
}

fn std_assert_quiet(sub: &mut microsocket_std::Subscription) {
    match sub.recv_timeout(QUIET) {
        Err(StdError::TimedOut) => {}
        other => panic!(
            "expected nothing on {:?}, got {other:?}",
            Bytes::copy_from_slice(sub.topic())
        ),
    }
}

#[test]
fn std_client_tokio_server_requests_with_many_args() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = StdClient::connect_unix(&path).unwrap();
        // 253 arguments (the most a request frame holds beside tag and command),
        // every third empty, the others binary.
        let args = assorted_args(253);
        assert_eq!(client.request("ECHO", &args).unwrap(), args);
        assert_eq!(client.request("COUNT", &args).unwrap(), ["253"]);
        // A large binary argument among small and empty ones.
        let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
        let mixed: [&[u8]; 4] = [&big, b"", b"\0", b"\xff\xfe"];
        assert_eq!(client.request("ECHO", mixed).unwrap(), mixed);
        // No arguments; a lone empty argument; the empty command.
        assert!(client.request("ECHO", NONE).unwrap().is_empty());
        assert_eq!(client.request("ECHO", [b""]).unwrap(), [Bytes::new()]);
        assert!(client.request("", NONE).unwrap().is_empty());
        // Too many arguments for a frame: a typed error, and the connection goes on.
        assert!(matches!(
            client.request("ECHO", assorted_args(254)),
            Err(StdError::Encode(_))
        ));
        assert_eq!(client.request("PING", NONE).unwrap(), ["PONG"]);
    });
}

#[test]
fn std_client_tokio_server_out_of_order_responses() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    let srv = server.server.clone();
    bounded(LIMIT, move || {
        let client = StdClient::connect_unix(&path).unwrap();
        let holders: Vec<_> = (0..5)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || client.request("HOLD", [format!("held {i}")]))
            })
            .collect();
        wait_until("five requests held", || srv.handler().parked() == 5);
        // Later requests are answered while the earlier ones wait, far more than
        // 256 of them: one-byte tags wrap around the held ones.
        for i in 0..600 {
            assert_eq!(client.request("ECHO", [i.to_string()]).unwrap(), [i.to_string()]);
        }
        // The held ones are answered newest first, each to its own caller.
        assert_eq!(client.request("RELEASE", NONE).unwrap(), ["5"]);
        for (i, h) in holders.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().unwrap(), [format!("held {i}")]);
        }
    });
}

#[test]
fn std_client_tokio_server_failures_with_details() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = StdClient::connect_unix(&path).unwrap();
        let sent: [&[u8]; 4] = [b"boom", b"first", b"", b"\0\xff"];
        match client.request("FAIL", sent) {
            Err(StdError::Failed { message, details }) => {
                assert_eq!(message, "boom");
                assert_eq!(details, sent[1..]);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        match client.request("NOPE", ["x"]) {
            Err(StdError::Failed { message, details }) => {
                assert_eq!(message, "no such");
                assert!(details.is_empty());
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        match client.request("FAIL", NONE) {
            Err(StdError::Failed { message, details }) => assert!(message.is_empty() && details.is_empty()),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(client.request("PING", NONE).unwrap(), ["PONG"]);
    });
}

#[test]
fn std_client_tokio_server_exact_and_pattern_subscriptions() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    let publisher = server.server.publisher();
    bounded(LIMIT, move || {
        let client = StdClient::connect_unix(&path).unwrap();
        let other = StdClient::connect_unix(&path).unwrap();
        let mut exact = client.subscribe("sensor.kitchen.temp").unwrap();
        let mut one = client.subscribe_pattern("sensor.*.temp").unwrap();
        let mut all = client.subscribe_pattern("sensor.>").unwrap();
        // Once per connection, however many of its subscriptions match.
        assert_eq!(publisher.publish("sensor.kitchen.temp", ["21", ""]).unwrap(), 1);
        assert_eq!(publisher.publish("sensor.hall.temp", ["19"]).unwrap(), 1);
        // Through a request on another connection.
        assert_eq!(other.request("PUBLISH", ["sensor.hall", "on"]).unwrap(), ["1"]);
        assert_eq!(publisher.publish("sensor", ["no"]).unwrap(), 0);
        assert_eq!(publisher.publish("other.kitchen.temp", ["no"]).unwrap(), 0);
        assert_eq!(publisher.publish("sensor.kitchen.temp", [&b"\0end"[..]]).unwrap(), 1);

        let kitchen = |v: &[u8]| (Bytes::from_static(b"sensor.kitchen.temp"), v.to_vec());
        let got = |sub: &mut microsocket_std::Subscription, n: usize| {
            (0..n)
                .map(|_| {
                    let (topic, values) = std_next(sub);
                    (topic, values.concat())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(got(&mut exact, 2), [kitchen(b"21"), kitchen(b"\0end")]);
        assert_eq!(
            got(&mut one, 3),
            [
                kitchen(b"21"),
                (Bytes::from_static(b"sensor.hall.temp"), b"19".to_vec()),
                kitchen(b"\0end")
            ]
        );
        let names: Vec<_> = got(&mut all, 4).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            names,
            [
                "sensor.kitchen.temp",
                "sensor.hall.temp",
                "sensor.hall",
                "sensor.kitchen.temp"
            ]
        );
        std_assert_quiet(&mut exact);
        std_assert_quiet(&mut all);

        // A publication made while handling a request reaches the subscriber
        // before that request's response.
        assert_eq!(client.request("PUBLISH", ["sensor.x.temp", "v"]).unwrap(), ["1"]);
        assert_eq!(one.try_recv().unwrap().expect("already in").values(), ["v"]);
        assert_eq!(all.try_recv().unwrap().expect("already in").values(), ["v"]);

        // A malformed pattern is a typed error; a refused subscription is told so
        // and gets nothing.
        assert!(matches!(client.subscribe_pattern("a..b"), Err(StdError::Subscribe(_))));
        assert!(matches!(
            client.subscribe("secret.plans"),
            Err(StdError::SubscriptionRefused { .. })
        ));
        assert_eq!(publisher.publish("secret.plans", ["x"]).unwrap(), 0);
    });
}

#[test]
fn std_client_tokio_server_unsubscribe_stops_delivery() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    let publisher = server.server.publisher();
    bounded(LIMIT, move || {
        let client = StdClient::connect_unix(&path).unwrap();
        let a = client.subscribe("news").unwrap();
        let mut b = client.subscribe("news").unwrap();
        let p = client.subscribe_pattern("news.>").unwrap();
        assert_eq!(publisher.publish("news", ["1"]).unwrap(), 1);
        // Dropping one of two handles keeps the wire subscription.
        drop(a);
        client.request("PING", NONE).unwrap(); // any `-` is handled by now
        assert_eq!(publisher.publish("news", ["2"]).unwrap(), 1);
        assert_eq!(b.recv_timeout(STEP).unwrap().values(), ["1"]);
        assert_eq!(b.recv_timeout(STEP).unwrap().values(), ["2"]);
        // Dropping the last one unsubscribes.
        drop(b);
        client.request("PING", NONE).unwrap();
        assert_eq!(publisher.publish("news", ["3"]).unwrap(), 0);
        assert!(!publisher.has_subscribers("news"));
        // Patterns alike.
        assert_eq!(publisher.publish("news.today", ["4"]).unwrap(), 1);
        drop(p);
        client.request("PING", NONE).unwrap();
        assert_eq!(publisher.publish("news.today", ["5"]).unwrap(), 0);
        // Subscribing again works.
        let mut c = client.subscribe("news").unwrap();
        assert_eq!(publisher.publish("news", ["6"]).unwrap(), 1);
        assert_eq!(c.recv_timeout(STEP).unwrap().values(), ["6"]);
    });
}

#[test]
fn std_client_tokio_server_buffered_topic_catch_up() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    let publisher = server.server.publisher();
    publisher.set_buffer("feed.>", 3).unwrap();
    bounded(LIMIT, move || {
        for i in 1..=5 {
            assert_eq!(publisher.publish("feed.a", [i.to_string()]).unwrap(), 0);
        }
        publisher.publish("feed.b", ["b1"]).unwrap();
        let client = StdClient::connect_unix(&path).unwrap();
        // The last three first, then live ones.
        let mut a = client.subscribe("feed.a").unwrap();
        publisher.publish("feed.a", ["6"]).unwrap();
        for want in ["3", "4", "5", "6"] {
            assert_eq!(a.recv_timeout(STEP).unwrap().values(), [want]);
        }
        // A pattern catches up on every buffered topic it matches that the
        // connection does not already receive (feed.a comes through `a`).
        let mut all = client.subscribe_pattern("feed.*").unwrap();
        let mut by_topic: BTreeMap<Bytes, Vec<Bytes>> = BTreeMap::new();
        for _ in 0..1 {
            let (topic, values) = std_next(&mut all);
            by_topic.entry(topic).or_default().extend(values);
        }
        assert_eq!(by_topic.len(), 1);
        assert_eq!(by_topic[&b"feed.b"[..]], ["b1"]);
        std_assert_quiet(&mut all);
        std_assert_quiet(&mut a);
        // (A connection that already receives a topic is not sent its backlog
        // again: see `*_overlapping_subscription_replays_no_backlog`.)
        drop(all);
        // Once this is answered the `-` is in place and no `feed.c` publication
        // is on its way to this connection (else it would reach the exact
        // subscription below ahead of the replayed backlog: the same issue).
        client.request("PING", NONE).unwrap();

        // Catching up and subscribing is one step: subscribing while another
        // thread publishes sees a gapless, duplicate-free sequence.
        let n = 500;
        let p = publisher.clone();
        let feeder = std::thread::spawn(move || {
            for i in 0..n {
                p.publish("feed.c", [i.to_string()]).unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        std::thread::sleep(Duration::from_millis(5));
        let mut c = client.subscribe("feed.c").unwrap();
        let first: usize = std::str::from_utf8(&c.recv_timeout(STEP).unwrap().values()[0])
            .unwrap()
            .parse()
            .unwrap();
        for want in first + 1..n {
            assert_eq!(c.recv_timeout(STEP).unwrap().values(), [want.to_string()]);
        }
        feeder.join().unwrap();
        std_assert_quiet(&mut c);
    });
}

/// A connection that already receives a buffered topic through a pattern and
/// then subscribes to it exactly is not sent the backlog again: "a publication is
/// sent to a connection once" holds across its subscriptions, so its pattern
/// subscriber never sees a publication twice and the exact one starts live.
#[test]
fn std_client_tokio_server_overlapping_subscription_replays_no_backlog() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    let publisher = server.server.publisher();
    publisher.set_buffer("feed.>", 3).unwrap();
    bounded(LIMIT, move || {
        publisher.publish("feed.a", ["1"]).unwrap();
        let client = StdClient::connect_unix(&path).unwrap();
        let mut all = client.subscribe_pattern("feed.*").unwrap();
        let mut exact = client.subscribe("feed.a").unwrap();
        publisher.publish("feed.a", ["2"]).unwrap();
        assert_eq!(exact.recv_timeout(STEP).unwrap().values(), ["2"]);
        assert_eq!(all.recv_timeout(STEP).unwrap().values(), ["1"]);
        assert_eq!(
            all.recv_timeout(STEP).unwrap().values(),
            ["2"],
            "publication 1 sent twice"
        );
        std_assert_quiet(&mut exact);
        std_assert_quiet(&mut all);
    });
}

#[test]
fn std_client_tokio_server_oversized_frames() {
    let server = TokioServer::start(tokio_config().max_frame(64 << 10));
    let path = server.path.clone();
    bounded(LIMIT, move || {
        // A request over the server's limit is answered with a failure; the
        // connection stays usable, before and after it.
        let client = StdClient::connect_unix(&path).unwrap();
        let mut sub = client.subscribe("t").unwrap();
        for _ in 0..3 {
            match client.request("ECHO", [vec![7u8; 100 << 10]]) {
                Err(StdError::Failed { message, .. }) => assert_eq!(message, FRAME_TOO_LARGE),
                other => panic!("expected a failure, got {other:?}"),
            }
            assert_eq!(
                client.request("ECHO", [vec![7u8; 60 << 10]]).unwrap()[0].len(),
                60 << 10
            );
        }
        assert_eq!(client.request("PUBLISH", ["t", "still"]).unwrap(), ["1"]);
        assert_eq!(sub.recv_timeout(STEP).unwrap().values(), ["still"]);

        // A response over the client's limit is a typed error; the connection
        // stays usable.
        let config = {
            let mut config = microsocket_std::ClientConfig::default();
            config.max_frame = 32 << 10;
            config
        };
        let small = StdClient::new(std::os::unix::net::UnixStream::connect(&path).unwrap(), config).unwrap();
        assert!(matches!(small.request("BIG", ["40000"]), Err(StdError::FrameTooLarge)));
        assert_eq!(small.request("BIG", ["30000"]).unwrap()[0].len(), 30000);
        assert!(matches!(
            small.request("BIG", ["1000000"]),
            Err(StdError::FrameTooLarge)
        ));
        assert_eq!(small.request("PING", NONE).unwrap(), ["PONG"]);
    });
}

#[test]
fn std_client_tokio_server_many_threads_share_one_client() {
    let server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = StdClient::connect_unix(&path).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let client = client.clone();
                std::thread::spawn(move || {
                    let topic = format!("thread.{t}");
                    let mut sub = client.subscribe(&topic).unwrap();
                    for i in 0..200 {
                        let args = [format!("{t}/{i}"), String::new(), "\u{0}\u{ff}".repeat(i % 5)];
                        assert_eq!(client.request("ECHO", &args).unwrap(), args);
                        if i % 50 == 0 {
                            assert_eq!(client.request("PUBLISH", [&topic, &i.to_string()]).unwrap(), ["1"]);
                            assert_eq!(sub.recv_timeout(STEP).unwrap().values(), [i.to_string()]);
                        }
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
fn std_client_tokio_server_connection_death_ends_waiters() {
    let mut server = TokioServer::start(tokio_config());
    let path = server.path.clone();
    bounded(LIMIT, move || {
        let client = StdClient::connect_unix(&path).unwrap();
        let holders: Vec<_> = (0..4)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || client.request("HOLD", [i.to_string()]))
            })
            .collect();
        let mut sub = client.subscribe("t").unwrap();
        let receiver = std::thread::spawn(move || sub.recv());
        wait_until("four requests held", || server.app().parked() == 4);
        // Shutting down closes the connection once its grace period is over;
        // every waiter wakes with an error.
        server.stop();
        for h in holders {
            assert!(matches!(h.join().unwrap(), Err(StdError::Closed)));
        }
        assert!(matches!(receiver.join().unwrap(), Err(StdError::Closed)));
        assert!(matches!(client.request("PING", NONE), Err(StdError::Closed)));
        assert!(client.is_closed());
    });
}

// ===========================================================================
// Tokio client against the std server
// ===========================================================================

async fn tokio_next(sub: &mut microsocket_tokio::Subscription) -> microsocket_tokio::Publication {
    within(STEP, "publication", sub.next())
        .await
        .expect("stream ended")
        .expect("publication")
}

async fn tokio_assert_quiet(sub: &mut microsocket_tokio::Subscription) {
    if let Ok(item) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("expected nothing on {:?}, got {item:?}", sub.topic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_requests_with_many_args() {
    let server = StdServer::start(std_config());
    within(LIMIT, "test", async {
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let args = assorted_args(253);
        assert_eq!(client.request("ECHO", &args).await.unwrap().to_vec(), args);
        assert_eq!(client.request("COUNT", &args).await.unwrap(), ["253"]);
        let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
        let mixed: [&[u8]; 4] = [&big, b"", b"\0", b"\xff\xfe"];
        assert_eq!(client.request("ECHO", mixed).await.unwrap(), mixed);
        assert!(client.request("ECHO", NONE).await.unwrap().is_empty());
        assert_eq!(client.request("ECHO", [b""]).await.unwrap(), [b""]);
        assert!(client.request("", NONE).await.unwrap().is_empty());
        assert!(matches!(
            client.request("ECHO", assorted_args(254)).await,
            Err(TokioError::Encode(_))
        ));
        assert_eq!(client.request("PING", NONE).await.unwrap(), ["PONG"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_out_of_order_responses() {
    let server = StdServer::start(std_config());
    within(LIMIT, "test", async {
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        // Queued now, in this order.
        let holds: Vec<_> = (0..5).map(|i| client.request("HOLD", [format!("held {i}")])).collect();
        // Later requests are answered while the earlier ones wait (the server
        // reads in order, so the holds are parked before these are handled).
        for i in 0..600 {
            assert_eq!(client.request("ECHO", [i.to_string()]).await.unwrap(), [i.to_string()]);
        }
        assert_eq!(server.app.parked(), 5);
        assert_eq!(client.request("RELEASE", NONE).await.unwrap(), ["5"]);
        for (i, h) in holds.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), [format!("held {i}")]);
        }
        // Many at once, answered in whatever order the handler finishes them.
        let futures: Vec<_> = (0..200).map(|i| client.request("ECHO", [i.to_string()])).collect();
        for (i, f) in futures.into_iter().enumerate() {
            assert_eq!(f.await.unwrap(), [i.to_string()]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_failures_with_details() {
    let server = StdServer::start(std_config());
    within(LIMIT, "test", async {
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let sent: [&[u8]; 4] = [b"boom", b"first", b"", b"\0\xff"];
        match client.request("FAIL", sent).await {
            Err(TokioError::Failed { message, details }) => {
                assert_eq!(message, "boom");
                assert_eq!(details, sent[1..]);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        match client.request("NOPE", ["x"]).await {
            Err(TokioError::Failed { message, details }) => {
                assert_eq!(message, "no such");
                assert!(details.is_empty());
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        match client.request("FAIL", NONE).await {
            Err(TokioError::Failed { message, details }) => assert!(message.is_empty() && details.is_empty()),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(client.request("PING", NONE).await.unwrap(), ["PONG"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_exact_and_pattern_subscriptions() {
    let server = StdServer::start(std_config());
    let publisher = server.publisher.clone();
    within(LIMIT, "test", async {
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let other = TokioClient::connect_unix(&server.path).await.unwrap();
        let mut exact = client.subscribe("sensor.kitchen.temp").await.unwrap();
        let mut one = client.subscribe_pattern("sensor.*.temp").await.unwrap();
        let mut all = client.subscribe_pattern("sensor.>").await.unwrap();
        assert_eq!(publisher.publish("sensor.kitchen.temp", ["21", ""]).unwrap(), 1);
        assert_eq!(publisher.publish("sensor.hall.temp", ["19"]).unwrap(), 1);
        assert_eq!(other.request("PUBLISH", ["sensor.hall", "on"]).await.unwrap(), ["1"]);
        assert_eq!(publisher.publish("sensor", ["no"]).unwrap(), 0);
        assert_eq!(publisher.publish("other.kitchen.temp", ["no"]).unwrap(), 0);
        assert_eq!(publisher.publish("sensor.kitchen.temp", [&b"\0end"[..]]).unwrap(), 1);

        let p = tokio_next(&mut exact).await;
        assert_eq!(
            (p.topic(), p.values().to_vec()),
            (&b"sensor.kitchen.temp"[..], vec!["21".into(), Bytes::new()])
        );
        assert_eq!(*tokio_next(&mut exact).await.values(), [b"\0end"]);
        let mut topics = Vec::new();
        for _ in 0..3 {
            topics.push(tokio_next(&mut one).await.topic_bytes());
        }
        assert_eq!(
            topics,
            ["sensor.kitchen.temp", "sensor.hall.temp", "sensor.kitchen.temp"]
        );
        let mut topics = Vec::new();
        for _ in 0..4 {
            topics.push(tokio_next(&mut all).await.topic_bytes());
        }
        assert_eq!(
            topics,
            [
                "sensor.kitchen.temp",
                "sensor.hall.temp",
                "sensor.hall",
                "sensor.kitchen.temp"
            ]
        );
        tokio_assert_quiet(&mut exact).await;
        tokio_assert_quiet(&mut all).await;

        // A publication made while handling a request arrives. (That it comes
        // before the response is checked byte for byte in `old_peers.rs`.)
        assert_eq!(client.request("PUBLISH", ["sensor.x.temp", "v"]).await.unwrap(), ["1"]);
        assert_eq!(*tokio_next(&mut one).await.values(), ["v"]);

        assert!(matches!(
            client.subscribe_pattern("a..b").await,
            Err(TokioError::Subscribe(_))
        ));
        assert!(matches!(
            client.subscribe("secret.plans").await,
            Err(TokioError::SubscriptionRefused { .. })
        ));
        assert_eq!(publisher.publish("secret.plans", ["x"]).unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_unsubscribe_stops_delivery() {
    let server = StdServer::start(std_config());
    let publisher = server.publisher.clone();
    within(LIMIT, "test", async {
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let a = client.subscribe("news").await.unwrap();
        let mut b = client.subscribe("news").await.unwrap();
        let p = client.subscribe_pattern("news.>").await.unwrap();
        assert_eq!(publisher.publish("news", ["1"]).unwrap(), 1);
        drop(a);
        client.request("PING", NONE).await.unwrap();
        assert_eq!(publisher.publish("news", ["2"]).unwrap(), 1);
        assert_eq!(*tokio_next(&mut b).await.values(), ["1"]);
        assert_eq!(*tokio_next(&mut b).await.values(), ["2"]);
        drop(b);
        client.request("PING", NONE).await.unwrap();
        assert_eq!(publisher.publish("news", ["3"]).unwrap(), 0);
        assert!(!publisher.has_subscribers("news"));
        assert_eq!(publisher.publish("news.today", ["4"]).unwrap(), 1);
        drop(p);
        client.request("PING", NONE).await.unwrap();
        assert_eq!(publisher.publish("news.today", ["5"]).unwrap(), 0);
        let mut c = client.subscribe("news").await.unwrap();
        assert_eq!(publisher.publish("news", ["6"]).unwrap(), 1);
        assert_eq!(*tokio_next(&mut c).await.values(), ["6"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_buffered_topic_catch_up() {
    let server = StdServer::start({
        let mut config = std_config();
        config.buffers = vec![(b"feed.>".to_vec(), 3)];
        config
    });
    let publisher = server.publisher.clone();
    within(LIMIT, "test", async {
        for i in 1..=5 {
            assert_eq!(publisher.publish("feed.a", [i.to_string()]).unwrap(), 0);
        }
        publisher.publish("feed.b", ["b1"]).unwrap();
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let mut a = client.subscribe("feed.a").await.unwrap();
        publisher.publish("feed.a", ["6"]).unwrap();
        for want in ["3", "4", "5", "6"] {
            assert_eq!(*tokio_next(&mut a).await.values(), [want]);
        }
        let mut all = client.subscribe_pattern("feed.*").await.unwrap();
        // Only feed.b catches up: feed.a already reaches this connection.
        let mut by_topic: BTreeMap<Bytes, Vec<Bytes>> = BTreeMap::new();
        for _ in 0..1 {
            let p = tokio_next(&mut all).await;
            by_topic.entry(p.topic_bytes()).or_default().extend(p.values().iter());
        }
        assert_eq!(by_topic.len(), 1);
        assert_eq!(by_topic[&b"feed.b"[..]], ["b1"]);
        tokio_assert_quiet(&mut all).await;
        tokio_assert_quiet(&mut a).await;
        drop(all);
        client.request("PING", NONE).await.unwrap();

        let n = 500;
        let p = publisher.clone();
        let feeder = std::thread::spawn(move || {
            for i in 0..n {
                p.publish("feed.c", [i.to_string()]).unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut c = client.subscribe("feed.c").await.unwrap();
        let first = tokio_next(&mut c).await.values().first().unwrap();
        let first: usize = std::str::from_utf8(&first).unwrap().parse().unwrap();
        for want in first + 1..n {
            assert_eq!(*tokio_next(&mut c).await.values(), [want.to_string()]);
        }
        feeder.join().unwrap();
        tokio_assert_quiet(&mut c).await;
    })
    .await;
}

/// See `std_client_tokio_server_overlapping_subscription_replays_no_backlog`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_overlapping_subscription_replays_no_backlog() {
    let server = StdServer::start({
        let mut config = std_config();
        config.buffers = vec![(b"feed.>".to_vec(), 3)];
        config
    });
    let publisher = server.publisher.clone();
    within(LIMIT, "test", async {
        publisher.publish("feed.a", ["1"]).unwrap();
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let mut all = client.subscribe_pattern("feed.*").await.unwrap();
        let mut exact = client.subscribe("feed.a").await.unwrap();
        publisher.publish("feed.a", ["2"]).unwrap();
        assert_eq!(*tokio_next(&mut exact).await.values(), ["2"]);
        assert_eq!(*tokio_next(&mut all).await.values(), ["1"]);
        assert_eq!(*tokio_next(&mut all).await.values(), ["2"], "publication 1 sent twice");
        tokio_assert_quiet(&mut exact).await;
        tokio_assert_quiet(&mut all).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_oversized_frames() {
    let server = StdServer::start({
        let mut config = std_config();
        config.max_frame = 64 << 10;
        config
    });
    within(LIMIT, "test", async {
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let mut sub = client.subscribe("t").await.unwrap();
        for _ in 0..3 {
            match client.request("ECHO", [vec![7u8; 100 << 10]]).await {
                Err(TokioError::Failed { message, .. }) => assert_eq!(message, FRAME_TOO_LARGE),
                other => panic!("expected a failure, got {other:?}"),
            }
            let echoed = client.request("ECHO", [vec![7u8; 60 << 10]]).await.unwrap();
            assert_eq!(echoed.first().unwrap().len(), 60 << 10);
        }
        assert_eq!(client.request("PUBLISH", ["t", "still"]).await.unwrap(), ["1"]);
        assert_eq!(*tokio_next(&mut sub).await.values(), ["still"]);

        let small = TokioClient::builder()
            .max_frame(32 << 10)
            .connect_unix(&server.path)
            .await
            .unwrap();
        assert!(matches!(
            small.request("BIG", ["40000"]).await,
            Err(TokioError::FrameTooLarge)
        ));
        assert_eq!(
            small.request("BIG", ["30000"]).await.unwrap().first().unwrap().len(),
            30000
        );
        assert!(matches!(
            small.request("BIG", ["1000000"]).await,
            Err(TokioError::FrameTooLarge)
        ));
        assert_eq!(small.request("PING", NONE).await.unwrap(), ["PONG"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_many_tasks_share_one_client() {
    let server = StdServer::start(std_config());
    within(LIMIT, "test", async {
        let client = TokioClient::connect_unix(&server.path).await.unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let client = client.clone();
                tokio::spawn(async move {
                    let topic = format!("task.{t}");
                    let mut sub = client.subscribe(&topic).await.unwrap();
                    for i in 0..100 {
                        let args = [format!("{t}/{i}"), String::new(), "\u{0}\u{ff}".repeat(i % 5)];
                        assert_eq!(client.request("ECHO", &args).await.unwrap(), args);
                        if i % 25 == 0 {
                            let n = client.request("PUBLISH", [&topic, &i.to_string()]).await.unwrap();
                            assert_eq!(n, ["1"]);
                            assert_eq!(*tokio_next(&mut sub).await.values(), [i.to_string()]);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Threads of a blocking program may share a Tokio client too, through a
        // runtime handle.
        let handle = tokio::runtime::Handle::current();
        let blocking = client.clone();
        let got = tokio::task::spawn_blocking(move || handle.block_on(blocking.request("PING", NONE)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, ["PONG"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_std_server_connection_death_ends_waiters() {
    let mut server = StdServer::start(std_config());
    let app = server.app.clone();
    let path = server.path.clone();
    within(LIMIT, "test", async move {
        let client = TokioClient::connect_unix(&path).await.unwrap();
        let holds: Vec<_> = (0..4).map(|i| client.request("HOLD", [i.to_string()])).collect();
        let mut sub = client.subscribe("t").await.unwrap();
        assert_eq!(app.parked(), 4); // the subscribe's barrier came after them
        let stopper = tokio::task::spawn_blocking(move || server.stop());
        for h in holds {
            let r = within(STEP, "held request", h).await;
            assert!(matches!(r, Err(TokioError::Closed)), "{r:?}");
        }
        let item = within(STEP, "subscription end", sub.next()).await;
        assert!(matches!(item, Some(Err(TokioError::Closed))), "{item:?}");
        assert!(within(STEP, "stream end", sub.next()).await.is_none());
        assert!(matches!(client.request("PING", NONE).await, Err(TokioError::Closed)));
        assert!(!client.is_connected());
        stopper.await.unwrap();
    })
    .await;
}
