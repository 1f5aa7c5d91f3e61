//! The bridge: its NATS connection, and the tasks that carry publications and
//! requests across.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{ConnectOptions, Event, HeaderMap};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use microsocket_tokio::{Client, Error as BusError, Handler, Publication, Publisher, Server};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::config::BridgeConfig;
use crate::config::{redacted_url, Credentials, NatsOptions};
use crate::error::BridgeError;
use crate::failures;
use crate::loops::{digest, Echoes};
use crate::mapping::{
    decode, decode_with, encode_failure, encode_values, header_name, join, single_value, subject_tail, Body, Content,
    MaxPayload, OwnHeaders, ORIGIN_HEADER,
};
use crate::remote::Remote;
use crate::stats::Counters;
use crate::stats::{BridgeStats, StatsHandle};

/// A bridge between one microsocket bus and NATS.
///
/// [`Bridge::connect`] reaches NATS (and keeps reconnecting on its own);
/// [`Bridge::attach_server`] or [`Bridge::attach`] then starts carrying
/// publications and requests. Dropping the bridge stops it.
#[derive(Debug)]
pub struct Bridge {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: BridgeConfig,
    pub(crate) nats: async_nats::Client,
    pub(crate) counters: Arc<Counters>,
    connected: watch::Receiver<bool>,
    /// Where the connection state is told, by the event callback and by
    /// [`Shared::refresh_state`] (events can be lost).
    state: Arc<watch::Sender<bool>>,
    /// What the client's own state said, and since when.
    observed: Mutex<Option<(bool, std::time::Instant)>>,
    origin: String,
    echoes: Echoes,
    held: Mutex<VecDeque<Outgoing>>,
    max_payload: MaxPayload,
}

/// An exported publication on its way to NATS.
#[derive(Debug)]
struct Outgoing {
    subject: String,
    headers: Option<HeaderMap>,
    payload: Bytes,
    size: usize,
}

/// How the bridge publishes what it imports on the local bus.
#[derive(Debug, Clone)]
pub enum LocalPublish {
    /// Straight through the server's publisher (a bridge in the server's
    /// process).
    Direct(Publisher),
    /// Through a request to the server: `COMMAND topic value...`, such as
    /// `microsocket serve`'s `PUBLISH` (a bridge in a process of its own).
    Command(String),
}

