//! `microsocket serve`: a ready-made local message bus.
//!
//! Commands: `PING` → `PONG`; `ECHO a b ...` → `a b ...`; `PUBLISH topic a b ...`
//! publishes `a b ...` on `topic` and answers how many connections it reached;
//! `FAIL message` fails with that message; `SLEEP ms [value]` answers after `ms`
//! milliseconds (at most [`MAX_SLEEP_MS`]). Anything else fails, naming the
//! command.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use microsocket_socket::Address;
use microsocket_tokio::{Failure, Handler, Publisher, Reply, Request, Server};

use crate::ServeArgs;

/// The longest `SLEEP` the bus accepts (one minute): a peer cannot park a
/// request for longer.
pub(crate) const MAX_SLEEP_MS: u64 = 60_000;

/// The bus's request handler.
#[derive(Debug)]
pub(crate) struct Bus {
    /// Its server's publisher.
    publisher: Publisher,
    /// Where each request's handling time is recorded (with `--metrics`).
    latency: Option<crate::metrics::Latency>,
    /// Where `@SUBJECT` requests go (with `--nats`), once the bridge is up.
    remote: std::sync::OnceLock<microsocket_nats::Remote>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Handler for Bus {
    /// Every request's future is moved into place for it: commands answered
    /// at once (nearly all of them) make a small ready future, and only those
    /// that wait (`SLEEP`, a remote request) make a boxed one.
    fn call(&self, request: Request) -> impl std::future::Future<Output = Result<Reply, Failure>> + Send {
        let timed =
            (self.latency.as_ref()).map(|_| (crate::metrics::Command::of(&request.command), std::time::Instant::now()));
        match self.answer(request) {
            Answer::Now(result) => {
                self.observe(timed, &result);
                futures_util::future::Either::Left(std::future::ready(result))
            }
            waits => futures_util::future::Either::Right(Box::pin(async move {
                let result = waits.wait().await;
                self.observe(timed, &result);
                result
            })),
        }
    }
}

/// A request's answer, or what it waits for first.
enum Answer {
    Now(Result<Reply, Failure>),
    /// `SLEEP`: the value to answer after the delay.
    Sleep {
        delay: Duration,
        value: Option<Bytes>,
    },
    /// A request for another bus, across NATS.
    Remote(microsocket_nats::Remote, Box<Request>),
}

impl Answer {
    async fn wait(self) -> Result<Reply, Failure> {
        match self {
            Self::Now(result) => result,
            Self::Sleep { delay, value } => {
                tokio::time::sleep(delay).await;
                Ok(value.map_or_else(Reply::empty, Reply::one))
            }
            Self::Remote(remote, request) => match remote.call(&request).await {
                Some(result) => result,
                None => Err(Failure::new(format!("unknown command {:?}", text(&request.command)))),
            },
        }
    }
}

impl Bus {
    /// Records how long a request took, with `--metrics`.
    fn observe(&self, timed: Option<(crate::metrics::Command, std::time::Instant)>, result: &Result<Reply, Failure>) {
        if let (Some(latency), Some((command, start))) = (&self.latency, timed) {
            let outcome = match result {
                Ok(_) => crate::metrics::Outcome::ok,
                Err(_) => crate::metrics::Outcome::failed,
            };
            latency.observe(command, outcome, start.elapsed());
        }
    }

