//! Byte-exact checks of the worked examples in `docs/PROTOCOL.md`, from both sides:
//! the client and the server machines must produce exactly the bytes the
//! document shows, and read them back as the document says.

use microsocket_core::frame::{Decoded, Decoder};
use microsocket_core::{
    Client, ClientEvent, ClientProtocol, Message, RequestId, ServerConnection, ServerEvent, SubscriptionKind,
};

/// `client: 28 02  00 00 00 01 07  00 00 00 04 50 49 4e 47`
const PING: &[u8] = &[
    0x28, 0x02, 0x00, 0x00, 0x00, 0x01, 0x07, 0x00, 0x00, 0x00, 0x04, 0x50, 0x49, 0x4e, 0x47,
];
/// `server: 29 02  00 00 00 01 07  00 00 00 04 50 4f 4e 47`
const PONG: &[u8] = &[
    0x29, 0x02, 0x00, 0x00, 0x00, 0x01, 0x07, 0x00, 0x00, 0x00, 0x04, 0x50, 0x4f, 0x4e, 0x47,
];
/// `client: 2b 01  00 00 00 04 6e 65 77 73`
const SUBSCRIBE_NEWS: &[u8] = &[0x2b, 0x01, 0x00, 0x00, 0x00, 0x04, 0x6e, 0x65, 0x77, 0x73];
/// `server: 21 02  00 00 00 04 6e 65 77 73  00 00 00 05 68 65 6c 6c 6f`
const PUBLISH_NEWS_HELLO: &[u8] = &[
    0x21, 0x02, 0x00, 0x00, 0x00, 0x04, 0x6e, 0x65, 0x77, 0x73, 0x00, 0x00, 0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];
/// `server: 23 02  00 00 00 01 07  00 00 00 07 6e 6f 20 73 75 63 68`
const FAIL_NO_SUCH: &[u8] = &[
    0x23, 0x02, 0x00, 0x00, 0x00, 0x01, 0x07, 0x00, 0x00, 0x00, 0x07, 0x6e, 0x6f, 0x20, 0x73, 0x75, 0x63, 0x68,
];

/// Everything a client has queued, taken off it.
fn take_client_tx(client: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = client.poll_transmit() {
        out.extend_from_slice(bytes);
        let n = bytes.len();
        client.advance_transmit(n);
    }
    out
}

/// Everything a server connection has queued, taken off it.
fn take_server_tx(server: &mut ServerConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = server.poll_transmit() {
        out.extend_from_slice(bytes);
        let n = bytes.len();
        server.advance_transmit(n);
    }
    out
}

fn feed_client(client: &mut Client, bytes: &[u8]) {
    let buf = client.rx_buf();
    buf[..bytes.len()].copy_from_slice(bytes);
    client.commit_rx(bytes.len());
}

fn feed_server(server: &mut ServerConnection, bytes: &[u8]) {
    let buf = server.rx_buf();
    buf[..bytes.len()].copy_from_slice(bytes);
    server.commit_rx(bytes.len());
}

