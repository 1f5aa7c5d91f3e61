//! `microsocket bench`: a load generator in the manner of redis-benchmark.
//!
//! Two phases against a running `microsocket serve` (or any server with the same
//! commands): request/response with C connections and K `ECHO` requests in flight
//! on each, then fan-out, publishing through `PUBLISH` to N subscribers. Every
//! answer and every delivery is checked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connect::Target;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::connect::connect;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) connections: usize,
    pub(crate) in_flight: usize,
    pub(crate) duration: Duration,
    pub(crate) payload: usize,
    pub(crate) subscribers: usize,
    pub(crate) progress: bool,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

/// The request/response phase.
#[derive(Debug, Serialize)]
pub(crate) struct RequestReport {
    pub(crate) connections: usize,
    pub(crate) in_flight: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) requests_per_second: f64,
    pub(crate) latency_us: Latency,
}

/// The fan-out phase.
#[derive(Debug, Serialize)]
pub(crate) struct FanOutReport {
    pub(crate) subscribers: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) seconds: f64,
    pub(crate) publications: u64,
    pub(crate) deliveries: u64,
    /// Publications the server dropped for subscribers whose queue was full.
    pub(crate) dropped: u64,
    pub(crate) deliveries_per_second: f64,
}

/// Everything measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) requests: RequestReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fan_out: Option<FanOutReport>,
}

fn progress(enabled: bool, label: &str, duration: Duration) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {elapsed:>3} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Ticks a progress bar with a live rate until `stop`.
fn tick(
    bar: ProgressBar,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    unit: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let elapsed = start.elapsed();
            bar.set_position(elapsed.as_millis() as u64);
            let rate = count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64().max(1e-9);
            bar.set_message(format!("{:.0} {unit}/s", rate));
        }
        bar.finish_and_clear();
    })
}

/// Runs both phases.
pub(crate) async fn run(address: &Target, settings: &Settings) -> Result<Report> {
    let requests = request_phase(address, settings).await?;
    let fan_out = if settings.subscribers > 0 {
        Some(fan_out_phase(address, settings).await?)
    } else {
        None
    };
    Ok(Report { requests, fan_out })
}

async fn request_phase(address: &Target, s: &Settings) -> Result<RequestReport> {
    let mut clients = Vec::new();
    for _ in 0..s.connections.max(1) {
        clients.push(connect(address, Some(Duration::from_secs(25))).await?);
    }
    let payload = Bytes::from(vec![b'x'; s.payload]);
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tick(
        progress(s.progress, "requests", s.duration),
        Arc::clone(&count),
        Arc::clone(&stop),
        "req",
    );
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + s.duration;
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..s.in_flight.max(1) {
            let (client, payload, count) = (client.clone(), payload.clone(), Arc::clone(&count));
            tasks.push(tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                while tokio::time::Instant::now() < deadline {
                    let t = Instant::now();
                    let values = client.request("ECHO", [&payload]).await.context("ECHO failed")?;
                    hist.record(t.elapsed().as_nanos().max(1) as u64)?;
                    if values.len() != 1 || values.first().as_deref() != Some(&payload[..]) {
                        bail!("ECHO answered the wrong values");
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(hist)
            }));
        }
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    let requests = hist.len();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(RequestReport {
        connections: s.connections.max(1),
        in_flight: s.in_flight.max(1),
        payload_bytes: s.payload,
        seconds,
        requests,
        requests_per_second: requests as f64 / seconds,
        latency_us: Latency {
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: hist.max() as f64 / 1000.0,
        },
    })
}

