//! `microsocket top`: a live view of a server, refreshed every second, like
//! `nats-top`: its counters and rates, request rates per command and
//! publication rates per topic (from its `$MONITOR` events), and its
//! connections with their queues and drops. Quits on `q`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use crate::connect::{connect, parse_address};

/// Arguments of `top`.
#[derive(Args)]
pub(crate) struct TopArgs {
    /// Server address.
    socket: String,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

/// Names counted per refresh at most (commands or topics): past it, others
/// are counted under `(other)`, so a flood of distinct topics cannot grow
/// the view without bound.
const MAX_NAMES: usize = 1000;
/// The label of what is counted past [`MAX_NAMES`].
const OTHER: &str = "(other)";

/// What the monitor saw since the last refresh.
#[derive(Default)]
struct Traffic {
    /// Requests per command.
    commands: HashMap<String, u64>,
    /// Publications per topic, and the connections they reached.
    topics: HashMap<String, (u64, u64)>,
    /// Events the server dropped for this view (it fell behind).
    missed: u64,
}

impl Traffic {
    fn count(&mut self, values: &[&[u8]]) {
        let text = |i: usize| {
            values
                .get(i)
                .map_or_else(String::new, |v| String::from_utf8_lossy(v).into_owned())
        };
        match values.get(1).copied() {
            Some(b"request") => {
                let mut command = text(4);
                if self.commands.len() >= MAX_NAMES && !self.commands.contains_key(&command) {
                    command = OTHER.to_owned();
                }
                *self.commands.entry(command).or_default() += 1;
            }
            Some(b"publication") => {
                let mut topic = text(3);
                if self.topics.len() >= MAX_NAMES && !self.topics.contains_key(&topic) {
                    topic = OTHER.to_owned();
                }
                let reached: u64 = text(2).parse().unwrap_or(0);
                let entry = self.topics.entry(topic).or_default();
                entry.0 += 1;
                entry.1 += reached;
            }
            _ => {}
        }
    }
}

/// One refresh's worth of figures.
struct View {
    socket: String,
    /// `$STATS` now, by name.
    stats: HashMap<String, u64>,
    /// Per second since the last refresh, by `$STATS` name.
    rates: HashMap<String, f64>,
    /// (command, per second), busiest first.
    commands: Vec<(String, f64)>,
    /// (topic, publications per second, deliveries per second), busiest first.
    topics: Vec<(String, f64, f64)>,
    /// `$CONNECTIONS`, with process names.
    connections: Vec<Vec<(String, String)>>,
    missed: u64,
}

/// Shows the live view until `q`, Esc or Ctrl-C.
pub(crate) async fn run(args: TopArgs) -> Result<ExitCode> {
    let address = parse_address(&args.socket)?;
    let client = connect(&address, Some(microsocket_tokio::DEFAULT_REQUEST_TIMEOUT)).await?;
    let mut events = client
        .subscriber()
        .topic("$MONITOR")
        .subscribe()
        .await
        .context("cannot subscribe to $MONITOR")?;
    if let Err(e) = client.request("$MONITOR", microsocket_tokio::NO_ARGS).await {
        return crate::failure(e);
    }
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let counting = traffic.clone();
    tokio::spawn(async move {
        let mut expected = 0u64;
        while let Some(item) = events.next().await {
            let mut t = counting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match item {
                Ok(p) => {
                    let values: Vec<&[u8]> = p.values().iter_slices().collect();
                    let seq = values
                        .first()
                        .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u64>().ok());
                    if let Some(seq) = seq {
                        t.missed += seq.saturating_sub(expected);
                        expected = seq + 1;
                    }
                    t.count(&values);
                }
                Err(microsocket_tokio::Error::Lagged { missed }) => t.missed += missed,
                Err(_) => return,
            }
        }
    });
    // Keys come from a thread of their own: reading the terminal blocks.
    let (keys, mut pressed) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || loop {
        match event::poll(Duration::from_millis(100)) {
            Ok(true) => {
                if let Ok(Event::Key(key)) = event::read() {
                    if key.kind == KeyEventKind::Press && keys.blocking_send(key).is_err() {
                        return;
                    }
                }
            }
            Ok(false) => {
                if keys.is_closed() {
                    return;
                }
            }
            Err(_) => return,
        }
    });
    let mut terminal = ratatui::init();
    let outcome = show(&args, &client, &traffic, &mut terminal, &mut pressed).await;
    ratatui::restore();
    outcome
}