/// A client whose next request gets the tag 0x07, as in the document: it has
/// sent and seen answered seven barriers (tags 0x00 to 0x06).
fn client_at_tag_7() -> Client {
    let mut client: Client = Client::new();
    for tag in 0u8..7 {
        let id = client.barrier().unwrap();
        let sent = take_client_tx(&mut client);
        assert_eq!(sent, [0x28, 0x02, 0, 0, 0, 1, tag, 0, 0, 0, 0]);
        feed_client(&mut client, &[0x29, 0x01, 0, 0, 0, 1, tag]);
        match client.poll_event() {
            Some(ClientEvent::Response { id: got, values }) => {
                assert_eq!(got, id);
                assert_eq!(values.len(), 0);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(client.poll_event().is_none());
    }
    client
}

fn decode_all(bytes: &[u8]) -> Vec<Message<'_>> {
    let mut decoder = Decoder::new(1024);
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        match decoder.decode(rest) {
            Decoded::Frame { frame, consumed } => {
                out.push(Message::parse(&frame));
                rest = &rest[consumed..];
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

#[test]
fn the_example_bytes_parse_as_the_document_says() {
    let all = [PING, PONG, SUBSCRIBE_NEWS, PUBLISH_NEWS_HELLO, FAIL_NO_SUCH].concat();
    let messages = decode_all(&all);
    assert_eq!(messages.len(), 5);
    assert!(matches!(
        &messages[0],
        Message::Request { tag: b"\x07", command: b"PING", args } if args.is_empty()
    ));
    assert!(matches!(
        &messages[1],
        Message::Response { tag: b"\x07", values } if values.clone().eq([&b"PONG"[..]])
    ));
    assert_eq!(messages[2], Message::Subscribe { topic: b"news" });
    assert!(matches!(
        &messages[3],
        Message::Publication { topic: b"news", values } if values.clone().eq([&b"hello"[..]])
    ));
    assert!(matches!(
        &messages[4],
        Message::Failure { tag: b"\x07", message: b"no such", details } if details.is_empty()
    ));
}

#[test]
fn client_sends_ping_with_tag_7_byte_for_byte_and_reads_pong() {
    let mut client = client_at_tag_7();
    let id = client.request(b"PING", [b""; 0]).unwrap();
    assert_eq!(id.slot(), 7);
    assert_eq!(take_client_tx(&mut client), PING);
    feed_client(&mut client, PONG);
    match client.poll_event() {
        Some(ClientEvent::Response { id: got, values }) => {
            assert_eq!(got, id);
            assert!(values.eq([&b"PONG"[..]]));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(client.poll_event().is_none());
    assert!(!client.protocol().is_pending(id));
}

#[test]
fn a_fresh_client_sends_the_same_request_with_tag_0() {
    let mut client: Client = Client::new();
    let _id: RequestId = client.request(b"PING", [b""; 0]).unwrap();
    let mut expected = PING.to_vec();
    expected[6] = 0x00;
    assert_eq!(take_client_tx(&mut client), expected);
}

#[test]
fn server_answers_literal_ping_with_literal_pong() {
    let mut server: ServerConnection = ServerConnection::default();
    feed_server(&mut server, PING);
    let mut polled = server.poll_event().expect("a request");
    match polled.event {
        ServerEvent::Request { tag, command, args } => {
            assert_eq!((tag, command), (&b"\x07"[..], &b"PING"[..]));
            assert!(args.is_empty());
            polled.outbox.respond(tag, [b"PONG"]).unwrap();
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(server.poll_event().is_none());
    assert_eq!(take_server_tx(&mut server), PONG);
    assert_eq!(server.protocol().requests_in_flight(), 0);
}

#[test]
fn server_fails_literal_ping_with_literal_no_such() {
    let mut server: ServerConnection = ServerConnection::default();
    feed_server(&mut server, PING);
    let mut polled = server.poll_event().expect("a request");
    let ServerEvent::Request { tag, .. } = polled.event else {
        panic!("not a request");
    };
    polled.outbox.fail(tag, b"no such", [b""; 0]).unwrap();
    assert_eq!(take_server_tx(&mut server), FAIL_NO_SUCH);
}

#[test]
fn client_reads_literal_no_such_as_a_failure() {
    let mut client = client_at_tag_7();
    let id = client.request(b"PING", [b""; 0]).unwrap();
    assert_eq!(take_client_tx(&mut client), PING);
    feed_client(&mut client, FAIL_NO_SUCH);
    match client.poll_event() {
        Some(ClientEvent::Failure {
            id: got,
            message,
            details,
        }) => {
            assert_eq!(got, id);
            assert_eq!(message, b"no such");
            assert!(details.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn subscribe_news_and_publish_hello_byte_for_byte() {
    // Client side: `+ news`.
    let mut client: Client = Client::new();
    let sub = client.subscribe(b"news").unwrap();
    assert_eq!(take_client_tx(&mut client), SUBSCRIBE_NEWS);
    // Server side: the literal `+` subscribes; publishing writes the literal `!`.
    let mut server: ServerConnection = ServerConnection::default();
    feed_server(&mut server, SUBSCRIBE_NEWS);
    match server.poll_event().map(|p| p.event) {
        Some(ServerEvent::Subscribed { topic, kind, new }) => {
            assert_eq!(topic, b"news");
            assert_eq!(kind, SubscriptionKind::Exact);
            assert!(new);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(server.protocol().is_subscribed(b"news"));
    assert_eq!(server.outbox().publish(b"news", [b"hello"]), Ok(true));
    assert_eq!(server.outbox().publish(b"other", [b"hello"]), Ok(false));
    assert_eq!(take_server_tx(&mut server), PUBLISH_NEWS_HELLO);
    // Client side: the literal `!` is a publication for its subscription.
    feed_client(&mut client, PUBLISH_NEWS_HELLO);
    match client.poll_event() {
        Some(ClientEvent::Publication {
            topic,
            values,
            subscriptions,
        }) => {
            assert_eq!(topic, b"news");
            assert!(values.eq([&b"hello"[..]]));
            assert_eq!(subscriptions.collect::<Vec<_>>(), [sub]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn extension_frames_byte_for_byte() {
    let mut client: Client = Client::new();
    let pattern = client.subscribe_pattern(b"sensor.*.temp").unwrap();
    let news = client.subscribe(b"news").unwrap();
    take_client_tx(&mut client);
    assert_eq!(client.unsubscribe(news), Ok(true));
    assert_eq!(client.unsubscribe(pattern), Ok(true));
    let mut expected = vec![0x2d, 0x01, 0, 0, 0, 4];
    expected.extend_from_slice(b"news");
    expected.extend_from_slice(&[0x2d, 0x01, 0, 0, 0, 13]);
    expected.extend_from_slice(b"sensor.*.temp");
    assert_eq!(take_client_tx(&mut client), expected);

    let mut client: Client = Client::new();
    let _ = client.subscribe_pattern(b"sensor.>").unwrap();
    let mut expected = vec![0x2a, 0x01, 0, 0, 0, 8];
    expected.extend_from_slice(b"sensor.>");
    assert_eq!(take_client_tx(&mut client), expected);
}

#[test]
fn the_empty_command_is_answered_by_the_server_with_no_values() {
    let mut server: ServerConnection = ServerConnection::default();
    // `(` argc=2 tag=07 command="".
    feed_server(&mut server, &[0x28, 0x02, 0, 0, 0, 1, 0x07, 0, 0, 0, 0]);
    assert!(server.poll_event().is_none(), "the application never sees it");
    assert_eq!(take_server_tx(&mut server), [0x29, 0x01, 0, 0, 0, 1, 0x07]);
}

/// Polls one event and refuses it if it is a subscription (access control
/// saying no).
fn refuse_next(server: &mut ServerConnection) {
    let mut polled = server.poll_event().expect("an event");
    let (kind, topic) = match polled.event {
        ServerEvent::Subscribed { kind, topic, .. } => (kind, topic.to_vec()),
        ref other => panic!("expected a subscription, got {other:?}"),
    };
    assert!(polled
        .outbox
        .refuse_subscription(kind, &topic, microsocket_core::REFUSED_NOT_PERMITTED));
}

#[test]
fn a_refused_subscription_fails_the_barrier_right_after_it() {
    let mut server: ServerConnection = ServerConnection::default();
    // `+` "secret", then the barrier `(` tag=03 command="".
    feed_server(&mut server, b"\x2b\x01\x00\x00\x00\x06secret");
    refuse_next(&mut server);
    feed_server(&mut server, &[0x28, 0x02, 0, 0, 0, 1, 0x03, 0, 0, 0, 0]);
    assert!(server.poll_event().is_none());
    let mut expected = vec![0x23, 0x03, 0, 0, 0, 1, 0x03];
    for part in [&b"subscription refused"[..], b"not permitted"] {
        expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
        expected.extend_from_slice(part);
    }
    assert_eq!(take_server_tx(&mut server), expected);
    assert!(!server.protocol().is_subscribed(b"secret"));
}

#[test]
fn a_refusal_not_followed_by_a_barrier_changes_nothing_for_old_clients() {
    let mut server: ServerConnection = ServerConnection::default();
    // An IPC::MicroSocket 0.03 client sends no barrier: its next request, and
    // any empty command after that, are answered as always.
    feed_server(&mut server, b"\x2b\x01\x00\x00\x00\x06secret");
    refuse_next(&mut server);
    feed_server(&mut server, b"\x28\x02\x00\x00\x00\x01\x01\x00\x00\x00\x04PING");
    assert!(matches!(
        server.poll_event().map(|p| p.event),
        Some(ServerEvent::Request { .. })
    ));
    feed_server(&mut server, &[0x28, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 0]);
    assert!(server.poll_event().is_none());
    assert_eq!(take_server_tx(&mut server), [0x29, 0x01, 0, 0, 0, 1, 0x02]);
}

#[test]
fn resubscribing_confirms_each_subscription_with_its_own_barrier() {
    let mut protocol: ClientProtocol<4, 4, 64> = ClientProtocol::new();
    let mut sink: heapless::Vec<u8, 128> = heapless::Vec::new();
    let news = protocol.subscribe(b"news", &mut sink).unwrap();
    let sensors = protocol.subscribe_pattern(b"s.>", &mut sink).unwrap();
    // The connection is lost, then a new one is up.
    protocol.handle_eof();
    sink.clear();
    let mut confirmations = Vec::new();
    let sent = protocol
        .resubscribe_confirmed(&mut sink, |sub, barrier| confirmations.push((sub, barrier)))
        .unwrap();
    assert_eq!(sent, 2);
    // `+` "news", `(` tag "" , `*` "s.>", `(` tag "": each barrier right after
    // its subscription, so a refusal answers that subscription's barrier.
    let mut decoder = Decoder::new(1024);
    let mut rest = &sink[..];
    let mut frames = Vec::new();
    while let Decoded::Frame { frame, consumed } = decoder.decode(rest) {
        frames.push((frame.sigil_byte(), frame.args().map(<[u8]>::to_vec).collect::<Vec<_>>()));
        rest = &rest[consumed..];
    }
    assert!(rest.is_empty());
    let sigils: Vec<u8> = frames.iter().map(|(s, _)| *s).collect();
    assert_eq!(sigils, b"+(*(");
    assert_eq!(frames[0].1, [b"news".to_vec()]);
    assert_eq!(frames[2].1, [b"s.>".to_vec()]);
    assert_eq!(frames[1].1[1], b"");
    assert_eq!(frames[3].1[1], b"");
    let subs: Vec<_> = confirmations.iter().map(|(s, _)| *s).collect();
    assert_eq!(subs, [news, sensors]);
    assert!(confirmations.iter().all(|(_, barrier)| protocol.is_pending(*barrier)));
    assert_eq!(protocol.requests_in_flight(), 2);
}