    /// The bus's answer to a request, or what it waits for.
    fn answer(&self, request: Request) -> Answer {
        if let Some(remote) = self.remote.get() {
            if microsocket_nats::Remote::subject_of(&request.command).is_some() {
                return Answer::Remote(remote.clone(), Box::new(request));
            }
        }
        let args = &request.args;
        Answer::Now(match &request.command[..] {
            b"PING" if args.is_empty() => Ok(Reply::one("PONG")),
            b"PING" => Err(Failure::new("PING takes no arguments")),
            b"ECHO" => Ok(request.args.into()),
            b"PUBLISH" => {
                let Some(topic) = args.first() else {
                    return Answer::Now(Err(Failure::new("PUBLISH needs a topic: PUBLISH topic [value...]")));
                };
                self.publisher
                    .publish(&topic, args.iter_slices().skip(1))
                    .map(|reached| Reply::one(reached.to_string()))
                    .map_err(|e| Failure::new(format!("PUBLISH cannot encode the publication: {e}")))
            }
            b"FAIL" => match args.len() {
                1 => Err(Failure::new(args.first().unwrap_or_default())),
                n => Err(Failure::new(format!(
                    "FAIL takes exactly one argument, the message; got {n}"
                ))),
            },
            b"SLEEP" => {
                if args.is_empty() || args.len() > 2 {
                    return Answer::Now(Err(Failure::new(
                        "SLEEP takes a number of milliseconds and an optional value",
                    )));
                }
                let ms_text = text(&args.first().unwrap_or_default());
                let Ok(ms) = ms_text.parse::<u64>() else {
                    return Answer::Now(Err(Failure::new(format!(
                        "SLEEP needs milliseconds as a whole number, not {ms_text:?}"
                    ))));
                };
                if ms > MAX_SLEEP_MS {
                    return Answer::Now(Err(Failure::new(format!(
                        "SLEEP takes at most {MAX_SLEEP_MS} milliseconds"
                    ))));
                }
                return Answer::Sleep {
                    delay: Duration::from_millis(ms),
                    value: args.get(1),
                };
            }
            other => Err(Failure::new(format!("unknown command {:?}", text(other)))),
        })
    }
}

/// A bus server, not yet listening.
pub(crate) fn bus_server() -> Server<Bus> {
    Server::with_publisher(microsocket_tokio::ServerConfig::default(), |publisher| Bus {
        publisher,
        latency: None,
        remote: std::sync::OnceLock::new(),
    })
}

/// Parses an octal file mode such as `600` or `0o660` (permission bits only).
pub(crate) fn parse_mode(s: &str) -> Result<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8).with_context(|| format!("{s:?} is not an octal mode"))?;
    if mode > 0o777 {
        bail!("{s:?}: a socket mode has permission bits only (at most 777)");
    }
    Ok(mode)
}

/// A numeric id, or the id of a name in `database` (`/etc/passwd` or
/// `/etc/group`: `name:password:id:...` lines).
fn parse_id(s: &str, database: &str) -> Result<u32> {
    if let Ok(id) = s.parse() {
        return Ok(id);
    }
    let text = std::fs::read_to_string(database).with_context(|| format!("cannot read {database}"))?;
    find_id(&text, s).with_context(|| format!("no {s:?} in {database}"))
}

/// The id of `name` in the text of a passwd or group file.
fn find_id(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.nth(1)?.parse().ok())?
    })
}

/// Parses `TOPIC_OR_PATTERN=N`.
pub(crate) fn parse_buffer(spec: &str) -> Result<(Bytes, usize)> {
    let (selector, depth) = spec
        .rsplit_once('=')
        .with_context(|| format!("--buffer {spec:?}: expected TOPIC_OR_PATTERN=N"))?;
    let depth = depth
        .parse()
        .with_context(|| format!("--buffer {spec:?}: N must be a whole number"))?;
    Ok((Bytes::copy_from_slice(selector.as_bytes()), depth))
}

