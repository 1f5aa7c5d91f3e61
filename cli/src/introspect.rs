//! `microsocket stats`, `clients` and `topics`: what a server tells of
//! itself through its server commands (`$STATS`, `$CONNECTIONS`, `$TOPICS`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::connect::{connect, parse_address};
use crate::{failure, timeout};

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Server address.
    pub(crate) socket: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 25.0)]
    pub(crate) timeout: f64,
}

/// The values a server command answers, as text; or, if the server failed
/// it, the exit code after printing the failure.
pub(crate) async fn ask_server(args: &StatsArgs, command: &str) -> Result<Result<Vec<String>, ExitCode>> {
    let address = parse_address(&args.socket)?;
    let client = connect(&address, timeout(args.timeout)).await?;
    match client.request(command, microsocket_tokio::NO_ARGS).await {
        Ok(values) => Ok(Ok(values
            .iter_slices()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect())),
        Err(e) => failure(e).map(Err),
    }
}

pub(crate) async fn stats(args: StatsArgs) -> Result<ExitCode> {
    let values = match ask_server(&args, "$STATS").await? {
        Ok(values) => values,
        Err(code) => return Ok(code),
    };
    let pairs: Vec<(&str, &str)> = values
        .chunks(2)
        .filter_map(|p| Some((p.first()?.as_str(), p.get(1)?.as_str())))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let object: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(name, value)| {
                let value = value
                    .parse::<u64>()
                    .map_or_else(|_| (*value).into(), serde_json::Value::from);
                ((*name).to_owned(), value)
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&object)?)?;
    } else {
        let width = pairs.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in pairs {
            writeln!(out, "{name:<width$}  {value}")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn clients(args: StatsArgs) -> Result<ExitCode> {
    let values = match ask_server(&args, "$CONNECTIONS").await? {
        Ok(values) => values,
        Err(code) => return Ok(code),
    };
    let rows = connection_rows(&values);
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<serde_json::Map<String, serde_json::Value>> = rows
            .iter()
            .map(|fields| {
                fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.parse::<u64>()
                                .map_or_else(|_| v.as_str().into(), serde_json::Value::from),
                        )
                    })
                    .collect()
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
    } else {
        let columns = [
            "id",
            "pid",
            "uid",
            "gid",
            "process",
            "subscriptions",
            "in_flight",
            "queued",
            "memory",
            "dropped",
        ];
        let cell = |fields: &[(String, String)], name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map_or("-", |(_, v)| v.as_str())
                .to_owned()
        };
        let widths: Vec<usize> = columns
            .iter()
            .map(|c| rows.iter().map(|r| cell(r, c).len()).max().unwrap_or(0).max(c.len()))
            .collect();
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        writeln!(out, "{}", line(columns.iter().map(|c| c.to_uppercase()).collect()))?;
        for r in &rows {
            writeln!(out, "{}", line(columns.iter().map(|c| cell(r, c)).collect()))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn topics(args: StatsArgs) -> Result<ExitCode> {
    let values = match ask_server(&args, "$TOPICS").await? {
        Ok(values) => values,
        Err(code) => return Ok(code),
    };
    let rows: Vec<(&str, &str, &str)> = values
        .chunks(3)
        .filter_map(|r| Some((r.first()?.as_str(), r.get(1)?.as_str(), r.get(2)?.as_str())))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(kind, selector, n)| {
                serde_json::json!({"kind": kind, "selector": selector, "connections": n.parse::<u64>().unwrap_or(0)})
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
    } else {
        let width = rows
            .iter()
            .map(|(_, s, _)| s.len())
            .max()
            .unwrap_or(0)
            .max("SELECTOR".len());
        writeln!(out, "{:<7}  {:<width$}  CONNECTIONS", "KIND", "SELECTOR")?;
        for (kind, selector, n) in rows {
            writeln!(out, "{kind:<7}  {selector:<width$}  {n}")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The connections of a `$CONNECTIONS` answer, each as its `key=value`
/// fields, with a `process` field (the peer's process name, read from /proc
/// on this host, where the peer runs) before `subscriptions`.
pub(crate) fn connection_rows(values: &[String]) -> Vec<Vec<(String, String)>> {
    values
        .iter()
        .map(|v| {
            let mut fields: Vec<(String, String)> = v
                .split_whitespace()
                .filter_map(|f| f.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect();
            let process = fields
                .iter()
                .find(|(k, _)| k == "pid")
                .and_then(|(_, pid)| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
                .map(|name| name.trim().to_owned());
            fields.insert(
                fields
                    .iter()
                    .position(|(k, _)| k == "subscriptions")
                    .unwrap_or(fields.len()),
                ("process".to_owned(), process.unwrap_or_default()),
            );
            fields
        })
        .collect()
}
