//! What a run leaves behind: the summary table, the HdrHistogram interval log (the same V2
//! format as the server's `--histogram-log`, one tag per group and measure) and the HTML
//! report with SVG charts drawn by plotters.

use crate::play::{Interval, Observer, PlaySummary};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}

/// The summary as a table, one row per group.
pub fn table(summary: &PlaySummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>7} {:>7} {:>6} {:>6} {:>6} {:>8} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>5}",
        "group", "viewers", "conn", "failed", "ended", "left", "Gbit/s", "slowest", "window",
        "lat p50", "lat p99", "p99.9", "max", "start99", "stalls", "gaps"
    );
    for g in &summary.groups {
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>7} {:>6} {:>6} {:>6} {:>8.3} {:>6.1}% {:>6.1}% {:>6.1}ms {:>6.1}ms {:>6.1}ms {:>6.1}ms {:>5.0}ms {:>6} {:>5}",
            g.name,
            g.viewers,
            g.connected,
            g.failed,
            g.ended_early,
            g.left,
            g.gbit_per_s,
            g.slowest_fraction * 100.0,
            g.worst_window_share * 100.0,
            g.latency.p50_ms,
            g.latency.p99_ms,
            g.latency.p999_ms,
            g.latency.max_ms,
            g.startup.p99_ms,
            g.stalls,
            g.gaps
        );
        if let Some(h) = &g.hls {
            let _ = writeln!(
                out,
                "{:<20} playlists {} segments {} 404s {} errors {} | request p50 {:.1}ms p99 {:.1}ms | segment latency p50 {:.0}ms p99 {:.0}ms",
                "", h.playlists, h.segments, h.not_found, h.errors, h.request.p50_ms, h.request.p99_ms,
                h.segment_latency.p50_ms, h.segment_latency.p99_ms
            );
        }
        if let Some(l) = &g.llhls {
            let _ = writeln!(
                out,
                "{:<20} parts {} ({:.1} MB, {} at joins) playlists {} maps {} 404s {} 503s {} errors {} invalid {} resyncs {} ended {}",
                "", l.parts, l.bytes as f64 / 1e6, l.joined_parts, l.playlists, l.maps, l.not_found,
                l.unavailable, l.errors, l.invalid_playlists, l.resyncs, l.ended
            );
            let _ = writeln!(
                out,
                "{:<20} blocking reload p50 {:.1}ms p99 {:.1}ms max {:.1}ms | part request p50 {:.1}ms p99 {:.1}ms | \
                 latency by program dates p50 {:.0}ms p99 {:.0}ms max {:.0}ms | probes' part latency (SEI) p50 {:.0}ms p99 {:.0}ms",
                "", l.reload.p50_ms, l.reload.p99_ms, l.reload.max_ms, l.part_request.p50_ms,
                l.part_request.p99_ms, l.date_latency.p50_ms, l.date_latency.p99_ms,
                l.date_latency.max_ms, l.part_latency.p50_ms, l.part_latency.p99_ms
            );
        }
    }
    let _ = write!(
        out,
        "{:.1} s; generator CPU {:.2} cores mean, {:.2} peak; open-file limit allows {} viewers; \
         window = worst share of the published bytes any viewer got in a window",
        summary.seconds, summary.generator_cpu, summary.generator_cpu_peak, summary.fd_cap
    );
    out
}

/// The per-second progress line: overwritten in place on a terminal, one line a second
/// otherwise; and the interval log, when asked for.
pub struct Console {
    quiet: bool,
    tty: bool,
    log: Option<HistogramLog>,
}

impl Console {
    /// `quiet`: no progress lines (JSON output).
    pub fn new(quiet: bool, log: Option<HistogramLog>) -> Self {
        Console {
            quiet,
            tty: std::io::stderr().is_terminal(),
            log,
        }
    }

    /// Ends the progress line and closes the log.
    pub fn finish(self) -> Result<(), ReportError> {
        if self.tty && !self.quiet {
            eprintln!();
        }
        match self.log {
            Some(log) => log.finish(),
            None => Ok(()),
        }
    }
}

impl Observer for Console {
    fn progress(&mut self, line: &str) {
        match (self.quiet, self.tty) {
            (true, _) => {}
            (false, true) => eprint!("\r\x1b[2K{line}"),
            (false, false) => eprintln!("{line}"),
        }
    }

