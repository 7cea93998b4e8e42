//! What a bench measured, summarized: per workload and engine, latency percentiles, requests per
//! second, memory, and ratios to functions-host; printed as a table, as JSON, or as a
//! self-contained HTML page with charts (inline SVG: it opens offline).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// One engine's rounds of one workload.
#[derive(Clone, Debug, Default)]
pub struct Rounds {
    /// Every request's latency, over all rounds.
    pub latencies: Vec<Duration>,
    /// Requests per second of each round that measures a rate.
    pub rates: Vec<f64>,
    /// The wall-clock time of each round that measures one (a burst's), in seconds.
    pub walls: Vec<f64>,
    /// Resident memory after each round, in bytes.
    pub rss: Vec<u64>,
}

/// One engine's figures for one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub engine: String,
    pub version: String,
    pub requests: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// The median over rounds, when the workload measures a rate.
    pub requests_per_second: Option<f64>,
    /// The median over rounds, when the workload measures a wall-clock time.
    pub wall_seconds: Option<f64>,
    /// The most the engine's processes held, in MiB.
    pub rss_mib: f64,
    /// This engine's p50 divided by the workload's baseline's (a functions-host row).
    pub p50_vs_functions_host: Option<f64>,
    /// This engine's requests per second divided by the baseline's.
    pub rate_vs_functions_host: Option<f64>,
    /// The latency distribution: (percentile, milliseconds) at every whole percentile to the
    /// 99th (the slowest request alone would stretch a chart's axis).
    pub distribution: Vec<(u8, f64)>,
}

/// One workload's figures, functions-host's first.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub name: String,
    /// What it measures, for the reader.
    pub what: String,
    /// The row the others' ratios divide by.
    pub baseline: String,
    pub figures: Vec<Figures>,
}

/// A whole bench run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The command that produced it.
    pub command: String,
    /// When it ran (RFC 3339).
    pub date: String,
    /// The machine: cores and memory.
    pub machine: String,
    pub workloads: Vec<Workload>,
}

/// The median (of an even count, the mean of the middle two).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(match sorted.len() % 2 {
        0 => (sorted[middle - 1] + sorted[middle]) / 2.0,
        _ => sorted[middle],
    })
}

/// The `q`-quantile of sorted latencies, in milliseconds.
pub fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

impl Figures {
    pub fn of(engine: &str, version: &str, rounds: &Rounds) -> Self {
        let mut sorted = rounds.latencies.clone();
        sorted.sort();
        Self {
            engine: engine.to_owned(),
            version: version.to_owned(),
            requests: sorted.len(),
            p50_ms: quantile(&sorted, 0.5),
            p90_ms: quantile(&sorted, 0.9),
            p99_ms: quantile(&sorted, 0.99),
            requests_per_second: median(&rounds.rates),
            wall_seconds: median(&rounds.walls),
            rss_mib: rounds.rss.iter().copied().max().unwrap_or(0) as f64 / (1024.0 * 1024.0),
            p50_vs_functions_host: None,
            rate_vs_functions_host: None,
            distribution: (1..=99)
                .map(|p| (p as u8, quantile(&sorted, p as f64 / 100.0)))
                .collect(),
        }
    }
}

impl Workload {
    /// The workload with every other row's ratios to row `baseline` (a functions-host row).
    pub fn new(name: &str, what: &str, mut figures: Vec<Figures>, baseline: usize) -> Self {
        let base = figures[baseline].clone();
        for (index, other) in figures.iter_mut().enumerate() {
            if index != baseline {
                other.p50_vs_functions_host =
                    (base.p50_ms > 0.0).then(|| other.p50_ms / base.p50_ms);
                other.rate_vs_functions_host = base
                    .requests_per_second
                    .zip(other.requests_per_second)
                    .map(|(base, other)| other / base);
            }
        }
        Self {
            name: name.to_owned(),
            what: what.to_owned(),
            baseline: base.engine,
            figures,
        }
    }
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.2} ms")
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"))
}

