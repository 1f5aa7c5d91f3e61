//! The bridge against real `nats-server`s (Debian's `nats-server` package;
//! `.ci/run` installs it and runs these with `--ignored`).

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use microsocket_nats::{failures, BridgeConfig, DEFAULT_STATE_TOPIC};
use microsocket_tokio::Error;
use support::{bus, eventually, Nats};

const NEEDS: &str = "needs nats-server";

fn failure_message(err: Error) -> String {
    match err {
        Error::Failed { message, .. } => String::from_utf8_lossy(&message).into_owned(),
        other => panic!("expected a failure, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn two_buses_share_publications_and_answer_requests() {
    let _ = NEEDS;
    let nats = Nats::start();
    let (alpha, alpha_bridge) = bus(&nats.url(), BridgeConfig::new("alpha").export("sensor.>")).await;
    let (beta, beta_bridge) = bus(&nats.url(), BridgeConfig::new("beta").import("alpha:sensor.>")).await;
    beta_bridge.nats().flush().await.unwrap();

    let beta_client = beta.connect_in_process().unwrap();
    let mut readings = beta_client.subscribe_pattern("sensor.>").await.unwrap();
    // A plain NATS user sees the raw payload.
    let plain = async_nats::connect(nats.url()).await.unwrap();
    let mut plain_sub = plain.subscribe("alpha.sensor.>").await.unwrap();
    plain.flush().await.unwrap();

    assert_eq!(alpha.publish("sensor.kitchen.temp", ["21.5"]).unwrap(), 1);
    assert_eq!(alpha.publish("sensor.kitchen.pair", ["a", ""]).unwrap(), 1);
    let got = tokio::time::timeout(Duration::from_secs(5), readings.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.topic(), b"sensor.kitchen.temp");
    assert_eq!(*got.values(), ["21.5"]);
    let got = tokio::time::timeout(Duration::from_secs(5), readings.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        *got.values(),
        ["a", ""],
        "several values, an empty one among them, cross exactly"
    );
    let raw = tokio::time::timeout(Duration::from_secs(5), plain_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.subject.as_str(), "alpha.sensor.kitchen.temp");
    assert_eq!(raw.payload, "21.5");

    // A request from alpha's bus answered by beta's handler, and its failure.
    let alpha_client = alpha.connect_in_process().unwrap();
    assert_eq!(alpha_client.request("@beta.PING", [""; 0]).await.unwrap(), ["PONG"]);
    assert_eq!(
        alpha_client.request("@beta.ECHO", ["x", "", "y"]).await.unwrap(),
        ["x", "", "y"]
    );
    let err = alpha_client.request("@beta.NOPE", ["z"]).await.unwrap_err();
    match err {
        Error::Failed { message, details } => {
            assert_eq!(message, "no such command");
            assert_eq!(details, ["NOPE"]);
        }
        other => panic!("{other}"),
    }
    // A plain NATS request is answered too; server commands are not.
    let reply = plain.request("beta.ECHO", "hello".into()).await.unwrap();
    assert_eq!(reply.payload, "hello");
    let reply = plain.request("beta.$STATS", "".into()).await.unwrap();
    assert_eq!(
        microsocket_nats::mapping::decode(reply.headers.as_ref(), &reply.payload).unwrap(),
        microsocket_nats::mapping::Content::Failure {
            message: failures::NOT_ACROSS.into(),
            details: vec!["beta.$STATS".into()],
        }
    );
    // Nor are NATS's own subjects asked on a local peer's behalf.
    let err = alpha_client.request("@$JS.API.INFO", [""; 0]).await.unwrap_err();
    assert_eq!(failure_message(err), failures::NOT_ACROSS);

    eventually("stats count", || {
        alpha_bridge.stats().exported == 2 && beta_bridge.stats().imported == 2
    })
    .await;
    assert_eq!(beta_bridge.stats().requests_served, 4);
    assert_eq!(alpha_bridge.stats().requests_forwarded, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn a_cluster_of_three_carries_from_node_one_to_node_three() {
    let one = Nats::start();
    let two = Nats::node(&[one.cluster_port]);
    let three = Nats::node(&[one.cluster_port, two.cluster_port]);
    let (alpha, _alpha_bridge) = bus(&one.url(), BridgeConfig::new("alpha").export("news.>")).await;
    // Several URLs, comma-separated, as for any cluster.
    let urls = format!("{},{}", three.url(), two.url());
    let (gamma, _gamma_bridge) = bus(&urls, BridgeConfig::new("gamma").import("alpha:news.>")).await;
    let reader = gamma.connect_in_process().unwrap();
    let mut news = reader.subscribe("news.today").await.unwrap();
    // Routes and interest take a moment to spread: publish until one arrives.
    let mut arrived = None;
    for attempt in 0..200 {
        alpha.publish("news.today", [format!("edition {attempt}")]).unwrap();
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(50), news.next()).await {
            arrived = Some(got.unwrap());
            break;
        }
    }
    let arrived = arrived.expect("a publication crossed the cluster within 10 s");
    assert!(arrived.values().str(0).unwrap().starts_with("edition "));
    // Requests cross the cluster the other way.
    let client = gamma.connect_in_process().unwrap();
    let mut answered = false;
    for _ in 0..100 {
        match client.request("@alpha.PING", [""; 0]).await {
            Ok(values) => {
                assert_eq!(values, ["PONG"]);
                answered = true;
                break;
            }
            Err(e) => {
                assert_eq!(failure_message(e), failures::NO_RESPONDERS);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(answered, "a request from node 3's bus was answered by node 1's bus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn a_nats_restart_leaves_the_bus_serving_counts_the_loss_and_resumes() {
    let mut nats = Nats::start();
    let config = BridgeConfig::new("alpha").export("log.>").max_held_bytes(1000);
    let (alpha, alpha_bridge) = bus(&nats.url(), config).await;
    let (beta, beta_bridge) = bus(&nats.url(), BridgeConfig::new("beta").import("alpha:log.>")).await;
    beta_bridge.nats().flush().await.unwrap();
    let reader = beta.connect_in_process().unwrap();
    let mut log = reader.subscribe_pattern("log.>").await.unwrap();
    let state_reader = alpha.connect_in_process().unwrap();
    let mut state = state_reader.subscribe(DEFAULT_STATE_TOPIC).await.unwrap();

    alpha.publish("log.app", ["before"]).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), log.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(*got.values(), ["before"]);

    nats.kill();
    eventually("the bridge sees NATS gone", || !alpha_bridge.stats().connected).await;
    // The local bus keeps serving while NATS is away.
    let client = alpha.connect_in_process().unwrap();
    assert_eq!(client.request("PING", [""; 0]).await.unwrap(), ["PONG"]);
    let err = client.request("@beta.PING", [""; 0]).await.unwrap_err();
    assert_eq!(failure_message(err), failures::NOT_CONNECTED);
    // Held up to 1000 bytes; the rest dropped and counted.
    for i in 0..100 {
        alpha.publish("log.app", [format!("while away {i:03}")]).unwrap();
    }
    eventually("drops counted", || alpha_bridge.stats().dropped > 0).await;
    let stats = alpha_bridge.stats();
    assert!(stats.held_bytes <= 1000, "{stats:?}");
    // The state topic said so.
    let mut saw_disconnected = false;
    while let Ok(Some(Ok(report))) = tokio::time::timeout(Duration::from_millis(1500), state.next()).await {
        if report.values().str(0) == Some("disconnected") {
            saw_disconnected = true;
            break;
        }
    }
    assert!(
        saw_disconnected,
        "the bridge reported its state on {DEFAULT_STATE_TOPIC}"
    );

    nats.restart();
    eventually("both bridges reconnect", || {
        alpha_bridge.stats().connected && beta_bridge.stats().connected
    })
    .await;
    // Traffic resumes: held publications (the newest that fit) and new ones arrive.
    let mut last = String::new();
    for attempt in 0..200 {
        alpha.publish("log.app", [format!("after {attempt}")]).unwrap();
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(50), log.next()).await {
            last = got.unwrap().values().str(0).unwrap().to_owned();
            if last.starts_with("after") {
                break;
            }
        }
    }
    assert!(last.starts_with("after") || last.starts_with("while away"), "{last}");
    let stats = alpha_bridge.stats();
    assert!(stats.disconnections >= 1 && stats.dropped > 0, "{stats:?}");
    assert!(stats.exported >= 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn the_same_pattern_both_ways_on_two_hosts_does_not_amplify() {
    same_pattern_both_ways(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn without_the_origin_header_loops_are_stopped_all_the_same() {
    same_pattern_both_ways(false).await;
}

async fn same_pattern_both_ways(origin: bool) {
    let nats = Nats::start();
    let config = |name: &str, other: &str| {
        BridgeConfig::new(name)
            .export("chat.>")
            .import(&format!("{other}:chat.>"))
            .origin_header(origin)
    };
    let (alpha, alpha_bridge) = bus(&nats.url(), config("alpha", "beta")).await;
    let (beta, beta_bridge) = bus(&nats.url(), config("beta", "alpha")).await;
    alpha_bridge.nats().flush().await.unwrap();
    beta_bridge.nats().flush().await.unwrap();
    let a = alpha.connect_in_process().unwrap();
    let b = beta.connect_in_process().unwrap();
    let mut on_alpha = a.subscribe("chat.room").await.unwrap();
    let mut on_beta = b.subscribe("chat.room").await.unwrap();

    alpha.publish("chat.room", ["hello from alpha"]).unwrap();
    beta.publish("chat.room", ["hello from beta"]).unwrap();
    // Each bus sees each message exactly once, then nothing more.
    let mut seen_alpha = Vec::new();
    let mut seen_beta = Vec::new();
    let quiet = Duration::from_millis(700);
    while let Ok(Some(Ok(p))) = tokio::time::timeout(quiet, on_alpha.next()).await {
        seen_alpha.push(p.values().str(0).unwrap().to_owned());
    }
    while let Ok(Some(Ok(p))) = tokio::time::timeout(quiet, on_beta.next()).await {
        seen_beta.push(p.values().str(0).unwrap().to_owned());
    }
    seen_alpha.sort();
    seen_beta.sort();
    assert_eq!(seen_alpha, ["hello from alpha", "hello from beta"]);
    assert_eq!(seen_beta, ["hello from alpha", "hello from beta"]);
    assert_eq!(alpha_bridge.stats().exported, 1, "{:?}", alpha_bridge.stats());
    assert_eq!(beta_bridge.stats().exported, 1, "{:?}", beta_bridge.stats());
    assert_eq!(alpha_bridge.stats().loops_stopped, 1);
    assert_eq!(beta_bridge.stats().loops_stopped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn bad_topics_are_refused_and_unreachable_hosts_fail_within_the_deadline() {
    let nats = Nats::start();
    let config = BridgeConfig::new("alpha")
        .export(">")
        .state_topic(None)
        .request_timeout(Duration::from_millis(300));
    let (alpha, alpha_bridge) = bus(&nats.url(), config).await;
    let (_beta, _beta_bridge) = bus(&nats.url(), BridgeConfig::new("beta")).await;
    for topic in ["a b", "a.*", "a.>", "\u{7f}", "ok.\u{1}"] {
        alpha.publish(topic, ["x"]).unwrap();
    }
    alpha.publish(b"\xff\xfe", ["x"]).unwrap();
    // Over NATS's max_payload (1 MiB): refused, and the connection stays.
    let huge = vec![b'x'; 2 << 20];
    alpha.publish("huge.topic", [&huge[..]]).unwrap();
    alpha.publish("fine.topic", ["x"]).unwrap();
    eventually("refusals counted", || {
        let s = alpha_bridge.stats();
        s.refused == 7 && s.exported == 1
    })
    .await;
    assert_eq!(alpha_bridge.stats().disconnections, 0);

    let client = alpha.connect_in_process().unwrap();
    let started = std::time::Instant::now();
    let err = client.request("@nobody.PING", [""; 0]).await.unwrap_err();
    assert_eq!(failure_message(err), failures::NO_RESPONDERS);
    let err = client.request("@beta.SLEEP", [""; 0]).await.unwrap_err();
    assert_eq!(failure_message(err), failures::TIMED_OUT);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let err = client.request("@beta.a b", [""; 0]).await.unwrap_err();
    assert_eq!(failure_message(err), failures::NOT_A_SUBJECT);
    let err = client.request("@beta.ECHO", [&huge[..]]).await.unwrap_err();
    assert_eq!(failure_message(err), failures::TOO_LARGE);
    assert!(alpha_bridge.stats().requests_failed >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn a_stalled_nats_subscriber_slows_no_one() {
    use std::io::{Read, Write};
    // NATS cuts off a subscriber that holds more than 256 KiB or blocks a
    // write for a second.
    let nats = Nats::with_config("max_pending: 262144\nmax_payload: 65536\nwrite_deadline: \"1s\"\n");
    let (alpha, alpha_bridge) = bus(&nats.url(), BridgeConfig::new("alpha").export("feed.>")).await;
    let (beta, beta_bridge) = bus(&nats.url(), BridgeConfig::new("beta").import("alpha:feed.>")).await;
    beta_bridge.nats().flush().await.unwrap();
    // A NATS subscriber that never reads what it subscribed to.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", nats.port)).unwrap();
    stalled
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB alpha.feed.> 1\r\nPING\r\n")
        .unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 4096];
    let _ = stalled.read(&mut greeting);
    let reader = beta
        .connect_in_process_with(
            microsocket_tokio::ClientBuilder::default()
                .subscription_max_bytes(64 << 20)
                .subscription_capacity(1 << 20),
        )
        .unwrap();
    let mut feed = reader.subscribe("feed.data").await.unwrap();

    // 8 MiB through the bridge, far past what NATS holds for the stalled one.
    const COUNT: usize = 8192;
    let block = vec![b'x'; 1024];
    let publishing = tokio::spawn(async move {
        for i in 0..COUNT {
            alpha.publish("feed.data", [format!("{i}").as_bytes(), &block]).unwrap();
            if i % 64 == 63 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        alpha
    });
    let mut received = 0;
    while received < COUNT {
        match tokio::time::timeout(Duration::from_secs(10), feed.next()).await {
            Ok(Some(Ok(p))) => {
                assert_eq!(
                    p.values().str(0),
                    Some(received.to_string().as_str()),
                    "in order, none lost"
                );
                received += 1;
            }
            other => panic!("after {received} publications: {other:?}"),
        }
    }
    let _alpha = publishing.await.unwrap();
    assert_eq!(alpha_bridge.stats().dropped, 0, "{:?}", alpha_bridge.stats());
    // NATS gave up on the stalled subscriber, not on the bridge.
    assert!(alpha_bridge.stats().connected && beta_bridge.stats().connected);
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut cut_off = false;
    let mut sink = vec![0u8; 1 << 20];
    for _ in 0..10_000 {
        match stalled.read(&mut sink) {
            Ok(0) | Err(_) => {
                cut_off = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(cut_off, "nats-server closed the stalled subscriber");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server)"]
async fn credentials_and_tls_to_nats_are_used() {
    use microsocket_nats::{Bridge, Credentials, NatsOptions};
    let config = || BridgeConfig::new("alpha").state_topic(None);
    let up = |options: NatsOptions| async move {
        let bridge = Bridge::connect(&options, config()).await.unwrap();
        bridge.wait_connected(Duration::from_secs(2)).await
    };

    let nats = Nats::with_config("authorization { user: alice, password: s3cret }\n");
    let mut options = NatsOptions::new(nats.url());
    options.credentials = Credentials::UserPassword {
        user: "alice".into(),
        password: "wrong".into(),
    };
    assert!(!up(options.clone()).await, "a wrong password is refused");
    options.credentials = Credentials::UserPassword {
        user: "alice".into(),
        password: "s3cret".into(),
    };
    assert!(up(options.clone()).await);
    assert!(!format!("{options:?}").contains("s3cret"));

    let nats = Nats::with_config("authorization { token: t0ken }\n");
    let mut options = NatsOptions::new(nats.url());
    assert!(!up(options.clone()).await, "no token is refused");
    options.credentials = Credentials::Token("t0ken".into());
    assert!(up(options).await);

    // TLS to NATS, verified with the CA given.
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("nats.pem"), dir.path().join("nats.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let nats = Nats::with_config(&format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
        cert_path.display(),
        key_path.display()
    ));
    let mut options = NatsOptions::new(format!("tls://127.0.0.1:{}", nats.port));
    assert!(!up(options.clone()).await, "a certificate nobody trusts is refused");
    options.tls_ca = Some(cert_path);
    assert!(up(options).await, "connects over TLS with the CA given");
}
