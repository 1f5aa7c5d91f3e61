//! `serve --nats URL` and `microsocket bridge`: a bus bridged to NATS
//! (`microsocket-nats`).
//!
//! Credentials come from the environment (`NATS_USER` and `NATS_PASSWORD`,
//! `NATS_TOKEN`, `NATS_NKEY`, `NATS_CREDS`) or `--nats-creds`, never from a
//! flag that `ps` would show; URLs are logged with any password taken out.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use microsocket_nats::{redacted_url, Bridge, BridgeConfig, Credentials, LocalPublish, NatsOptions};

/// The NATS bridge's flags, shared by `serve` and `bridge`.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub(crate) struct NatsArgs {
    /// Bridge the bus to NATS at this URL (`nats://host:4222`; several,
    /// comma-separated, for a cluster). Credentials: NATS_USER and
    /// NATS_PASSWORD, NATS_TOKEN, NATS_NKEY or NATS_CREDS in the environment,
    /// or --nats-creds.
    #[arg(long, value_name = "URL")]
    pub(crate) nats: Option<String>,
    /// The subject prefix naming this bus on NATS (default: the host name):
    /// exports go to PREFIX.TOPIC, requests on PREFIX.COMMAND reach this bus.
    #[arg(long, value_name = "PREFIX", requires = "nats")]
    pub(crate) nats_prefix: Option<String>,
    /// Export local publications on topics matching this topic or pattern
    /// to NATS (repeatable).
    #[arg(long, value_name = "PATTERN", requires = "nats")]
    pub(crate) nats_export: Vec<String>,
    /// Import NATS subjects matching PATTERN under REMOTE_PREFIX onto the
    /// local bus, the prefix taken off (`attic:sensor.>`; repeatable).
    #[arg(long, value_name = "[REMOTE_PREFIX:]PATTERN", requires = "nats")]
    pub(crate) nats_import: Vec<String>,
    /// Do not answer NATS requests on PREFIX.COMMAND.
    #[arg(long, requires = "nats")]
    pub(crate) nats_no_requests: bool,
    /// Send exports without the Microsocket-Origin header: about twice the
    /// throughput through NATS, but no protection against NATS itself
    /// bringing a message back on another connection.
    #[arg(long, requires = "nats")]
    pub(crate) nats_no_origin_header: bool,
    /// How long a request crossing NATS may take, either way.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::bus::parse_duration)]
    pub(crate) nats_timeout: Duration,
    /// Bytes of exports held while NATS is away; past it the oldest are
    /// dropped and counted.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = crate::bus::parse_size)]
    pub(crate) nats_max_held: usize,
    /// A NATS credentials file (JWT and nkey seed).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub(crate) nats_creds: Option<std::path::PathBuf>,
    /// Connect to NATS over TLS, verifying it with this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub(crate) nats_tls_ca: Option<std::path::PathBuf>,
}

/// Keeps the NATS client's own logging at `info` at most: at `debug` it
/// prints server addresses with any credentials in them.
pub(crate) fn quiet_nats_client(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    match filter.max_level_hint() {
        Some(level) if level >= tracing::level_filters::LevelFilter::DEBUG => {
            filter.add_directive("async_nats=info".parse().expect("a valid directive"))
        }
        _ => filter,
    }
}

/// The host name, the default prefix.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| microsocket_nats::mapping::subject_tail(name.as_bytes()).is_ok())
        .unwrap_or_else(|| "microsocket".to_owned())
}

impl NatsArgs {
    /// The bridge's configuration, checked.
    pub(crate) fn config(&self) -> Result<BridgeConfig> {
        let mut config = BridgeConfig::new(self.nats_prefix.clone().unwrap_or_else(host_name))
            .serve_requests(!self.nats_no_requests)
            .origin_header(!self.nats_no_origin_header)
            .request_timeout(self.nats_timeout)
            .max_held_bytes(self.nats_max_held);
        for export in &self.nats_export {
            config = config.export(export.clone());
        }
        for import in &self.nats_import {
            config = config.import(import);
        }
        config.validate()?;
        Ok(config)
    }

    fn options(&self, url: &str) -> NatsOptions {
        let mut options = NatsOptions::new(url).credentials_from_env();
        if let Some(creds) = &self.nats_creds {
            options.credentials = Credentials::CredsFile(creds.clone());
        }
        options.tls_ca.clone_from(&self.nats_tls_ca);
        options
    }

    /// Connects the bridge, if `--nats` asks for one (it keeps trying in the
    /// background if NATS is not there yet).
    pub(crate) async fn connect(&self) -> Result<Option<Bridge>> {
        let Some(url) = &self.nats else { return Ok(None) };
        let config = self.config()?;
        let prefix = config.prefix().to_owned();
        let bridge = Bridge::connect(&self.options(url), config)
            .await
            .with_context(|| format!("cannot bridge to NATS at {}", redacted_url(url)))?;
        tracing::info!(url = %redacted_url(url), %prefix, "bridging to NATS");
        Ok(Some(bridge))
    }
}

/// Arguments of `bridge`.
#[derive(Args)]
pub(crate) struct BridgeArgs {
    /// The bus to bridge: a UNIX socket path, `@name`, `tcp://host:port` or
    /// `tls://host:port`. Imports are published through its `PUBLISH`
    /// command.
    pub(crate) socket: String,
    /// The bridge.
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    /// The bus's command that publishes (`COMMAND topic value...`).
    #[arg(long, value_name = "COMMAND", default_value = "PUBLISH")]
    pub(crate) publish_command: String,
    /// Log to stderr at this level or above.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub(crate) log_level: String,
}

/// `microsocket bridge`: a bridge in a process of its own, a client of the bus
/// (reconnecting when the bus restarts), until SIGINT or SIGTERM.
pub(crate) async fn bridge(args: BridgeArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(quiet_nats_client(tracing_subscriber::EnvFilter::new(&args.log_level)))
        .with_writer(std::io::stderr)
        .init();
    anyhow::ensure!(
        args.nats.nats.is_some(),
        "give --nats URL: the NATS server to bridge to"
    );
    let target = crate::connect::parse_address(&args.socket)?;
    let builder = microsocket_tokio::Client::builder()
        .request_timeout(Some(args.nats.nats_timeout))
        .reconnect(microsocket_tokio::ReconnectPolicy::default());
    let bus = crate::connect::connect_with(builder, &target).await?;
    let Some(mut bridge) = args.nats.connect().await? else {
        unreachable!("--nats was checked")
    };
    bridge
        .attach(bus, LocalPublish::Command(args.publish_command.clone()))
        .await
        .context("cannot start the bridge")?;
    eprintln!("microsocket: bridging {} to NATS as {}", args.socket, bridge.origin());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(ExitCode::SUCCESS)
}