impl Report {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<12} {:<28} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "workload", "engine", "p50", "p99", "req/s", "wall", "RSS", "p50 vs", "req/s vs"
        );
        for workload in &self.workloads {
            for f in &workload.figures {
                let _ = writeln!(
                    out,
                    "{:<12} {:<28} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
                    workload.name,
                    f.engine,
                    ms(f.p50_ms),
                    ms(f.p99_ms),
                    f.requests_per_second
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
                    f.wall_seconds
                        .map_or_else(|| "-".to_owned(), |w| format!("{w:.2} s")),
                    format!("{:.0} MiB", f.rss_mib),
                    ratio(f.p50_vs_functions_host),
                    ratio(f.rate_vs_functions_host),
                );
            }
        }
        let _ = writeln!(
            out,
            "(\"vs\": the row's figure divided by functions-host's (for cold-start, by its new \
             process's); p50 below 1x and req/s above 1x are better than functions-host)"
        );
        out
    }

    /// A self-contained HTML page: the table and charts of every workload.
    pub fn html(&self) -> String {
        let mut body = String::new();
        for workload in &self.workloads {
            let _ = write!(
                body,
                "<section><h2>{}</h2><p>{} The ratios divide by {}.</p>",
                escape(&workload.name),
                escape(&workload.what),
                escape(&workload.baseline)
            );
            body.push_str(&workload_table(workload));
            body.push_str("<div class=charts>");
            let latency: Vec<(String, f64, f64)> = (workload.figures.iter())
                .map(|f| (f.engine.clone(), f.p50_ms, f.p99_ms))
                .collect();
            body.push_str(&svg::paired_bars("Latency (ms): p50 and p99", &latency));
            let rates: Vec<(String, f64)> = (workload.figures.iter())
                .filter_map(|f| Some((f.engine.clone(), f.requests_per_second?)))
                .collect();
            if !rates.is_empty() {
                body.push_str(&svg::bars("Requests per second", &rates));
            }
            let curves: Vec<svg::Series> = (workload.figures.iter())
                .map(|f| svg::Series {
                    name: f.engine.clone(),
                    points: (f.distribution.iter())
                        .map(|(p, ms)| (*ms, *p as f64))
                        .collect(),
                })
                .collect();
            body.push_str(&svg::lines(
                "Latency distribution: percentile (y) under latency (x, ms)",
                &curves,
            ));
            body.push_str("</div></section>");
        }
        page(
            "functions-host bench",
            &format!(
                "<p><code>{}</code><br>{} &middot; {}</p>{body}",
                escape(&self.command),
                escape(&self.date),
                escape(&self.machine)
            ),
        )
    }
}

fn workload_table(workload: &Workload) -> String {
    let mut table = String::from(
        "<table><tr><th>engine</th><th>version</th><th>requests</th><th>p50</th><th>p90</th>\
         <th>p99</th><th>req/s</th><th>wall</th><th>RSS</th><th>p50 vs baseline</th>\
         <th>req/s vs baseline</th></tr>",
    );
    for f in &workload.figures {
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{:.0} MiB</td><td>{}</td><td>{}</td></tr>",
            escape(&f.engine),
            escape(&f.version),
            f.requests,
            ms(f.p50_ms),
            ms(f.p90_ms),
            ms(f.p99_ms),
            f.requests_per_second
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
            f.wall_seconds
                .map_or_else(|| "-".to_owned(), |w| format!("{w:.2} s")),
            f.rss_mib,
            ratio(f.p50_vs_functions_host),
            ratio(f.rate_vs_functions_host),
        );
    }
    table.push_str("</table>");
    table
}

