//! The semantic suite: every guarantee of `docs/reliability.md` that both
//! adapters make, tested once and run against each server (std, Tokio) with
//! each client (std, Tokio). A difference between the adapters is a failing
//! test here.
//!
//! Each guarantee is a function of a [`Bus`] (a server of either kind) and a
//! [`Peer`] maker (a client of either kind, used through one blocking face);
//! the `semantic!` macro runs it over the four pairs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bounded, tokio_config, wait_until, StdServer, TokioServer, LIMIT, QUIET, STEP};
use microsocket_host::{
    BufferLimits, ClientConfig, Error, MemoryLimits, Publication, ReconnectPolicy, ServerConfig, SlowConsumer, Stats,
    Values,
};

// ---------------------------------------------------------------------------
// One face for both servers and both clients
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum ServerKind {
    Std,
    Tokio,
}

#[derive(Debug, Clone, Copy)]
enum ClientKind {
    Std,
    Tokio,
}

/// A running server of either kind, serving the common test application.
enum Bus {
    Std(StdServer),
    Tokio(TokioServer),
}

impl Bus {
    fn start(kind: ServerKind, config: ServerConfig) -> Self {
        match kind {
            ServerKind::Std => Self::Std(StdServer::start(config)),
            ServerKind::Tokio => Self::Tokio(TokioServer::start(config)),
        }
    }

    fn start_at(kind: ServerKind, config: ServerConfig, path: &std::path::Path) -> Self {
        match kind {
            ServerKind::Std => Self::Std(StdServer::start_at(path, config)),
            ServerKind::Tokio => Self::Tokio(TokioServer::start_at(path, config)),
        }
    }

    fn path(&self) -> &std::path::Path {
        match self {
            Self::Std(s) => &s.path,
            Self::Tokio(s) => &s.path,
        }
    }

    fn publish(&self, topic: &str, values: &[&str]) -> usize {
        match self {
            Self::Std(s) => s.publisher.publish(topic, values).unwrap(),
            Self::Tokio(s) => s.server.publish(topic, values).unwrap(),
        }
    }

    fn publish_batch(&self, batch: &[(&str, &str)]) -> usize {
        let items = batch.iter().map(|(topic, value)| (topic, [value]));
        match self {
            Self::Std(s) => s.publisher.publish_batch(items).unwrap(),
            Self::Tokio(s) => s.server.publisher().publish_batch(items).unwrap(),
        }
    }

    fn set_buffer(&self, selector: &str, depth: usize) {
        match self {
            Self::Std(s) => s.publisher.set_buffer(selector, depth).unwrap(),
            Self::Tokio(s) => s.server.set_buffer(selector, depth).unwrap(),
        }
    }

    /// Answers every parked HOLD request; returns how many.
    fn release(&self) -> usize {
        match self {
            Self::Std(s) => s.app.release(),
            Self::Tokio(s) => s.app().release(),
        }
    }

    /// What the server's handler observed: connections and subscription changes.
    fn observed(&self) -> Vec<String> {
        match self {
            Self::Std(s) => s.app.observed.lock().unwrap().clone(),
            Self::Tokio(s) => s.app().observed.lock().unwrap().clone(),
        }
    }

    fn stats(&self) -> Stats {
        match self {
            Self::Std(s) => s.publisher.stats(),
            Self::Tokio(s) => s.server.stats(),
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Std(s) => s.stop(),
            Self::Tokio(s) => s.stop(),
        }
    }

    /// A client of `kind` connected to this server.
    fn connect(&self, kind: ClientKind, config: ClientConfig) -> Peer {
        match kind {
            ClientKind::Std => Peer::Std(microsocket_std::Client::connect_unix_with(self.path(), config).unwrap()),
            ClientKind::Tokio => {
                let rt = Arc::new(
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap(),
                );
                // The driver task runs on a thread of its own, so a test thread
                // blocking on a request never starves it.
                let (tx, rx) = std::sync::mpsc::channel();
                let path = self.path().to_path_buf();
                let runner = rt.clone();
                std::thread::spawn(move || {
                    runner.block_on(async move {
                        let client = microsocket_tokio::ClientBuilder::with_config(config)
                            .connect_unix(path)
                            .await
                            .unwrap();
                        tx.send(client).unwrap();
                        std::future::pending::<()>().await;
                    });
                });
                let client = rx.recv_timeout(STEP).unwrap();
                Peer::Tokio(client)
            }
        }
    }
}

/// A client of either kind, used through blocking calls.
enum Peer {
    Std(microsocket_std::Client),
    Tokio(microsocket_tokio::Client),
}

/// Runs a future of the Tokio client to completion on a throwaway runtime
/// (the client's driver runs on its own thread).
fn wait<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

impl Peer {
    fn close(&self) {
        match self {
            Self::Std(c) => c.close(),
            Self::Tokio(c) => c.close(),
        }
    }

    fn request(&self, command: &str, args: &[&[u8]]) -> Result<Values, Error> {
        match self {
            Self::Std(c) => c.request(command, args),
            Self::Tokio(c) => wait(c.request(command, args)),
        }
    }

    /// One receiver for several topics and patterns.
    fn subscribe_all(&self, topics: &[&str], patterns: &[&str]) -> Result<Sub, Error> {
        match self {
            Self::Std(c) => {
                let mut builder = c.subscriber();
                for t in topics {
                    builder = builder.topic(t);
                }
                for p in patterns {
                    builder = builder.pattern(p);
                }
                builder.subscribe().map(Sub::Std)
            }
            Self::Tokio(c) => {
                let mut builder = c.subscriber();
                for t in topics {
                    builder = builder.topic(t);
                }
                for p in patterns {
                    builder = builder.pattern(p);
                }
                wait(builder.subscribe()).map(Sub::Tokio)
            }
        }
    }

    fn subscribe(&self, topic: &str, pattern: bool) -> Result<Sub, Error> {
        match self {
            Self::Std(c) => if pattern {
                c.subscribe_pattern(topic)
            } else {
                c.subscribe(topic)
            }
            .map(Sub::Std),
            Self::Tokio(c) => wait(async {
                if pattern {
                    c.subscribe_pattern(topic).await
                } else {
                    c.subscribe(topic).await
                }
            })
            .map(Sub::Tokio),
        }
    }
}

