//! `microsocket serve --metrics ADDR`: the server's counters and gauges and
//! the handler's latency per command, in the OpenMetrics text format that
//! Prometheus scrapes, over HTTP at `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::bus::Bus;
use microsocket_tokio::{Server, StatKind};

/// The commands of the bus, as a latency label: a fixed set, so that peers
/// sending made-up commands cannot grow the metrics.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub(crate) enum Command {
    PING,
    ECHO,
    PUBLISH,
    FAIL,
    SLEEP,
    /// Any command the bus does not have.
    Other,
}

impl Command {
    pub(crate) fn of(command: &[u8]) -> Self {
        match command {
            b"PING" => Self::PING,
            b"ECHO" => Self::ECHO,
            b"PUBLISH" => Self::PUBLISH,
            b"FAIL" => Self::FAIL,
            b"SLEEP" => Self::SLEEP,
            _ => Self::Other,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub(crate) enum Outcome {
    #[allow(non_camel_case_types)]
    ok,
    #[allow(non_camel_case_types)]
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    command: Command,
    outcome: Outcome,
}

/// The handler's latency per command and outcome.
#[derive(Debug, Clone)]
pub(crate) struct Latency(Family<RequestLabels, Histogram, fn() -> Histogram>);

impl Latency {
    fn new() -> Self {
        // 1 µs to about 4 s, by factors of 4.
        Self(Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1e-6, 4.0, 12))
        }))
    }

    /// Records one request's handling time.
    pub(crate) fn observe(&self, command: Command, outcome: Outcome, took: Duration) {
        self.0
            .get_or_create(&RequestLabels { command, outcome })
            .observe(took.as_secs_f64());
    }
}

/// The server's [`Stats`](microsocket_tokio::Stats), read at each scrape.
#[derive(Debug)]
struct ServerStats(Server<Bus>);

impl prometheus_client::collector::Collector for ServerStats {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, value, kind) in self.0.stats().fields() {
            let name = format!("microsocket_{name}");
            let help = format!(
                "The server's {} counter, as $STATS reports it",
                name.trim_start_matches("microsocket_")
            );
            match kind {
                StatKind::Counter => {
                    let counter = ConstCounter::new(value);
                    counter.encode(encoder.encode_descriptor(&name, &help, None, counter.metric_type())?)?;
                }
                StatKind::Gauge => {
                    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                    gauge.encode(encoder.encode_descriptor(&name, &help, None, gauge.metric_type())?)?;
                }
            }
        }
        Ok(())
    }
}

/// The NATS bridge's counters, as `microsocket_nats_*`.
#[derive(Debug)]
struct BridgeCounters(microsocket_nats::StatsHandle);

impl prometheus_client::collector::Collector for BridgeCounters {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.get();
        let connected = ConstGauge::new(i64::from(stats.connected));
        connected.encode(encoder.encode_descriptor(
            "microsocket_nats_connected",
            "Whether the NATS bridge is connected (1) or not (0)",
            None,
            connected.metric_type(),
        )?)?;
        for (name, value) in stats.fields() {
            let (name, help) = (format!("microsocket_nats_{name}"), format!("The NATS bridge's {name}"));
            if name.ends_with("held_bytes") {
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                gauge.encode(encoder.encode_descriptor(&name, &help, None, gauge.metric_type())?)?;
            } else {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(&name, &help, None, counter.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// What `--metrics` serves: a latency recorder for the bus's handler, and
/// once the server exists, the registry that exports both.
pub(crate) struct Metrics {
    pub(crate) latency: Latency,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            latency: Latency::new(),
        }
    }

    /// Serves `/metrics` for `server` on `listener` until the process ends.
    pub(crate) fn serve(
        self,
        server: Server<Bus>,
        bridge: Option<microsocket_nats::StatsHandle>,
        listener: TcpListener,
    ) {
        let mut registry = Registry::default();
        registry.register(
            "microsocket_request_duration_seconds",
            "Time the bus's handler took to answer a request, by command and outcome",
            self.latency.0,
        );
        registry.register_collector(Box::new(ServerStats(server)));
        if let Some(bridge) = bridge {
            registry.register_collector(Box::new(BridgeCounters(bridge)));
        }
        let registry = Arc::new(registry);
        // At most this many scrapes at once; others wait to be accepted.
        let scrapes = Arc::new(tokio::sync::Semaphore::new(16));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = scrapes.clone().acquire_owned().await else {
                    return;
                };
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(SCRAPE_TIMEOUT, respond(stream, &registry)).await;
                    drop(permit);
                });
            }
        });
    }
}

/// How long one scrape may take, from accepting it to the last byte.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Answers one HTTP request: the metrics for `GET /metrics`, 404 otherwise.
async fn respond(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, content_type, body) = if (method == b"GET" || method == b"HEAD") && path == b"/metrics" {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).map_err(std::io::Error::other)?;
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        )
    } else {
        ("404 Not Found", "text/plain", "metrics are at /metrics\n".to_owned())
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if method != b"HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Binds the metrics listener: `PORT` alone means loopback, `HOST:PORT` as
/// given.
pub(crate) async fn bind(address: &str) -> Result<TcpListener> {
    let address = if address.parse::<u16>().is_ok() {
        format!("127.0.0.1:{address}")
    } else {
        address.to_owned()
    };
    TcpListener::bind(&address)
        .await
        .with_context(|| format!("--metrics {address}: cannot listen"))
}
