//! A server's tap: publications read in its own process, beside the clients
//! subscribed over sockets.

use std::time::Duration;

use futures_util::StreamExt;
use microsocket_tokio::{handler_fn, Client, Error, Failure, Reply, Request, Server, ServerConfig, Tap, TapError};

fn server() -> Server<impl microsocket_tokio::Handler> {
    Server::new(handler_fn(|_: Request| async { Err::<Reply, _>(Failure::new("none")) }))
}

/// The next item of `tap`, within a few seconds.
async fn next(tap: &mut Tap) -> Option<Result<microsocket_tokio::Publication, Error>> {
    tokio::time::timeout(Duration::from_secs(5), tap.next())
        .await
        .expect("the tap gave nothing within 5 s")
}

#[tokio::test]
async fn a_tap_gets_what_its_patterns_match_in_order_with_catch_up_first() {
    let server = server();
    server.publisher().set_buffer("state", 2).unwrap();
    server.publish("state", ["old"]).unwrap();
    server.publish("state", ["new"]).unwrap();
    let mut tap = server.tap(["state", "sensors.*.temp", "log.>"], 1 << 20).unwrap();
    for i in 0..1000 {
        server.publish("sensors.kitchen.temp", [i.to_string()]).unwrap();
        server.publish("sensors.kitchen.humidity", ["not matched"]).unwrap();
        server.publish("log.a.b", ["x", "y"]).unwrap();
    }
    server.publish("log", ["not matched either"]).unwrap();
    for old in ["old", "new"] {
        let p = next(&mut tap).await.unwrap().unwrap();
        assert_eq!((p.topic(), p.values().slice(0)), (&b"state"[..], Some(old.as_bytes())));
    }
    for i in 0..1000 {
        let p = next(&mut tap).await.unwrap().unwrap();
        assert_eq!(p.topic(), b"sensors.kitchen.temp");
        assert_eq!(*p.values(), [i.to_string()]);
        let p = next(&mut tap).await.unwrap().unwrap();
        assert_eq!((p.topic(), p.values().len()), (&b"log.a.b"[..], 2));
    }
    assert!(tokio::time::timeout(Duration::from_millis(50), tap.next())
        .await
        .is_err());
}

#[tokio::test]
async fn large_and_small_publications_arrive_whole() {
    let server = server();
    let mut tap = server.tap(["blob"], 64 << 20).unwrap();
    let sizes = [0, 1, 500, 513, 40_000, 1 << 20, 3];
    for (i, &size) in sizes.iter().enumerate() {
        server.publish("blob", [vec![i as u8; size]]).unwrap();
    }
    for (i, &size) in sizes.iter().enumerate() {
        let p = next(&mut tap).await.unwrap().unwrap();
        assert_eq!(p.values().slice(0).unwrap(), &vec![i as u8; size][..]);
    }
}

#[tokio::test]
async fn a_tap_that_is_not_read_drops_past_its_bound_and_says_how_many() {
    let server = server();
    let mut tap = server.tap(["t"], 1000).unwrap();
    // A client subscribed beside it misses nothing.
    let dir = tempfile::tempdir().unwrap();
    server.listen_unix(dir.path().join("s.sock")).unwrap();
    let client = Client::connect_unix(dir.path().join("s.sock")).await.unwrap();
    let mut sub = client.subscribe("t").await.unwrap();
    for i in 0..100u32 {
        server.publish("t", [format!("{i:0>90}")]).unwrap();
    }
    for i in 0..100u32 {
        let p = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(*p.values(), [format!("{i:0>90}")]);
    }
    let mut got = Vec::new();
    let mut missed = 0;
    while got.len() as u64 + missed < 100 {
        match next(&mut tap).await.unwrap() {
            Ok(p) => got.push(String::from_utf8(p.values().slice(0).unwrap().to_vec()).unwrap()),
            Err(Error::Lagged { missed: n }) => missed += n,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(missed > 0 && got.len() >= 9, "{} got, {missed} missed", got.len());
    assert_eq!(missed, tap.dropped());
    assert!(server.stats().publications_dropped >= missed);
    // What was queued before the bound is the start, in order.
    let first: Vec<_> = (0..got.len()).map(|i| format!("{i:0>90}")).collect();
    assert_eq!(got, first);
}

#[tokio::test]
async fn a_dropped_tap_unsubscribes_and_a_shut_down_server_ends_it() {
    let server = server();
    let tap = server.tap(["a.>"], 1 << 20).unwrap();
    assert_eq!(server.publish("a.b", ["1"]).unwrap(), 1);
    drop(tap);
    assert_eq!(server.publish("a.b", ["2"]).unwrap(), 0);
    assert_eq!(server.stats().connections, 0);

    let mut tap = server.tap(["a.>"], 1 << 20).unwrap();
    server.publish("a.b", ["last"]).unwrap();
    server.shutdown().await;
    let p = next(&mut tap).await.unwrap().unwrap();
    assert_eq!(*p.values(), ["last"]);
    assert!(next(&mut tap).await.is_none());
    assert!(matches!(server.tap(["a"], 1), Err(TapError::ShuttingDown)));
}

#[tokio::test]
async fn an_invalid_pattern_is_refused() {
    let server = Server::with_config(
        handler_fn(|_: Request| async { Err::<Reply, _>(Failure::new("none")) }),
        ServerConfig::default(),
    );
    for bad in ["a..b", "a.>.b", ""] {
        assert!(
            matches!(server.tap(["ok", bad], 1 << 20), Err(TapError::Pattern(_))),
            "{bad:?} was taken"
        );
    }
    assert_eq!(server.stats().connections, 0);
}
