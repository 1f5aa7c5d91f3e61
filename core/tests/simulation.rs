//! Deterministic simulation: clients and server connections wired through
//! in-memory pipes that carry bytes in chunks of a chosen size, driven until
//! neither side can make progress. No sockets, no threads, no clocks.

use microsocket_core::{
    Client, ClientEvent, EncodeError, IgnoreReason, RequestError, RequestId, ServerConnection, ServerEvent,
    ServerLimits, SubscribeError, SubscriptionId, SubscriptionKind, FRAME_TOO_LARGE, TOO_MANY_IN_FLIGHT,
};

/// Chunk sizes every scenario runs with: byte by byte up to whole buffers.
const CHUNKS: [usize; 6] = [1, 2, 3, 7, 64, 1 << 16];

/// A client event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CEv {
    Response(RequestId, Vec<Vec<u8>>),
    Failure(RequestId, Vec<u8>, Vec<Vec<u8>>),
    TooLarge(RequestId),
    Publication(Vec<u8>, Vec<Vec<u8>>, Vec<SubscriptionId>),
}

/// A server event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SEv {
    Request(Vec<u8>, Vec<u8>, Vec<Vec<u8>>),
    Subscribed(Vec<u8>, SubscriptionKind, bool),
    Refused(Vec<u8>, SubscribeError),
    Unsubscribed(Vec<u8>, usize),
    Ignored(u8, IgnoreReason, bool),
}

fn owned<'a>(args: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    args.map(<[u8]>::to_vec).collect()
}

/// A request the server application saw: tag, command, arguments.
type SeenRequest = (Vec<u8>, Vec<u8>, Vec<Vec<u8>>);

/// One side of a connection, as the pipes see it.
trait Endpoint {
    type Event;
    fn rx_buf(&mut self) -> &mut [u8];
    fn commit_rx(&mut self, n: usize);
    fn poll_transmit(&self) -> Option<&[u8]>;
    fn advance_transmit(&mut self, n: usize);
    /// Polls events until there are none, recording them.
    fn drain(&mut self, out: &mut Vec<Self::Event>);
}

impl<const RX: usize, const TX: usize, const IF: usize, const S: usize, const SB: usize> Endpoint
    for Client<RX, TX, IF, S, SB>
{
    type Event = CEv;
    fn rx_buf(&mut self) -> &mut [u8] {
        Client::rx_buf(self)
    }
    fn commit_rx(&mut self, n: usize) {
        Client::commit_rx(self, n);
    }
    fn poll_transmit(&self) -> Option<&[u8]> {
        Client::poll_transmit(self)
    }
    fn advance_transmit(&mut self, n: usize) {
        Client::advance_transmit(self, n);
    }
    fn drain(&mut self, out: &mut Vec<CEv>) {
        for _ in 0..100_000 {
            let Some(event) = self.poll_event() else { return };
            out.push(match event {
                ClientEvent::Response { id, values } => CEv::Response(id, owned(values)),
                ClientEvent::Failure { id, message, details } => CEv::Failure(id, message.to_vec(), owned(details)),
                ClientEvent::ResponseTooLarge { id } => CEv::TooLarge(id),
                ClientEvent::Publication {
                    topic,
                    values,
                    subscriptions,
                } => CEv::Publication(topic.to_vec(), owned(values), subscriptions.collect()),
            });
        }
        panic!("the client never ran out of events");
    }
}

impl<const RX: usize, const TX: usize, const S: usize, const SB: usize> Endpoint for ServerConnection<RX, TX, S, SB> {
    type Event = SEv;
    fn rx_buf(&mut self) -> &mut [u8] {
        ServerConnection::rx_buf(self)
    }
    fn commit_rx(&mut self, n: usize) {
        ServerConnection::commit_rx(self, n);
    }
    fn poll_transmit(&self) -> Option<&[u8]> {
        ServerConnection::poll_transmit(self)
    }
    fn advance_transmit(&mut self, n: usize) {
        ServerConnection::advance_transmit(self, n);
    }
    fn drain(&mut self, out: &mut Vec<SEv>) {
        for _ in 0..100_000 {
            let Some(polled) = self.poll_event() else { return };
            out.push(match polled.event {
                ServerEvent::Request { tag, command, args } => {
                    SEv::Request(tag.to_vec(), command.to_vec(), owned(args))
                }
                ServerEvent::Subscribed { topic, kind, new } => SEv::Subscribed(topic.to_vec(), kind, new),
                ServerEvent::SubscribeRefused { topic, reason, .. } => SEv::Refused(topic.to_vec(), reason),
                ServerEvent::Unsubscribed { topic, removed } => SEv::Unsubscribed(topic.to_vec(), removed),
                ServerEvent::Ignored {
                    sigil,
                    reason,
                    answered,
                } => SEv::Ignored(sigil, reason, answered),
            });
        }
        panic!("the server never ran out of events");
    }
}