impl Bridge {
    /// Connects to NATS. Returns at once, also when NATS is not reachable
    /// yet: the connection is retried, then kept up, in the background; the
    /// bridge holds what it exports meanwhile (up to
    /// [`BridgeConfig::max_held_bytes`]).
    ///
    /// The connection asks NATS not to echo the bridge's own publications back
    /// to it.
    ///
    /// # Errors
    /// [`BridgeError::Config`] for a bad setting or unreadable credentials,
    /// [`BridgeError::Nats`] if the URL cannot be used.
    pub async fn connect(nats: &NatsOptions, config: BridgeConfig) -> Result<Bridge, BridgeError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let (state, connected) = watch::channel(false);
        let state = Arc::new(state);
        let options = connect_options(nats, &config, counters.clone(), state.clone()).await?;
        let client = options
            .connect(nats.urls())
            .await
            .map_err(|e| BridgeError::Nats(format!("{}: {e}", redacted_url(&nats.url))))?;
        if client.connection_state() == async_nats::connection::State::Connected {
            counters.connected.store(true, Relaxed);
        }
        let origin = format!("{}.{}.{}", config.prefix(), std::process::id(), unique());
        let max_payload = MaxPayload::default();
        max_payload.refresh(&client);
        Ok(Bridge {
            shared: Arc::new(Shared {
                config,
                nats: client,
                counters,
                connected,
                state,
                observed: Mutex::new(None),
                origin,
                echoes: Echoes::default(),
                held: Mutex::new(VecDeque::new()),
                max_payload,
            }),
            tasks: Vec::new(),
        })
    }

    /// Starts bridging `server`, in this process: a tap on the server for
    /// exports ([`Server::tap`], holding up to
    /// [`BridgeConfig::max_held_bytes`] unread), an in-process connection for
    /// NATS requests, its publisher for imports and state reports (the state
    /// topic keeps its last report for late subscribers).
    ///
    /// # Errors
    /// As [`Bridge::attach`]; [`BridgeError::Bus`] if the server refuses the
    /// connection, [`BridgeError::Config`] if it refuses the tap.
    pub async fn attach_server<H: Handler>(&mut self, server: &Server<H>) -> Result<(), BridgeError> {
        let held = self.shared.config.held_limit();
        let bus = server
            .connect_in_process()
            .map_err(|e| BridgeError::Bus(BusError::Io(e)))?;
        if let Some(topic) = self.shared.config.state() {
            server
                .publisher()
                .set_buffer(topic, 1)
                .map_err(|e| BridgeError::Config(format!("state topic {topic:?}: {e}")))?;
        }
        // Exports are read from the server's hub as it publishes them;
        // they wait there, up to the bridge's bound, before they count as
        // dropped.
        let exports = self.shared.config.exports();
        if !exports.is_empty() {
            let tap = server
                .tap(exports.iter().map(String::as_bytes), held)
                .map_err(|e| BridgeError::Config(format!("exports: {e}")))?;
            self.tasks.push(tokio::spawn(export(self.shared.clone(), tap)));
        }
        self.attach_rest(bus, LocalPublish::Direct(server.publisher())).await
    }

    /// Starts bridging the bus that `bus` is connected to: subscribes it to
    /// the export patterns, then carries publications and requests until the
    /// bridge is dropped.
    ///
    /// # Errors
    /// [`BridgeError::Bus`] if the bus refuses an export subscription,
    /// [`BridgeError::Nats`] if NATS refuses a subscription.
    pub async fn attach(&mut self, bus: Client, publish: LocalPublish) -> Result<(), BridgeError> {
        let shared = &self.shared;
        if !shared.config.exports().is_empty() {
            let mut subscriber = bus.subscriber();
            for pattern in shared.config.exports() {
                subscriber = subscriber.pattern(pattern);
            }
            let subscription = subscriber.subscribe().await.map_err(BridgeError::Bus)?;
            self.tasks.push(tokio::spawn(export(shared.clone(), subscription)));
        }
        self.attach_rest(bus, publish).await
    }

    /// Starts what [`Bridge::attach`] does besides exports: imports, NATS
    /// requests and state reports.
    async fn attach_rest(&mut self, bus: Client, publish: LocalPublish) -> Result<(), BridgeError> {
        let shared = &self.shared;
        // One task for every import rule, so that noting an expected echo
        // and publishing happen in the order the echoes come back.
        let mut subscribers = Vec::new();
        for (rule, import) in shared.config.imports().iter().enumerate() {
            let subscriber = shared
                .nats
                .subscribe(import.subject())
                .await
                .map_err(|e| BridgeError::Nats(format!("cannot subscribe to {}: {e}", import.subject())))?;
            subscribers.push(subscriber.map(move |message| (rule, message)));
        }
        if !subscribers.is_empty() {
            // One rule's subscriber is read directly: merging streams costs
            // per message.
            let messages = if subscribers.len() == 1 {
                subscribers.remove(0).boxed()
            } else {
                futures_util::stream::select_all(subscribers).boxed()
            };
            self.tasks.push(tokio::spawn(import_to_bus(
                shared.clone(),
                messages,
                bus.clone(),
                publish.clone(),
            )));
        }
        if shared.config.serves_requests() {
            let subject = join(shared.config.prefix(), ">");
            let subscriber = shared
                .nats
                .subscribe(subject.clone())
                .await
                .map_err(|e| BridgeError::Nats(format!("cannot subscribe to {subject}: {e}")))?;
            self.tasks
                .push(tokio::spawn(serve_requests(shared.clone(), subscriber, bus.clone())));
        }
        if let Some(topic) = shared.config.state() {
            self.tasks.push(tokio::spawn(report_state(
                shared.clone(),
                topic.to_owned(),
                bus,
                publish,
            )));
        }
        Ok(())
    }

    /// What the bridge has done so far.
    #[must_use]
    pub fn stats(&self) -> BridgeStats {
        self.shared.counters.snapshot()
    }

    /// A handle to read [`Bridge::stats`] from elsewhere.
    #[must_use]
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.shared.counters.clone())
    }

    /// The way for local requests to reach other buses over this bridge's
    /// NATS connection (see [`Remote`]).
    #[must_use]
    pub fn remote(&self) -> Remote {
        Remote::new(
            self.shared.nats.clone(),
            self.shared.config.timeout(),
            self.shared.counters.clone(),
            self.shared.max_payload.clone(),
        )
    }

    /// The NATS connection.
    #[must_use]
    pub fn nats(&self) -> &async_nats::Client {
        &self.shared.nats
    }

    /// This bridge's origin: the value of the `Microsocket-Origin` header of
    /// what it exports.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Waits until NATS is connected (or `timeout` passes); returns whether it
    /// is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut connected = self.shared.connected.clone();
        tokio::time::timeout(timeout, connected.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A number that tells apart two bridges started by one process.
fn unique() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (u64::from(nanos) << 16) ^ NEXT.fetch_add(1, Relaxed)
}

