//! The benchmark's figures as pictures: one run's synced count and controller RSS over time
//! (`run_svg`), and how the cost grows with N across the recorded runs (`growth`), both SVG
//! files under docs/bench/ that docs/benchmarks.md links to. A recorded run also appends its
//! figures as one JSON line to docs/bench/runs.jsonl, which `growth` reads.

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;

/// What one run measured over time, seconds since the first ExternalSecret create.
#[derive(Default)]
pub struct Timeline {
    /// (t, Secrets created by the controller so far).
    pub synced: Vec<(f64, f64)>,
    /// (t, controller RSS in MiB).
    pub rss: Vec<(f64, f64)>,
    /// When the initial sync ended, the steady cycles began and the changes began.
    pub marks: Vec<(f64, &'static str)>,
}

/// One recorded run's figures (a line of docs/bench/runs.jsonl).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFigures {
    pub date: String,
    pub api: String,
    pub variant: String,
    pub n: usize,
    pub distinct_paths: usize,
    pub synced_s: f64,
    /// The floor before the sync.
    pub floor_s: f64,
    /// The floor after the sync, the controller stopped (runs before 2026-12-05 timed it once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_after_s: Option<f64>,
    pub peak_rss_mib: f64,
    pub cpu_per_cycle_s: f64,
    pub reads_per_cycle: f64,
    pub controller: String,
}

impl RunFigures {
    /// The floor the ratio is to: the mean of its timings.
    pub fn floor(&self) -> f64 {
        self.floor_after_s
            .map_or(self.floor_s, |after| (self.floor_s + after) / 2.0)
    }
    pub fn ratio(&self) -> f64 {
        self.synced_s / self.floor()
    }
    /// The floor's cell of the growth table: the mean, and both timings when there are two.
    fn floor_cell(&self) -> String {
        match self.floor_after_s {
            Some(after) => format!("{:.1} s ({:.1} / {:.1})", self.floor(), self.floor_s, after),
            None => format!("{:.1} s", self.floor_s),
        }
    }
    /// Peak RSS added per object over a smaller run: what each object costs, without the
    /// fixed part (binary, runtime, buffers) that peak / N would spread over them.
    pub fn marginal_rss_kib(&self, smaller: &RunFigures) -> f64 {
        (self.peak_rss_mib - smaller.peak_rss_mib) * 1024.0 / (self.n - smaller.n) as f64
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

/// Two panels over the run's time axis: Secrets synced, and the controller's RSS.
pub fn run_svg(path: &Path, title: &str, n: usize, t: &Timeline) -> Result<()> {
    let end = t
        .rss
        .iter()
        .chain(&t.synced)
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let max_rss = t.rss.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let (top, bottom) = root.split_vertically(300);

    let mut c = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..(n as f64 * 1.05))
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("seconds since the first ExternalSecret create")
        .y_desc("Secrets synced")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(
        t.synced.iter().copied(),
        BLUE.stroke_width(2),
    ))
    .map_err(err)?;
    marks(&mut c, &t.marks, n as f64 * 1.05)?;

    let mut c = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..max_rss)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("seconds since the first ExternalSecret create")
        .y_desc("controller RSS, MiB")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(t.rss.iter().copied(), RED.stroke_width(2)))
        .map_err(err)?;
    marks(&mut c, &t.marks, max_rss)?;
    root.present().map_err(err)?;
    Ok(())
}

type Chart<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn marks(c: &mut Chart<'_>, marks: &[(f64, &'static str)], top: f64) -> Result<()> {
    for (x, label) in marks {
        c.draw_series(LineSeries::new([(*x, 0.0), (*x, top)], BLACK.mix(0.4)))
            .map_err(err)?;
        c.draw_series([Text::new(
            label.to_string(),
            (*x, top * 0.97),
            ("sans-serif", 16),
        )])
        .map_err(err)?;
    }
    Ok(())
}

/// Appends `run` to the JSON lines file.
pub fn append_run(path: &Path, run: &RunFigures) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{}", serde_json::to_string(run)?)?;
    Ok(())
}

/// A labelled line of a growth panel.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// The latest plain KES run of each N in `runs.jsonl`, as a Markdown table and an SVG beside it
/// (`growth.md`, `growth.svg`).
pub fn growth(dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(dir.join("runs.jsonl")).unwrap_or_default();
    let mut latest: BTreeMap<usize, RunFigures> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: RunFigures = serde_json::from_str(line)?;
        if r.api == "Kes" && r.variant.is_empty() {
            latest.insert(r.n, r);
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut md = String::from(
        "<!-- Generated by `make bench` from docs/bench/runs.jsonl: the latest plain KES run of each N. -->\n\
         | N | distinct paths | apply → synced | floor (before / after the sync) | ratio to the floor | peak RSS | RSS per added object | CPU per steady cycle | … per 1,000 objects | Vault reads per cycle | run |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut smaller: Option<&RunFigures> = None;
    for r in latest.values() {
        let marginal = smaller.map_or("—".to_string(), |s| {
            format!("{:.2} KiB (from N = {})", r.marginal_rss_kib(s), s.n)
        });
        md.push_str(&format!(
            "| {} | {} | {:.1} s | {} | {:.2}× | {:.1} MiB | {marginal} | {:.2} s | {:.3} s | {:.0} | {} |\n",
            r.n,
            r.distinct_paths,
            r.synced_s,
            r.floor_cell(),
            r.ratio(),
            r.peak_rss_mib,
            r.cpu_per_cycle_s,
            r.cpu_per_cycle_s * 1000.0 / r.n as f64,
            r.reads_per_cycle,
            r.date
        ));
        smaller = Some(r);
    }
    std::fs::write(dir.join("growth.md"), md)?;

    let runs: Vec<&RunFigures> = latest.values().collect();
    let max_n = runs.iter().map(|r| r.n).max().unwrap_or(1) as f64 * 1.5;
    let min_n = runs.iter().map(|r| r.n).min().unwrap_or(1) as f64 / 1.5;
    let path = dir.join("growth.svg");
    let root = SVGBackend::new(&path, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled("Cost against N (log-log)", ("sans-serif", 20))
        .map_err(err)?;
    let (top, bottom) = root.split_vertically(300);
    let panel = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                 y_desc: &str,
                 series: &[Series]|
     -> Result<()> {
        let max_y = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(1.0, f64::max)
            * 2.0;
        let min_y = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(f64::MAX, f64::min)
            .max(0.01)
            / 2.0;
        let mut c = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d((min_n..max_n).log_scale(), (min_y..max_y).log_scale())
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("ExternalSecrets (N)")
            .y_desc(y_desc)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        for (label, color, points) in series {
            let color = *color;
            c.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            c.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(err)?;
        }
        c.configure_series_labels()
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        Ok(())
    };
    let pts = |f: fn(&RunFigures) -> f64| -> Vec<(f64, f64)> {
        runs.iter().map(|r| (r.n as f64, f(r))).collect()
    };
    panel(
        &top,
        "seconds",
        &[
            ("apply → all synced", BLUE, pts(|r| r.synced_s)),
            (
                "the floor (apiserver writes alone)",
                BLACK,
                pts(|r| r.floor()),
            ),
            (
                "controller CPU per steady cycle",
                GREEN,
                pts(|r| r.cpu_per_cycle_s),
            ),
        ],
    )?;
    panel(
        &bottom,
        "MiB",
        &[("controller peak RSS", RED, pts(|r| r.peak_rss_mib))],
    )?;
    root.present().map_err(err)?;
    Ok(())
}