/// A subscription of either client.
enum Sub {
    Std(microsocket_std::Subscription),
    Tokio(microsocket_tokio::Subscription),
}

impl Sub {
    /// The next publication, an error, or `None` if nothing came within
    /// `timeout`. Both clients hand out the same `Publication`.
    fn next(&mut self, timeout: Duration) -> Option<Result<Publication, Error>> {
        match self {
            Self::Std(s) => match s.recv_timeout(timeout) {
                Err(Error::TimedOut) => None,
                r => Some(r),
            },
            Self::Tokio(s) => wait(async { tokio::time::timeout(timeout, s.next()).await })
                .ok()
                .map(|item| item.unwrap_or(Err(Error::Closed))),
        }
    }

    /// The next `n` items, read as fast as the client allows (for the Tokio
    /// client, in one task), each within [`STEP`].
    fn read(&mut self, n: usize) -> Vec<Result<Publication, Error>> {
        match self {
            Self::Std(s) => (0..n).map(|_| s.recv_timeout(STEP)).collect(),
            Self::Tokio(s) => wait(async {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let item = tokio::time::timeout(STEP, s.next()).await;
                    items.push(item.ok().flatten().unwrap_or(Err(Error::TimedOut)));
                }
                items
            }),
        }
    }

    /// Adds a topic or pattern to this receiver.
    fn add(&mut self, topic: &str, pattern: bool) -> Result<(), Error> {
        match (self, pattern) {
            (Self::Std(s), false) => s.add_topic(topic),
            (Self::Std(s), true) => s.add_pattern(topic),
            (Self::Tokio(s), false) => wait(s.add_topic(topic)),
            (Self::Tokio(s), true) => wait(s.add_pattern(topic)),
        }
    }

    /// Removes a topic or pattern from this receiver.
    fn remove(&mut self, topic: &str) -> usize {
        match self {
            Self::Std(s) => s.remove(topic),
            Self::Tokio(s) => s.remove(topic),
        }
    }

    /// How many of this receiver's subscriptions `p` matches.
    fn matching(&self, p: &Publication) -> usize {
        match self {
            Self::Std(s) => s.matching(p).count(),
            Self::Tokio(s) => s.matching(p).count(),
        }
    }

    /// The next publication's values, which must come within [`STEP`].
    fn values(&mut self) -> Vec<String> {
        let publication = self.next(STEP).expect("a publication within STEP").unwrap();
        text(publication.values())
    }
}

fn text(values: &Values) -> Vec<String> {
    values
        .iter()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

/// Runs `check` over the four pairs of server and client kinds, each within
/// [`LIMIT`].
macro_rules! semantic {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[test]
                fn std_server_std_client() {
                    bounded(LIMIT, || super::$name(ServerKind::Std, ClientKind::Std));
                }

                #[test]
                fn std_server_tokio_client() {
                    bounded(LIMIT, || super::$name(ServerKind::Std, ClientKind::Tokio));
                }

                #[test]
                fn tokio_server_std_client() {
                    bounded(LIMIT, || super::$name(ServerKind::Tokio, ClientKind::Std));
                }

                #[test]
                fn tokio_server_tokio_client() {
                    bounded(LIMIT, || super::$name(ServerKind::Tokio, ClientKind::Tokio));
                }
            }
        )*
    };
}

semantic!(
    answers_and_failures,
    requests_counts_what_the_handler_got,
    a_publication_reaches_a_connection_once,
    unsubscribing_stops_delivery,
    buffered_topics_catch_up_without_repeats,
    refused_subscriptions_receive_nothing_and_are_counted,
    a_slow_subscriber_is_told_what_it_missed,
    slow_consumer_disconnect_closes_only_that_connection,
    a_publication_larger_than_the_queue_bound_still_arrives,
    large_answers_arrive_whole_beside_publications,
    oversized_requests_fail_and_the_connection_stays,
    connections_past_the_limit_are_refused_and_counted,
    shutdown_answers_requests_in_flight,
    a_panicking_handler_fails_only_its_request,
    publications_made_while_handling_leave_before_the_answer,
    one_receiver_gets_each_publication_once_in_send_order,
    a_reader_that_keeps_up_never_lags,
    a_peer_that_hangs_up_is_released_at_once,
    publications_queued_before_a_barrier_arrive_before_its_answer,
    peer_credentials_reach_the_handler,
    a_reconnecting_client_reports_the_gap_and_confirms_each_subscription,
    the_handler_observes_connections_and_subscriptions,
    buffered_topics_stay_within_their_caps,
    a_server_that_stops_answering_is_reported_and_recovered_from,
    a_clients_subscriptions_share_one_byte_bound,
    the_memory_budget_sheds_load_and_recovers,
    a_batch_publishes_as_its_publications_one_by_one,
    server_commands_are_answered_by_the_server,
    a_monitor_sees_requests_answers_and_publications_in_order,
    a_monitor_that_does_not_read_never_slows_the_bus,
);

fn config() -> ServerConfig {
    tokio_config()
}

// ---------------------------------------------------------------------------
// The guarantees
// ---------------------------------------------------------------------------

/// Answers carry the handler's values; failures its message and details.
fn answers_and_failures(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    assert_eq!(
        text(&peer.request("ECHO", &[b"a", b"", b"c c"]).unwrap()),
        ["a", "", "c c"]
    );
    match peer.request("FAIL", &[b"out of paper", b"tray 2"]) {
        Err(Error::Failed { message, details }) => {
            assert_eq!(message, "out of paper");
            assert_eq!(details, ["tray 2"]);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(peer.request("NOPE", &[]), Err(Error::Failed { .. })));
    assert_eq!(text(&peer.request("PING", &[]).unwrap()), ["PONG"]);
}

/// `Stats::requests` counts requests handed to the handler, not those the
/// server answered itself (the empty command, a request too large).
fn requests_counts_what_the_handler_got(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config().max_frame(1024));
    let peer = bus.connect(client, ClientConfig::default());
    for _ in 0..3 {
        peer.request("PING", &[]).unwrap();
    }
    // A subscription's barrier is the empty command, answered by the server.
    let _sub = peer.subscribe("t", false).unwrap();
    assert!(peer.request("ECHO", &[&[0u8; 2048]]).is_err());
    peer.request("PING", &[]).unwrap();
    assert_eq!(bus.stats().requests, 4);
}