async fn fan_out_phase(address: &Target, s: &Settings) -> Result<FanOutReport> {
    let topic = format!("bench.fanout.{}", std::process::id());
    let payload = Bytes::from(vec![b'p'; s.payload.max(1)]);
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..s.subscribers {
        let client = connect(address, Some(Duration::from_secs(25))).await?;
        let mut sub = client.subscribe(&topic).await.context("subscribe failed")?;
        let (delivered, payload, topic) = (Arc::clone(&delivered), payload.clone(), topic.clone());
        readers.push(tokio::spawn(async move {
            let _client = client;
            let mut got = 0u64;
            while let Some(p) = sub.next().await {
                let p = p.context("subscription ended")?;
                if p.topic() != topic.as_bytes() || p.values().first().as_deref() != Some(&payload[..]) {
                    bail!("wrong publication");
                }
                got += 1;
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(got)
        }));
    }
    let publisher = connect(address, Some(Duration::from_secs(25))).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tick(
        progress(s.progress, "fan-out", s.duration),
        Arc::clone(&delivered),
        Arc::clone(&stop),
        "deliveries",
    );
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + s.duration;
    let published = Arc::new(AtomicU64::new(0));
    let expected = s.subscribers as u64;
    let queued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..s.in_flight.clamp(1, 64) {
        let (publisher, topic, payload, published, queued) = (
            publisher.clone(),
            topic.clone(),
            payload.clone(),
            Arc::clone(&published),
            Arc::clone(&queued),
        );
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let reached = publisher
                    .request("PUBLISH", [topic.as_bytes(), &payload[..]])
                    .await
                    .context("PUBLISH failed")?;
                // Fewer than all: the server dropped it for a subscriber whose queue
                // was full (its slow-consumer policy); those are counted as dropped.
                let count = reached
                    .first()
                    .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok())
                    .filter(|&n| n <= expected)
                    .with_context(|| format!("PUBLISH answered {:?}, not a count up to {expected}", reached.first()))?;
                queued.fetch_add(count, Ordering::Relaxed);
                published.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let publications = published.load(Ordering::Relaxed);
    let want = queued.load(Ordering::Relaxed);
    // Publications are queued before PUBLISH answers; wait for them to arrive.
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Relaxed) < want {
        if Instant::now() > drain_deadline {
            bail!(
                "only {} of {want} deliveries arrived",
                delivered.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    drop(publisher);
    for r in readers {
        r.abort();
    }
    let deliveries = delivered.load(Ordering::Relaxed);
    if deliveries != want {
        bail!("{deliveries} deliveries where the server queued {want}");
    }
    Ok(FanOutReport {
        subscribers: s.subscribers,
        payload_bytes: payload.len(),
        seconds,
        publications,
        deliveries,
        dropped: publications * s.subscribers as u64 - deliveries,
        deliveries_per_second: deliveries as f64 / seconds,
    })
}

/// The report as a table.
pub(crate) fn table(report: &Report) -> String {
    let r = &report.requests;
    let mut s = String::new();
    s.push_str(&format!(
        "requests     {} connection(s) x {} in flight, {} B payload, {:.1} s\n",
        r.connections, r.in_flight, r.payload_bytes, r.seconds
    ));
    s.push_str(&format!(
        "  throughput {:>12.0} requests/s ({} requests)\n",
        r.requests_per_second, r.requests
    ));
    let l = &r.latency_us;
    s.push_str("  latency    p50        p90        p99        p99.9      max\n");
    s.push_str(&format!(
        "             {:<10} {:<10} {:<10} {:<10} {:<10}\n",
        us(l.p50),
        us(l.p90),
        us(l.p99),
        us(l.p999),
        us(l.max)
    ));
    if let Some(f) = &report.fan_out {
        s.push_str(&format!(
            "fan-out      {} subscriber(s), {} B payload, {:.1} s\n",
            f.subscribers, f.payload_bytes, f.seconds
        ));
        s.push_str(&format!(
            "  throughput {:>12.0} deliveries/s ({} publications, {} deliveries, {} dropped for full queues)\n",
            f.deliveries_per_second, f.publications, f.deliveries, f.dropped
        ));
    }
    s
}

fn us(v: f64) -> String {
    format!("{v:.1}us")
}