/// A client and its server connection, joined by two pipes.
struct Pair<C, S> {
    client: C,
    server: S,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    chunk: usize,
    /// Whether the server's transport accepts bytes (false: a peer that does not read).
    server_writes: bool,
    client_events: Vec<CEv>,
    server_events: Vec<SEv>,
}

type DefaultPair = Pair<Client, ServerConnection>;

impl<C: Endpoint<Event = CEv>, S: Endpoint<Event = SEv>> Pair<C, S> {
    fn new(client: C, server: S, chunk: usize) -> Self {
        Self {
            client,
            server,
            c2s: Vec::new(),
            s2c: Vec::new(),
            chunk,
            server_writes: true,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Moves at most one chunk from `from`'s transmit buffer into `pipe`.
    fn send<E: Endpoint>(from: &mut E, pipe: &mut Vec<u8>, chunk: usize) -> bool {
        let Some(bytes) = from.poll_transmit() else {
            return false;
        };
        let n = bytes.len().min(chunk);
        pipe.extend_from_slice(&bytes[..n]);
        from.advance_transmit(n);
        n > 0
    }

    /// Moves at most one chunk from `pipe` into `to`, then drains its events.
    fn receive<E: Endpoint>(to: &mut E, pipe: &mut Vec<u8>, chunk: usize, events: &mut Vec<E::Event>) -> bool {
        let buf = to.rx_buf();
        let n = buf.len().min(pipe.len()).min(chunk);
        buf[..n].copy_from_slice(&pipe[..n]);
        to.commit_rx(n);
        pipe.drain(..n);
        to.drain(events);
        n > 0
    }

    /// Runs both sides until nothing moves.
    fn drive(&mut self) {
        for _ in 0..1_000_000 {
            let mut progress = Self::send(&mut self.client, &mut self.c2s, self.chunk);
            progress |= Self::receive(&mut self.server, &mut self.c2s, self.chunk, &mut self.server_events);
            if self.server_writes {
                progress |= Self::send(&mut self.server, &mut self.s2c, self.chunk);
            }
            progress |= Self::receive(&mut self.client, &mut self.s2c, self.chunk, &mut self.client_events);
            if !progress {
                return;
            }
        }
        panic!("the pair never settled");
    }

    /// Requests the server has seen, in order, removing them from its events.
    fn take_requests(&mut self) -> Vec<SeenRequest> {
        let mut out = Vec::new();
        self.server_events.retain(|e| match e {
            SEv::Request(tag, command, args) => {
                out.push((tag.clone(), command.clone(), args.clone()));
                false
            }
            _ => true,
        });
        out
    }
}

impl<const RX: usize, const TX: usize, const S: usize, const SB: usize, C: Endpoint<Event = CEv>>
    Pair<C, ServerConnection<RX, TX, S, SB>>
{
    /// The server application: answers every request seen so far with its
    /// arguments, in the given order.
    fn echo(&mut self, reverse: bool) -> usize {
        let mut requests = self.take_requests();
        if reverse {
            requests.reverse();
        }
        for (tag, _, args) in &requests {
            self.server.outbox().respond(tag, args).unwrap();
        }
        requests.len()
    }
}

// ---------------------------------------------------------------------------

#[test]
fn request_and_response_in_any_chunking() {
    for chunk in CHUNKS {
        let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), chunk);
        let id = pair.client.request(b"ECHO", [&b"hello"[..], b"", b"world"]).unwrap();
        pair.drive();
        assert_eq!(pair.echo(false), 1);
        pair.drive();
        assert_eq!(
            pair.client_events,
            [CEv::Response(id, vec![b"hello".to_vec(), vec![], b"world".to_vec()])],
            "chunk {chunk}"
        );
        assert_eq!(pair.client.protocol().requests_in_flight(), 0);
        assert_eq!(pair.server.protocol().requests_in_flight(), 0);
    }
}

#[test]
fn out_of_order_responses_reach_their_requests() {
    for chunk in CHUNKS {
        let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), chunk);
        let ids: Vec<RequestId> = (0..10u8).map(|i| pair.client.request(b"N", [[i]]).unwrap()).collect();
        pair.drive();
        assert_eq!(pair.echo(true), 10);
        pair.drive();
        let expected: Vec<CEv> = ids
            .iter()
            .enumerate()
            .rev()
            .map(|(i, &id)| CEv::Response(id, vec![vec![i as u8]]))
            .collect();
        assert_eq!(pair.client_events, expected, "chunk {chunk}");
    }
}

