//! `microsocket`: serve a local message bus, send requests, subscribe, publish and
//! benchmark, from the shell.
//!
//! Exit codes: 0 success; 1 the server failed the request (its message on
//! stderr); 2 no server, a connection error, or bad usage.

mod bus;
mod config;
mod connect;
mod demo;
mod introspect;
mod loadgen;
mod metrics;
mod monitor;
mod nats;
mod output;
mod reload;
mod systemd;
mod top;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use microsocket_tokio::Error;

use crate::connect::{connect, parse_address};

#[derive(Parser)]
#[command(
    name = "microsocket",
    version,
    about = "Local request/response and publish/subscribe over one socket"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a ready-made message bus until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Send one request and print each value of the response on its own line.
    Request(RequestArgs),
    /// Print one line per publication: the topic, then each value, TAB-separated.
    Subscribe(SubscribeArgs),
    /// Publish values on a topic through the server's PUBLISH command; prints how
    /// many connections it reached.
    Publish(PublishArgs),
    /// Measure request/response latency and throughput, and pub/sub fan-out.
    Bench(BenchArgs),
    /// Print a server's counters (its `$STATS` server command): connections,
    /// requests, publications, drops, memory.
    Stats(introspect::StatsArgs),
    /// List a server's connections (its `$CONNECTIONS` server command): id,
    /// peer process, user and group, its process name, subscriptions,
    /// requests in flight, bytes queued and memory held.
    Clients(introspect::StatsArgs),
    /// List a server's subscription table (its `$TOPICS` server command):
    /// each topic and pattern, and how many connections subscribe to it.
    Topics(introspect::StatsArgs),
    /// Show every request, answer and publication passing through a server
    /// as it happens (its `$MONITOR` server command), one per line: the
    /// kind, then its connection, tag and values, TAB-separated.
    Monitor(monitor::MonitorArgs),
    /// A live view of a server, refreshed every second: its rates, requests
    /// per command, publications per topic, and its connections with their
    /// queues and drops. Quits on `q`.
    Top(top::TopArgs),
    /// Bridge a running bus to NATS, as a client of the bus in a process of
    /// its own (`serve --nats` bridges from inside the server instead).
    Bridge(nats::BridgeArgs),
    /// Start a server inside this process and show what microsocket does.
    Demo,
    /// Print a completion script for SHELL (`microsocket completions bash >
    /// /etc/bash_completion.d/microsocket`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a
    /// directory.
    Man {
        /// Write `microsocket.1`, `microsocket-serve.1`, ... into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// Arguments of `serve`.
#[derive(Args, Clone)]
pub(crate) struct ServeArgs {
    /// UNIX socket path to listen on (`@name` for a Linux abstract name); may
    /// come from the --config file instead.
    pub(crate) socket: Option<String>,
    /// Read settings from this TOML file: any flag below by its long name
    /// (`max-memory = "256MiB"`, `buffer = ["log.>=100"]`) and `socket`.
    /// Flags given on the command line win over the file.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// Check this configuration file (with any flags given) and exit: 0 if
    /// it is valid, 2 with the file, line and key of the first problem if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub(crate) check_config: Option<std::path::PathBuf>,
    /// Also listen on TCP (`host:port` or `tcp://host:port`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) tcp: Option<String>,
    /// Serve TCP with TLS, with this certificate chain (PEM); clients connect
    /// to `tls://host:port`.
    #[arg(long, value_name = "FILE", requires_all = ["tcp", "tls_key"])]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Require TLS clients to present a certificate signed by this CA (PEM):
    /// mutual TLS. Their verified names reach the handler.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_client_ca: Option<std::path::PathBuf>,
    /// Allow --tcp on an address other than loopback without TLS: anyone who
    /// can reach it may then read and send everything, unauthenticated.
    #[arg(long)]
    pub(crate) insecure_plaintext: bool,
    /// Attach a device on a serial line as one more connection of the bus: a
    /// UART, a USB CDC device or a pseudo-terminal, opened in raw mode, at
    /// BAUD if given (`/dev/ttyACM0@115200`; repeatable). It is attached once,
    /// at start: a device that goes away is released like any peer that
    /// hangs up.
    #[arg(long, value_name = "DEVICE[@BAUD]")]
    pub(crate) attach: Vec<String>,
    /// Keep the last N publications of topics matching TOPIC_OR_PATTERN for new
    /// subscribers (repeatable).
    #[arg(long, value_name = "TOPIC_OR_PATTERN=N")]
    pub(crate) buffer: Vec<String>,
    /// Buffered topics kept at most; past it, the least recently published
    /// topic is dropped first.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub(crate) buffer_max_topics: usize,
    /// Bytes all buffered topics keep at most (`64MiB`, `512KiB`, `1000`).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::bus::parse_size)]
    pub(crate) buffer_max_bytes: usize,
    /// Bytes one buffered topic keeps at most, besides its depth.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::bus::parse_size)]
    pub(crate) buffer_max_topic_bytes: usize,
    /// The memory budget: bytes all clients together may make the server hold
    /// (receive buffers, queued answers and publications, requests in
    /// flight). Near it the server drops publications for the clients that
    /// hold the most, answers new requests "server busy", and refuses new
    /// connections and subscriptions.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = crate::bus::parse_size)]
    pub(crate) max_memory: usize,
    /// The share of the memory budget the clients of one user (peer uid) may
    /// hold together, so that one user at its limit leaves the others served.
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = crate::bus::parse_size)]
    pub(crate) max_memory_per_user: usize,
    /// Connections one user (peer uid) may have open at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub(crate) max_connections_per_user: usize,
    /// Permissions of the socket file, in octal. The file never has more, even
    /// while it is being created.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = crate::bus::parse_mode)]
    pub(crate) mode: u32,
    /// Owner of the socket file: a user id, or a name from /etc/passwd (needs
    /// privilege).
    #[arg(long, value_name = "USER")]
    pub(crate) owner: Option<String>,
    /// Group of the socket file: a group id, or a name from /etc/group (one of
    /// yours, unless privileged).
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
    /// Keep a connection whose client sends requests in batches polling for
    /// this many microseconds after its last activity before the server's
    /// thread may sleep: more throughput for clients that pipeline requests,
    /// at the cost of CPU (0: never).
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 50)]
    pub(crate) spin_us: u64,
    /// Threads serving the connections. One thread (the default) serves
    /// every connection in turn, which is the fastest on a few cores: no
    /// connection's task moves between threads, and nothing waits on a lock
    /// another thread holds. More threads serve more connections at once,
    /// for handlers that keep a core busy or a host with many cores to give.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: u16,
    /// On SIGINT or SIGTERM, stop accepting and remove the socket file at
    /// once, then let requests in flight finish for at most this long (`2s`,
    /// `500ms`); a second signal exits at once.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::bus::parse_duration)]
    pub(crate) grace: std::time::Duration,
    /// Serve metrics in the Prometheus text format at http://ADDR/metrics:
    /// the server's counters and gauges, and the handler's latency per
    /// command. A port alone listens on loopback (`9464`); `HOST:PORT` as
    /// given.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<String>,
    /// Log connections, requests and subscriptions to stderr (the `info`
    /// level, or `RUST_LOG`).
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Log to stderr at this level or above.
    #[arg(long, value_name = "LEVEL", value_parser = ["off", "error", "warn", "info", "debug", "trace"])]
    pub(crate) log_level: Option<String>,
    /// Bridge this bus to NATS.
    #[command(flatten)]
    pub(crate) nats: nats::NatsArgs,
}