/// SIGINT and SIGTERM, caught from the moment this is made (so one that
/// arrives while the server starts is not fatal).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Runs the bus until SIGINT or SIGTERM; SIGHUP reloads its configuration
/// file, if it has one.
pub(crate) async fn serve(mut args: ServeArgs, reloader: Option<crate::reload::Reloader>) -> Result<ExitCode> {
    let activated = crate::systemd::activated()?;
    let (server, address, metrics) = prepare(&args, !activated.is_empty())?;
    if let Some(file) = &args.check_config {
        println!("{}: valid", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut signals = Signals::new()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let log = {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let (filter, handle) = tracing_subscriber::reload::Layer::new(crate::reload::log_filter(&args));
        tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init();
        handle
    };
    if !activated.is_empty() {
        // Socket activation: systemd's sockets, which stay systemd's.
        for listener in activated.unix {
            listener.set_nonblocking(true)?;
            server.serve_unix_listener(tokio::net::UnixListener::from_std(listener)?);
        }
        let tls = tls_config(&args)?;
        for listener in activated.tcp {
            if tls.is_none() && !args.insecure_plaintext {
                refuse_plaintext_beyond_loopback(&listener.local_addr()?.to_string()).await?;
            }
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            match &tls {
                Some(config) => server.serve_tls_listener(listener, config.clone()),
                None => server.serve_tcp_listener(listener),
            }
        }
    } else {
        listen(&server, address, &args).await?;
    }
    for spec in &args.attach {
        let line: microsocket_socket::SerialLine = spec.parse()?;
        let stream = microsocket_tokio::SerialStream::open(&line)
            .with_context(|| format!("--attach {spec}: cannot open {}", line.device.display()))?;
        match server.serve_stream(stream) {
            Some(id) => tracing::info!(device = %line.device.display(), connection = %id, "serial line attached"),
            None => bail!("--attach {spec}: the server refused the connection (limits)"),
        }
    }
    // The bridge, if any: `@SUBJECT` requests go to NATS from now on.
    let bridge = match args.nats.connect().await? {
        Some(mut bridge) => {
            let _ = server.handler().remote.set(bridge.remote());
            bridge
                .attach_server(&server)
                .await
                .context("cannot start the NATS bridge")?;
            Some(bridge)
        }
        None => None,
    };
    if let (Some(metrics), Some(address)) = (metrics, &args.metrics) {
        let bridge = bridge.as_ref().map(microsocket_nats::Bridge::stats_handle);
        metrics.serve(server.clone(), bridge, crate::metrics::bind(address).await?);
    }
    crate::systemd::ready(&status_line(&server))?;
    // Only under systemd: outside it the reporter would only keep a timer
    // armed, and every wait for input would carry its timeout.
    let reporting = crate::systemd::notifying().then(|| tokio::spawn(report_to_systemd(server.clone())));
    loop {
        tokio::select! {
            () = signals.next() => break,
            _ = hangup.recv() => {
                let Some(reloader) = &reloader else {
                    eprintln!("microsocket: SIGHUP: no --config file to reload");
                    continue;
                };
                crate::systemd::reloading();
                match reloader.reload(&server, &mut args, &log) {
                    Ok(said) => eprintln!("microsocket: {said}"),
                    Err(e) => eprintln!("microsocket: reload failed, nothing changed: {e:#}"),
                }
                crate::systemd::ready(&status_line(&server))?;
            }
        }
    }
    crate::systemd::stopping();
    if let Some(reporting) = reporting {
        reporting.abort();
    }
    drop(bridge);
    // A second SIGINT or SIGTERM during the grace period exits at once.
    tokio::select! {
        () = server.shutdown() => Ok(ExitCode::SUCCESS),
        () = signals.next() => {
            eprintln!("microsocket: second signal; exiting without waiting for requests in flight");
            Ok(ExitCode::from(130))
        }
    }
}

/// The line systemd shows for the service (`systemctl status`).
fn status_line(server: &Server<Bus>) -> String {
    let stats = server.stats();
    format!(
        "serving; {} connections, {} requests, {} publications",
        stats.connections, stats.requests, stats.publications
    )
}

/// Keeps systemd's status line current (every 5 s) and its watchdog fed,
/// when systemd asks for either.
async fn report_to_systemd(server: Server<Bus>) {
    let watchdog = crate::systemd::watchdog_interval();
    let period = watchdog.map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        if watchdog.is_some() {
            crate::systemd::watchdog();
        }
        crate::systemd::status(&status_line(&server));
    }
}

/// How often the status line systemd shows is renewed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Listens where the command line or configuration file says.
async fn listen(server: &Server<Bus>, address: Option<Address>, args: &ServeArgs) -> Result<()> {
    let Some(address) = address else {
        bail!("give the SOCKET to listen on, or a --config file that names it");
    };
    match address {
        Address::Unix(path) => server
            .listen_unix(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Address::Abstract(name) => server
            .listen_abstract(&name)
            .with_context(|| format!("cannot listen on @{}", text(&name)))?,
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Address::Abstract(_) => bail!("abstract socket names (@name) exist on Linux only"),
        other => bail!("serve takes a UNIX socket path, not {other}; use --tcp for TCP"),
    }
    if let Some(tcp) = &args.tcp {
        let addr = tcp.strip_prefix("tcp://").unwrap_or(tcp);
        let tls = tls_config(args)?;
        if tls.is_none() && !args.insecure_plaintext {
            refuse_plaintext_beyond_loopback(addr).await?;
        }
        let bound = match tls {
            Some(config) => server.listen_tls(addr, config).await,
            None => server.listen_tcp(addr).await,
        }
        .with_context(|| format!("cannot listen on TCP {addr}"))?;
        tracing::info!(%bound, tls = args.tls_cert.is_some(), "listening on TCP");
    }
    Ok(())
}

/// Refuses plaintext TCP on `addr` unless every address it names is
/// loopback: beyond this host, the bus would be open to anyone on the
/// network, unencrypted and unauthenticated.
async fn refuse_plaintext_beyond_loopback(addr: &str) -> Result<()> {
    let addresses: Vec<_> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve TCP address {addr}"))?
        .collect();
    if let Some(open) = addresses.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "--tcp {addr} ({open}) is reachable beyond this host: serve it with TLS (--tls-cert, --tls-key), \
             or say --insecure-plaintext to allow anyone who can reach it to use the bus unencrypted"
        );
    }
    Ok(())
}