#[test]
fn failures_carry_message_and_details() {
    let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), 5);
    let id = pair.client.request(b"NOPE", [b""; 0]).unwrap();
    pair.drive();
    let (tag, command, _) = pair.take_requests().remove(0);
    assert_eq!(command, b"NOPE");
    pair.server.outbox().fail(&tag, b"no such", [b"d1", b"d2"]).unwrap();
    pair.drive();
    assert_eq!(
        pair.client_events,
        [CEv::Failure(
            id,
            b"no such".to_vec(),
            vec![b"d1".to_vec(), b"d2".to_vec()]
        )]
    );
}

#[test]
fn publications_fan_out_to_every_subscribed_client_once() {
    for chunk in CHUNKS {
        let mut pairs: Vec<DefaultPair> = (0..4)
            .map(|_| Pair::new(Client::new(), ServerConnection::default(), chunk))
            .collect();
        // Client 0: exact; 1: pattern; 2: both (still one publication); 3: nothing.
        let s0 = pairs[0].client.subscribe(b"sensor.kitchen.temp").unwrap();
        let s1 = pairs[1].client.subscribe_pattern(b"sensor.*.temp").unwrap();
        let s2a = pairs[2].client.subscribe(b"sensor.kitchen.temp").unwrap();
        let s2b = pairs[2].client.subscribe_pattern(b"sensor.>").unwrap();
        for p in &mut pairs {
            let _ = p.client.barrier().unwrap();
            p.drive();
        }
        // Every barrier was answered by the server itself, never the application.
        for p in &mut pairs {
            assert!(p.take_requests().is_empty());
            assert!(matches!(p.client_events.pop(), Some(CEv::Response(_, v)) if v.is_empty()));
        }
        let delivered: Vec<bool> = pairs
            .iter_mut()
            .map(|p| p.server.outbox().publish(b"sensor.kitchen.temp", [b"21.5"]).unwrap())
            .collect();
        assert_eq!(delivered, [true, true, true, false]);
        let delivered: Vec<bool> = pairs
            .iter_mut()
            .map(|p| p.server.outbox().publish(b"sensor.kitchen.humidity.x", [b"1"]).unwrap())
            .collect();
        assert_eq!(delivered, [false, false, true, false], "only `sensor.>` matches");
        for p in &mut pairs {
            p.drive();
        }
        let value = vec![b"21.5".to_vec()];
        let topic = b"sensor.kitchen.temp".to_vec();
        assert_eq!(
            pairs[0].client_events,
            [CEv::Publication(topic.clone(), value.clone(), vec![s0])]
        );
        assert_eq!(
            pairs[1].client_events,
            [CEv::Publication(topic.clone(), value.clone(), vec![s1])]
        );
        assert_eq!(
            pairs[2].client_events[0],
            CEv::Publication(topic, value, vec![s2a, s2b]),
            "one frame, both subscriptions"
        );
        assert_eq!(
            pairs[2].client_events[1..],
            [CEv::Publication(
                b"sensor.kitchen.humidity.x".to_vec(),
                vec![b"1".to_vec()],
                vec![s2b]
            )]
        );
        assert!(pairs[3].client_events.is_empty());
    }
}

#[test]
fn unsubscribe_removes_exact_and_pattern_on_the_server() {
    let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), 3);
    let exact = pair.client.subscribe(b"a.b").unwrap();
    let pattern = pair.client.subscribe_pattern(b"a.*").unwrap();
    // A second local user of the same topic shares the wire subscription.
    let again = pair.client.subscribe(b"a.b").unwrap();
    assert_eq!(exact, again);
    pair.drive();
    assert_eq!(
        pair.server_events,
        [
            SEv::Subscribed(b"a.b".to_vec(), SubscriptionKind::Exact, true),
            SEv::Subscribed(b"a.*".to_vec(), SubscriptionKind::Pattern, true),
        ]
    );
    pair.server_events.clear();
    assert_eq!(pair.client.unsubscribe(pattern), Ok(true));
    assert_eq!(pair.client.unsubscribe(exact), Ok(false), "one reference left");
    pair.drive();
    assert_eq!(pair.server_events, [SEv::Unsubscribed(b"a.*".to_vec(), 1)]);
    assert!(pair.server.protocol().is_subscribed(b"a.b"));
    assert!(!pair.server.protocol().is_subscribed(b"a.c"));
    assert_eq!(pair.client.unsubscribe(exact), Ok(true));
    pair.drive();
    assert!(!pair.server.protocol().is_subscribed(b"a.b"));
    assert!(pair.server.protocol().subscriptions().is_empty());
    assert!(pair.client.protocol().subscriptions().is_empty());
}