async fn connect_options(
    nats: &NatsOptions,
    config: &BridgeConfig,
    counters: Arc<Counters>,
    state: Arc<watch::Sender<bool>>,
) -> Result<ConnectOptions, BridgeError> {
    // async-nats reads these at each connect; a bad one is an error now,
    // not endless silent retries.
    let files = nats
        .tls_ca
        .iter()
        .chain(nats.tls_client.iter().flat_map(|(cert, key)| [cert, key]));
    for file in files {
        std::fs::read(file).map_err(|e| BridgeError::Config(format!("cannot read {}: {e}", file.display())))?;
    }
    let mut options = match &nats.credentials {
        Credentials::None => ConnectOptions::new(),
        Credentials::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Credentials::Token(token) => ConnectOptions::with_token(token.clone()),
        Credentials::NKey(seed) => ConnectOptions::with_nkey(seed.clone()),
        Credentials::CredsFile(path) => ConnectOptions::with_credentials_file(path.clone())
            .await
            .map_err(|e| BridgeError::Config(format!("cannot read the credentials file {}: {e}", path.display())))?,
    };
    if let Some(ca) = &nats.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &nats.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options
        .name(format!("microsocket bridge {}", config.prefix()))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| Duration::from_millis(50u64 << attempts.min(6)).min(RECONNECT_DELAY_MAX))
        .event_callback(move |event| {
            let (counters, state) = (counters.clone(), state.clone());
            async move {
                match event {
                    Event::Connected => {
                        counters.connected.store(true, Relaxed);
                        state.send_replace(true);
                        tracing::info!("NATS connected");
                    }
                    Event::Disconnected => {
                        counters.connected.store(false, Relaxed);
                        Counters::add(&counters.disconnections, 1);
                        state.send_replace(false);
                        tracing::warn!("NATS disconnected; reconnecting");
                    }
                    // Messages async-nats dropped for a full subscription.
                    Event::SlowConsumer(_) => Counters::add(&counters.dropped, 1),
                    other => tracing::info!(event = %other, "NATS"),
                }
            }
        }))
}

/// The longest wait between two attempts to reach NATS.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// Bus → NATS. While NATS is connected and nothing is held, each
/// publication goes straight out; otherwise it is held (up to the bound,
/// oldest dropped first) until NATS is back. While NATS is slow to take
/// them, publications wait where `subscription` reads them from (the
/// server's tap, or the bridge's bus connection), under the same bound, and
/// what is dropped there is counted.
async fn export<S>(shared: Arc<Shared>, mut subscription: S)
where
    S: futures_util::Stream<Item = Result<Publication, BusError>> + Unpin,
{
    let mut connected = shared.connected.clone();
    let mut tick = tokio::time::interval(STATE_CHECK);
    loop {
        tokio::select! {
            _ = tick.tick() => shared.refresh_state(),
            item = subscription.next() => match item {
                Some(Ok(publication)) => {
                    let Some(out) = shared.prepare(&publication) else { continue };
                    if *connected.borrow() && shared.nothing_held() {
                        shared.send(out).await;
                    } else {
                        shared.hold(out);
                    }
                }
                Some(Err(BusError::Lagged { missed })) => Counters::add(&shared.counters.dropped, missed),
                Some(Err(BusError::Reconnecting)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the bridge's bus connection ended; exports stop");
                    return;
                }
                None => return,
            },
            changed = connected.changed() => {
                if changed.is_err() {
                    return;
                }
                if *connected.borrow() {
                    shared.max_payload.refresh(&shared.nats);
                }
                while *connected.borrow() {
                    let Some(out) = shared.take_held() else { break };
                    shared.send(out).await;
                }
            }
        }
    }
}