/// Commands starting with `$` are the server's own: `$STATS` answers its
/// counters as name, value pairs to a peer of the server's user, other `$`
/// commands fail, the handler never sees them, and a server set to refuse
/// them refuses them.
fn server_commands_are_answered_by_the_server(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    peer.request("PING", &[]).unwrap();
    let values = text(&peer.request("$STATS", &[]).unwrap());
    let pairs: std::collections::HashMap<&str, &str> =
        values.chunks(2).map(|p| (p[0].as_str(), p[1].as_str())).collect();
    assert_eq!(pairs["requests"], "1", "{values:?}");
    assert_eq!(pairs["connections"], "1", "{values:?}");
    assert!(pairs.contains_key("memory_limit") && pairs.contains_key("deliveries"));
    match peer.request("$NOPE", &[]) {
        Err(Error::Failed { message, .. }) => assert_eq!(&message[..], microsocket_host::NO_SUCH_SERVER_COMMAND),
        other => panic!("{other:?}"),
    }
    let _sub = peer.subscribe("watched", false).unwrap();
    let connections = text(&peer.request("$CONNECTIONS", &[]).unwrap());
    let uid = microsocket_socket::own_uid();
    assert!(
        connections
            .iter()
            .any(|c| c.contains(&format!(" uid={uid} ")) && c.contains(" subscriptions=1 ")),
        "{connections:?}"
    );
    let _pattern = peer.subscribe("watched.>", true).unwrap();
    let topics = text(&peer.request("$TOPICS", &[]).unwrap());
    assert_eq!(topics, ["topic", "watched", "1", "pattern", "watched.>", "1"]);
    assert_eq!(bus.stats().requests, 1, "the handler saw no server command");
    let closed = Bus::start(server, config().server_commands(microsocket_host::ServerCommands::Off));
    let outsider = closed.connect(client, ClientConfig::default());
    match outsider.request("$STATS", &[]) {
        Err(Error::Failed { message, .. }) => assert_eq!(&message[..], microsocket_host::NOT_PERMITTED),
        other => panic!("{other:?}"),
    }
}

/// A publication matching several subscriptions of one connection is sent to
/// it once, and counted as one delivery.
fn a_publication_reaches_a_connection_once(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    let mut exact = peer.subscribe("sensor.kitchen.temp", false).unwrap();
    let mut star = peer.subscribe("sensor.*.temp", true).unwrap();
    let mut tail = peer.subscribe("sensor.>", true).unwrap();
    assert_eq!(bus.publish("sensor.kitchen.temp", &["21.5"]), 1);
    for sub in [&mut exact, &mut star, &mut tail] {
        assert_eq!(sub.values(), ["21.5"]);
    }
    assert_eq!(bus.stats().deliveries, 1);
    assert_eq!(bus.publish("sensor.hall.humidity", &["40"]), 1);
    assert_eq!(tail.values(), ["40"]);
    assert!(exact.next(QUIET).is_none() && star.next(QUIET).is_none());
}

/// A batch publish delivers as its publications published one by one would:
/// to each subscribed connection once per publication, in batch order, kept
/// for buffered topics, counted.
fn a_batch_publishes_as_its_publications_one_by_one(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    bus.set_buffer("log.>", 10);
    let peer = bus.connect(client, ClientConfig::default());
    let mut sensors = peer.subscribe("sensor.>", true).unwrap();
    let mut kitchen = peer.subscribe("sensor.kitchen", false).unwrap();
    let other = bus.connect(client, ClientConfig::default());
    let mut logs = other.subscribe("log.>", true).unwrap();
    let before = bus.stats();
    let batch: Vec<(String, String)> = (0..300)
        .map(|i| {
            let topic = match i % 3 {
                0 => "sensor.kitchen",
                1 => "log.app",
                _ => "nobody.listens",
            };
            (topic.to_owned(), i.to_string())
        })
        .collect();
    let batch: Vec<(&str, &str)> = batch.iter().map(|(t, v)| (t.as_str(), v.as_str())).collect();
    assert_eq!(bus.publish_batch(&batch), 200);
    let want = |r: usize| {
        (0..300)
            .filter(|i| i % 3 == r)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(got_n(&mut sensors, 100), want(0));
    assert_eq!(got_n(&mut kitchen, 100), want(0));
    assert_eq!(got_n(&mut logs, 100), want(1));
    let after = bus.stats();
    assert_eq!(after.publications - before.publications, 300);
    assert_eq!(after.deliveries - before.deliveries, 200);
    // The buffered topic kept the last ten, as one by one.
    let late = bus.connect(client, ClientConfig::default());
    let mut late_logs = late.subscribe("log.>", true).unwrap();
    assert_eq!(got_n(&mut late_logs, 10), want(1)[90..]);
}

fn got_n(sub: &mut Sub, n: usize) -> Vec<String> {
    (0..n).flat_map(|_| sub.values()).collect()
}

/// Dropping a subscription unsubscribes: nothing more is sent.
fn unsubscribing_stops_delivery(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    let sub = peer.subscribe("news", false).unwrap();
    assert_eq!(bus.publish("news", &["one"]), 1);
    drop(sub);
    // The `-` is on its way; a request after it proves the server read it.
    peer.request("PING", &[]).unwrap();
    wait_until("unsubscribed", || bus.publish("news", &["two"]) == 0);
}

/// A subscriber to a buffered topic gets its backlog, then live publications,
/// none missed and none repeated.
fn buffered_topics_catch_up_without_repeats(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    bus.set_buffer("log.>", 3);
    for i in 0..5 {
        bus.publish("log.app", &[&i.to_string()]);
    }
    let peer = bus.connect(client, ClientConfig::default());
    let mut sub = peer.subscribe("log.>", true).unwrap();
    bus.publish("log.app", &["5"]);
    let got: Vec<String> = (0..4).flat_map(|_| sub.values()).collect();
    assert_eq!(got, ["2", "3", "4", "5"]);
    assert!(sub.next(QUIET).is_none());
}

/// The subscription hook's refusal reaches the subscriber (the barrier after
/// its `+` is answered `#` "subscription refused"): `subscribe` fails, nothing
/// is delivered, the server counts it, and the connection carries on.
fn refused_subscriptions_receive_nothing_and_are_counted(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    match peer.subscribe("secret.plans", false) {
        Err(Error::SubscriptionRefused { reason }) => assert_eq!(&reason[..], microsocket_core::REFUSED_NOT_PERMITTED),
        Err(e) => panic!("expected a refusal, got {e:?}"),
        Ok(_) => panic!("expected a refusal, got a subscription"),
    }
    assert_eq!(bus.publish("secret.plans", &["x"]), 0);
    assert_eq!(bus.stats().subscriptions_refused, 1);
    let mut allowed = peer.subscribe("public", false).unwrap();
    assert_eq!(bus.publish("public", &["y"]), 1);
    assert_eq!(allowed.values(), ["y"]);
}

/// A subscription whose queue is full drops later publications and reports
/// how many, in order, then carries on.
fn a_slow_subscriber_is_told_what_it_missed(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default().subscription_capacity(4));
    let mut sub = peer.subscribe("tick", false).unwrap();
    for i in 0..20 {
        // Published by a request, so all twenty are queued before its answer.
        peer.request("PUBLISH", &[b"tick", i.to_string().as_bytes()]).unwrap();
    }
    let got: Vec<String> = (0..4).flat_map(|_| sub.values()).collect();
    assert_eq!(got, ["0", "1", "2", "3"]);
    match sub.next(STEP) {
        Some(Err(Error::Lagged { missed })) => assert_eq!(missed, 16),
        other => panic!("expected a lag report, got {other:?}"),
    }
    // A reader that has caught up is not behind: nothing more is dropped.
    for i in 20..24 {
        peer.request("PUBLISH", &[b"tick", i.to_string().as_bytes()]).unwrap();
    }
    let got: Vec<String> = (0..4).flat_map(|_| sub.values()).collect();
    assert_eq!(got, ["20", "21", "22", "23"]);
}