#[test]
fn the_barrier_proves_the_subscription_is_in_place() {
    for chunk in CHUNKS {
        let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), chunk);
        let _ = pair.client.subscribe(b"news").unwrap();
        let barrier = pair.client.barrier().unwrap();
        // Step until the client sees the barrier's response; at that moment the
        // server must already hold the subscription.
        for _ in 0..100_000 {
            if !pair.client_events.is_empty() {
                break;
            }
            assert!(!pair.server.protocol().is_subscribed(b"news") || pair.c2s.is_empty() || chunk < 64);
            Pair::<Client, ServerConnection>::send(&mut pair.client, &mut pair.c2s, chunk);
            Pair::<Client, ServerConnection>::receive(&mut pair.server, &mut pair.c2s, chunk, &mut pair.server_events);
            Pair::<Client, ServerConnection>::send(&mut pair.server, &mut pair.s2c, chunk);
            Pair::<Client, ServerConnection>::receive(&mut pair.client, &mut pair.s2c, chunk, &mut pair.client_events);
        }
        assert_eq!(pair.client_events, [CEv::Response(barrier, vec![])]);
        assert!(pair.server.protocol().is_subscribed(b"news"));
        assert!(pair.take_requests().is_empty(), "the application never saw the barrier");
    }
}

#[test]
fn eof_mid_frame_loses_only_that_frame() {
    for chunk in CHUNKS {
        // Client to server: one whole request, then half of another.
        let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), chunk);
        let _ = pair.client.request(b"WHOLE", [b"1"]).unwrap();
        let whole_len = pair.client.poll_transmit().unwrap().len();
        let _ = pair.client.request(b"CUT", [b"2"]).unwrap();
        let bytes = pair.client.poll_transmit().unwrap().to_vec();
        pair.client.advance_transmit(bytes.len());
        pair.c2s.extend_from_slice(&bytes[..whole_len + 5]);
        pair.drive();
        assert_eq!(pair.take_requests().len(), 1);
        assert!(pair.server.handle_eof(), "a partial frame was lost");
        assert_eq!(pair.server.protocol().requests_in_flight(), 0);
        // The next connection starts clean.
        pair.c2s.clear();
        assert_eq!(pair.client.handle_eof(), 2);
        assert!(pair.client.reconnected().is_ok());
        let id = pair.client.request(b"AFTER", [b"3"]).unwrap();
        pair.drive();
        let requests = pair.take_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].1, b"AFTER");
        pair.server.outbox().respond(&requests[0].0, &requests[0].2).unwrap();
        pair.drive();
        assert_eq!(pair.client_events, [CEv::Response(id, vec![b"3".to_vec()])]);
        assert!(!pair.server.handle_eof(), "nothing partial this time");

        // Server to client: a response whole, a publication cut.
        let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), chunk);
        let id = pair.client.request(b"Q", [b""; 0]).unwrap();
        let other = pair.client.request(b"R", [b""; 0]).unwrap();
        let _ = pair.client.subscribe(b"t").unwrap();
        pair.drive();
        let requests = pair.take_requests();
        pair.server.outbox().respond(&requests[0].0, [b"ok"]).unwrap();
        pair.server.outbox().publish(b"t", [b"lost"]).unwrap();
        let all = pair.server.poll_transmit().unwrap().to_vec();
        pair.s2c.extend_from_slice(&all[..all.len() - 2]);
        let n = all.len();
        pair.server.advance_transmit(n);
        pair.drive();
        assert_eq!(pair.client_events, [CEv::Response(id, vec![b"ok".to_vec()])]);
        assert_eq!(pair.client.handle_eof(), 1, "the unanswered request is dropped");
        assert!(!pair.client.protocol().is_pending(other));
        assert_eq!(
            pair.client.protocol().subscriptions().len(),
            1,
            "kept for resubscribing"
        );
    }
}

#[test]
fn reconnecting_resubscribes() {
    let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), 4);
    let _ = pair.client.subscribe(b"a").unwrap();
    let _ = pair.client.subscribe_pattern(b"b.*").unwrap();
    pair.drive();
    assert!(pair.server.protocol().is_subscribed(b"b.x"));
    pair.client.handle_eof();
    assert!(!pair.server.handle_eof());
    assert!(!pair.server.protocol().is_subscribed(b"a"));
    assert_eq!(pair.client.reconnected(), Ok(2));
    pair.drive();
    assert!(pair.server.protocol().is_subscribed(b"a"));
    assert!(pair.server.protocol().is_subscribed(b"b.x"));
}