#[derive(Args)]
struct RequestArgs {
    /// Server address: a UNIX socket path, `@name`, `tcp://host:port`,
    /// `tls://host:port` (see `MICROSOCKET_TLS_CA`), or `serial:DEVICE[@BAUD]`.
    socket: String,
    /// The command.
    command: String,
    /// Its arguments.
    args: Vec<String>,
    /// Print values as hex.
    #[arg(long)]
    hex: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 25.0)]
    timeout: f64,
}

#[derive(Args)]
struct SubscribeArgs {
    /// Server address.
    socket: String,
    /// Topics to subscribe to.
    topics: Vec<String>,
    /// Patterns to subscribe to (`*` one token, final `>` one or more; repeatable).
    #[arg(long = "pattern", value_name = "P")]
    patterns: Vec<String>,
    /// Exit 0 after this many publications.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Print values as hex.
    #[arg(long)]
    hex: bool,
}

#[derive(Args)]
struct PublishArgs {
    /// Server address.
    socket: String,
    /// The topic.
    topic: String,
    /// The values.
    args: Vec<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 25.0)]
    timeout: f64,
}

#[derive(Args)]
struct BenchArgs {
    /// Server address (a `microsocket serve`, or any server with ECHO and PUBLISH).
    socket: String,
    /// Connections for the request phase.
    #[arg(long, short = 'c', default_value_t = 4)]
    connections: usize,
    /// Requests in flight on each connection.
    #[arg(long, short = 'k', default_value_t = 16)]
    in_flight: usize,
    /// Seconds each phase runs.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    duration: f64,
    /// Payload bytes per request and publication.
    #[arg(long, short = 'p', default_value_t = 16)]
    payload: usize,
    /// Subscribers for the fan-out phase (0 skips it).
    #[arg(long, short = 'n', default_value_t = 10)]
    subscribers: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Exit code for a failed request.
const EXIT_FAILED: u8 = 1;
/// Exit code for connection errors and bad usage.
const EXIT_ERROR: u8 = 2;

fn timeout(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The runtime a command runs on: one thread, but for a server told to use
/// more and for the load generator, whose clients use every core.
fn runtime(command: &Command) -> tokio::runtime::Builder {
    match command {
        Command::Serve(args) if args.threads > 1 => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(args.threads));
            builder
        }
        Command::Bench(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // With a configuration file, SIGHUP reads it again.
    let mut reloader = None;
    if let (Command::Serve(args), Some(("serve", flags))) = (&mut cli.command, matches.subcommand()) {
        if let Some(file) = args.config.clone().or_else(|| args.check_config.clone()) {
            let command_line = (**args).clone();
            if let Err(e) = config::apply(args, flags, &file) {
                eprintln!("microsocket: {e:#}");
                return ExitCode::from(EXIT_ERROR);
            }
            reloader = Some(reload::Reloader {
                command_line,
                matches: flags.clone(),
                file,
            });
        }
    }
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "microsocket", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => return manual(dir.as_deref()),
        _ => {}
    }
    let runtime = match runtime(&cli.command).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("microsocket: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    runtime.block_on(async move {
        let outcome = match cli.command {
            Command::Serve(args) => bus::serve(*args, reloader).await,
            Command::Request(args) => request(args).await,
            Command::Subscribe(args) => subscribe(args).await,
            Command::Publish(args) => publish(args).await,
            Command::Bench(args) => bench(args).await,
            Command::Stats(args) => introspect::stats(args).await,
            Command::Clients(args) => introspect::clients(args).await,
            Command::Topics(args) => introspect::topics(args).await,
            Command::Monitor(args) => monitor::run(args).await,
            Command::Top(args) => top::run(args).await,
            Command::Bridge(args) => nats::bridge(args).await,
            Command::Demo => demo::run().await,
            Command::Completions { .. } | Command::Man { .. } => Ok(ExitCode::SUCCESS),
        };
        match outcome {
            Ok(code) => code,
            Err(e) => {
                eprintln!("microsocket: {e:#}");
                ExitCode::from(EXIT_ERROR)
            }
        }
    })
}

