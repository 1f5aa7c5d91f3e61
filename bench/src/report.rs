//! Workloads, measurements and the Markdown report.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::contender::Family;

/// One measurement setting.
#[derive(Debug, Clone)]
pub enum Workload {
    /// One request in flight, `payload` bytes each way.
    RoundTrip {
        payload: usize,
        iterations: usize,
        pinned: bool,
    },
    /// Requests per second with a window of requests in flight.
    Pipelined {
        connections: usize,
        in_flight: usize,
        requests: usize,
    },
    /// 64-byte publications to every subscriber.
    FanOut { subscribers: usize, messages: usize },
    /// Fan-out to fast subscribers beside one that never reads.
    SlowSubscriber { fast: usize, messages: usize },
    /// Server memory per idle connection.
    IdleMemory { connections: usize },
}

impl Workload {
    /// A stable, unique name.
    pub fn key(&self) -> String {
        match self {
            Self::RoundTrip { payload, pinned, .. } => {
                format!("rtt-{payload}B-{}", if *pinned { "pinned" } else { "unpinned" })
            }
            Self::Pipelined {
                connections, in_flight, ..
            } => format!("pipelined-{connections}x{in_flight}"),
            Self::FanOut { subscribers, .. } => format!("fanout-{subscribers}"),
            Self::SlowSubscriber { fast, .. } => format!("slow-subscriber-{fast}"),
            Self::IdleMemory { connections } => format!("idle-memory-{connections}"),
        }
    }

    /// Operations one run performs, for CPU time per operation: round trips,
    /// requests, or deliveries (publications x subscribers reached).
    pub fn operations(&self) -> Option<usize> {
        match *self {
            Self::RoundTrip { iterations, .. } => Some(iterations),
            Self::Pipelined {
                connections, requests, ..
            } => Some(connections * requests),
            Self::FanOut { subscribers, messages } => Some(subscribers * messages),
            Self::SlowSubscriber { fast, messages } => Some(fast * messages),
            Self::IdleMemory { .. } => None,
        }
    }

    /// Whether it runs pinned to one CPU.
    pub fn pinned(&self) -> bool {
        matches!(self, Self::RoundTrip { pinned: true, .. })
    }

    fn title(&self) -> String {
        match self {
            Self::RoundTrip {
                payload,
                iterations,
                pinned,
            } => format!(
                "Round trip, one in flight, {} payload, {} ({iterations} round trips per run)",
                size(*payload),
                if *pinned { "pinned to CPU 0" } else { "unpinned" }
            ),
            Self::Pipelined {
                connections,
                in_flight,
                requests,
            } => format!("{connections} connection(s), {in_flight} requests in flight each ({requests} requests per connection)"),
            Self::FanOut { subscribers, messages } => {
                format!("Fan-out of 64-byte publications to {subscribers} subscriber(s) ({messages} publications)")
            }
            Self::SlowSubscriber { fast, messages } => format!(
                "Fan-out to {fast} fast subscribers beside one that never reads ({messages} publications; deliveries/s to the fast ones)"
            ),
            Self::IdleMemory { connections } => format!("Server resident memory per idle connection, {connections} connections"),
        }
    }
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1024 => format!("{} KiB", b / 1024),
        b => format!("{b} B"),
    }
}

/// One run's figure.
#[derive(Debug, Clone, Copy)]
pub enum Measurement {
    /// Round-trip percentiles, in nanoseconds.
    Latency { p50: f64, p99: f64, p999: f64 },
    /// Operations per second.
    Rate(f64),
    /// Bytes.
    Bytes(f64),
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latency { p50, p99, p999 } => {
                write!(f, "p50 {} p99 {} p99.9 {}", micros(*p50), micros(*p99), micros(*p999))
            }
            Self::Rate(r) => write!(f, "{}/s", rate(*r)),
            Self::Bytes(b) => write!(f, "{:.1} KiB", b / 1024.0),
        }
    }
}

/// Figures by workload key, then contender.
pub type Results = BTreeMap<String, BTreeMap<&'static str, Vec<Measurement>>>;