#[test]
fn client_inflight_limit_is_a_typed_error_until_an_answer_arrives() {
    let mut pair = Pair::new(Client::<256, 256, 2>::new(), ServerConnection::<256, 256>::default(), 7);
    let a = pair.client.request(b"A", [b""; 0]).unwrap();
    let _b = pair.client.request(b"B", [b""; 0]).unwrap();
    let queued = pair.client.poll_transmit().unwrap().to_vec();
    assert_eq!(pair.client.request(b"C", [b""; 0]), Err(RequestError::InflightFull));
    assert_eq!(pair.client.barrier(), Err(RequestError::InflightFull));
    assert_eq!(pair.client.poll_transmit().unwrap(), queued, "nothing written");
    // A cancelled request still holds its tag until its late answer.
    assert!(pair.client.cancel(a));
    assert_eq!(pair.client.request(b"C", [b""; 0]), Err(RequestError::InflightFull));
    pair.drive();
    let requests = pair.take_requests();
    pair.server.outbox().respond(&requests[0].0, [b"late"]).unwrap();
    pair.drive();
    assert!(
        pair.client_events.is_empty(),
        "the late answer to a cancelled request is dropped"
    );
    assert_eq!(pair.client.protocol().requests_in_flight(), 1);
    assert!(pair.client.request(b"C", [b""; 0]).is_ok());
}

#[test]
fn subscription_limits_are_typed_errors_on_both_sides() {
    // Client: two subscriptions, eight bytes of topic storage.
    let mut client: Client<64, 64, 4, 2, 8> = Client::new();
    let _ = client.subscribe(b"abcd").unwrap();
    let before = client.poll_transmit().unwrap().to_vec();
    assert_eq!(client.subscribe(b"efghi"), Err(SubscribeError::TopicStorageFull));
    let _ = client.subscribe(b"ef").unwrap();
    let before2 = client.poll_transmit().unwrap().to_vec();
    assert!(before2.starts_with(&before));
    assert_eq!(client.subscribe(b"g"), Err(SubscribeError::SubscriptionsFull));
    assert_eq!(client.subscribe_pattern(b"x.*"), Err(SubscribeError::SubscriptionsFull));
    assert!(matches!(
        client.subscribe_pattern(b"a..b"),
        Err(SubscribeError::InvalidPattern(_))
    ));
    assert!(client.subscribe(b"abcd").is_ok(), "an existing topic takes no room");
    assert_eq!(
        client.poll_transmit().unwrap(),
        before2,
        "failures and duplicates sent nothing"
    );

    // Server: one subscription of at most four bytes; refusals are events.
    let mut pair = Pair::new(
        Client::<256, 256>::new(),
        ServerConnection::<256, 256, 1, 4>::default(),
        3,
    );
    let _ = pair.client.subscribe(b"toolong").unwrap();
    let _ = pair.client.subscribe(b"ok").unwrap();
    let _ = pair.client.subscribe(b"no").unwrap();
    let _ = pair.client.subscribe_pattern(b"a.b.c").unwrap();
    pair.drive();
    assert_eq!(
        pair.server_events,
        [
            SEv::Refused(b"toolong".to_vec(), SubscribeError::TopicStorageFull),
            SEv::Subscribed(b"ok".to_vec(), SubscriptionKind::Exact, true),
            SEv::Refused(b"no".to_vec(), SubscribeError::SubscriptionsFull),
            SEv::Refused(b"a.b.c".to_vec(), SubscribeError::SubscriptionsFull),
        ]
    );
}

#[test]
fn server_in_flight_limit_fails_extra_requests() {
    for chunk in CHUNKS {
        let server = ServerConnection::new(ServerLimits { max_in_flight: 2 });
        let mut pair: DefaultPair = Pair::new(Client::new(), server, chunk);
        let ids: Vec<RequestId> = (0..4)
            .map(|_| pair.client.request(b"SLOW", [b""; 0]).unwrap())
            .collect();
        pair.drive();
        assert_eq!(pair.take_requests().len(), 2);
        assert_eq!(
            pair.server_events,
            [
                SEv::Ignored(b'(', IgnoreReason::TooManyInFlight, true),
                SEv::Ignored(b'(', IgnoreReason::TooManyInFlight, true)
            ]
        );
        assert_eq!(
            pair.client_events,
            [
                CEv::Failure(ids[2], TOO_MANY_IN_FLIGHT.to_vec(), vec![]),
                CEv::Failure(ids[3], TOO_MANY_IN_FLIGHT.to_vec(), vec![])
            ]
        );
        assert_eq!(TOO_MANY_IN_FLIGHT, b"too many requests in flight");
        // The empty command is not counted and still answered.
        let barrier = pair.client.barrier().unwrap();
        pair.drive();
        assert_eq!(pair.client_events.last(), Some(&CEv::Response(barrier, vec![])));
    }
}