/// The TLS configuration of the TCP listeners, if `--tls-cert` asks for TLS.
fn tls_config(args: &ServeArgs) -> Result<Option<std::sync::Arc<microsocket_tokio::tls::rustls::ServerConfig>>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let config =
        microsocket_tokio::tls::server_config(cert, key, args.tls_client_ca.as_deref()).context("cannot set up TLS")?;
    Ok(Some(config))
}

/// The server `args` describe, not yet listening, and the address to listen
/// on (none when systemd hands the listeners over): every setting checked.
fn prepare(
    args: &ServeArgs,
    activated: bool,
) -> Result<(Server<Bus>, Option<Address>, Option<crate::metrics::Metrics>)> {
    if args.nats.nats.is_some() {
        args.nats.config()?;
    }
    let address = match &args.socket {
        Some(socket) => Some(crate::connect::parse_socket(socket)?),
        None if activated || args.check_config.is_some() => None,
        None => bail!("give the SOCKET to listen on, or a --config file that names it"),
    };
    let mut config = microsocket_tokio::ServerConfig::default()
        .shutdown_timeout(args.grace)
        .socket_mode(args.mode)
        .spin_before_sleep(std::time::Duration::from_micros(args.spin_us))
        .buffer_limits(microsocket_tokio::BufferLimits {
            max_topics: args.buffer_max_topics,
            max_bytes: args.buffer_max_bytes,
            max_bytes_per_topic: args.buffer_max_topic_bytes,
        })
        .memory(microsocket_tokio::MemoryLimits {
            max_memory: args.max_memory,
            max_memory_per_user: args.max_memory_per_user,
            max_connections_per_user: args.max_connections_per_user,
        });
    if let Some(owner) = &args.owner {
        config = config.socket_owner(parse_id(owner, "/etc/passwd").with_context(|| format!("--owner {owner:?}"))?);
    }
    if let Some(group) = &args.group {
        config = config.socket_group(parse_id(group, "/etc/group").with_context(|| format!("--group {group:?}"))?);
    }
    let metrics = args.metrics.as_ref().map(|_| crate::metrics::Metrics::new());
    let latency = metrics.as_ref().map(|m| m.latency.clone());
    let server = Server::with_publisher(config, |publisher| Bus {
        publisher,
        latency,
        remote: std::sync::OnceLock::new(),
    });
    for spec in &args.buffer {
        let (selector, depth) = parse_buffer(spec)?;
        server
            .set_buffer(&selector, depth)
            .with_context(|| format!("--buffer {spec:?}: not a topic or pattern"))?;
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        bail!("TLS needs both tls-cert and tls-key");
    }
    tls_config(args)?;
    for spec in &args.attach {
        spec.parse::<microsocket_socket::SerialLine>()
            .with_context(|| format!("--attach {spec:?}: expected DEVICE or DEVICE@BAUD"))?;
    }
    if let Some(tcp) = &args.tcp {
        let addr = tcp.strip_prefix("tcp://").unwrap_or(tcp);
        addr.parse::<std::net::SocketAddr>()
            .map(drop)
            .or_else(|_| std::net::ToSocketAddrs::to_socket_addrs(addr).map(drop))
            .with_context(|| format!("--tcp {tcp:?}: not an address"))?;
    }
    Ok((server, address, metrics))
}