/// CPU time (user + system, every thread of the process: client and server
/// sides alike) per operation of each run, in nanoseconds, by workload and
/// contender.
pub type Cpu = BTreeMap<String, BTreeMap<&'static str, Vec<f64>>>;

/// The median CPU time per operation of `contender` on `key`.
fn cpu_of(cpu: &Cpu, key: &str, contender: &str) -> Option<f64> {
    let runs = cpu.get(key)?.get(contender)?;
    (!runs.is_empty()).then(|| spread(runs.clone()).0)
}

/// "1.23 µs (0.95x)": CPU per operation and its ratio to the floor's.
fn cpu_cell(cpu: &Cpu, key: &str, contender: &str, floor: &str) -> String {
    match (cpu_of(cpu, key, contender), cpu_of(cpu, key, floor)) {
        (Some(c), Some(f)) if f > 0.0 => format!("{} ({:.2}x)", cpu_time(c), c / f),
        (Some(c), _) => cpu_time(c),
        _ => "–".into(),
    }
}

fn cpu_time(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

pub fn micros(ns: f64) -> String {
    format!("{:.1} µs", ns / 1000.0)
}

pub fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

/// Median, min and max of a list.
pub fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// The headline figure of each measurement: p50 for latency.
pub fn headline(m: &Measurement) -> f64 {
    match *m {
        Measurement::Latency { p50, .. } => p50,
        Measurement::Rate(r) | Measurement::Bytes(r) => r,
    }
}

fn floor_name(family: Family) -> &'static str {
    match family {
        Family::Blocking => "floor (blocking)",
        Family::Async => "floor (tokio)",
    }
}

/// The median headline of `contender` on `key`.
pub fn median_of(results: &Results, key: &str, contender: &str) -> Option<f64> {
    let runs = results.get(key)?.get(contender)?;
    Some(spread(runs.iter().map(headline).collect()).0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} vCPU, {cpu}, Linux {}", kernel.trim())
}