/// Under `SlowConsumer::Disconnect`, a subscriber that does not read is
/// closed; other connections carry on.
fn slow_consumer_disconnect_closes_only_that_connection(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(
        server,
        config()
            .max_queued_bytes(64 << 10)
            .slow_consumer(SlowConsumer::Disconnect),
    );
    // A raw subscriber that never reads.
    let mut idle = std::os::unix::net::UnixStream::connect(bus.path()).unwrap();
    common::write_frame(&mut idle, b'+', &[b"flood"]).unwrap();
    let other = bus.connect(client, ClientConfig::default());
    wait_until("subscribed", || bus.publish("flood", &["x"]) == 1);
    let big = "y".repeat(16 << 10);
    wait_until("disconnected", || {
        bus.publish("flood", &[&big]);
        bus.stats().slow_consumers_disconnected == 1
    });
    assert_eq!(text(&other.request("PING", &[]).unwrap()), ["PONG"]);
    assert!(bus.stats().publications_dropped >= 1);
}

/// A connection with nothing queued takes one publication whatever its size,
/// so a publication larger than `max_queued_bytes` reaches a reader that keeps up.
fn a_publication_larger_than_the_queue_bound_still_arrives(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config().max_queued_bytes(64 << 10));
    let peer = bus.connect(client, ClientConfig::default());
    let mut sub = peer.subscribe("big", false).unwrap();
    let big = "z".repeat(1 << 20);
    // The subscription's answer may still count as queued for a moment after
    // the client has read it.
    wait_until("nothing queued", || bus.stats().queued_bytes == 0);
    assert_eq!(bus.publish("big", &[&big]), 1);
    assert_eq!(sub.values()[0].len(), 1 << 20);
    assert_eq!(bus.stats().publications_dropped, 0);
}

/// Answers with values from 1 KiB to 300 KiB (more than a socket takes at
/// once), between publications to the same connection, arrive whole, and
/// the publications arrive whole and in order.
fn large_answers_arrive_whole_beside_publications(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    let mut sub = peer.subscribe("feed", false).unwrap();
    let sizes = [1 << 10, 16 << 10, 100 << 10, 300 << 10, 17 << 10];
    for (i, size) in sizes.iter().cycle().take(10).enumerate() {
        assert_eq!(bus.publish("feed", &[&i.to_string()]), 1);
        let value: Vec<u8> = (0..*size).map(|b| b'a' + ((b * 7 + i) % 26) as u8).collect();
        let answer = peer
            .request("ECHO", &[i.to_string().as_bytes(), &value, b"end"])
            .unwrap();
        assert_eq!(
            text(&answer),
            [i.to_string(), String::from_utf8(value).unwrap(), "end".into()]
        );
    }
    for i in 0..10 {
        assert_eq!(sub.values(), [i.to_string()]);
    }
}

/// A request larger than `max_frame` is failed with the server's message,
/// and the connection carries on.
fn oversized_requests_fail_and_the_connection_stays(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config().max_frame(4096));
    let peer = bus.connect(client, ClientConfig::default());
    match peer.request("ECHO", &[&[7u8; 10_000]]) {
        Err(Error::Failed { message, .. }) => assert_eq!(&message[..], microsocket_core::FRAME_TOO_LARGE),
        other => panic!("expected frame too large, got {other:?}"),
    }
    assert_eq!(text(&peer.request("PING", &[]).unwrap()), ["PONG"]);
}

/// Connections past `max_connections` are closed at once and counted; those
/// within are served.
fn connections_past_the_limit_are_refused_and_counted(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config().max_connections(2));
    let a = bus.connect(client, ClientConfig::default());
    let b = bus.connect(client, ClientConfig::default());
    a.request("PING", &[]).unwrap();
    b.request("PING", &[]).unwrap();
    let c = bus.connect(client, ClientConfig::default().request_timeout(Some(STEP)));
    assert!(matches!(c.request("PING", &[]), Err(Error::Closed | Error::Io(_))));
    let stats = bus.stats();
    assert_eq!((stats.connections, stats.connections_refused), (2, 1));
}