/// Refreshes the view every interval until a quitting key.
async fn show(
    args: &TopArgs,
    client: &microsocket_tokio::Client,
    traffic: &Mutex<Traffic>,
    terminal: &mut ratatui::DefaultTerminal,
    pressed: &mut tokio::sync::mpsc::Receiver<ratatui::crossterm::event::KeyEvent>,
) -> Result<ExitCode> {
    let interval = Duration::from_secs_f64(args.interval.max(0.1));
    let mut tick = tokio::time::interval(interval);
    let mut last: Option<(Instant, HashMap<String, u64>)> = None;
    let mut missed = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let stats = ask(client, "$STATS").await?;
                let stats: HashMap<String, u64> = stats
                    .chunks(2)
                    .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.parse().ok()?)))
                    .collect();
                let connections = crate::introspect::connection_rows(&ask(client, "$CONNECTIONS").await?);
                let now = Instant::now();
                let seconds = last.as_ref().map_or(1.0, |(at, _)| now.duration_since(*at).as_secs_f64().max(1e-3));
                let rates = last.as_ref().map_or_else(HashMap::new, |(_, before)| {
                    stats
                        .iter()
                        .map(|(name, v)| (name.clone(), v.saturating_sub(*before.get(name).unwrap_or(v)) as f64 / seconds))
                        .collect()
                });
                let seen = std::mem::take(&mut *traffic.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                missed += seen.missed;
                let mut commands: Vec<(String, f64)> =
                    seen.commands.into_iter().map(|(c, n)| (c, n as f64 / seconds)).collect();
                commands.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let mut topics: Vec<(String, f64, f64)> = seen
                    .topics
                    .into_iter()
                    .map(|(t, (n, reached))| (t, n as f64 / seconds, reached as f64 / seconds))
                    .collect();
                topics.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let view = View { socket: args.socket.clone(), stats: stats.clone(), rates, commands, topics, connections, missed };
                terminal.draw(|frame| draw(frame, &view))?;
                last = Some((now, stats));
            }
            key = pressed.recv() => {
                let Some(key) = key else { return Ok(ExitCode::SUCCESS) };
                let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

/// The values a server command answers, as text.
async fn ask(client: &microsocket_tokio::Client, command: &str) -> Result<Vec<String>> {
    let values = client
        .request(command, microsocket_tokio::NO_ARGS)
        .await
        .with_context(|| format!("{command} failed"))?;
    Ok(values
        .iter_slices()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect())
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

fn draw(frame: &mut Frame, view: &View) {
    let [summary, middle, connections, help] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Percentage(40),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let stat = |name: &str| view.stats.get(name).copied().unwrap_or(0);
    let rate = |name: &str| view.rates.get(name).copied().unwrap_or(0.0);
    let lines = vec![
        Line::from(format!(
            "connections {}   requests {:.0}/s   publications {:.0}/s   deliveries {:.0}/s   dropped {:.0}/s",
            stat("connections"),
            rate("requests"),
            rate("publications"),
            rate("deliveries"),
            rate("publications_dropped"),
        )),
        Line::from(format!(
            "queued {}   memory {} of {}   buffered topics {}   monitor missed {}",
            bytes(stat("queued_bytes")),
            bytes(stat("memory_used")),
            bytes(stat("memory_limit")),
            stat("buffered_topics"),
            view.missed,
        )),
    ];
    let title = format!(" microsocket top: {} ", view.socket);
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        summary,
    );
    let [commands, topics] = Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(middle);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let command_rows = view
        .commands
        .iter()
        .map(|(c, r)| Row::new(vec![c.clone(), format!("{r:.0}")]));
    frame.render_widget(
        Table::new(command_rows, [Constraint::Fill(1), Constraint::Length(10)])
            .header(Row::new(vec!["COMMAND", "REQ/S"]).style(bold))
            .block(Block::default().borders(Borders::ALL).title(" requests ")),
        commands,
    );
    let topic_rows = view
        .topics
        .iter()
        .map(|(t, r, d)| Row::new(vec![t.clone(), format!("{r:.0}"), format!("{d:.0}")]));
    frame.render_widget(
        Table::new(
            topic_rows,
            [Constraint::Fill(1), Constraint::Length(10), Constraint::Length(10)],
        )
        .header(Row::new(vec!["TOPIC", "PUB/S", "DELIV/S"]).style(bold))
        .block(Block::default().borders(Borders::ALL).title(" publications ")),
        topics,
    );
    let columns = [
        "id",
        "pid",
        "process",
        "subscriptions",
        "in_flight",
        "queued",
        "dropped",
        "memory",
    ];
    let cell = |fields: &[(String, String)], name: &str| {
        let value = fields.iter().find(|(k, _)| k == name).map_or("-", |(_, v)| v.as_str());
        match name {
            "queued" | "memory" => value.parse().map_or_else(|_| value.to_owned(), bytes),
            _ => value.to_owned(),
        }
    };
    let rows = view
        .connections
        .iter()
        .map(|fields| Row::new(columns.iter().map(|c| cell(fields, c)).collect::<Vec<_>>()));
    let widths = [
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(16),
        Constraint::Length(13),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(10),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>()).style(bold))
            .block(Block::default().borders(Borders::ALL).title(" connections ")),
        connections,
    );
    frame.render_widget(Paragraph::new("q: quit"), help);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_is_counted_and_bounded() {
        let mut t = Traffic::default();
        t.count(&[b"0", b"request", b"1", b"t", b"PING"]);
        t.count(&[b"1", b"request", b"1", b"t", b"PING"]);
        t.count(&[b"2", b"publication", b"3", b"news", b"hi"]);
        t.count(&[b"3", b"answer", b"1", b"t"]);
        assert_eq!(t.commands["PING"], 2);
        assert_eq!(t.topics["news"], (1, 3));
        for i in 0..MAX_NAMES + 10 {
            t.count(&[b"0", b"publication", b"0", format!("t{i}").as_bytes()]);
        }
        assert_eq!(t.topics.len(), MAX_NAMES + 1);
        assert!(t.topics[OTHER].0 >= 10);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(256 << 20), "256.0 MiB");
    }
}