/// Renders the report.
pub fn markdown(
    results: &Results,
    cpu: &Cpu,
    families: &BTreeMap<&'static str, Family>,
    workloads: &[Workload],
    plots: &[PathBuf],
    quick: bool,
    repeats: usize,
) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str("microsocket against the floor (minimal hand-written programs exchanging the same frames over a UNIX socket, no library) and ZeroMQ over `ipc://`, measured side by side in one run on one machine.\n\n");
    md.push_str("## Reproduce\n\n```sh\napt-get install libzmq3-dev   # ZeroMQ contenders only\ncargo build --release -p microsocket-cli   # the `microsocket serve` contender\ncargo run --release -p microsocket-bench --features zmq -- run\n```\n\n");
    md.push_str("Without `--features zmq` the ZeroMQ contenders are left out and nothing needs installing. `--quick` runs a tenth of the iterations once. `--serve-floor tokio` (or `blocking`) runs the floor's echo server in a child process in place of `microsocket serve`: what a server in another process costs by itself.\n\n");
    md.push_str(&format!(
        "## Machine and method\n\n- {}\n- {} run(s) of each measurement, contenders interleaved; tables give the median with [min – max].{}\n- Ratios compare medians with the floor of the same family from this same run (blocking contenders and ZeroMQ with the blocking floor, Tokio contenders with the Tokio floor). For latency a ratio below 1 is faster; for rates above 1 is faster.\n- Every measurement checks the answers it counts (tag and values) and ends by itself.\n- *CPU/op* is the CPU time (user + system, `CLOCK_PROCESS_CPUTIME_ID`) of the whole benchmark process during a run, client and server sides together (for `microsocket serve`, with the CPU time of its process added), divided by its operations (round trips, requests, or deliveries), with its ratio to the floor's: speed bought with polling shows here.\n- ZeroMQ is the system libzmq (Debian `libzmq3-dev`, 4.3) through the `zmq` crate, linked dynamically.\n\n",
        machine(),
        repeats,
        if quick { " **Quick run: figures are indicative only.**" } else { "" }
    ));
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            md.push_str(&format!("![{name}](docs/{name})\n\n"));
        }
    }
    md.push_str(&targets(results, cpu));
    md.push_str(CONTENDER_NOTES);
    md.push_str("## Results\n\n");
    for w in workloads {
        let key = w.key();
        let Some(by_contender) = results.get(&key) else {
            continue;
        };
        md.push_str(&format!("### {}\n\n", w.title()));
        let latency = matches!(w, Workload::RoundTrip { .. });
        if latency {
            md.push_str("| contender | p50 | p99 | p99.9 | p50 / floor | CPU/op |\n|---|---|---|---|---|---|\n");
        } else {
            let against = match w {
                Workload::SlowSubscriber { fast, .. } => format!("ratio to own fan-out to {fast}"),
                _ => "ratio to floor".into(),
            };
            md.push_str(&format!(
                "| contender | median | min – max | {against} | CPU/op |\n|---|---|---|---|---|\n"
            ));
        }
        for (name, runs) in by_contender {
            let family = families.get(name).copied().unwrap_or(Family::Blocking);
            let floor = median_of(results, &key, floor_name(family));
            let (median, min, max) = spread(runs.iter().map(headline).collect());
            let cpu_per_op = cpu_cell(cpu, &key, name, floor_name(family));
            // A slow subscriber is compared with the contender's own fan-out to as
            // many fast subscribers: the fast ones' rate must not fall.
            let base = match w {
                Workload::SlowSubscriber { fast, .. } => median_of(results, &format!("fanout-{fast}"), name),
                Workload::IdleMemory { .. } => None,
                _ => floor,
            };
            let ratio = match base {
                Some(f) if f > 0.0 => format!("{:.2}", median / f),
                _ => "–".into(),
            };
            if latency {
                let p99 = spread(
                    runs.iter()
                        .map(|m| {
                            if let Measurement::Latency { p99, .. } = m {
                                *p99
                            } else {
                                0.0
                            }
                        })
                        .collect(),
                );
                let p999 = spread(
                    runs.iter()
                        .map(|m| {
                            if let Measurement::Latency { p999, .. } = m {
                                *p999
                            } else {
                                0.0
                            }
                        })
                        .collect(),
                );
                md.push_str(&format!(
                    "| {name} | {} [{} – {}] | {} | {} | {ratio} | {cpu_per_op} |\n",
                    micros(median),
                    micros(min),
                    micros(max),
                    micros(p99.0),
                    micros(p999.0)
                ));
            } else {
                let fmt = |v: f64| match runs[0] {
                    Measurement::Bytes(_) => format!("{:.1} KiB", v / 1024.0),
                    _ => format!("{}/s", rate(v)),
                };
                md.push_str(&format!(
                    "| {name} | {} | {} – {} | {ratio} | {cpu_per_op} |\n",
                    fmt(median),
                    fmt(min),
                    fmt(max)
                ));
            }
        }
        md.push('\n');
    }
    md
}

/// The raw figures, for tools.
pub fn to_json(results: &Results, cpu: &Cpu) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    for (key, by_contender) in results {
        let mut w = serde_json::Map::new();
        for (name, runs) in by_contender {
            let cpu_runs = cpu.get(key).and_then(|c| c.get(name));
            let runs: Vec<serde_json::Value> = runs
                .iter()
                .enumerate()
                .map(|(i, m)| (m, cpu_runs.and_then(|c| c.get(i))))
                .map(|(m, cpu)| {
                    let mut run = match *m {
                        Measurement::Latency { p50, p99, p999 } => {
                            serde_json::json!({"p50_ns": p50, "p99_ns": p99, "p999_ns": p999})
                        }
                        Measurement::Rate(r) => serde_json::json!({"per_second": r}),
                        Measurement::Bytes(b) => serde_json::json!({"bytes": b}),
                    };
                    if let (Some(ns), Some(run)) = (cpu, run.as_object_mut()) {
                        run.insert("cpu_ns_per_op".into(), serde_json::json!(ns));
                    }
                    run
                })
                .collect();
            w.insert((*name).to_string(), serde_json::Value::Array(runs));
        }
        root.insert(key.clone(), serde_json::Value::Object(w));
    }
    serde_json::Value::Object(root)
}

