//! `microsocket-bench`: microsocket against the floor (hand-written programs on a
//! UNIX socket, no library) and ZeroMQ, side by side in one run.
//!
//! `cargo run --release -p microsocket-bench --features zmq -- run` measures every
//! workload, repeats each (contenders interleaved), and writes `BENCHMARKS.md`
//! and SVG plots under `docs/`.

// A binary: `pub` marks each module's interface to the others.
#![allow(unreachable_pub)]

mod contender;
mod core_pipe;
mod floor_std;
mod floor_tokio;
mod memory;
mod plot;
mod report;
mod serve;
mod std_adapter;
mod tokio_adapter;
mod wire;
#[cfg(feature = "zmq")]
mod zmq_bench;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::contender::Contender;
use crate::report::{Cpu, Measurement, Results, Workload};

#[derive(Parser)]
#[command(about = "Benchmarks microsocket against the floor and ZeroMQ")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every workload and writes the report.
    Run {
        /// Ten times fewer iterations and one repeat: a smoke test.
        #[arg(long)]
        quick: bool,
        /// Repeats of each measurement (the report gives median, min and max).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Only workloads whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Only contenders whose name contains one of these comma-separated
        /// strings (for profiling one, or leaving one out; the report lacks
        /// the ratios to a floor left out).
        #[arg(long)]
        contender: Option<String>,
        /// Where to write the Markdown report.
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Where to write the SVG plots.
        #[arg(long, default_value = "docs")]
        plots: PathBuf,
        /// Also write the raw figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Drive the floor's echo server (`blocking` or `tokio`), in a child
        /// process of its own, in place of `microsocket serve`: what a server
        /// in another process costs by itself (round trips and pipelining
        /// only; it answers no `PUBLISH`).
        #[arg(long, value_name = "FLOOR", value_parser = ["blocking", "tokio"])]
        serve_floor: Option<String>,
    },
    /// Serves the floor's echo until killed (the child `run --serve-floor`
    /// starts).
    #[command(hide = true)]
    EchoServer {
        /// `blocking` or `tokio` (one thread).
        flavour: String,
        /// Socket path.
        path: PathBuf,
    },
    /// Serves idle connections until SIGTERM (the child of the memory workload).
    #[command(hide = true)]
    ServeIdle {
        /// `std` or `tokio`.
        flavour: String,
        /// Socket path.
        path: PathBuf,
    },
}

fn contenders() -> Vec<Box<dyn Contender>> {
    #[cfg_attr(not(feature = "zmq"), allow(unused_mut))]
    let mut all: Vec<Box<dyn Contender>> = vec![
        Box::new(floor_std::FloorStd),
        Box::new(floor_tokio::FloorTokio),
        Box::new(core_pipe::CorePipe),
        Box::new(std_adapter::StdAdapter),
        Box::new(tokio_adapter::TokioAdapter),
        Box::new(serve::Serve),
    ];
    #[cfg(feature = "zmq")]
    all.push(Box::new(zmq_bench::Zmq));
    all
}

/// Runs `f` on a fresh thread, pinned to CPU 0 if asked; threads it starts inherit
/// the pinning.
/// CPU time the whole process has used (user + system, all threads, those
/// that ended included).
fn process_cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

fn on_thread<T: Send + 'static>(pinned: bool, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        if pinned {
            core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
        }
        f()
    })
    .join()
    .expect("benchmark thread panicked")
}

fn workloads(quick: bool) -> Vec<Workload> {
    let scale = if quick { 10 } else { 1 };
    let mut w = Vec::new();
    for pinned in [true, false] {
        for payload in [0usize, 16, 1024, 65536] {
            let iterations = if payload >= 65536 { 2_000 } else { 20_000 } / scale;
            w.push(Workload::RoundTrip {
                payload,
                iterations,
                pinned,
            });
        }
    }
    w.push(Workload::Pipelined {
        connections: 1,
        in_flight: 256,
        requests: 400_000 / scale,
    });
    w.push(Workload::Pipelined {
        connections: 8,
        in_flight: 64,
        requests: 50_000 / scale,
    });
    // Eight threads (or tasks) sharing one connection, one request each in flight.
    w.push(Workload::Pipelined {
        connections: 1,
        in_flight: 8,
        requests: 200_000 / scale,
    });
    for (subscribers, messages) in [(1, 400_000), (10, 100_000), (100, 20_000)] {
        w.push(Workload::FanOut {
            subscribers,
            messages: messages / scale,
        });
    }
    w.push(Workload::SlowSubscriber {
        fast: 10,
        messages: 100_000 / scale,
    });
    for connections in [1_000, 10_000] {
        w.push(Workload::IdleMemory { connections });
    }
    w
}