impl Shared {
    /// The NATS message for a local publication, or `None` (counted) if it
    /// is an echo of an import or has no faithful subject.
    fn prepare(&self, publication: &Publication) -> Option<Outgoing> {
        let topic = publication.topic();
        let values = publication.values();
        if self.echoes.is_waiting() && self.echoes.is_echo(digest(topic, values.iter_slices())) {
            Counters::add(&self.counters.loops_stopped, 1);
            return None;
        }
        // One value is the payload as it is, a slice of the received frame.
        let body = match values.first() {
            Some(only) if values.len() == 1 && !only.is_empty() => Ok(Body {
                headers: None,
                payload: only,
            }),
            _ => encode_values(values.iter_slices()),
        };
        let (Ok(tail), Ok(Body { headers, payload })) = (subject_tail(topic), body) else {
            Counters::add(&self.counters.refused, 1);
            return None;
        };
        if !self.fits(payload.len()) {
            Counters::add(&self.counters.refused, 1);
            return None;
        }
        let mut headers = headers;
        if self.config.marks_origin() {
            headers
                .get_or_insert_with(HeaderMap::new)
                .insert(header_name(ORIGIN_HEADER), self.origin.as_str());
        }
        let subject = join(self.config.prefix(), tail);
        let size = subject.len() + payload.len() + HEADER_ALLOWANCE;
        Some(Outgoing {
            subject,
            headers,
            payload,
            size,
        })
    }

    /// Whether a payload this long fits under the NATS server's
    /// `max_payload` (a larger one would make the server close the whole
    /// connection).
    fn fits(&self, payload: usize) -> bool {
        self.max_payload.fits(payload)
    }

    /// Reads the connection state from the client itself, in case an event
    /// was lost.
    /// The client's own state corrects the events' only once it has said
    /// the same for [`STATE_CHECK`]: around a reconnect the two briefly
    /// disagree, and the events are the ones on time.
    fn refresh_state(&self) {
        let up = self.nats.connection_state() == async_nats::connection::State::Connected;
        if up {
            // The server may have changed with a reconnect.
            self.max_payload.refresh(&self.nats);
        }
        let now = std::time::Instant::now();
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        match *observed {
            Some((was, since)) if was == up => {
                if now.duration_since(since) >= STATE_CHECK && self.counters.connected.swap(up, Relaxed) != up {
                    self.state.send_replace(up);
                }
            }
            _ => *observed = Some((up, now)),
        }
    }

    fn nothing_held(&self) -> bool {
        self.counters.held_bytes.load(Relaxed) == 0
    }

    /// Holds `out` until NATS is back, dropping the oldest held past the bound.
    fn hold(&self, out: Outgoing) {
        if out.size > self.config.held_limit() {
            Counters::add(&self.counters.dropped, 1);
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut held_bytes = self.counters.held_bytes.load(Relaxed) + out.size;
        while held_bytes > self.config.held_limit() {
            let Some(oldest) = held.pop_front() else { break };
            held_bytes -= oldest.size;
            Counters::add(&self.counters.dropped, 1);
        }
        held.push_back(out);
        self.counters.held_bytes.store(held_bytes, Relaxed);
    }

    fn take_held(&self) -> Option<Outgoing> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let next = held.pop_front()?;
        self.counters.held_bytes.fetch_sub(next.size, Relaxed);
        Some(next)
    }

    async fn send(&self, out: Outgoing) {
        let sent = match out.headers {
            Some(headers) => self.nats.publish_with_headers(out.subject, headers, out.payload).await,
            None => self.nats.publish(out.subject, out.payload).await,
        };
        match sent {
            Ok(()) => Counters::add(&self.counters.exported, 1),
            Err(e) => {
                tracing::warn!(error = %e, "NATS publish failed");
                Counters::add(&self.counters.dropped, 1);
            }
        }
    }
}

/// What a held publication's headers count for against the held bytes.
const HEADER_ALLOWANCE: usize = 64;

/// How often the connection state is read from the client, besides its
/// events.
const STATE_CHECK: Duration = Duration::from_secs(1);