/// Shutdown stops accepting and removes the socket file at once, then answers
/// what is in flight within its grace.
fn shutdown_answers_requests_in_flight(server: ServerKind, client: ClientKind) {
    let mut bus = Bus::start(server, config().shutdown_timeout(STEP));
    let peer = Arc::new(bus.connect(client, ClientConfig::default()));
    let held = {
        let peer = peer.clone();
        std::thread::spawn(move || peer.request("HOLD", &[b"kept"]))
    };
    let parked = || match &bus {
        Bus::Std(s) => s.app.parked(),
        Bus::Tokio(s) => s.app().parked(),
    };
    wait_until("held", || parked() == 1);
    let path = bus.path().to_path_buf();
    let release: Box<dyn Fn() -> usize + Send + Sync> = match &bus {
        Bus::Std(s) => {
            let app = s.app.clone();
            Box::new(move || app.release())
        }
        Bus::Tokio(s) => {
            let server = s.server.clone();
            Box::new(move || server.handler().release())
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Shutdown first stops accepting and removes the socket file, while
            // the request in flight still has its grace...
            wait_until("socket file removed", || !path.exists());
            assert!(std::os::unix::net::UnixStream::connect(&path).is_err());
            // ...and is answered although shutdown has begun.
            assert_eq!(release(), 1);
        });
        bus.stop();
    });
    assert_eq!(text(&held.join().unwrap().unwrap()), ["kept"]);
    assert!(!path.exists());
}

/// A handler that panics fails its own request with the server's message; the
/// connection, its other requests and its subscriptions carry on.
fn a_panicking_handler_fails_only_its_request(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = Arc::new(bus.connect(client, ClientConfig::default()));
    let mut sub = peer.subscribe("news", false).unwrap();
    let held = {
        let peer = peer.clone();
        std::thread::spawn(move || peer.request("HOLD", &[b"still here"]))
    };
    wait_until("held", || match &bus {
        Bus::Std(s) => s.app.parked() == 1,
        Bus::Tokio(s) => s.app().parked() == 1,
    });
    match peer.request("PANIC", &[]) {
        Err(Error::Failed { message, .. }) => assert_eq!(&message[..], microsocket_core::HANDLER_PANICKED),
        other => panic!("expected the handler's panic as a failure, got {other:?}"),
    }
    assert_eq!(text(&peer.request("PING", &[]).unwrap()), ["PONG"]);
    assert_eq!(peer.request("RELEASE", &[]).map(|v| text(&v)).unwrap(), ["1"]);
    assert_eq!(text(&held.join().unwrap().unwrap()), ["still here"]);
    assert_eq!(bus.publish("news", &["after"]), 1);
    assert_eq!(sub.values(), ["after"]);
    assert_eq!(bus.stats().handler_panics, 1);
}

/// On a UNIX socket the handler learns who connected.
fn peer_credentials_reach_the_handler(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    let who = text(&peer.request("WHO", &[]).unwrap());
    assert_eq!(
        who,
        [
            std::process::id().to_string(),
            rustix::process::getuid().as_raw().to_string()
        ]
    );
}

/// Publications a handler makes while handling a request are sent before that
/// request's answer: once the answer is in, so are they.
fn publications_made_while_handling_leave_before_the_answer(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    let mut sub = peer.subscribe("tick", false).unwrap();
    for i in 0..200 {
        let value = i.to_string();
        assert_eq!(
            text(&peer.request("PUBLISH", &[b"tick", value.as_bytes()]).unwrap()),
            ["1"]
        );
        match sub.next(Duration::ZERO) {
            Some(Ok(p)) => assert_eq!(text(p.values()), [value]),
            other => panic!("publication {i} was not in before its request's answer: {other:?}"),
        }
    }
}

/// One receiver for several topics and patterns gets each publication once,
/// in the order the server sent them, and says which of its subscriptions it
/// matched; topics and patterns can be added and removed later.
fn one_receiver_gets_each_publication_once_in_send_order(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    let publisher = bus.connect(client, ClientConfig::default());
    let mut all = peer
        .subscribe_all(
            &["alpha", "beta", "sensor.kitchen.temp"],
            &["sensor.*.temp", "sensor.>"],
        )
        .unwrap();
    for i in 0..20 {
        let topic: &[u8] = if i % 2 == 0 { b"alpha" } else { b"beta" };
        publisher
            .request("PUBLISH", &[topic, i.to_string().as_bytes()])
            .unwrap();
    }
    for i in 0..20 {
        let p = all.next(STEP).expect("a publication").unwrap();
        let expected_topic = if i % 2 == 0 { "alpha" } else { "beta" };
        assert_eq!(
            (p.topic_str(), text(p.values())),
            (Some(expected_topic), vec![i.to_string()])
        );
    }
    // Matched by three of its subscriptions, received once.
    assert_eq!(bus.publish("sensor.kitchen.temp", &["21.5"]), 1);
    let p = all.next(STEP).unwrap().unwrap();
    assert_eq!(text(p.values()), ["21.5"]);
    assert_eq!(all.matching(&p), 3);
    assert!(all.next(QUIET).is_none(), "a second copy arrived");
    // Later additions and removals.
    all.add("gamma", false).unwrap();
    assert_eq!(all.remove("alpha"), 1);
    peer.request("PING", &[]).unwrap();
    publisher.request("PUBLISH", &[b"alpha", b"gone"]).unwrap();
    publisher.request("PUBLISH", &[b"gamma", b"new"]).unwrap();
    assert_eq!(all.values(), ["new"]);
    assert!(all.add("secret.x", false).is_err());
    publisher.request("PUBLISH", &[b"beta", b"still"]).unwrap();
    assert_eq!(all.values(), ["still"]);
}

