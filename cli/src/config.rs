//! `microsocket serve --config FILE`: every setting of `serve`'s flags, in
//! TOML, under the flags' names (`max-memory = "256MiB"`). A flag given on
//! the command line wins over the file; the file wins over the defaults.
//! Unknown keys and bad values are refused with the file, line and key.

use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;
use toml::Spanned;

use crate::ServeArgs;

/// A size in bytes: a number, or text with a unit (`"64MiB"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// A user or group: an id, or a name.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Number(u32),
    Name(String),
}

/// What a configuration file may hold: the flags of `serve`, by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    socket: Option<Spanned<String>>,
    tcp: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    tls_client_ca: Option<Spanned<String>>,
    insecure_plaintext: Option<Spanned<bool>>,
    attach: Option<Spanned<Vec<String>>>,
    buffer: Option<Spanned<Vec<String>>>,
    buffer_max_topics: Option<Spanned<usize>>,
    buffer_max_bytes: Option<Spanned<Size>>,
    buffer_max_topic_bytes: Option<Spanned<Size>>,
    max_memory: Option<Spanned<Size>>,
    max_memory_per_user: Option<Spanned<Size>>,
    max_connections_per_user: Option<Spanned<usize>>,
    mode: Option<Spanned<String>>,
    owner: Option<Spanned<Id>>,
    group: Option<Spanned<Id>>,
    spin_us: Option<Spanned<u64>>,
    threads: Option<Spanned<u16>>,
    grace: Option<Spanned<String>>,
    verbose: Option<Spanned<bool>>,
    log_level: Option<Spanned<String>>,
    nats: Option<Spanned<String>>,
    nats_prefix: Option<Spanned<String>>,
    nats_export: Option<Spanned<Vec<String>>>,
    nats_import: Option<Spanned<Vec<String>>>,
    nats_no_requests: Option<Spanned<bool>>,
    nats_no_origin_header: Option<Spanned<bool>>,
    nats_timeout: Option<Spanned<String>>,
    nats_max_held: Option<Spanned<Size>>,
    nats_creds: Option<Spanned<String>>,
    nats_tls_ca: Option<Spanned<String>>,
}

/// Reads `path` into `args`, for every setting not given on the command line
/// (`matches` tell which were).
pub(crate) fn apply(args: &mut ServeArgs, matches: &ArgMatches, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| {
        // The line, and the key written on it (a type error names no key).
        let at = e
            .span()
            .map(|span| {
                let line = line_of(&text, &span);
                match text.lines().nth(line - 1).and_then(|l| l.split_once('=')) {
                    Some((key, _)) => format!(", line {line}, {}", key.trim()),
                    None => format!(", line {line}"),
                }
            })
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: {}", path.display(), e.message())
    })?;
    let from_flag = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    // Names the place of a bad value.
    let at = |key: &str, span: Range<usize>| format!("{}, line {}, {key}", path.display(), line_of(&text, &span));
    macro_rules! set {
        ($field:ident, $key:literal, $convert:expr) => {
            set!(args.$field, $field, $key, $convert)
        };
        ($target:expr, $field:ident, $key:literal, $convert:expr) => {
            if let Some(value) = file.$field {
                if !from_flag(stringify!($field)) {
                    let span = value.span();
                    let convert = $convert;
                    let converted: Result<_> = convert(value.into_inner());
                    $target = converted.with_context(|| at($key, span))?;
                }
            }
        };
    }
    set!(socket, "socket", |v: String| Ok(Some(v)));
    set!(tcp, "tcp", |v: String| Ok(Some(v)));
    set!(metrics, "metrics", |v: String| Ok(Some(v)));
    set!(tls_cert, "tls-cert", |v: String| Ok(Some(v.into())));
    set!(tls_key, "tls-key", |v: String| Ok(Some(v.into())));
    set!(tls_client_ca, "tls-client-ca", |v: String| Ok(Some(v.into())));
    set!(insecure_plaintext, "insecure-plaintext", Ok);
    set!(attach, "attach", |v: Vec<String>| {
        for spec in &v {
            spec.parse::<microsocket_socket::SerialLine>()?;
        }
        Ok(v)
    });
    set!(buffer, "buffer", |v: Vec<String>| {
        for spec in &v {
            crate::bus::parse_buffer(spec)?;
        }
        Ok(v)
    });
    set!(buffer_max_topics, "buffer-max-topics", Ok);
    set!(buffer_max_bytes, "buffer-max-bytes", size);
    set!(buffer_max_topic_bytes, "buffer-max-topic-bytes", size);
    set!(max_memory, "max-memory", size);
    set!(max_memory_per_user, "max-memory-per-user", size);
    set!(max_connections_per_user, "max-connections-per-user", Ok);
    set!(mode, "mode", |v: String| crate::bus::parse_mode(&v));
    set!(owner, "owner", |v: Id| Ok(Some(id(v))));
    set!(group, "group", |v: Id| Ok(Some(id(v))));
    set!(spin_us, "spin-us", Ok);
    set!(threads, "threads", |n: u16| if n == 0 {
        Err(anyhow::anyhow!("a server needs at least one thread"))
    } else {
        Ok(n)
    });
    set!(grace, "grace", |v: String| crate::bus::parse_duration(&v));
    set!(verbose, "verbose", Ok);
    set!(log_level, "log-level", |v: String| {
        match v.as_str() {
            "off" | "error" | "warn" | "info" | "debug" | "trace" => Ok(Some(v)),
            _ => anyhow::bail!("{v:?}: the level must be off, error, warn, info, debug or trace"),
        }
    });
    set!(args.nats.nats, nats, "nats", |v: String| Ok(Some(v)));
    set!(args.nats.nats_prefix, nats_prefix, "nats-prefix", |v: String| Ok(Some(
        v
    )));
    set!(args.nats.nats_export, nats_export, "nats-export", Ok);
    set!(args.nats.nats_import, nats_import, "nats-import", Ok);
    set!(args.nats.nats_no_requests, nats_no_requests, "nats-no-requests", Ok);
    set!(
        args.nats.nats_no_origin_header,
        nats_no_origin_header,
        "nats-no-origin-header",
        Ok
    );
    set!(args.nats.nats_timeout, nats_timeout, "nats-timeout", |v: String| {
        crate::bus::parse_duration(&v)
    });
    set!(args.nats.nats_max_held, nats_max_held, "nats-max-held", size);
    set!(args.nats.nats_creds, nats_creds, "nats-creds", |v: String| Ok(Some(
        v.into()
    )));
    set!(args.nats.nats_tls_ca, nats_tls_ca, "nats-tls-ca", |v: String| Ok(Some(
        v.into()
    )));
    if args.nats.nats.is_some() {
        args.nats.config().context(path.display().to_string())?;
    }
    Ok(())
}

fn size(value: Size) -> Result<usize> {
    match value {
        Size::Bytes(n) => usize::try_from(n).context("too large"),
        Size::Text(text) => crate::bus::parse_size(&text),
    }
}

fn id(value: Id) -> String {
    match value {
        Id::Number(n) => n.to_string(),
        Id::Name(name) => name,
    }
}

/// The line (from 1) where `span` starts in `text`.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}