/// NATS → bus, for every import rule (`messages` carry their rule's index).
async fn import_to_bus(
    shared: Arc<Shared>,
    mut messages: impl futures_util::Stream<Item = (usize, async_nats::Message)> + Unpin,
    bus: Client,
    publish: LocalPublish,
) {
    let imports = shared.config.imports();
    // Validated by `BridgeConfig::validate`.
    let exports: Vec<_> = shared
        .config
        .exports()
        .iter()
        .filter_map(|p| microsocket_core::Pattern::new(p.as_bytes()).ok())
        .collect();
    let mut batch: Vec<Import> = Vec::new();
    while let Some(first) = messages.next().await {
        // What has arrived meanwhile goes to the bus in one batch: one lock
        // and one wake-up per subscriber for all of it.
        let mut next = Some(first);
        while let Some((rule, message)) = next.take() {
            let own = OwnHeaders::of(message.headers.as_ref());
            if own.origin == Some(shared.origin.as_str()) {
                Counters::add(&shared.counters.loops_stopped, 1);
            } else {
                let topic = imports[rule].topic(&message.subject);
                // One value, the common case, is carried without a vector.
                let values = match single_value(&own, &message.payload) {
                    Some(one) => Ok(Carried::One(one.clone())),
                    None => match decode_with(&own, &message.payload) {
                        Ok(Content::Values(values)) => Ok(Carried::Many(values)),
                        _ => Err(()),
                    },
                };
                match values {
                    Ok(values) if !topic.starts_with('$') => {
                        let comes_back = exports.iter().any(|pattern| pattern.matches(topic.as_bytes()));
                        let echo =
                            comes_back.then(|| digest(topic.as_bytes(), values.as_slice().iter().map(|v| &v[..])));
                        if let Some(echo) = echo {
                            shared.echoes.expect(echo);
                        }
                        let skip = message.subject.len() - topic.len();
                        batch.push(Import {
                            subject: message.subject,
                            skip,
                            values,
                            echo,
                        });
                    }
                    _ => Counters::add(&shared.counters.refused, 1),
                }
            }
            if batch.len() < IMPORT_BATCH {
                next = messages.next().now_or_never().flatten();
            }
        }
        shared.publish_imports(&bus, &publish, &mut batch).await;
    }
}

/// Imports published on the bus at once, at most.
const IMPORT_BATCH: usize = 256;

/// The values of an import.
enum Carried {
    One(Bytes),
    Many(Vec<Bytes>),
}

impl Carried {
    fn as_slice(&self) -> &[Bytes] {
        match self {
            Carried::One(one) => std::slice::from_ref(one),
            Carried::Many(many) => many,
        }
    }
}

/// A NATS message on its way to the local bus.
struct Import {
    /// Its subject, whose part from `skip` on is its local topic.
    subject: async_nats::Subject,
    skip: usize,
    values: Carried,
    /// Its digest, if it will come back through the export subscription.
    echo: Option<u64>,
}

impl Shared {
    /// Publishes `batch` on the bus (and empties it).
    async fn publish_imports(&self, bus: &Client, publish: &LocalPublish, batch: &mut Vec<Import>) {
        if let LocalPublish::Direct(publisher) = publish {
            let all = batch
                .iter()
                .map(|import| (import.topic().as_bytes(), import.values.as_slice()));
            if publisher.publish_batch(all).is_ok() {
                Counters::add(&self.counters.imported, batch.len() as u64);
                batch.clear();
                return;
            }
            // One of them cannot be encoded: find which, one at a time.
        }
        for import in batch.drain(..) {
            match publish_locally(bus, publish, import.topic(), import.values.as_slice()).await {
                Ok(()) => Counters::add(&self.counters.imported, 1),
                Err(NotPublished { why, surely }) => {
                    tracing::debug!(topic = import.topic(), error = %why, "import not published");
                    // Only an import surely not published will not come back.
                    if let (Some(echo), true) = (import.echo, surely) {
                        self.echoes.forget(echo);
                    }
                    Counters::add(&self.counters.dropped, 1);
                }
            }
        }
    }
}

impl Import {
    /// The topic it is published on locally.
    fn topic(&self) -> &str {
        self.subject.get(self.skip..).unwrap_or_default()
    }
}

/// Why an import was not published, and whether it surely was not (a
/// request that timed out may have been).
struct NotPublished {
    why: String,
    surely: bool,
}

async fn publish_locally(
    bus: &Client,
    publish: &LocalPublish,
    topic: &str,
    values: &[Bytes],
) -> Result<(), NotPublished> {
    match publish {
        LocalPublish::Direct(publisher) => publisher.publish(topic, values).map(drop).map_err(|e| NotPublished {
            why: e.to_string(),
            surely: true,
        }),
        LocalPublish::Command(command) => {
            let args = std::iter::once(topic.as_bytes()).chain(values.iter().map(|v| &v[..]));
            bus.request(command, args).await.map(drop).map_err(|e| NotPublished {
                surely: matches!(
                    e,
                    BusError::Failed { .. } | BusError::Encode(_) | BusError::InflightFull
                ),
                why: e.to_string(),
            })
        }
    }
}