/// A burst of 100,000 small publications to a reader that reads as fast as it
/// can: every one arrives, with no lag report (lag is for readers that are
/// actually slow).
fn a_reader_that_keeps_up_never_lags(server: ServerKind, client: ClientKind) {
    const BURST: usize = 100_000;
    let bus = Arc::new(Bus::start(server, config()));
    let peer = bus.connect(client, ClientConfig::default());
    let mut sub = peer.subscribe("burst", false).unwrap();
    let publisher = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            for i in 0..BURST {
                assert_eq!(bus.publish("burst", &[&i.to_string()]), 1);
            }
        })
    };
    for (i, item) in sub.read(BURST).into_iter().enumerate() {
        match item {
            Ok(p) => assert_eq!(p.values().parse::<usize>(0), Some(i)),
            other => panic!("publication {i}: {other:?}"),
        }
    }
    publisher.join().unwrap();
    assert_eq!(bus.stats().publications_dropped, 0);
}

/// A peer that hangs up with a request still running is released at once:
/// its slot and descriptor (and with Tokio its handler) do not wait for the
/// handler to end.
fn a_peer_that_hangs_up_is_released_at_once(server: ServerKind, _client: ClientKind) {
    let bus = Bus::start(server, config());
    let mut raw = std::os::unix::net::UnixStream::connect(bus.path()).unwrap();
    common::write_frame(&mut raw, b'(', &[b"\x01", b"HOLD", b"forever"]).unwrap();
    wait_until("held", || match &bus {
        Bus::Std(s) => s.app.parked() == 1,
        Bus::Tokio(s) => s.app().parked() == 1,
    });
    assert_eq!(bus.stats().connections, 1);
    let hung_up = std::time::Instant::now();
    // The peer stops sending; the server's side of the socket must close
    // (the peer reads end of stream) although the handler still holds the
    // request.
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut raw, &mut rest).expect("the server closes its side at once");
    assert!(rest.is_empty(), "nothing is answered: {rest:?}");
    wait_until("released", || bus.stats().connections == 0);
    // The server's socket for it is gone too (its descriptor closed), not
    // merely shut down: only the listener is left bound to the path.
    drop(raw);
    wait_until("descriptor closed", || sockets_bound_to(bus.path()) == 1);
    assert!(
        hung_up.elapsed() < Duration::from_secs(2),
        "released after {:?}",
        hung_up.elapsed()
    );
}

/// Publications queued for a connection before it sends a frame are written
/// before the server's own answer to that frame (here the empty command's).
fn publications_queued_before_a_barrier_arrive_before_its_answer(server: ServerKind, _client: ClientKind) {
    let bus = Bus::start(server, config());
    let mut raw = std::os::unix::net::UnixStream::connect(bus.path()).unwrap();
    raw.set_read_timeout(Some(STEP)).unwrap();
    common::write_frame(&mut raw, b'+', &[b"t"]).unwrap();
    common::write_frame(&mut raw, b'(', &[b"\x00", b""]).unwrap();
    let answer = common::read_frame(&mut raw).unwrap().unwrap();
    assert_eq!(answer.sigil, b')');
    for i in 0..200u8 {
        assert_eq!(bus.publish("t", &[&i.to_string()]), 1);
        common::write_frame(&mut raw, b'(', &[&[i], b""]).unwrap();
        let first = common::read_frame(&mut raw).unwrap().unwrap();
        assert_eq!(first.sigil, b'!', "round {i}: the barrier's answer came first");
        let second = common::read_frame(&mut raw).unwrap().unwrap();
        assert_eq!((second.sigil, &second.args[0][..]), (b')', &[i][..]));
    }
}

/// A client set to reconnect, whose server goes away and comes back: each
/// receiver is told once that publications may have been missed, requests
/// fail with `Reconnecting` (not `Closed`) while no server is there, and on
/// the new connection every subscription is made again and confirmed by a
/// barrier of its own, so one the new server refuses is reported to its
/// receiver while the others receive again.
fn a_reconnecting_client_reports_the_gap_and_confirms_each_subscription(server: ServerKind, client: ClientKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");
    let mut bus = Bus::start_at(server, config(), &path);
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_attempts: None,
    };
    let peer = bus.connect(client, ClientConfig::default().reconnect(policy));
    let mut news = peer.subscribe("news", false).unwrap();
    let mut extra = peer.subscribe("extra", false).unwrap();
    assert_eq!(bus.publish("news", &["before"]), 1);
    assert_eq!(news.values(), ["before"]);

    bus.stop();
    drop(bus);
    for receiver in [&mut news, &mut extra] {
        match receiver.next(STEP) {
            Some(Err(Error::Reconnecting)) => {}
            other => panic!("expected the gap to be reported, got {other:?}"),
        }
    }
    assert!(matches!(peer.request("PING", &[]), Err(Error::Reconnecting)));

    // The new server takes one subscription per connection.
    let bus = Bus::start_at(server, config().max_subscriptions(1), &path);
    wait_until("the client reconnects", || peer.request("PING", &[]).is_ok());
    let reached = bus.publish("news", &["after"]) + bus.publish("extra", &["after"]);
    assert_eq!(reached, 1, "one subscription in place, one refused");
    let mut received = 0;
    let mut refused = 0;
    for receiver in [&mut news, &mut extra] {
        match receiver.next(STEP) {
            Some(Ok(p)) => {
                assert_eq!(text(p.values()), ["after"]);
                received += 1;
            }
            Some(Err(Error::SubscriptionRefused { reason })) => {
                assert_eq!(&reason[..], b"too many subscriptions");
                refused += 1;
            }
            other => panic!("expected a publication or a refusal, got {other:?}"),
        }
    }
    assert_eq!((received, refused), (1, 1));
    assert_eq!(bus.stats().subscriptions_refused, 1);
}

/// The handler's observers see a connection open, each subscription put in
/// place (not a refused one), a `-` that removed one, the subscriptions a
/// closing connection still had, and the connection end, in that order.
fn the_handler_observes_connections_and_subscriptions(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default());
    let a = peer.subscribe("a", false).unwrap();
    let _b = peer.subscribe("b.>", true).unwrap();
    assert!(matches!(
        peer.subscribe("secret.x", false),
        Err(Error::SubscriptionRefused { .. })
    ));
    drop(a);
    // Answered after the `-` before it took effect.
    peer.request("PING", &[]).unwrap();
    peer.close();
    wait_until("the connection's end is observed", || {
        bus.observed().last().is_some_and(|e| e == "disconnected")
    });
    assert_eq!(
        bus.observed(),
        ["connected", "+a", "*b.>", "-a", "-b.>", "disconnected"]
    );
}