#[test]
fn oversized_requests_are_failed_and_the_connection_goes_on() {
    for chunk in CHUNKS {
        let server = ServerConnection::with_max_frame(ServerLimits::default(), 32);
        let mut pair: DefaultPair = Pair::new(Client::new(), server, chunk);
        let big = pair.client.request(b"BIG", [&[0xAB; 500][..]]).unwrap();
        let small = pair.client.request(b"SMALL", [b"x"]).unwrap();
        pair.drive();
        assert_eq!(pair.server_events[0], SEv::Ignored(b'(', IgnoreReason::TooLarge, true));
        let requests = pair.take_requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].1, b"SMALL");
        pair.server.outbox().respond(&requests[0].0, &requests[0].2).unwrap();
        pair.drive();
        assert_eq!(
            pair.client_events,
            [
                CEv::Failure(big, FRAME_TOO_LARGE.to_vec(), vec![]),
                CEv::Response(small, vec![b"x".to_vec()])
            ],
            "chunk {chunk}"
        );
        assert_eq!(FRAME_TOO_LARGE, b"frame too large");
    }
}

#[test]
fn oversized_responses_fail_the_request_on_the_client() {
    for chunk in CHUNKS {
        let client: Client = Client::with_max_frame(32);
        let mut pair: DefaultPair = Pair::new(client, ServerConnection::default(), chunk);
        let big = pair.client.request(b"BIG", [b""; 0]).unwrap();
        let small = pair.client.request(b"SMALL", [b""; 0]).unwrap();
        let _ = pair.client.subscribe(b"t").unwrap();
        pair.drive();
        let requests = pair.take_requests();
        pair.server.outbox().respond(&requests[0].0, [&[7u8; 300][..]]).unwrap();
        pair.server.outbox().publish(b"t", [&[8u8; 300][..]]).unwrap();
        pair.server.outbox().respond(&requests[1].0, [b"fits"]).unwrap();
        pair.drive();
        assert_eq!(
            pair.client_events,
            [CEv::TooLarge(big), CEv::Response(small, vec![b"fits".to_vec()])],
            "an oversized publication is dropped silently; chunk {chunk}"
        );
        assert_eq!(pair.client.protocol().requests_in_flight(), 0);
    }
}

#[test]
fn a_full_client_tx_is_a_typed_error_that_changes_nothing() {
    let mut client: Client<64, 32> = Client::new();
    assert_eq!(
        client.request(b"TOO", [&[0u8; 40][..]]),
        Err(RequestError::Encode(EncodeError::FrameTooLarge {
            required: 2 + 5 + 7 + 44,
            capacity: 32
        }))
    );
    assert_eq!(client.protocol().requests_in_flight(), 0);
    assert!(client.poll_transmit().is_none());
    let first = client.request(b"A", [&[1u8; 10][..]]).unwrap(); // 2 + 5 + 5 + 14 = 26 bytes
    let queued = client.poll_transmit().unwrap().to_vec();
    assert!(matches!(
        client.request(b"B", [b""; 0]),
        Err(RequestError::Encode(EncodeError::BufferTooSmall { available: 6, .. }))
    ));
    assert!(matches!(client.subscribe(b"news"), Err(SubscribeError::Encode(_))));
    assert!(client.protocol().subscriptions().is_empty());
    assert_eq!(client.poll_transmit().unwrap(), queued);
    assert_eq!(client.protocol().requests_in_flight(), 1);
    // A partial write frees room once the rest fits.
    client.advance_transmit(20);
    assert!(client.request(b"B", [b""; 0]).is_ok());
    assert!(client.protocol().is_pending(first));
}

#[test]
fn a_server_with_a_full_tx_stalls_instead_of_dropping_its_own_answers() {
    for chunk in CHUNKS {
        // Each barrier answer is 7 bytes; the server's TX holds five.
        let client: Client = Client::new();
        let server: ServerConnection<256, 40> = ServerConnection::default();
        let mut pair = Pair::new(client, server, chunk);
        let mut ids: Vec<RequestId> = (0..10).map(|_| pair.client.barrier().unwrap()).collect();
        let queued = pair.client.poll_transmit().unwrap().to_vec();
        pair.client.advance_transmit(queued.len());
        pair.c2s.extend_from_slice(&queued);
        // A request without a command, which the machine fails by itself
        // (33 bytes: it fits only once the buffer has drained).
        pair.c2s.extend_from_slice(b"(\x01\x00\x00\x00\x01\x63");
        ids.extend((0..2).map(|_| pair.client.barrier().unwrap()));
        pair.server_writes = false;
        pair.drive();
        assert_eq!(pair.server.poll_transmit().map(<[u8]>::len), Some(35), "chunk {chunk}");
        assert!(pair.client_events.is_empty());
        assert!(pair.server.poll_event().is_none(), "stalled, not dropping");
        // An answer that does not fit is a typed error that writes nothing.
        assert!(matches!(
            pair.server.outbox().respond(b"\x00", [b"x"]),
            Err(EncodeError::BufferTooSmall {
                required: 12,
                available: 5
            })
        ));
        assert_eq!(pair.server.poll_transmit().map(<[u8]>::len), Some(35));
        pair.server_writes = true;
        pair.drive();
        let expected: Vec<CEv> = ids.iter().map(|&id| CEv::Response(id, vec![])).collect();
        assert_eq!(pair.client_events, expected, "every barrier answered, in order");
        assert_eq!(pair.server_events, [SEv::Ignored(b'(', IgnoreReason::Malformed, true)]);
    }
}

