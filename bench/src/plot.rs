//! SVG plots of the results, drawn with plotters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::prelude::*;

use crate::contender::Family;
use crate::report::{median_of, spread, Measurement, Results};

const PALETTE: [RGBColor; 5] = [
    RGBColor(90, 90, 90),
    RGBColor(160, 160, 160),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// The contenders plotted, in legend order.
const ORDER: [&str; 5] = [
    "floor (blocking)",
    "floor (tokio)",
    "microsocket-std",
    "microsocket-tokio",
    "ZeroMQ",
];

/// Draws grouped bars: one group per label, one bar per series.
fn bars(path: &Path, title: &str, y_label: &str, groups: &[String], series: &[(String, Vec<f64>)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let n_groups = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n_groups, 0.0..max * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                groups.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .draw()?;
    let width = 0.8 / series.len().max(1) as f64;
    for (s, (name, values)) in series.iter().enumerate() {
        let color = PALETTE[s % PALETTE.len()];
        chart
            .draw_series(values.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(g, v)| {
                let x0 = g as f64 + 0.1 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *v)], color.filled())
            }))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes the plots; returns their paths.
pub fn render(results: &Results, _families: &BTreeMap<&'static str, Family>, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    // Floors first, then microsocket, then ZeroMQ, in fixed colours. The core
    // alone (no I/O) is an order of magnitude above the rest and would flatten
    // every other bar; its figures are in the tables.
    let contenders: Vec<&'static str> = ORDER
        .iter()
        .copied()
        .filter(|name| results.values().any(|m| m.contains_key(name)))
        .collect();
    for pinned in ["pinned", "unpinned"] {
        let key = format!("rtt-16B-{pinned}");
        if let Some(by) = results.get(&key) {
            let groups = vec!["p50".to_string(), "p99".to_string(), "p99.9".to_string()];
            let series: Vec<(String, Vec<f64>)> = contenders
                .iter()
                .filter_map(|name| by.get_key_value(name))
                .map(|(name, runs)| {
                    let pick = |f: fn(&Measurement) -> f64| spread(runs.iter().map(f).collect()).0 / 1000.0;
                    let p50 = pick(|m| {
                        if let Measurement::Latency { p50, .. } = m {
                            *p50
                        } else {
                            0.0
                        }
                    });
                    let p99 = pick(|m| {
                        if let Measurement::Latency { p99, .. } = m {
                            *p99
                        } else {
                            0.0
                        }
                    });
                    let p999 = pick(|m| {
                        if let Measurement::Latency { p999, .. } = m {
                            *p999
                        } else {
                            0.0
                        }
                    });
                    ((*name).to_string(), vec![p50, p99, p999])
                })
                .collect();
            let path = dir.join(format!("latency-16B-{pinned}.svg"));
            bars(
                &path,
                &format!("Round trip, 16 B, {pinned} (µs, lower is better)"),
                "µs",
                &groups,
                &series,
            )?;
            written.push(path);
        }
    }
    let throughput = [
        ("pipelined-1x8", "1 conn × 8"),
        ("pipelined-1x256", "1 conn × 256"),
        ("pipelined-8x64", "8 conns × 64"),
    ];
    let fanout = [
        ("fanout-1", "1 subscriber"),
        ("fanout-10", "10"),
        ("fanout-100", "100"),
        ("slow-subscriber-10", "10 + 1 slow"),
    ];
    for (file, title, keys) in [
        (
            "throughput.svg",
            "Pipelined requests (M requests/s, higher is better)",
            &throughput[..],
        ),
        (
            "fanout.svg",
            "Fan-out of 64-byte publications (M deliveries/s, higher is better)",
            &fanout[..],
        ),
    ] {
        let groups: Vec<String> = keys.iter().map(|(_, label)| (*label).to_string()).collect();
        let series: Vec<(String, Vec<f64>)> = contenders
            .iter()
            .map(|name| {
                let values = keys
                    .iter()
                    .map(|(key, _)| median_of(results, key, name).unwrap_or(0.0) / 1e6)
                    .collect();
                ((*name).to_string(), values)
            })
            .filter(|(_, v): &(String, Vec<f64>)| v.iter().any(|x| *x > 0.0))
            .collect();
        if series.is_empty() {
            continue;
        }
        let path = dir.join(file);
        bars(&path, title, "M/s", &groups, &series)?;
        written.push(path);
    }
    Ok(written)
}