/// NATS requests on `prefix.COMMAND` → the bus, answers back.
async fn serve_requests(shared: Arc<Shared>, mut subscriber: async_nats::Subscriber, bus: Client) {
    let slots = Arc::new(Semaphore::new(shared.config.in_flight_limit()));
    let skip = if shared.config.prefix().is_empty() {
        0
    } else {
        shared.config.prefix().len() + 1
    };
    while let Some(message) = subscriber.next().await {
        // A message without a reply subject is someone's publication under
        // this bus's prefix, not a request.
        let Some(reply) = message.reply.clone() else { continue };
        let command = message.subject.get(skip..).unwrap_or_default().to_owned();
        let refusal = if command.starts_with('$') || command.starts_with('@') {
            Some(failures::NOT_ACROSS)
        } else {
            None
        };
        let permit = match refusal {
            Some(_) => None,
            None => slots.clone().try_acquire_owned().ok(),
        };
        match permit {
            None => {
                // Answered here, so a flood of refused requests waits for
                // NATS rather than piling up tasks.
                Counters::add(&shared.counters.requests_failed, 1);
                let text = refusal.unwrap_or(failures::BUSY);
                let subject = Bytes::copy_from_slice(message.subject.as_bytes());
                shared
                    .reply(reply, Err((Bytes::from_static(text.as_bytes()), vec![subject])))
                    .await;
            }
            Some(permit) => {
                let shared = shared.clone();
                let bus = bus.clone();
                tokio::spawn(async move {
                    let answer = shared.answer(&bus, &command, &message).await;
                    shared.reply(reply, answer).await;
                    drop(permit);
                });
            }
        }
    }
}

type Answer = Result<Vec<Bytes>, (Bytes, Vec<Bytes>)>;

impl Shared {
    async fn answer(&self, bus: &Client, command: &str, message: &async_nats::Message) -> Answer {
        let args = match decode(message.headers.as_ref(), &message.payload) {
            Ok(Content::Values(args)) => args,
            _ => {
                Counters::add(&self.counters.requests_failed, 1);
                let subject = Bytes::copy_from_slice(message.subject.as_bytes());
                return Err((Bytes::from_static(failures::UNREADABLE.as_bytes()), vec![subject]));
            }
        };
        let result = bus
            .request_with_timeout(command, &args, Some(self.config.timeout()))
            .await;
        Counters::add(&self.counters.requests_served, 1);
        match result {
            Ok(values) => Ok(values.to_vec()),
            Err(BusError::Failed { message, details }) => Err((message, details)),
            Err(e) => {
                Counters::add(&self.counters.requests_failed, 1);
                Err((Bytes::from(format!("{}: {e}", failures::BUS_UNAVAILABLE)), vec![]))
            }
        }
    }

    async fn reply(&self, to: async_nats::Subject, answer: Answer) {
        let body = match &answer {
            Ok(values) => encode_values(values),
            Err((message, details)) => encode_failure(message, details),
        };
        let body = body.or_else(|e| encode_failure(e.to_string().as_bytes(), &[]));
        let Ok(mut body) = body else { return };
        // A request is rare enough to read the limit afresh.
        self.max_payload.refresh(&self.nats);
        if !self.fits(body.payload.len()) {
            let size = Bytes::from(format!("{} bytes", body.payload.len()));
            let Ok(refusal) = encode_failure(failures::TOO_LARGE.as_bytes(), &[size]) else {
                return;
            };
            body = refusal;
        }
        let Body { headers, payload } = body;
        let sent = match headers {
            Some(headers) => self.nats.publish_with_headers(to, headers, payload).await,
            None => self.nats.publish(to, payload).await,
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "reply to a NATS request not sent");
        }
    }
}

/// Reports the bridge's state on the local bus: at once, when the NATS
/// connection comes or goes, and every second while counters change.
async fn report_state(shared: Arc<Shared>, topic: String, bus: Client, publish: LocalPublish) {
    let mut connected = shared.connected.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = None;
    loop {
        shared.refresh_state();
        let stats = shared.counters.snapshot();
        if last != Some(stats) {
            let report = stats.report();
            if publish_locally(
                &bus,
                &publish,
                &topic,
                &report.iter().map(|v| Bytes::from(v.clone())).collect::<Vec<_>>(),
            )
            .await
            .is_ok()
            {
                last = Some(stats);
            }
        }
        tokio::select! {
            _ = tick.tick() => {}
            changed = connected.changed() => if changed.is_err() { return },
        }
    }
}