#[test]
fn tags_wrap_around_over_many_requests() {
    // 256 slots, like the original client's one-byte counter.
    let mut pair = Pair::new(
        Client::<4096, 4096, 256>::new(),
        ServerConnection::<4096, 4096>::default(),
        64,
    );
    let mut tags = Vec::new();
    // Well past the wrap at 256; fewer under Miri, which is some thousand times slower.
    let count: u32 = if cfg!(miri) { 300 } else { 600 };
    for i in 0..count {
        let id = pair.client.request(b"N", [i.to_be_bytes()]).unwrap();
        pair.drive();
        let requests = pair.take_requests();
        assert_eq!(requests.len(), 1);
        tags.push(requests[0].0.clone());
        pair.server.outbox().respond(&requests[0].0, &requests[0].2).unwrap();
        pair.drive();
        assert_eq!(
            pair.client_events.pop(),
            Some(CEv::Response(id, vec![i.to_be_bytes().to_vec()]))
        );
    }
    assert!(
        tags.iter().all(|t| t.len() == 1),
        "one-byte tags like the original client"
    );
    assert_eq!(tags[0], [0]);
    assert_eq!(tags[255], [255]);
    assert_eq!(tags[256], [0], "wraps after 255");
    let last = count - 1;
    assert_eq!(tags[last as usize], [(last % 256) as u8]);
}

#[test]
fn many_requests_in_flight_use_two_byte_tags_past_256() {
    let mut pair = Pair::new(
        Client::<4096, 8192, 300>::new(),
        ServerConnection::<4096, 8192>::new(ServerLimits { max_in_flight: 300 }),
        1000,
    );
    let ids: Vec<RequestId> = (0..300u16)
        .map(|i| {
            let id = pair.client.request(b"N", [i.to_be_bytes()]).unwrap();
            if i % 50 == 49 {
                pair.drive();
            }
            id
        })
        .collect();
    pair.drive();
    let requests = pair.take_requests();
    assert_eq!(requests.len(), 300);
    let mut tags: Vec<&[u8]> = requests.iter().map(|r| &r.0[..]).collect();
    assert_eq!(tags[256], [1, 0]);
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), 300, "no tag in use twice");
    for (tag, _, args) in requests.iter().rev() {
        pair.server.outbox().respond(tag, args).unwrap();
        pair.drive();
    }
    let expected: Vec<CEv> = ids
        .iter()
        .enumerate()
        .rev()
        .map(|(i, &id)| CEv::Response(id, vec![(i as u16).to_be_bytes().to_vec()]))
        .collect();
    assert_eq!(pair.client_events, expected);
}

#[test]
fn stale_request_ids_never_match_newer_requests() {
    let mut pair = Pair::new(Client::<256, 256, 1>::new(), ServerConnection::<256, 256>::default(), 9);
    let old = pair.client.request(b"A", [b""; 0]).unwrap();
    pair.drive();
    pair.echo(false);
    pair.drive();
    assert_eq!(pair.client_events.pop(), Some(CEv::Response(old, vec![])));
    let new = pair.client.request(b"B", [b""; 0]).unwrap();
    assert_eq!(old.slot(), new.slot());
    assert_ne!(old, new);
    assert!(!pair.client.protocol().is_pending(old));
    assert!(!pair.client.cancel(old), "cancelling a stale id does nothing");
    assert!(pair.client.protocol().is_pending(new));
    pair.drive();
    pair.echo(false);
    pair.drive();
    assert_eq!(pair.client_events, [CEv::Response(new, vec![])]);
}