/// How many UNIX sockets of this process and others are bound to `path`: the
/// listener, and each connection the server accepted on it, until its
/// descriptor is closed (Linux's `/proc/net/unix`).
fn sockets_bound_to(path: &std::path::Path) -> usize {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let path = path.to_str().unwrap();
    table.lines().filter(|line| line.ends_with(path)).count()
}

/// Publishing to ever more distinct buffered topics keeps the server's
/// buffers within their caps: the least recently published topics go first,
/// and what the caps discarded is counted. A new subscriber catches up on
/// what is kept, oldest first.
fn buffered_topics_stay_within_their_caps(server: ServerKind, client: ClientKind) {
    let limits = BufferLimits {
        max_topics: 50,
        max_bytes: 16 << 10,
        max_bytes_per_topic: 1 << 10,
    };
    let bus = Bus::start(server, config().buffer("log.>", 10).buffer_limits(limits));
    let value = "x".repeat(100);
    for i in 0..2_000 {
        for _ in 0..3 {
            bus.publish(&format!("log.{i}"), &[&value]);
        }
    }
    let stats = bus.stats();
    assert!(stats.buffered_topics <= 50, "{stats:?}");
    assert!(stats.buffered_bytes <= 16 << 10, "{stats:?}");
    assert!(stats.buffered_evicted >= (2_000 - 50) * 3, "{stats:?}");
    let kept = usize::try_from(stats.buffered_topics).unwrap() * 3;
    let peer = bus.connect(client, ClientConfig::default());
    let mut log = peer.subscribe("log.>", true).unwrap();
    let items = log.read(kept);
    let topics: Vec<String> = items
        .into_iter()
        .map(|p| p.unwrap().topic_str().unwrap().to_owned())
        .collect();
    assert_eq!(topics.last().map(String::as_str), Some("log.1999"), "newest last");
    assert!(topics
        .iter()
        .all(|t| t["log.".len()..].parse::<usize>().unwrap() >= 1_900));
    assert!(log.next(QUIET).is_none(), "nothing beyond what was kept");
}

/// A server that stops answering leaves every request slot held by a
/// timed-out request: the next request fails with `Unresponsive` (not
/// "in flight full"), late answers free the slots again, and a client set to
/// reconnect leaves that connection for a new one.
fn a_server_that_stops_answering_is_reported_and_recovered_from(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let quick = ClientConfig::default()
        .request_timeout(Some(Duration::from_millis(100)))
        .max_in_flight(4);
    let hold_all = |peer: &Peer| {
        for _ in 0..4 {
            assert!(matches!(peer.request("HOLD", &[b"late"]), Err(Error::TimedOut)));
        }
        match peer.request("PING", &[]) {
            Err(Error::Unresponsive { abandoned: 4 }) => {}
            other => panic!("expected Unresponsive, got {other:?}"),
        }
    };

    let peer = bus.connect(client, quick.clone());
    hold_all(&peer);
    assert_eq!(bus.release(), 4);
    wait_until("late answers free the slots", || peer.request("PING", &[]).is_ok());

    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_attempts: None,
    };
    let accepted = bus.stats().connections_accepted;
    let peer = bus.connect(client, quick.reconnect(policy));
    hold_all(&peer);
    wait_until("a new connection answers", || peer.request("PING", &[]).is_ok());
    assert_eq!(bus.stats().connections_accepted, accepted + 2, "connected again");
}

/// All of a client's subscriptions together queue at most
/// `max_queued_bytes`: past it, one holding something drops new publications
/// and reports them as lag (one with nothing queued still takes one).
fn a_clients_subscriptions_share_one_byte_bound(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let peer = bus.connect(client, ClientConfig::default().max_queued_bytes(10_000));
    let mut a = peer.subscribe("a", false).unwrap();
    let mut b = peer.subscribe("b", false).unwrap();
    let value = "x".repeat(1_000);
    for topic in ["a", "b"] {
        for _ in 0..100 {
            assert_eq!(bus.publish(topic, &[&value]), 1);
        }
    }
    // Answered after every publication above was read and queued.
    peer.request("PING", &[]).unwrap();
    let tally = |sub: &mut Sub| {
        let (mut received, mut missed) = (0u64, 0u64);
        while let Some(item) = sub.next(QUIET) {
            match item {
                Ok(_) => received += 1,
                Err(Error::Lagged { missed: n }) => missed += n,
                Err(e) => panic!("{e:?}"),
            }
            if received + missed == 100 {
                break;
            }
        }
        (received, missed)
    };
    let (got_a, missed_a) = tally(&mut a);
    let (got_b, missed_b) = tally(&mut b);
    assert_eq!((got_a + missed_a, got_b + missed_b), (100, 100));
    // Each frame is 1,011 bytes: nine fit the 10,000 with room to spare, and
    // b, empty when the bound was reached, took one.
    assert_eq!((got_a, got_b), (9, 1));
}