const CONTENDER_NOTES: &str = "## Contenders\n\n\
- **floor (blocking)**, **floor (tokio)**: the least code that exchanges the same frames over a UNIX socket: a hand-written frame reader, an echo server per connection answering whole batches with one write; the pipelined client has one writer and one reader per connection; the fan-out server writes pre-built batches of 64 frames to each socket in turn. No library, no subscription table, no backpressure: the physical limit.\n\
- **core (in-memory)**: microsocket's client and server machines joined by an in-memory pipe in one thread, no I/O: what any adapter could reach.\n\
- **microsocket-std**: the blocking adapter. With 8 in flight, eight threads share the connection, one request each (`Client::request`); otherwise one thread per connection keeps K requests in flight with tickets, topping the window up with a batch whenever half of it is collected (`Client::batch`, `Ticket::wait`).\n\
- **microsocket-tokio**: the Tokio adapter; *K in flight* means K tasks sharing the connection. The client side and the server side each run on a single-threaded runtime on a thread of their own, as two processes would; so does the Tokio floor.\n\
- **microsocket serve**: the `microsocket` command's server (default settings) in a child process, driven by the blocking floor's own clients: what a script or a program in another language sees. Fan-out publishes with `PUBLISH` requests from one raw client (at most 256 outstanding) to raw subscribers, each of which waits for its subscription's barrier first.\n\
- **ZeroMQ**: REQ/REP for round trips, one DEALER socket per connection keeping K requests outstanding against a ROUTER for pipelining, PUB/SUB for fan-out with the high-water marks off (0) so no delivery is dropped; with a slow subscriber ZeroMQ therefore buffers its share without bound, where microsocket bounds each connection's queue and drops (counting) for that subscriber only.\n\
- Fan-out publishes from the server side (microsocket's `Publisher::publish`, ZeroMQ's PUB socket); every delivery is received, decoded and checked by a subscriber client. With a slow subscriber, publishing is paced in batches of 1,000 so the fast subscribers never lag; the rate is theirs.\n\
- Idle memory: the server runs in a child process; each connection sends one PING, waits for the answer, then stays idle; the figure is the growth of the server's resident set divided by the connections.\n\n";