    fn interval(&mut self, start: Instant, end: Instant, intervals: &[Interval<'_>]) {
        if let Some(log) = &self.log {
            log.write(start, end, intervals);
        }
    }
}

struct Entry {
    tag: String,
    start: Duration,
    length: Duration,
    histogram: Histogram<u64>,
}

/// An HdrHistogram V2 interval log written by a thread of its own; tags are
/// `{group}.latency` and `{group}.startup` (spaces become `_`), values in nanoseconds.
pub struct HistogramLog {
    path: PathBuf,
    origin: Instant,
    sender: Option<mpsc::Sender<Entry>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl HistogramLog {
    /// Creates `path` and starts the writer.
    pub fn create(path: &Path) -> Result<HistogramLog, ReportError> {
        let io = |source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::create(path).map_err(io)?;
        let (sender, receiver) = mpsc::channel::<Entry>();
        let thread = std::thread::Builder::new()
            .name("corecast-load-histlog".into())
            .spawn(move || {
                let started = SystemTime::now();
                let mut serializer = V2DeflateSerializer::new();
                let mut log = IntervalLogWriterBuilder::new()
                    .add_comment("corecast-load probe histograms; values in nanoseconds")
                    .with_start_time(started)
                    .with_base_time(started)
                    .with_max_value_divisor(1e6)
                    .begin_log_with(&mut file, &mut serializer)?;
                for e in receiver {
                    let tag = Tag::new(&e.tag).ok_or_else(|| std::io::Error::other("bad tag"))?;
                    log.write_histogram(&e.histogram, e.start, e.length, Some(tag))
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                }
                Ok(())
            })
            .map_err(io)?;
        Ok(HistogramLog {
            path: path.to_path_buf(),
            origin: Instant::now(),
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    fn write(&self, start: Instant, end: Instant, intervals: &[Interval<'_>]) {
        let Some(sender) = &self.sender else {
            return;
        };
        for i in intervals {
            let group = i.group.replace([' ', ',', '='], "_");
            for (measure, h) in [("latency", i.latency), ("startup", i.startup)] {
                if h.is_empty() {
                    continue;
                }
                let _ = sender.send(Entry {
                    tag: format!("{group}.{measure}"),
                    start: start.saturating_duration_since(self.origin),
                    length: end.duration_since(start),
                    histogram: h.clone(),
                });
            }
        }
    }

    /// Flushes and closes the log.
    pub fn finish(mut self) -> Result<(), ReportError> {
        self.sender = None;
        let result = match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("log writer panicked")),
            None => Ok(()),
        };
        result.map_err(|source| ReportError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn chart_error(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart(e.to_string())
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one labelled line in the `i`-th color.
fn add_line<'a>(
    chart: &mut Chart<'a, 'a>,
    points: impl IntoIterator<Item = (f64, f64)>,
    name: &str,
    i: usize,
) -> Result<(), ReportError> {
    let color = COLORS[i % COLORS.len()];
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))
        .map_err(chart_error)?
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    Ok(())
}

/// Draws the legend of the lines.
fn add_legend<'a>(chart: &mut Chart<'a, 'a>) -> Result<(), ReportError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)
}

/// Draws the latency percentile distribution of every group: x is the percentile on the
/// usual "nines" scale (50%, 90%, 99%, 99.9%, ...), y the latency in ms.
fn percentile_chart(groups: &[(String, &Histogram<u64>)]) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let max_ms = groups
            .iter()
            .map(|(_, h)| h.max() as f64 / 1e6)
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency by percentile (probes)", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..5f64, 0f64..max_ms)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("ms")
            .x_labels(6)
            .x_label_formatter(&|nines| format!("{}%", 100.0 - 100.0 * 10f64.powf(-nines)))
            .draw()
            .map_err(chart_error)?;
        for (i, (name, h)) in groups.iter().enumerate() {
            if h.is_empty() {
                continue;
            }
            let points = (0..=100).map(|step| {
                let nines = f64::from(step) * 0.05;
                let q = 1.0 - 10f64.powf(-nines);
                (nines, h.value_at_quantile(q) as f64 / 1e6)
            });
            add_line(&mut chart, points, name, i)?;
        }
        add_legend(&mut chart)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Draws one per-second measure of every group over time.
fn timeline_chart(
    summary: &PlaySummary,
    title: &str,
    unit: &str,
    value: impl Fn(&crate::play::Sample) -> f64,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let t_max = summary.seconds.max(1.0);
        let y_max = summary
            .groups
            .iter()
            .flat_map(|g| g.timeline.iter().map(&value))
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..y_max)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .draw()
            .map_err(chart_error)?;
        for (i, g) in summary.groups.iter().enumerate() {
            let points = g.timeline.iter().map(|s| (s.t, value(s)));
            add_line(&mut chart, points, &g.name, i)?;
        }
        add_legend(&mut chart)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Writes the HTML report: the summary table and the charts.
pub fn html(path: &Path, title: &str, summary: &PlaySummary) -> Result<(), ReportError> {
    let groups: Vec<(String, &Histogram<u64>)> = summary
        .groups
        .iter()
        .zip(&summary.latency_histograms)
        .map(|(g, h)| (g.name.clone(), h))
        .collect();
    let charts = [
        percentile_chart(&groups)?,
        timeline_chart(summary, "Viewers playing", "viewers", |s| s.viewers as f64)?,
        timeline_chart(summary, "Throughput", "Gbit/s", |s| s.gbit_per_s)?,
        timeline_chart(summary, "p99 latency per second (probes)", "ms", |s| {
            s.p99_ms
        })?,
    ];
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}</style>\
         </head><body>\n<h1>{0}</h1>\n<pre>{1}</pre>\n",
        escape(title),
        escape(&table(summary))
    );
    for chart in &charts {
        page += "<div>";
        page += chart;
        page += "</div>\n";
    }
    page += "</body></html>\n";
    std::fs::write(path, page).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::play::{GroupSummary, Sample};

    fn summary() -> PlaySummary {
        let mut h = crate::probe::histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1_000_000).unwrap();
        }
        PlaySummary {
            seconds: 3.0,
            groups: vec![GroupSummary {
                name: "flv live/a".into(),
                viewers: 10,
                timeline: (1..=3)
                    .map(|t| Sample {
                        t: f64::from(t),
                        viewers: 10,
                        gbit_per_s: 0.5,
                        p99_ms: 12.0,
                        errors: 0,
                    })
                    .collect(),
                ..GroupSummary::default()
            }],
            latency_histograms: vec![h],
            ..PlaySummary::default()
        }
    }

