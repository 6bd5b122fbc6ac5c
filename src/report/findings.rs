//! Plots of the other findings, each as PNG and SVG:
//!
//! - `compression-logits` (or `compression-run-NAME`): test accuracy against k, one panel per layer, SVCCA directions vs k
//!   random neurons vs the k most active, with the full network's accuracy as a line
//!   (the paper's Figure 2a).
//! - `<tag>-distributedness` (`--distributedness`): per layer, accuracy against k with the
//!   top-k SVCCA projection then the m most important neurons, one curve per m (Figure 2b).
//! - `<tag>-jointly` (`--jointly`): the listed layers compressed at once, k swept, by
//!   method (Appendix 5).
//! - `classes`: one panel per class, its logit's similarity to each layer (rows) at each
//!   checkpoint (columns) (the paper's Figure 6).
//! - `dimensionality`: each layer's similarity to the logits against the number of its
//!   principal directions kept (log scale).
//! - `compare_runs`: the layers x layers matrix of two runs, or its mean over pairs.

use super::{colour, err, legend, line_with_markers, png, register_font, svg, LineChart};
use crate::analysis::classes::Classes;
use crate::analysis::compare_runs::CompareRuns;
use crate::analysis::compression::{Compression, CompressionMethod};
use crate::analysis::dimensionality::LayerDimensions;
use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Draws `name`.png and `name`.svg of `size` into `dir`.
fn both(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
    draw_svg: impl Fn(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(vec![png(&dir.join(format!("{name}.png")), size, draw)?, svg(&dir.join(format!("{name}.svg")), size, draw_svg)?])
}

const METHODS: [(CompressionMethod, &str, RGBColor); 3] = [
    (CompressionMethod::Svcca, "top-k SVCCA directions", RGBColor(59, 81, 139)),
    (CompressionMethod::Active, "k most active neurons", RGBColor(214, 96, 39)),
    (CompressionMethod::Random, "k random neurons", RGBColor(92, 160, 60)),
];

/// The size of a figure of `n` accuracy panels, three to a row.
fn panels_size(n: usize) -> (u32, u32) {
    let n = n.max(1) as u32;
    (520 * n.min(3), 420 * n.div_ceil(3))
}

/// `root` split into the areas of `n` panels, three to a row.
fn panel_areas<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, n: usize) -> Vec<DrawingArea<DB, Shift>> {
    let n = n.max(1);
    root.split_evenly((n.div_ceil(3), n.min(3)))
}

/// A chart of test accuracy (0 to 100%) against k (0 to `k_max`, described by `k_desc`)
/// on `area`, the full network's accuracy drawn across it as a grey line (in the legend):
/// the frame of every compression plot.
fn accuracy_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    (caption, caption_size): (String, u32),
    k_max: f64,
    k_desc: &str,
    full_accuracy: f64,
) -> anyhow::Result<LineChart<'a, DB>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", caption_size))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .margin_right(20)
        .build_cartesian_2d(0.0..k_max, 0.0..100.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(k_desc)
        .y_desc("test accuracy (%)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .axis_desc_style(("sans-serif", 13))
        .label_style(("sans-serif", 11))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let full = 100.0 * full_accuracy;
    chart
        .draw_series(LineSeries::new([(0.0, full), (k_max, full)], BLACK.mix(0.5).stroke_width(1)))
        .map_err(err)?
        .label(format!("full network {full:.1}%"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5).stroke_width(2)));
    Ok(chart)
}

pub fn compression_plot(dir: &Path, c: &Compression) -> anyhow::Result<Vec<PathBuf>> {
    let size = panels_size(c.layers.len());
    both(dir, &c.settings.against.tag(), size, |a| compression_panels(a, c), |a| compression_panels(a, c))
}

fn compression_panels<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Compression) -> anyhow::Result<()> {
    for (area, s) in panel_areas(root, c.layers.len()).iter().zip(&c.layers) {
        let caption = (format!("{} ({} units)", s.layer, s.units), 18);
        let mut chart = accuracy_chart(area, caption, s.units as f64, "k (directions or neurons kept)", c.full_accuracy)?;
        for (method, label, colour) in METHODS {
            let points: Vec<(f64, f64)> =
                s.points.iter().filter(|p| p.method == method).map(|p| (p.k as f64, 100.0 * p.accuracy)).collect();
            line_with_markers(&mut chart, points, colour, Some(label.to_string()))?;
        }
        legend(&mut chart, 11)?;
    }
    Ok(())
}