/// One target the issues set, checked against this run.
fn targets(results: &Results, cpu: &Cpu) -> String {
    let ratio = |key: &str, a: &str, b: &str| Some(median_of(results, key, a)? / median_of(results, key, b)?);
    let mut rows: Vec<(String, String, Option<bool>)> = Vec::new();
    let mut row = |what: &str, got: Option<String>, ok: Option<bool>| {
        rows.push((what.to_string(), got.unwrap_or_else(|| "not measured".into()), ok));
    };
    let r = ratio("rtt-16B-pinned", "microsocket-std", "floor (blocking)");
    row(
        "std round trip p50 within 1.15x of the blocking floor (16 B, pinned)",
        r.map(|r| format!("{r:.2}x")),
        r.map(|r| r <= 1.15),
    );
    let r = ratio("rtt-16B-pinned", "microsocket-tokio", "floor (tokio)");
    row(
        "Tokio round trip p50 within 1.3x of the Tokio floor (16 B, pinned)",
        r.map(|r| format!("{r:.2}x")),
        r.map(|r| r <= 1.3),
    );
    let v = median_of(results, "pipelined-1x256", "microsocket-tokio");
    row(
        "Tokio: 256 in flight on one connection, at least 2 M requests/s",
        v.map(|v| format!("{}/s", rate(v))),
        v.map(|v| v >= 2e6),
    );
    let v = median_of(results, "pipelined-1x256", "microsocket-std");
    row(
        "std: 256 in flight on one connection from one thread (tickets), at least 3 M requests/s",
        v.map(|v| format!("{}/s", rate(v))),
        v.map(|v| v >= 3e6),
    );
    let v = median_of(results, "pipelined-1x8", "microsocket-std");
    row(
        "std: 8 threads sharing one client, at least 300 k requests/s",
        v.map(|v| format!("{}/s", rate(v))),
        v.map(|v| v >= 3e5),
    );
    let r = ratio("rtt-65536B-pinned", "microsocket-std", "floor (blocking)");
    row(
        "std round trip of 64 KiB within 1.15x of the blocking floor (pinned)",
        r.map(|r| format!("{r:.2}x")),
        r.map(|r| r <= 1.15),
    );
    let r = ratio("fanout-100", "microsocket-tokio", "floor (tokio)");
    row(
        "Tokio: fan-out to 100 subscribers at least 0.9x the Tokio floor",
        r.map(|r| format!("{r:.2}x")),
        r.map(|r| r >= 0.9),
    );
    let r = ratio("fanout-100", "microsocket-std", "floor (blocking)");
    row(
        "std: fan-out to 100 subscribers at least 0.8x the blocking floor",
        r.map(|r| format!("{r:.2}x")),
        r.map(|r| r >= 0.8),
    );
    for (name, before) in [("microsocket-std", 3.5e6), ("microsocket-tokio", 6.6e6)] {
        let v = median_of(results, "fanout-1", name);
        row(
            &format!("{name}: fan-out to 1 subscriber at least twice {}/s", rate(before)),
            v.map(|v| format!("{}/s", rate(v))),
            v.map(|v| v >= 2.0 * before),
        );
    }
    for (key, what) in [("pipelined-1x256", "request"), ("fanout-100", "delivery")] {
        for (name, floor) in [
            ("microsocket-std", "floor (blocking)"),
            ("microsocket-tokio", "floor (tokio)"),
        ] {
            let r = cpu_of(cpu, key, name).zip(cpu_of(cpu, key, floor)).map(|(c, f)| c / f);
            row(
                &format!("{name}: CPU per {what} ({key}) within 1.3x of the floor's"),
                r.map(|r| format!("{r:.2}x")),
                r.map(|r| r <= 1.3),
            );
        }
    }
    let serve = "microsocket serve";
    for (key, what, at_most) in [
        (
            "rtt-16B-pinned",
            "ping-pong p50 (16 B, pinned) within 1.3x of the blocking floor",
            1.3,
        ),
        (
            "pipelined-1x256",
            "256 pipelined requests within 1.5x of the blocking floor",
            1.5,
        ),
        (
            "fanout-100",
            "fan-out to 100 subscribers within 1.1x of the blocking floor",
            1.1,
        ),
    ] {
        // A slowdown factor for both: latency over the floor's, or the
        // floor's rate over this one.
        let r = if key.starts_with("rtt-") {
            ratio(key, serve, "floor (blocking)")
        } else {
            ratio(key, "floor (blocking)", serve)
        };
        row(
            &format!("`microsocket serve` seen by raw clients: {what}"),
            r.map(|r| format!("{r:.2}x")),
            r.map(|r| r <= at_most),
        );
    }
    let v = median_of(results, "idle-memory-10000", "microsocket-tokio");
    row(
        "Tokio: an idle connection costs the server under 6 KiB (10,000 connections)",
        v.map(|v| format!("{:.1} KiB", v / 1024.0)),
        v.map(|v| v < 6.0 * 1024.0),
    );
    // Every microsocket figure ahead of ZeroMQ's.
    let mut behind = Vec::new();
    let mut compared = 0;
    for (key, by) in results {
        let Some(zmq) = by
            .get("ZeroMQ")
            .map(|runs| spread(runs.iter().map(headline).collect()).0)
        else {
            continue;
        };
        let lower_is_better = key.starts_with("rtt-");
        for name in ["microsocket-std", "microsocket-tokio"] {
            if let Some(v) = median_of(results, key, name) {
                compared += 1;
                let ahead = if lower_is_better { v < zmq } else { v > zmq };
                if !ahead {
                    behind.push(format!("{name} on {key}"));
                }
            }
        }
    }
    if compared > 0 {
        let got = if behind.is_empty() {
            format!("ahead in all {compared} comparisons")
        } else {
            format!("behind in {} of {compared}: {}", behind.len(), behind.join(", "))
        };
        row(
            "every microsocket figure ahead of ZeroMQ's",
            Some(got),
            Some(behind.is_empty()),
        );
    }
    let mut md = String::from("## Targets\n\n| target | this run (medians) | met |\n|---|---|---|\n");
    for (what, got, ok) in rows {
        let mark = match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        md.push_str(&format!("| {what} | {got} | {mark} |\n"));
    }
    md.push_str("\nWhere the time goes for each target missed, and the next step: [docs/performance.md](docs/performance.md).\n\n");
    md
}