/// Parses a duration: a number of seconds (`1`, `0.5`), or with a unit (`500ms`,
/// `2s`, `1m`).
/// A size in bytes: a number with an optional unit (`KiB`, `MiB`, `GiB`, or
/// `K`, `M`, `G` for the same).
pub(crate) fn parse_size(text: &str) -> Result<usize> {
    let text = text.trim();
    let at = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    let value: usize = number
        .parse()
        .with_context(|| format!("{text:?}: expected a size such as 64MiB, 512KiB or 1000"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => bail!("{text:?}: the unit must be KiB, MiB or GiB"),
    };
    value
        .checked_mul(1 << shift)
        .with_context(|| format!("{text:?}: too large"))
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?}: expected a duration such as 2s, 500ms or 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => bail!("{text:?}: the unit must be ms, s or m"),
    };
    Duration::try_from_secs_f64(seconds).with_context(|| format!("{text:?}: not a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_answered_at_once_moves_a_small_future() {
        let server = bus_server();
        let request = Request {
            command: bytes::Bytes::from_static(b"PING"),
            args: microsocket_tokio::Values::empty(),
            context: microsocket_tokio::RequestContext {
                connection: microsocket_tokio::ConnectionId::new(1),
                peer: None,
                tls: None,
            },
        };
        let size = std::mem::size_of_val(&server.handler().call(request));
        println!("a request's future: {size} bytes");
        assert!(size <= 160, "a request's future is {size} bytes");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn modes_and_ids() {
        assert_eq!(parse_mode("600").unwrap(), 0o600);
        assert_eq!(parse_mode("0o660").unwrap(), 0o660);
        assert_eq!(parse_mode("0777").unwrap(), 0o777);
        assert!(parse_mode("800").is_err());
        assert!(parse_mode("4755").is_err());
        assert_eq!(parse_id("42", "/nonexistent").unwrap(), 42);
        let group = "root:x:0:\nwheel:x:10:alice,bob\nnogroup:x:65534:\n";
        assert_eq!(find_id(group, "wheel"), Some(10));
        assert_eq!(find_id(group, "nogroup"), Some(65534));
        assert_eq!(find_id(group, "whee"), None);
        assert!(parse_id("no-such-name", "/nonexistent").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn buffer_specs() {
        assert_eq!(parse_buffer("log.*=5").unwrap(), (Bytes::from_static(b"log.*"), 5));
        assert_eq!(parse_buffer("a=b=2").unwrap(), (Bytes::from_static(b"a=b"), 2));
        assert!(parse_buffer("log").is_err());
        assert!(parse_buffer("log=x").is_err());
    }
}