#[test]
fn stray_and_malformed_frames_are_ignored() {
    let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), 2);
    // Server to client: a response nobody waits for, a publication nobody wants,
    // a frame with an unknown sigil.
    pair.s2c.extend_from_slice(b")\x01\x00\x00\x00\x01\x09");
    pair.s2c.extend_from_slice(b"!\x01\x00\x00\x00\x01z");
    pair.s2c.extend_from_slice(b"?\x00");
    // Client to server: a request without a command, one without even a tag, a
    // response (only servers send those), an unknown sigil.
    pair.c2s.extend_from_slice(b"(\x01\x00\x00\x00\x01\x05");
    pair.c2s.extend_from_slice(b"(\x00");
    pair.c2s.extend_from_slice(b")\x01\x00\x00\x00\x01\x05");
    pair.c2s.extend_from_slice(b"~\x00");
    pair.drive();
    assert!(pair.client_events.is_empty());
    assert_eq!(
        pair.server_events,
        [
            SEv::Ignored(b'(', IgnoreReason::Malformed, true),
            SEv::Ignored(b'(', IgnoreReason::Malformed, false),
            SEv::Ignored(b')', IgnoreReason::NotForServer, false),
            SEv::Ignored(b'~', IgnoreReason::UnknownSigil, false),
        ]
    );
    // The `#` answering the request without a command went to the client, which
    // had nothing pending and ignored it; the connection still works.
    let id = pair.client.request(b"OK", [b""; 0]).unwrap();
    pair.drive();
    pair.echo(false);
    pair.drive();
    assert_eq!(pair.client_events, [CEv::Response(id, vec![])]);
}

/// Regression: an oversized publication's first argument is its topic; a topic
/// that looked like a pending request's tag used to fail that request (and its
/// real response was then dropped as a stray).
#[test]
fn an_oversized_publication_never_fails_a_request() {
    for chunk in CHUNKS {
        let client: Client = Client::with_max_frame(32);
        let mut pair: DefaultPair = Pair::new(client, ServerConnection::default(), chunk);
        let id = pair.client.request(b"Q", [b""; 0]).unwrap();
        let topic = id.slot().to_be_bytes()[1..].to_vec();
        let _ = pair.client.subscribe(&topic).unwrap();
        pair.drive();
        let requests = pair.take_requests();
        assert_eq!(requests[0].0, topic, "the topic spells the request's tag");
        assert_eq!(pair.server.outbox().publish(&topic, [&[0u8; 100][..]]), Ok(true));
        pair.drive();
        assert!(pair.client_events.is_empty(), "chunk {chunk}: {:?}", pair.client_events);
        assert!(pair.client.protocol().is_pending(id));
        pair.server.outbox().respond(&requests[0].0, [b"ok"]).unwrap();
        pair.drive();
        assert_eq!(pair.client_events, [CEv::Response(id, vec![b"ok".to_vec()])]);
    }
}

/// Regression: `-` removes the server's exact and pattern subscriptions with the
/// same string; dropping one kind used to silently drop the other on the server
/// while the client still counted on it.
#[test]
fn unsubscribing_one_kind_keeps_the_other_with_the_same_string() {
    let mut pair: DefaultPair = Pair::new(Client::new(), ServerConnection::default(), 5);
    let exact = pair.client.subscribe(b"a.*").unwrap();
    let pattern = pair.client.subscribe_pattern(b"a.*").unwrap();
    pair.drive();
    assert!(pair.server.protocol().is_subscribed(b"a.b"));
    assert_eq!(pair.client.unsubscribe(pattern), Ok(true));
    pair.drive();
    assert!(
        pair.server.protocol().is_subscribed(b"a.*"),
        "the exact topic is still wanted"
    );
    assert!(!pair.server.protocol().is_subscribed(b"a.b"), "the pattern is gone");
    assert_eq!(pair.server.outbox().publish(b"a.*", [b"v"]), Ok(true));
    pair.drive();
    assert_eq!(
        pair.client_events,
        [CEv::Publication(b"a.*".to_vec(), vec![b"v".to_vec()], vec![exact])]
    );
    // And the other way round.
    let pattern = pair.client.subscribe_pattern(b"a.*").unwrap();
    assert_eq!(pair.client.unsubscribe(exact), Ok(true));
    pair.drive();
    assert!(pair.server.protocol().is_subscribed(b"a.b"));
    assert_eq!(
        pair.server
            .protocol()
            .subscriptions()
            .iter()
            .map(|(_, k, _)| k)
            .collect::<Vec<_>>(),
        [SubscriptionKind::Pattern]
    );
    assert_eq!(pair.client.unsubscribe(pattern), Ok(true));
    pair.drive();
    assert!(pair.server.protocol().subscriptions().is_empty());
    // Both frames or neither: a sink with room for one only gets an error.
    let mut client: Client<64, 24> = Client::new();
    let a = client.subscribe(b"x.y").unwrap();
    let _ = client.subscribe_pattern(b"x.y").unwrap();
    client.advance_transmit(usize::MAX);
    let _ = client.request(b"R", [b""; 0]).unwrap(); // 12 bytes, 12 left: one 9-byte frame fits, not two
    assert!(matches!(
        client.unsubscribe(a),
        Err(microsocket_core::UnsubscribeError::Encode(_))
    ));
    assert_eq!(client.poll_transmit().map(<[u8]>::len), Some(12));
    assert_eq!(client.protocol().subscriptions().len(), 2);
}