/// Figure 2b: `<tag>-distributedness`, one panel per layer, accuracy against k with the
/// top-k SVCCA projection followed by the m most important neurons, one curve per m.
pub fn distributedness_plot(dir: &Path, c: &Compression) -> anyhow::Result<Vec<PathBuf>> {
    let size = panels_size(c.distributedness.len());
    let name = format!("{}-distributedness", c.settings.against.tag());
    both(dir, &name, size, |a| distributedness_panels(a, c), |a| distributedness_panels(a, c))
}

fn distributedness_panels<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Compression) -> anyhow::Result<()> {
    for (area, d) in panel_areas(root, c.distributedness.len()).iter().zip(&c.distributedness) {
        let caption = (format!("{} ({} units): top-k directions, then m neurons", d.layer, d.units), 16);
        let k_max = d.directions.max(1) as f64;
        let mut chart = accuracy_chart(area, caption, k_max, "k (SVCCA directions kept)", c.full_accuracy)?;
        if let Some(s) = c.layers.iter().find(|s| s.layer == d.layer) {
            let points: Vec<(f64, f64)> =
                s.points.iter().filter(|p| p.method == CompressionMethod::Svcca).map(|p| (p.k as f64, 100.0 * p.accuracy)).collect();
            line_with_markers(&mut chart, points, BLACK, Some("all neurons (Fig. 2a)".to_string()))?;
        }
        let curves = d.neurons.len().max(2);
        for (i, &m) in d.neurons.iter().enumerate() {
            let points: Vec<(f64, f64)> = d.points.iter().filter(|p| p.m == m).map(|p| (p.k as f64, 100.0 * p.accuracy)).collect();
            line_with_markers(&mut chart, points, colour(Some(0.85 * i as f64 / (curves - 1) as f64)), Some(format!("m = {m} neurons")))?;
        }
        legend(&mut chart, 11)?;
    }
    Ok(())
}

/// Appendix 5: `<tag>-jointly`, accuracy with every listed layer compressed at once, k
/// swept, by method.
pub fn jointly_plot(dir: &Path, c: &Compression) -> anyhow::Result<Vec<PathBuf>> {
    let name = format!("{}-jointly", c.settings.against.tag());
    both(dir, &name, (700, 480), |a| jointly_panel(a, c), |a| jointly_panel(a, c))
}

fn jointly_panel<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Compression) -> anyhow::Result<()> {
    let Some(j) = &c.jointly else { return Ok(()) };
    let widest = j.units.iter().copied().max().unwrap_or(1).max(1) as f64;
    let caption = (format!("{} compressed at once ({})", j.layers.join(" + "), c.settings.against.tag()), 17);
    let mut chart = accuracy_chart(root, caption, widest, "k per layer (at most its directions or units)", c.full_accuracy)?;
    for (method, label, colour) in METHODS {
        let points: Vec<(f64, f64)> = j.points.iter().filter(|p| p.method == method).map(|p| (p.k as f64, 100.0 * p.accuracy)).collect();
        line_with_markers(&mut chart, points, colour, Some(label.to_string()))?;
    }
    legend(&mut chart, 11)
}

pub fn classes_plot(dir: &Path, c: &Classes) -> anyhow::Result<Vec<PathBuf>> {
    let n = c.settings.classes.len().max(1) as u32;
    let cols = n.min(5);
    let size = (330 * cols + 90, 360 * n.div_ceil(5));
    both(dir, "classes", size, |a| classes_panels(a, c), |a| classes_panels(a, c))
}

fn classes_panels<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Classes) -> anyhow::Result<()> {
    let (w, _) = root.dim_in_pixel();
    let (maps, bar) = root.split_horizontally(w - 90);
    let n = c.settings.classes.len().max(1);
    let panels = maps.split_evenly((n.div_ceil(5), n.min(5)));
    let steps: Vec<String> = c.steps.iter().map(|s| s.step.to_string()).collect();
    for (ci, (area, class)) in panels.iter().zip(&c.settings.classes).enumerate() {
        let m: Vec<Vec<Option<f64>>> =
            (0..c.settings.analysis.layers.len()).map(|l| c.steps.iter().map(|s| s.matrix[ci][l]).collect()).collect();
        heatmap(area, &c.settings.analysis.layers, &steps, &m, &format!("class {class}"), "checkpoint (step)", "layer")?;
    }
    super::colour_bar(&bar, "similarity to the class logit", 68)
}

