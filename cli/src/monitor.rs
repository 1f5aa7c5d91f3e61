//! `microsocket monitor`: every request, answer and publication passing
//! through a bus, as it happens (the server's `$MONITOR` command).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use microsocket_tokio::Error;

use crate::connect::{connect, parse_address};

/// Arguments of `monitor`.
#[derive(Args)]
pub(crate) struct MonitorArgs {
    /// Server address.
    socket: String,
    /// Show only requests whose command, and publications whose topic,
    /// match this topic or pattern (and the answers to the requests shown).
    pattern: Option<String>,
    /// Print one JSON object per line instead of TAB-separated values.
    #[arg(long)]
    json: bool,
    /// Print values as hex.
    #[arg(long, conflicts_with = "json")]
    hex: bool,
    /// Exit 0 after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Shows the bus's traffic until interrupted (or `--count` events).
///
/// Each event is one line: its kind, then for a request the connection, tag,
/// command and arguments; for an answer or failure the connection, tag and
/// values (a failure's message first); for a publication how many
/// connections it reached, its topic and values. Events the monitor missed
/// because it fell behind are counted on stderr.
pub(crate) async fn run(args: MonitorArgs) -> Result<ExitCode> {
    let address = parse_address(&args.socket)?;
    let client = connect(&address, Some(microsocket_tokio::DEFAULT_REQUEST_TIMEOUT)).await?;
    let mut events = client
        .subscriber()
        .topic("$MONITOR")
        .subscribe()
        .await
        .context("cannot subscribe to $MONITOR")?;
    let filter: Vec<&str> = args.pattern.iter().map(String::as_str).collect();
    if let Err(e) = client.request("$MONITOR", &filter).await {
        return crate::failure(e);
    }
    eprintln!("microsocket: monitoring {} (interrupt to stop)", args.socket);
    let (mut expected, mut shown, mut missed) = (0u64, 0u64, 0u64);
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    while let Some(item) = events.next().await {
        let publication = match item {
            Ok(p) => p,
            Err(Error::Lagged { missed: n }) => {
                missed += n;
                eprintln!("microsocket: missed {n} events ({missed} in all): this monitor fell behind");
                continue;
            }
            Err(e) => return Err(anyhow::Error::from(e).context("monitoring ended")),
        };
        let values: Vec<&[u8]> = publication.values().iter_slices().collect();
        let Some(seq) = values
            .first()
            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u64>().ok())
        else {
            continue;
        };
        if seq > expected {
            // The server dropped these for this monitor: its queue was full.
            missed += seq - expected;
            eprintln!(
                "microsocket: missed {} events ({missed} in all): this monitor fell behind",
                seq - expected
            );
        }
        expected = seq + 1;
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", event_json(seq, &values[1..]))?;
        } else {
            crate::output::write_publication(
                &mut out,
                values.get(1).copied().unwrap_or_default(),
                values[2..].iter().copied(),
                args.hex,
            )?;
        }
        out.flush()?;
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
    anyhow::bail!("the server closed the connection")
}

/// One event as a JSON object: `seq`, `kind`, then its fields by name.
fn event_json(seq: u64, values: &[&[u8]]) -> serde_json::Value {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let all = |from: usize| values.iter().skip(from).map(|v| text(v)).collect::<Vec<_>>();
    let at = |i: usize| values.get(i).map_or_else(String::new, |v| text(v));
    let kind = at(0);
    let mut object = serde_json::json!({ "seq": seq, "kind": kind });
    let fields = match kind.as_str() {
        "request" => serde_json::json!({
            "connection": at(1), "tag": at(2), "command": at(3), "args": all(4)
        }),
        "answer" => serde_json::json!({ "connection": at(1), "tag": at(2), "values": all(3) }),
        "failure" => serde_json::json!({
            "connection": at(1), "tag": at(2), "message": at(3), "details": all(4)
        }),
        "publication" => serde_json::json!({
            "reached": at(1).parse::<u64>().unwrap_or(0), "topic": at(2), "values": all(3)
        }),
        _ => serde_json::json!({ "values": all(1) }),
    };
    if let (Some(object), serde_json::Value::Object(fields)) = (object.as_object_mut(), fields) {
        object.extend(fields);
    }
    object
}