/// A subscriber that never reads makes the server hold what is published to
/// it, up to the memory budget and no further: past it publications are
/// dropped for it (counted), a connection already open gets "server busy" for
/// new requests, and new connections are refused; once it goes, its memory
/// is given back and service resumes.
fn the_memory_budget_sheds_load_and_recovers(server: ServerKind, client: ClientKind) {
    let limits = MemoryLimits {
        max_memory: 1 << 20,
        max_memory_per_user: 1 << 20,
        max_connections_per_user: 100,
    };
    let bus = Bus::start(server, config().memory(limits));
    let early = bus.connect(client, ClientConfig::default());
    early.request("PING", &[]).unwrap();

    let mut hog = std::os::unix::net::UnixStream::connect(bus.path()).unwrap();
    hog.set_read_timeout(Some(STEP)).unwrap();
    common::write_frame(&mut hog, b'+', &[b"flood"]).unwrap();
    common::write_frame(&mut hog, b'(', &[b"\x01", b""]).unwrap();
    let answer = common::read_frame(&mut hog).unwrap().unwrap();
    assert_eq!(answer.sigil, b')');

    // Publish until the server is near its budget (the hog's socket buffer
    // takes its share first).
    let value = "x".repeat(20_000);
    let near = limits.max_memory - limits.max_memory / 16;
    let (mut published, mut reached) = (0, 0);
    while bus.stats().memory_used <= near as u64 {
        assert!(published < 2_000, "the budget never filled: {:?}", bus.stats());
        for _ in 0..10 {
            reached += bus.publish("flood", &[&value]);
        }
        published += 10;
        // The server writes what the hog's socket still takes meanwhile.
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..10 {
        reached += bus.publish("flood", &[&value]);
    }
    published += 10;
    let stats = bus.stats();
    assert!(
        reached < published,
        "publications past the budget are dropped ({reached} of {published} queued)"
    );
    assert!(stats.memory_shed > 0 && stats.publications_dropped > 0, "{stats:?}");
    assert!(stats.memory_used <= stats.memory_limit, "{stats:?}");
    match early.request("PING", &[]) {
        Err(Error::Failed { message, .. }) => assert_eq!(&message[..], microsocket_core::SERVER_BUSY),
        other => panic!("expected server busy, got {other:?}; {:?}", bus.stats()),
    }
    let late = bus.connect(client, ClientConfig::default());
    assert!(late.request("PING", &[]).is_err(), "a new connection is refused");

    drop(hog);
    wait_until("the hog's memory is given back", || {
        bus.stats().memory_used < stats.memory_limit / 4
    });
    assert!(early.request("PING", &[]).is_ok());
    let again = bus.connect(client, ClientConfig::default());
    assert!(again.request("PING", &[]).is_ok());
}

/// `$MONITOR` makes a connection see every request, answer and publication
/// passing through the server, in order, each with its connection, as
/// publications on `$MONITOR`; a filter shows only matching commands and
/// topics and the answers to the requests shown.
fn a_monitor_sees_requests_answers_and_publications_in_order(server: ServerKind, client: ClientKind) {
    let bus = Bus::start(server, config());
    let watcher = bus.connect(client, ClientConfig::default());
    let mut everything = watcher.subscribe("$MONITOR", false).unwrap();
    assert!(watcher.request("$MONITOR", &[]).unwrap().is_empty());
    let filtered = bus.connect(client, ClientConfig::default());
    let mut sensors = filtered.subscribe("$MONITOR", false).unwrap();
    filtered.request("$MONITOR", &[b"sensor.>"]).unwrap();
    let worker = bus.connect(client, ClientConfig::default());
    // The worker is the newest connection, once the server has it.
    let mut connections = Vec::new();
    wait_until("the worker connected", || {
        connections = text(&watcher.request("$CONNECTIONS", &[]).unwrap());
        connections.len() == 3
    });
    let id = connections.last().unwrap().split_whitespace().next().unwrap()["id=".len()..].to_owned();
    worker.request("ECHO", &[b"a", b"b"]).unwrap();
    assert!(worker.request("FAIL", &[b"out of paper", b"tray 2"]).is_err());
    assert!(worker.request("sensor.read", &[]).is_err());
    assert_eq!(bus.publish("news", &["hi"]), 0);
    assert_eq!(bus.publish("sensor.t", &["20"]), 0);
    let seen: Vec<Vec<String>> = (0..8).map(|_| everything.values()).collect();
    // Without the tags (fourth value of requests and answers), which the
    // client chose: each answer carries its request's.
    let shown: Vec<Vec<&str>> = seen
        .iter()
        .map(|e| {
            let skip = if e[1] == "publication" { usize::MAX } else { 3 };
            e.iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .collect();
    let id = id.as_str();
    assert_eq!(
        shown,
        [
            vec!["0", "request", id, "ECHO", "a", "b"],
            vec!["1", "answer", id, "a", "b"],
            vec!["2", "request", id, "FAIL", "out of paper", "tray 2"],
            vec!["3", "failure", id, "out of paper", "tray 2"],
            vec!["4", "request", id, "sensor.read"],
            vec!["5", "failure", id, "no such"],
            vec!["6", "publication", "0", "news", "hi"],
            vec!["7", "publication", "0", "sensor.t", "20"],
        ]
    );
    for (request, answer) in [(0, 1), (2, 3), (4, 5)] {
        assert_eq!(seen[request][3], seen[answer][3], "{seen:?}");
    }
    let filtered_events: Vec<Vec<String>> = (0..3).map(|_| sensors.values()).collect();
    assert_eq!(
        filtered_events
            .iter()
            .map(|e| [&e[0][..], &e[1][..]])
            .collect::<Vec<_>>(),
        [["0", "request"], ["1", "failure"], ["2", "publication"]]
    );
    assert!(everything.next(QUIET).is_none() && sensors.next(QUIET).is_none());
    // Server commands are not shown, nor counted as the handler's.
    assert_eq!(bus.stats().requests, 3);
}

/// A monitor that reads nothing misses events, each counted as dropped on
/// its connection; the bus answers and publishes as fast meanwhile.
fn a_monitor_that_does_not_read_never_slows_the_bus(server: ServerKind, client: ClientKind) {
    use std::io::Write;
    let bus = Bus::start(server, config().max_queued_bytes(64 * 1024));
    let mut stalled = std::os::unix::net::UnixStream::connect(bus.path()).unwrap();
    let mut frames = Vec::new();
    microsocket_core::frame::encode_raw(b'(', [&b"m"[..], b"$MONITOR"], &mut frames).unwrap();
    stalled.write_all(&frames).unwrap();
    let worker = bus.connect(client, ClientConfig::default());
    let watcher = bus.connect(client, ClientConfig::default());
    let big = [b'x'; 4096];
    // About 16 MiB of events for a monitor that never reads.
    for _ in 0..2_000 {
        assert_eq!(worker.request("ECHO", &[&big[..]]).unwrap().len(), 1);
    }
    let connections = text(&watcher.request("$CONNECTIONS", &[]).unwrap());
    let monitor = connections.first().unwrap();
    let dropped: u64 = monitor.rsplit("dropped=").next().unwrap().parse().unwrap();
    // Each request dropped for it (its answer is then not offered).
    assert!(dropped > 1_900, "{connections:?}");
    let queued: usize = monitor
        .split("queued=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(queued <= 64 * 1024 + 8192, "{connections:?}");
    drop(stalled);
}