pub fn dimensionality_plot(dir: &Path, d: &[LayerDimensions]) -> anyhow::Result<Vec<PathBuf>> {
    both(dir, "dimensionality", (1000, 620), |a| dimensionality_curves(a, d), |a| dimensionality_curves(a, d))
}

fn dimensionality_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &[LayerDimensions]) -> anyhow::Result<()> {
    let max_k = d.iter().flat_map(|l| l.to_logits.iter().map(|p| p.0)).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption("similarity to the logits with a layer cut to its top k principal directions", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .margin_right(30)
        .build_cartesian_2d((1.0..max_k.max(2.0)).log_scale(), 0.0..1.02)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("k (principal directions kept, log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("mean canonical correlation over the logits' directions")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let n = d.len().max(2);
    for (i, l) in d.iter().enumerate() {
        let c = colour(Some(0.9 * i as f64 / (n - 1) as f64));
        let points: Vec<(f64, f64)> = l.to_logits.iter().map(|&(k, s)| (k as f64, s)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} (k99 = {})", l.layer, l.k99))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

pub fn compare_runs_plot(dir: &Path, c: &CompareRuns) -> anyhow::Result<Vec<PathBuf>> {
    let (rows, cols, m, caption) = match (&c.summary, c.pairs.as_slice()) {
        (Some(s), ps) if ps.len() > 1 => {
            (s.layers.clone(), s.layers.clone(), s.mean.clone(), format!("mean over {} pairs of runs", ps.len()))
        }
        (_, [p, ..]) => (p.layers_a.clone(), p.layers_b.clone(), p.matrix.clone(), "run 1 against run 2".to_string()),
        _ => return Ok(Vec::new()),
    };
    let size = ((30 * cols.len() as u32).max(300) + 250, (30 * rows.len() as u32).max(300) + 120);
    let draw = |a: &DrawingArea<BitMapBackend, Shift>| compare_panel(a, &rows, &cols, &m, &caption);
    let draw_svg = |a: &DrawingArea<SVGBackend, Shift>| compare_panel(a, &rows, &cols, &m, &caption);
    both(dir, "compare_runs", size, draw, draw_svg)
}

fn compare_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[String],
    cols: &[String],
    m: &[Vec<Option<f64>>],
    caption: &str,
) -> anyhow::Result<()> {
    let (w, _) = root.dim_in_pixel();
    let (map, bar) = root.split_horizontally(w - 90);
    heatmap(&map, rows, cols, m, caption, "layer of the second run", "layer of the first run")?;
    super::colour_bar(&bar, "similarity", 68)
}

/// A matrix `m[row][col]` as coloured cells (0 to 1), rows bottom to top.
fn heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[String],
    cols: &[String],
    m: &[Vec<Option<f64>>],
    caption: &str,
    x_desc: &str,
    y_desc: &str,
) -> anyhow::Result<()> {
    let (nr, nc) = (rows.len() as i32, cols.len() as i32);
    let label = |names: &[String], v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(8)
        .x_label_area_size(60)
        .y_label_area_size(60)
        // plotters' integer range includes its end: 0..n - 1 is n cells.
        .build_cartesian_2d((0..nc - 1).into_segmented(), (0..nr - 1).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nc as usize)
        .y_labels(nr as usize)
        .x_label_formatter(&|v| label(cols, v))
        .y_label_formatter(&|v| label(rows, v))
        .x_label_style(("sans-serif", 10))
        .y_label_style(("sans-serif", 10))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series((0..nr).flat_map(|i| (0..nc).map(move |j| (i, j))).map(|(i, j)| {
            let v = m[i as usize][j as usize];
            Rectangle::new(
                [(SegmentValue::Exact(j), SegmentValue::Exact(i)), (SegmentValue::Exact(j + 1), SegmentValue::Exact(i + 1))],
                colour(v).filled(),
            )
        }))
        .map_err(err)?;
    Ok(())
}