fn measure(c: &dyn Contender, w: &Workload) -> Result<Option<Measurement>> {
    Ok(match *w {
        Workload::RoundTrip {
            payload, iterations, ..
        } => c.round_trip(payload, iterations)?.map(|h| Measurement::Latency {
            p50: h.value_at_quantile(0.5) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            p999: h.value_at_quantile(0.999) as f64,
        }),
        Workload::Pipelined {
            connections,
            in_flight,
            requests,
        } => c.pipelined(connections, in_flight, requests)?.map(Measurement::Rate),
        Workload::FanOut { subscribers, messages } => c.fan_out(subscribers, messages)?.map(Measurement::Rate),
        Workload::SlowSubscriber { fast, messages } => c.slow_subscriber(fast, messages)?.map(Measurement::Rate),
        Workload::IdleMemory { connections } => c.idle_memory(connections)?.map(Measurement::Bytes),
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (quick, repeats, only, contender, out, plots, json) = match cli.command {
        Command::Run {
            quick,
            repeats,
            only,
            contender,
            out,
            plots,
            json,
            serve_floor,
        } => {
            serve::use_floor(serve_floor);
            (quick, repeats, only, contender, out, plots, json)
        }
        Command::EchoServer { flavour, path } => {
            return match flavour.as_str() {
                "blocking" => floor_std::serve_forever(&path),
                "tokio" => floor_tokio::serve_forever(&path),
                other => anyhow::bail!("unknown flavour {other}"),
            };
        }
        Command::ServeIdle { flavour, path } => {
            return match flavour.as_str() {
                "std" => std_adapter::serve_idle(&path),
                "tokio" => tokio_adapter::serve_idle(&path),
                other => anyhow::bail!("unknown flavour {other}"),
            };
        }
    };
    let repeats = if quick { 1 } else { repeats.max(1) };
    let mut results: Results = BTreeMap::new();
    let mut cpu: Cpu = BTreeMap::new();
    let names: Vec<&'static str> = contenders().iter().map(|c| c.name()).collect();
    for workload in workloads(quick) {
        if only.as_ref().is_some_and(|o| !workload.key().contains(o.as_str())) {
            continue;
        }
        for repeat in 0..repeats {
            // Interleave contenders so drift on a shared machine hits all alike.
            for (index, name) in names.iter().enumerate() {
                if contender
                    .as_ref()
                    .is_some_and(|c| !c.split(',').any(|part| name.contains(part)))
                {
                    continue;
                }
                let w = workload.clone();
                let pinned = w.pinned();
                let operations = w.operations();
                let outcome = on_thread(pinned, move || {
                    let c = &contenders()[index];
                    let started = process_cpu();
                    let _ = serve::take_child_cpu();
                    let m = measure(c.as_ref(), &w).map_err(|e| format!("{e:#}"));
                    (m, process_cpu().saturating_sub(started) + serve::take_child_cpu())
                });
                match outcome {
                    (Ok(Some(m)), spent) => {
                        let per_op = operations.map(|n| spent.as_nanos() as f64 / n as f64);
                        match per_op {
                            Some(ns) => eprintln!("{} #{repeat} {name}: {m}, CPU {ns:.0} ns/op", workload.key()),
                            None => eprintln!("{} #{repeat} {name}: {m}", workload.key()),
                        }
                        if let Some(ns) = per_op {
                            cpu.entry(workload.key())
                                .or_default()
                                .entry(*name)
                                .or_default()
                                .push(ns);
                        }
                        results
                            .entry(workload.key())
                            .or_default()
                            .entry(*name)
                            .or_default()
                            .push(m);
                    }
                    (Ok(None), _) => {}
                    (Err(e), _) => eprintln!("{} #{repeat} {name}: FAILED: {e}", workload.key()),
                }
            }
        }
    }
    let contenders = contenders();
    let families: BTreeMap<&'static str, contender::Family> =
        contenders.iter().map(|c| (c.name(), c.family())).collect();
    std::fs::create_dir_all(&plots)?;
    let plot_files = plot::render(&results, &families, &plots)?;
    let markdown = report::markdown(
        &results,
        &cpu,
        &families,
        &workloads(quick),
        &plot_files,
        quick,
        repeats,
    );
    std::fs::write(&out, markdown)?;
    if let Some(json) = json {
        std::fs::write(json, serde_json::to_string_pretty(&report::to_json(&results, &cpu))?)?;
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