    #[test]
    fn the_table_shows_ll_hls_figures() {
        let mut s = summary();
        let mut stats = crate::llhls::LlStats::default();
        stats.reload.record(180_000_000).unwrap();
        stats.date_latency.record(95_000_000).unwrap();
        (stats.parts, stats.bytes, stats.unavailable) = (400, 2_500_000, 2);
        s.groups[0].llhls = Some(crate::play::LlHlsSummary::of(&stats));
        let text = table(&s);
        assert!(text.contains("parts 400 (2.5 MB, 0 at joins)"), "{text}");
        assert!(text.contains("503s 2"), "{text}");
        assert!(text.contains("blocking reload p50 180."), "{text}");
        assert!(text.contains("latency by program dates p50 95ms"), "{text}");
        assert!(!table(&summary()).contains("blocking reload"));
    }

    #[test]
    fn html_report_has_the_table_and_four_charts() {
        let dir = std::env::temp_dir().join(format!("corecast-load-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.html");
        html(&path, "test <run>", &summary()).unwrap();
        let page = std::fs::read_to_string(&path).unwrap();
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(page.contains("test &lt;run&gt;"));
        assert!(page.contains("flv live/a"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn histogram_log_round_trips() {
        let dir = std::env::temp_dir().join(format!("corecast-load-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("probes.hlog");
        let log = HistogramLog::create(&path).unwrap();
        let s = summary();
        let start = Instant::now();
        let empty = crate::probe::histogram();
        log.write(
            start,
            start + Duration::from_secs(1),
            &[Interval {
                group: "flv live/a",
                latency: &s.latency_histograms[0],
                startup: &empty,
            }],
        );
        log.finish().unwrap();
        let read = corecast::metrics::log::read(&path, 0.0, f64::MAX).unwrap();
        let latency = read.get("flv_live/a.latency").expect("tag");
        assert_eq!(latency.len(), 100);
        assert!(!read.contains_key("flv_live/a.startup"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
