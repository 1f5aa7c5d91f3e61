//! `microsocket serve --config FILE`, on SIGHUP: the file is read again and
//! what can change while the server runs does (limits, memory budget,
//! buffered-topic rules and caps, log level); what cannot (sockets, their
//! modes, TCP, metrics) is named, to apply at the next start.

use std::path::PathBuf;

use anyhow::Result;
use clap::ArgMatches;
use microsocket_tokio::Server;

use crate::bus::Bus;
use crate::ServeArgs;

/// Changes the level of the log while the server runs.
pub(crate) type LogLevel =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// What a reload needs: the settings as the command line gave them (flags
/// win over the file, at every reload as at the start), and the file.
pub(crate) struct Reloader {
    pub(crate) command_line: ServeArgs,
    pub(crate) matches: ArgMatches,
    pub(crate) file: PathBuf,
}

/// The filter of the log for these settings: `--log-level`, else `info`
/// with `--verbose` (or `RUST_LOG` if set), else nothing.
pub(crate) fn log_filter(args: &ServeArgs) -> tracing_subscriber::EnvFilter {
    let filter = match (&args.log_level, args.verbose) {
        (Some(level), _) => tracing_subscriber::EnvFilter::new(level),
        (None, true) => tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        (None, false) => tracing_subscriber::EnvFilter::new("off"),
    };
    crate::nats::quiet_nats_client(filter)
}

impl Reloader {
    /// Reads the file again and applies it to `server`, whose settings are
    /// `current` (updated to what now runs). Returns what it says of it:
    /// what changed and what needs a restart. On error nothing changes.
    pub(crate) fn reload(&self, server: &Server<Bus>, current: &mut ServeArgs, log: &LogLevel) -> Result<String> {
        let mut next = self.command_line.clone();
        crate::config::apply(&mut next, &self.matches, &self.file)?;
        let rules = next
            .buffer
            .iter()
            .map(|spec| crate::bus::parse_buffer(spec))
            .collect::<Result<Vec<_>>>()?;
        for (selector, _) in &rules {
            microsocket_core::Pattern::new(selector).map_err(|e| {
                anyhow::anyhow!(
                    "{}: buffer {:?}: {e}",
                    self.file.display(),
                    String::from_utf8_lossy(selector)
                )
            })?;
        }
        let mut changed = Vec::new();
        // First what can fail, so that a failure leaves everything as it was.
        let log_changed = (&next.log_level, next.verbose) != (&current.log_level, current.verbose);
        if log_changed {
            log.reload(log_filter(&next))?;
        }
        if memory_limits(&next) != memory_limits(current) {
            server.set_memory_limits(memory_limits(&next));
            changed.push("memory limits");
        }
        if buffer_limits(&next) != buffer_limits(current) {
            server.set_buffer_limits(buffer_limits(&next));
            changed.push("buffer caps");
        }
        if next.buffer != current.buffer {
            // Rules no longer in the file stop keeping publications.
            for (selector, _) in current
                .buffer
                .iter()
                .filter_map(|spec| crate::bus::parse_buffer(spec).ok())
            {
                if !rules.iter().any(|(s, _)| *s == selector) {
                    let _ = server.set_buffer(&selector, 0);
                }
            }
            for (selector, depth) in &rules {
                let _ = server.set_buffer(selector, *depth);
            }
            changed.push("buffered topics");
        }
        if log_changed {
            changed.push("log level");
        }
        let restart: Vec<&str> = [
            ("socket", next.socket != current.socket),
            ("tcp", next.tcp != current.tcp),
            (
                "tls",
                (&next.tls_cert, &next.tls_key, &next.tls_client_ca)
                    != (&current.tls_cert, &current.tls_key, &current.tls_client_ca),
            ),
            ("attach", next.attach != current.attach),
            ("mode", next.mode != current.mode),
            ("owner", next.owner != current.owner),
            ("group", next.group != current.group),
            ("metrics", next.metrics != current.metrics),
            ("spin-us", next.spin_us != current.spin_us),
            ("threads", next.threads != current.threads),
            ("grace", next.grace != current.grace),
            ("nats", next.nats != current.nats),
            (
                "insecure-plaintext",
                next.insecure_plaintext != current.insecure_plaintext,
            ),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect();
        // What runs now: the new values of what changed, the old of the rest.
        current.buffer = next.buffer;
        current.buffer_max_topics = next.buffer_max_topics;
        current.buffer_max_bytes = next.buffer_max_bytes;
        current.buffer_max_topic_bytes = next.buffer_max_topic_bytes;
        current.max_memory = next.max_memory;
        current.max_memory_per_user = next.max_memory_per_user;
        current.max_connections_per_user = next.max_connections_per_user;
        current.log_level = next.log_level;
        current.verbose = next.verbose;
        let mut said = format!("reloaded {}: ", self.file.display());
        if changed.is_empty() {
            said.push_str("nothing changed");
        } else {
            said.push_str(&format!("changed {}", changed.join(", ")));
        }
        if !restart.is_empty() {
            said.push_str(&format!("; not changed until a restart: {}", restart.join(", ")));
        }
        Ok(said)
    }
}

pub(crate) fn memory_limits(args: &ServeArgs) -> microsocket_tokio::MemoryLimits {
    microsocket_tokio::MemoryLimits {
        max_memory: args.max_memory,
        max_memory_per_user: args.max_memory_per_user,
        max_connections_per_user: args.max_connections_per_user,
    }
}

pub(crate) fn buffer_limits(args: &ServeArgs) -> microsocket_tokio::BufferLimits {
    microsocket_tokio::BufferLimits {
        max_topics: args.buffer_max_topics,
        max_bytes: args.buffer_max_bytes,
        max_bytes_per_topic: args.buffer_max_topic_bytes,
    }
}