/// Prints the manual page, or writes one per command into `dir`.
fn manual(dir: Option<&std::path::Path>) -> ExitCode {
    let command = <Cli as clap::CommandFactory>::command();
    let written = match dir {
        Some(dir) => clap_mangen::generate_to(command, dir),
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("microsocket: cannot write the manual: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Prints a server failure and returns exit code 1, or passes other errors on.
fn failure(e: Error) -> Result<ExitCode> {
    match e {
        Error::Failed { message, details } => {
            let mut err = std::io::stderr().lock();
            err.write_all(&message)?;
            for d in details {
                err.write_all(b"\t")?;
                err.write_all(&d)?;
            }
            err.write_all(b"\n")?;
            Ok(ExitCode::from(EXIT_FAILED))
        }
        other => Err(other.into()),
    }
}

async fn request(args: RequestArgs) -> Result<ExitCode> {
    let address = parse_address(&args.socket)?;
    let client = connect(&address, timeout(args.timeout)).await?;
    match client.request(&args.command, &args.args).await {
        Ok(values) => {
            let mut out = std::io::stdout().lock();
            output::write_lines(&mut out, values.iter_slices(), args.hex)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => failure(e),
    }
}

async fn publish(args: PublishArgs) -> Result<ExitCode> {
    let address = parse_address(&args.socket)?;
    let client = connect(&address, timeout(args.timeout)).await?;
    let request_args: Vec<&str> = std::iter::once(args.topic.as_str())
        .chain(args.args.iter().map(String::as_str))
        .collect();
    match client.request("PUBLISH", &request_args).await {
        Ok(values) => {
            let mut out = std::io::stdout().lock();
            output::write_lines(&mut out, values.iter_slices(), false)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => failure(e),
    }
}

async fn subscribe(args: SubscribeArgs) -> Result<ExitCode> {
    if args.topics.is_empty() && args.patterns.is_empty() {
        anyhow::bail!("give at least one topic or --pattern");
    }
    let address = parse_address(&args.socket)?;
    let client = connect(&address, Some(microsocket_tokio::DEFAULT_REQUEST_TIMEOUT)).await?;
    // One receiver for every topic and pattern: each publication once, in the
    // order the server sent them.
    let mut subscriber = client.subscriber();
    for topic in &args.topics {
        subscriber = subscriber.topic(topic);
    }
    for pattern in &args.patterns {
        subscriber = subscriber.pattern(pattern);
    }
    let mut publications = subscriber.subscribe().await.context("cannot subscribe")?;
    let mut printed = 0u64;
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    while let Some(item) = publications.next().await {
        match item {
            Ok(p) => {
                let mut out = std::io::stdout().lock();
                output::write_publication(&mut out, p.topic(), p.values().iter_slices(), args.hex)?;
                out.flush()?;
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(Error::Lagged { missed: n }) => eprintln!("microsocket: missed {n} publications"),
            Err(Error::Reconnecting) => eprintln!("microsocket: reconnecting; publications may be missed"),
            Err(e) => return Err(anyhow::Error::from(e).context("subscription ended")),
        }
    }
    anyhow::bail!("the server closed the connection")
}

async fn bench(args: BenchArgs) -> Result<ExitCode> {
    let address = parse_address(&args.socket)?;
    let settings = loadgen::Settings {
        connections: args.connections,
        in_flight: args.in_flight,
        duration: Duration::from_secs_f64(args.duration.max(0.1)),
        payload: args.payload,
        subscribers: args.subscribers,
        progress: !args.json,
    };
    let report = loadgen::run(&address, &settings).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", loadgen::table(&report));
    }
    Ok(ExitCode::SUCCESS)
}