/// A whole page around `body`, with its style.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{}</title>\
         <meta name=viewport content=\"width=device-width\"><style>{STYLE}</style></head>\
         <body><h1>{}</h1>{body}</body></html>\n",
        escape(title),
        escape(title)
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;\
color:#1b1f24;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;\
text-align:right}td:first-child,th:first-child{text-align:left}\
.charts{display:flex;flex-wrap:wrap;gap:1em}pre{white-space:pre-wrap}svg{background:#fafbfc;border:1px solid #e3e6ea}\
svg text{font:11px system-ui,sans-serif;fill:#444}";

/// `text` safe inside HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Charts as inline SVG.
pub mod svg {
    use std::fmt::Write as _;

    use super::escape;

    const WIDTH: f64 = 520.0;
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 60.0;
    const BOTTOM: f64 = 40.0;
    const TOP: f64 = 30.0;
    const RIGHT: f64 = 20.0;
    const COLORS: &[&str] = &["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df"];

    /// A named line of (x, y) points.
    pub struct Series {
        pub name: String,
        pub points: Vec<(f64, f64)>,
    }

    fn open(title: &str) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\"><text x=\"{LEFT}\" y=\"18\" font-weight=\"bold\">{}</text>",
            escape(title)
        )
    }

    /// A rounded-up top for an axis that reaches `max` (a value a hair over a round one, as
    /// 10.003 minutes, keeps the round one).
    fn nice(max: f64) -> f64 {
        if max <= 0.0 {
            return 1.0;
        }
        let magnitude = 10f64.powf(max.log10().floor());
        [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|step| step * magnitude)
            .find(|top| *top >= max * 0.995)
            .unwrap_or(10.0 * magnitude)
    }

    fn y_axis(svg: &mut String, top: f64) {
        let plot = HEIGHT - TOP - BOTTOM;
        for i in 0..=4 {
            let value = top * i as f64 / 4.0;
            let y = HEIGHT - BOTTOM - plot * i as f64 / 4.0;
            let _ = write!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e3e6ea\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                short(value)
            );
        }
    }

    fn short(value: f64) -> String {
        if value >= 10_000.0 {
            format!("{:.0}k", value / 1000.0)
        } else if value >= 10.0 || value == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        }
    }

    /// One bar per item.
    pub fn bars(title: &str, items: &[(String, f64)]) -> String {
        let pairs: Vec<(String, f64, f64)> = items
            .iter()
            .map(|(n, v)| (n.clone(), *v, f64::NAN))
            .collect();
        paired_bars(title, &pairs)
    }

    /// Two bars per item (the second skipped when NaN).
    pub fn paired_bars(title: &str, items: &[(String, f64, f64)]) -> String {
        let mut svg = open(title);
        let max = items
            .iter()
            .flat_map(|(_, a, b)| [*a, *b])
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let top = nice(max);
        y_axis(&mut svg, top);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let slot = plot_w / items.len().max(1) as f64;
        for (i, (name, a, b)) in items.iter().enumerate() {
            let x = LEFT + slot * i as f64;
            for (j, value) in [*a, *b].into_iter().enumerate() {
                if !value.is_finite() {
                    continue;
                }
                let bars = if b.is_finite() { 2.0 } else { 1.0 };
                let w = slot * 0.7 / bars;
                let h = plot_h * value / top;
                let _ = write!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
                     fill=\"{}\" opacity=\"{}\"><title>{}: {value:.3}</title></rect>",
                    x + slot * 0.15 + w * j as f64,
                    HEIGHT - BOTTOM - h,
                    COLORS[i % COLORS.len()],
                    if j == 0 { "1" } else { "0.55" },
                    escape(name)
                );
            }
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                HEIGHT - BOTTOM + 16.0,
                escape(name)
            );
        }
        svg.push_str("</svg>");
        svg
    }

    /// Lines over a shared x axis (from 0), with a legend.
    pub fn lines(title: &str, series: &[Series]) -> String {
        let mut svg = open(title);
        let max_x = nice(
            (series.iter())
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .fold(0.0, f64::max),
        );
        let max_y = nice(
            (series.iter())
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0, f64::max),
        );
        y_axis(&mut svg, max_y);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        for i in 0..=4 {
            let value = max_x * i as f64 / 4.0;
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                LEFT + plot_w * i as f64 / 4.0,
                HEIGHT - BOTTOM + 16.0,
                short(value)
            );
        }
        let mut legend_x = LEFT;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<String> = (s.points.iter())
                .map(|(x, y)| {
                    format!(
                        "{:.1},{:.1}",
                        LEFT + plot_w * x / max_x,
                        HEIGHT - BOTTOM - plot_h * y / max_y
                    )
                })
                .collect();
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>\
                 <rect x=\"{:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/>\
                 <text x=\"{:.1}\" y=\"{}\">{}</text>",
                points.join(" "),
                legend_x,
                HEIGHT - 14.0,
                legend_x + 14.0,
                HEIGHT - 5.0,
                escape(&s.name)
            );
            // About 6 px a character, at this size.
            legend_x += 30.0 + 6.0 * s.name.chars().count() as f64;
        }
        svg.push_str("</svg>");
        svg
    }
}
