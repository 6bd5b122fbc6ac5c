//! Plots of a learning-dynamics analysis, in `RUN_DIR/plots/`, each as PNG and SVG:
//!
//! - `heatmaps`: the layers x layers similarity matrices (layer at a step against each
//!   layer of the final network) at the analysed checkpoints nearest 0%, 35%, 75% and
//!   100% of training, side by side, with one colour scale (0 to 1); as the paper's
//!   Figure 4, the layers at the step along x, the final network's up the y axis
//!   ([`heatmap_cell`]). A last panel shows the chance level of every cell (the final
//!   layers with the probe's datapoints shuffled against the final layers).
//! - `heatmaps_minus_chance`: the same checkpoints, each cell less its chance level: what
//!   the similarity holds beyond what a layer of that width scores against any other.
//! - `to_final`: each layer's similarity to its own final state against the training
//!   step, one line per layer, coloured from the input (dark) to the output (bright).
//!
//! Text is drawn with the DejaVu Sans font embedded in the binary (`assets/fonts`), so no
//! system font is needed. The plots are derived from the tables and are redrawn (through a
//! temporary file and a rename) each time.

pub mod findings;
pub(crate) mod over_seeds;
pub(crate) mod panels;

use crate::analysis::dynamics::{Dynamics, StepResult};
use crate::io::write_atomic;
use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

pub const FOLDER: &str = "plots";
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The fractions of training the heatmaps show.
pub(crate) const FRACTIONS: [f64; 4] = [0.0, 0.35, 0.75, 1.0];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded font did not load; plot text may be missing");
        }
    });
}

fn err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow!("cannot draw a plot: {e:?}")
}

/// Viridis, interpolated between nine of its colours; `None` is grey.
pub fn colour(v: Option<f64>) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let Some(v) = v.filter(|v| v.is_finite()) else { return RGBColor(200, 200, 200) };
    let x = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let t = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The analysed checkpoints nearest each of [`FRACTIONS`], each once: a run with fewer
/// checkpoints than fractions (or two fractions nearest the same one) gets fewer panels
/// rather than the same step drawn twice. Of two checkpoints equally near (within
/// rounding: 0.35 lies halfway between 0.3 and 0.4), the later: with a checkpoint every
/// 10% the panels are 40% and 80%, whose networks, like the paper's 35% and 75%, have
/// trained past that point, rather than 30% and 70%.
pub(crate) fn heatmap_steps(d: &Dynamics) -> Vec<&StepResult> {
    let mut chosen: Vec<&StepResult> = Vec::new();
    for f in FRACTIONS {
        if let Some(step) = nearest_step(d, f).filter(|s| !chosen.iter().any(|c| c.step == s.step)) {
            chosen.push(step);
        }
    }
    chosen
}

/// The analysed checkpoint nearest `fraction` of training; of two equally near, the
/// later (see [`heatmap_steps`]).
pub(crate) fn nearest_step(d: &Dynamics, fraction: f64) -> Option<&StepResult> {
    // Fractions are step / final step: a tie computed two ways differs by rounding only.
    const TIE: f64 = 1e-9;
    let mut nearest: Option<&StepResult> = None;
    for s in &d.steps {
        let distance = (s.fraction - fraction).abs();
        let better = nearest.is_none_or(|n| {
            let best = (n.fraction - fraction).abs();
            distance < best - TIE || (distance <= best + TIE && s.step > n.step)
        });
        if better {
            nearest = Some(s);
        }
    }
    nearest
}

/// Draws both plots as PNG and SVG into `run/plots/`; returns the files written.
pub fn plot(run: &Path, d: &Dynamics) -> anyhow::Result<Vec<PathBuf>> {
    register_font();
    let dir = run.join(FOLDER);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let n = d.settings.layers.len() as u32;
    let cell = heatmap_cell_pixels(n);
    let panel = (cell * n + 130).max(360);
    let curve_size = (1000, 620);
    let method = format!("{:?}", d.settings.similarity.method).to_uppercase();
    let mut written = Vec::new();
    let mut views = vec![("heatmaps", heatmap_panels(d, false), format!("{method} similarity"))];
    if !d.chance.is_empty() {
        views.push(("heatmaps_minus_chance", heatmap_panels(d, true), format!("{method} similarity minus chance (below: 0)")));
    }
    for (name, panels, desc) in &views {
        let size = heatmap_image_size(panel, panels.len());
        written.push(png(&dir.join(format!("{name}.png")), size, |a| heatmaps(a, &d.settings.layers, panels, desc))?);
        written.push(svg(&dir.join(format!("{name}.svg")), size, |a| heatmaps(a, &d.settings.layers, panels, desc))?);
    }
    written.push(png(&dir.join("to_final.png"), curve_size, |a| curves(a, d))?);
    written.push(svg(&dir.join("to_final.svg"), curve_size, |a| curves(a, d))?);
    Ok(written)
}

/// One heatmap: its caption, what its x axis holds, and its cells (`matrix[i][j]`: the
/// layer `i` of the x axis against layer `j` of the final network).
struct HeatmapPanel {
    caption: String,
    x_desc: String,
    matrix: Vec<Vec<Option<f64>>>,
}

/// The panels of the heatmaps: the checkpoints of [`heatmap_steps`], then the chance
/// level (where there is one); with `minus_chance`, the checkpoints' cells less their
/// chance level instead (a cell without either is empty).
fn heatmap_panels(d: &Dynamics, minus_chance: bool) -> Vec<HeatmapPanel> {
    let chance = |i: usize, j: usize| d.chance.get(i).and_then(|r| r.get(j)).copied().flatten();
    let mut panels: Vec<HeatmapPanel> = heatmap_steps(d)
        .into_iter()
        .map(|r| HeatmapPanel {
            caption: format!("step {} ({:.0}% of training)", r.step, 100.0 * r.fraction),
            x_desc: format!("layer at step {}", r.step),
            matrix: (0..r.matrix.len())
                .map(|i| {
                    (0..r.matrix[i].len())
                        .map(|j| if minus_chance { r.matrix[i][j].zip(chance(i, j)).map(|(v, c)| v - c) } else { r.matrix[i][j] })
                        .collect()
                })
                .collect(),
        })
        .collect();
    if !minus_chance && !d.chance.is_empty() {
        panels.push(HeatmapPanel {
            caption: "chance (datapoints shuffled)".into(),
            x_desc: format!("layer at step {}, datapoints shuffled", d.settings.final_step),
            matrix: d.chance.clone(),
        });
    }
    panels
}

/// The heatmaps image: one square `panel` per heatmap drawn (at least one), the colour
/// bar beside them.
fn heatmap_image_size(panel: u32, panels: usize) -> (u32, u32) {
    (panel * panels.max(1) as u32 + 130, panel + 50)
}

/// Pixels per cell of a heatmap of `n` layers: 36 (larger for a few layers), shrinking
/// for more than 40 (a ResNet's taps inside its blocks) so that a panel stays under about
/// 2000 pixels, down to 12.
fn heatmap_cell_pixels(n: u32) -> u32 {
    if n <= 40 {
        36.max(300 / n.max(1))
    } else {
        (1440 / n).max(12)
    }
}

/// A heatmap's axis label for `layer`: a tap inside a residual block (`s1b1.conv1`) by
/// its part in the block (`conv1`; the block's own label follows it), or none where the
/// cells are too narrow for labels of them all; any other layer by its name.
fn heatmap_label(layer: &str, cell: u32) -> String {
    match layer.split_once('.') {
        Some((_, inner)) if cell >= 30 => inner.to_string(),
        Some(_) => String::new(),
        None => layer.to_string(),
    }
}

fn png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    // Drawn into a scratch file (the backend picks the format from the name), then
    // written as any result file (crate::io).
    let scratch = tempfile::Builder::new().prefix("svcca-plot-").tempdir()?;
    let drawn = scratch.path().join("plot.png");
    {
        let root = BitMapBackend::new(&drawn, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    let bytes = std::fs::read(&drawn).with_context(|| format!("cannot write {}", path.display()))?;
    write_atomic(path, &bytes)?;
    Ok(path.to_path_buf())
}

fn svg(path: &Path, size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>) -> anyhow::Result<PathBuf> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    write_atomic(path, text.as_bytes())?;
    Ok(path.to_path_buf())
}

/// Where `matrix[i][j]` (layer `i` at the step against layer `j` of the final network)
/// is drawn in a heatmap, as the paper's Figure 4: `(column, row)` = `(i, j)`, the
/// checkpoint's layers along the x axis, the final network's on the y axis, rows counted
/// from the bottom (the chart's y axis points up), so the input layer is at the bottom
/// left and the diagonal runs from there to the top right.
pub(crate) fn heatmap_cell(layer_at_step: i32, final_layer: i32) -> (i32, i32) {
    (layer_at_step, final_layer)
}

/// Draws `panels` side by side over `layers`, the colour bar labelled `desc` beside them.
fn heatmaps<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    layers: &[String],
    panels: &[HeatmapPanel],
    desc: &str,
) -> anyhow::Result<()> {
    let (w, _) = root.dim_in_pixel();
    let (maps, bar) = root.split_horizontally(w - 130);
    let areas = maps.split_evenly((1, panels.len().max(1)));
    let n = layers.len() as i32;
    let cell = heatmap_cell_pixels(n as u32);
    let name = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => layers.get(*i as usize).map(|l| heatmap_label(l, cell)).unwrap_or_default(),
        _ => String::new(),
    };
    for (area, p) in areas.iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .caption(&p.caption, ("sans-serif", 20))
            .margin(8)
            .x_label_area_size(50)
            .y_label_area_size(70)
            // plotters' integer range includes its end: 0..n - 1 is n cells.
            .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n as usize)
            .y_labels(n as usize)
            .x_label_formatter(&name)
            .y_label_formatter(&name)
            .x_label_style(("sans-serif", 11))
            .y_label_style(("sans-serif", 11))
            .x_desc(&p.x_desc)
            .y_desc("layer of the final network")
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series((0..n).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| {
                let v = p.matrix[i as usize][j as usize];
                let (x, y) = heatmap_cell(i, j);
                Rectangle::new(
                    [(SegmentValue::Exact(x), SegmentValue::Exact(y)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1))],
                    colour(v).filled(),
                )
            }))
            .map_err(err)?;
    }
    colour_bar(&bar, desc, 58)
}

/// The colour scale of the heatmaps (0 to 1, [`colour`]) in `bar`, labelled `desc`;
/// `margin_bottom` lines its ends up with the heatmap beside it.
fn colour_bar<DB: DrawingBackend>(bar: &DrawingArea<DB, Shift>, desc: &str, margin_bottom: u32) -> anyhow::Result<()> {
    let mut scale = ChartBuilder::on(bar)
        .margin_top(40)
        .margin_bottom(margin_bottom)
        .margin_right(10)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(err)?;
    scale
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_desc(desc)
        .axis_desc_style(("sans-serif", 14))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    scale
        .draw_series((0..100).map(|k| {
            let lo = k as f64 / 100.0;
            Rectangle::new([(0.0, lo), (1.0, lo + 0.01)], colour(Some(lo + 0.005)).filled())
        }))
        .map_err(err)?;
    Ok(())
}

fn curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Dynamics) -> anyhow::Result<()> {
    let last = d.steps.last().map_or(1, |r| r.step).max(1) as f64;
    let layers = &d.settings.layers;
    let mut chart = ChartBuilder::on(root)
        .caption("similarity of each layer to its final state", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .margin_right(30)
        .build_cartesian_2d(0.0..last, 0.0..1.02)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("training step")
        .y_desc(format!("{} similarity to the final layer", format!("{:?}", d.settings.similarity.method).to_uppercase()))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let n = layers.len().max(2);
    let labelled = legend_layers(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        // Depth-ordered colours: input layers dark, output layers bright (stop short of
        // the palest yellow, which fades on white).
        let c = colour(Some(0.9 * i as f64 / (n - 1) as f64));
        let points: Vec<(f64, f64)> =
            d.steps.iter().filter_map(|r| r.matrix.get(i)?.get(i).copied().flatten().map(|v| (r.step as f64, v))).collect();
        line_with_markers(&mut chart, points, c, labelled[i].then(|| layer.clone()))?;
    }
    legend(&mut chart, 13)
}

/// Most layers the layer-curves legend names: past it the legend would run off the plot
/// (a ResNet-62 has 62 blocks, more with its taps inside them).
const LEGEND_LAYERS: usize = 16;

/// Which of `n` layers the legend names: all up to [`LEGEND_LAYERS`], else every k-th
/// from the first, and the last; the depth-ordered colours place the others between.
fn legend_layers(n: usize) -> Vec<bool> {
    let every = n.div_ceil(LEGEND_LAYERS - 1).max(1);
    (0..n).map(|i| n <= LEGEND_LAYERS || i % every == 0 || i + 1 == n).collect()
}

type LineChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// One series: a line through `points` with a dot at each, named in the legend when
/// `label` is given.
fn line_with_markers<'a, DB: DrawingBackend + 'a>(
    chart: &mut LineChart<'a, DB>,
    points: Vec<(f64, f64)>,
    c: RGBColor,
    label: Option<String>,
) -> anyhow::Result<()> {
    let line = chart.draw_series(LineSeries::new(points.clone(), c.stroke_width(2))).map_err(err)?;
    if let Some(label) = label {
        line.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    }
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled()))).map_err(err)?;
    Ok(())
}

/// The series labels, lower right, on a light box.
fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut LineChart<'a, DB>, font_size: u32) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", font_size))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// A labelled accuracy curve: `(step, mean, std)` points.
pub type Band = (String, Vec<(u64, f64, f64)>);

/// Test accuracy against step, one line per series with a ±1 std band, as `accuracy.png`
/// and `accuracy.svg` in `dir`; a dashed vertical line at each of `freeze_steps` (the
/// steps at which layers froze, as in the paper's Figure 5; empty for none), named in the
/// legend.
pub fn accuracy_plot(dir: &Path, title: &str, series: &[Band], freeze_steps: &[u64]) -> anyhow::Result<Vec<PathBuf>> {
    accuracy_plot_of(dir, "test accuracy (%)", title, series, freeze_steps)
}

/// As [`accuracy_plot`], the y axis named `y_desc` (validation accuracy, say).
pub fn accuracy_plot_of(dir: &Path, y_desc: &str, title: &str, series: &[Band], freeze_steps: &[u64]) -> anyhow::Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let size = (1000, 620);
    Ok(vec![
        png(&dir.join("accuracy.png"), size, |a| accuracy_curves(a, y_desc, title, series, freeze_steps))?,
        svg(&dir.join("accuracy.svg"), size, |a| accuracy_curves(a, y_desc, title, series, freeze_steps))?,
    ])
}

/// The colour of the freeze-step lines: a red that no series takes ([`SERIES`]) and
/// drawn dashed ([`FREEZE_DASH`]), so that they read apart from the grid lines (light
/// grey, solid) and from the curves. Drawn in no other element of the accuracy plot.
pub const FREEZE_LINE: RGBColor = RGBColor(215, 25, 28);
/// Dash and gap of the freeze-step lines, in pixels.
const FREEZE_DASH: (u32, u32) = (8, 5);

/// Where the freeze-step lines go: each distinct step once, ascending, those on the
/// plotted axis (0 to `last`).
pub fn freeze_lines(steps: &[u64], last: u64) -> Vec<u64> {
    let mut out: Vec<u64> = steps.iter().copied().filter(|&s| s <= last).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Series colours: the first two as the freeze comparison has always drawn them.
pub const SERIES: [RGBColor; 6] = [
    RGBColor(59, 81, 139),
    RGBColor(214, 96, 39),
    RGBColor(46, 139, 87),
    RGBColor(148, 52, 110),
    RGBColor(120, 120, 120),
    RGBColor(190, 160, 20),
];

fn accuracy_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    y_desc: &str,
    title: &str,
    series: &[Band],
    freeze_steps: &[u64],
) -> anyhow::Result<()> {
    let last_step = series.iter().flat_map(|s| s.1.last()).map(|p| p.0).max().unwrap_or(1).max(1);
    let last = last_step as f64;
    let lo = series.iter().flat_map(|s| s.1.iter()).filter(|p| p.0 as f64 >= 0.1 * last).map(|p| p.1 - p.2).fold(1.0f64, f64::min);
    let y0 = ((lo * 100.0 - 2.0).floor() / 100.0).clamp(0.0, 0.99);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .margin_right(30)
        .build_cartesian_2d(0.0..last, 100.0 * y0..100.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("training step")
        .y_desc(y_desc)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    // Under the curves: where layers froze.
    let lines = freeze_lines(freeze_steps, last_step);
    let (dash, gap) = FREEZE_DASH;
    let style = FREEZE_LINE.stroke_width(2);
    let drawn = chart
        .draw_series(
            lines
                .iter()
                .map(|&s| plotters::element::DashedPathElement::new(vec![(s as f64, 100.0 * y0), (s as f64, 100.0)], dash, gap, style)),
        )
        .map_err(err)?;
    if !lines.is_empty() {
        drawn
            .label("a layer froze")
            .legend(move |(x, y)| plotters::element::DashedPathElement::new(vec![(x, y), (x + 20, y)], dash, gap / 2, style));
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let c = SERIES[i % SERIES.len()];
        // The y axis is zoomed on the last 90% of training: points below it (the untrained
        // network, say) are left out rather than drawn at the axis, where they would read
        // as a wrong accuracy.
        let points: Vec<_> = points.iter().filter(|p| p.1 >= y0).copied().collect();
        let mut band: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, 100.0 * (p.1 + p.2))).collect();
        band.extend(points.iter().rev().map(|p| (p.0 as f64, 100.0 * (p.1 - p.2))));
        chart.draw_series(std::iter::once(Polygon::new(band, c.mix(0.2).filled()))).map_err(err)?;
        let line: Vec<(f64, f64)> = points.iter().map(|p| (p.0 as f64, 100.0 * p.1)).collect();
        line_with_markers(&mut chart, line, c, Some(name.clone()))?;
    }
    legend(&mut chart, 14)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Matrix = Vec<Vec<Option<f64>>>;

    /// A run's dynamics over `layers`, one (step, fraction, matrix) per checkpoint.
    fn dynamics(layers: &[String], steps: Vec<(u64, f64, Matrix)>) -> Dynamics {
        let final_step = steps.last().map_or(0, |s| s.0);
        Dynamics {
            settings: crate::analysis::dynamics::Settings::new(&crate::config::AnalysisConfig::default(), layers.to_vec(), final_step),
            steps: steps
                .into_iter()
                .map(|(step, fraction, matrix)| StepResult { step, fraction, layers: layers.to_vec(), matrix, seconds: 0.0 })
                .collect(),
            baseline: Vec::new(),
            chance: Vec::new(),
        }
    }

    #[test]
    fn heatmaps_put_the_final_network_on_the_y_axis_bottom_up() {
        // matrix[i][j]: layer i at the step against layer j of the final network. The
        // paper's Figure 4: the checkpoint's layer i along x, the final layer j up the y
        // axis (row j counted from the bottom, where the chart's y axis starts).
        assert_eq!(heatmap_cell(2, 5), (2, 5));
        assert_eq!(heatmap_cell(0, 0), (0, 0));
        assert_eq!(heatmap_cell(4, 1), (4, 1));
    }

    #[test]
    fn heatmaps_of_many_layers_stay_drawable_and_label_taps_inside_blocks_short() {
        // ResNet-62 with its taps inside blocks: 156 layers, a panel of about 2000 pixels.
        assert_eq!(heatmap_cell_pixels(3), 100);
        assert_eq!(heatmap_cell_pixels(36), 36);
        assert!(heatmap_cell_pixels(156) * 156 <= 2000);
        assert_eq!(heatmap_label("s1b1.conv1", 36), "conv1");
        assert_eq!(heatmap_label("s1b1", 36), "s1b1");
        assert_eq!(heatmap_label("s1b1.bn2", 12), "");
        assert_eq!(heatmap_label("s3b10", 12), "s3b10");
    }

    /// The drawn heatmaps themselves: the cell of layer 0 at the step against the top
    /// layer of the final network is at the top left of the first panel, the cell of the
    /// top layer at the step against layer 0 of the final network at its bottom right.
    #[test]
    fn heatmap_cells_are_drawn_as_figure_4() {
        let layers: Vec<String> = ["c1", "fc1", "logits"].iter().map(|s| s.to_string()).collect();
        let mut matrix = vec![vec![None; 3]; 3];
        matrix[0][2] = Some(1.0);
        matrix[2][0] = Some(0.0);
        let d = dynamics(&layers, vec![(10, 1.0, matrix)]);
        register_font();
        let dir = tempfile::tempdir().unwrap();
        let path = svg(&dir.path().join("h.svg"), (1600, 400), |a| heatmaps(a, &layers, &heatmap_panels(&d, false), "SVCCA")).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        // The leftmost rectangle of a colour: the first panel's cell (the colour bar is
        // at the right).
        let leftmost = |c: RGBColor| {
            let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
            let attr = |r: &str, name: &str| -> f64 {
                let at = r.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                r[at..].split('"').next().unwrap().parse().unwrap()
            };
            text.split("<rect")
                .filter(|r| r.contains(&fill))
                .map(|r| (attr(r, "x"), attr(r, "y")))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap()
        };
        let (top_final, top_step) = (leftmost(colour(Some(1.0))), leftmost(colour(Some(0.0))));
        assert!(top_final.0 < top_step.0, "layer 0 at the step is left of layer 2: {top_final:?} {top_step:?}");
        assert!(top_final.1 < top_step.1, "final layer 2 is above final layer 0: {top_final:?} {top_step:?}");
    }

    #[test]
    fn the_layer_curves_legend_names_at_most_sixteen_layers() {
        for n in [1, 15, 16] {
            assert!(legend_layers(n).iter().all(|&l| l), "{n} layers: all named");
        }
        for n in [17, 62, 156] {
            let named: Vec<usize> = legend_layers(n).iter().enumerate().filter(|(_, &l)| l).map(|(i, _)| i).collect();
            assert!(named.len() <= LEGEND_LAYERS, "{n} layers: {} named", named.len());
            assert!(named.len() >= LEGEND_LAYERS / 2, "{n} layers: only {} named", named.len());
            assert_eq!((named[0], named[named.len() - 1]), (0, n - 1), "{n} layers: first and last named");
        }
        // Drawn: 40 layers, the legend holds the named ones only.
        let layers: Vec<String> = (0..40).map(|i| format!("layer{i:02}")).collect();
        let matrix: Matrix = (0..40).map(|i| (0..40).map(|j| (i == j).then_some(0.5)).collect()).collect();
        let d = dynamics(&layers, vec![(10, 1.0, matrix)]);
        register_font();
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(svg(&dir.path().join("c.svg"), (1000, 620), |a| curves(a, &d)).unwrap()).unwrap();
        // plotters writes each text's content on a line of its own.
        let named: Vec<&str> = text.lines().map(str::trim).filter(|l| l.len() == 7 && l.starts_with("layer")).collect();
        assert_eq!(named.len(), legend_layers(40).iter().filter(|&&l| l).count(), "legend entries drawn: {named:?}");
        assert!(named.contains(&"layer00") && named.contains(&"layer39"), "first and last named: {named:?}");
    }

    #[test]
    fn heatmaps_draw_each_step_once() {
        let layers: Vec<String> = vec!["fc1".into()];
        let steps =
            |at: &[(u64, f64)]| dynamics(&layers, at.iter().map(|&(step, fraction)| (step, fraction, vec![vec![Some(0.5)]])).collect());
        let chosen = |d: &Dynamics| heatmap_steps(d).iter().map(|s| s.step).collect::<Vec<_>>();
        assert_eq!(chosen(&steps(&[(100, 1.0)])), [100]);
        assert_eq!(chosen(&steps(&[(0, 0.0), (100, 1.0)])), [0, 100]);
        assert_eq!(chosen(&steps(&[(0, 0.0), (40, 0.4), (70, 0.7), (100, 1.0)])), [0, 40, 70, 100]);
        // 0.35 and 0.75 both nearest step 50: drawn once, in order.
        assert_eq!(chosen(&steps(&[(0, 0.0), (50, 0.5), (100, 1.0)])), [0, 50, 100]);
        // A checkpoint every 10% (fractions as the analysis computes them, step / final):
        // 0.35 and 0.75 lie halfway between two, and the later of each is drawn, in
        // whatever order the steps are listed.
        let tenths: Vec<(u64, f64)> = (0..=10).map(|k| (100 * k, (100 * k) as f64 / 1000.0)).collect();
        assert_eq!(chosen(&steps(&tenths)), [0, 400, 800, 1000]);
        let reversed: Vec<(u64, f64)> = tenths.iter().rev().copied().collect();
        assert_eq!(chosen(&steps(&reversed)), [0, 400, 800, 1000]);
        // A strictly nearer earlier checkpoint still wins.
        assert_eq!(chosen(&steps(&[(0, 0.0), (34, 0.34), (40, 0.4), (74, 0.74), (80, 0.8), (100, 1.0)])), [0, 34, 74, 100]);
    }

    #[test]
    fn the_heatmaps_image_is_as_wide_as_the_panels_drawn() {
        let layers: Vec<String> = vec!["fc1".into(), "fc2".into()];
        let m = || vec![vec![Some(0.5); 2]; 2];
        let panel = (heatmap_cell_pixels(2) * 2 + 130).max(360);
        let dir = tempfile::tempdir().unwrap();
        for (steps, panels) in [(vec![(100, 1.0, m())], 1), (vec![(0, 0.0, m()), (100, 1.0, m())], 2)] {
            plot(dir.path(), &dynamics(&layers, steps)).unwrap();
            let svg = std::fs::read_to_string(dir.path().join(FOLDER).join("heatmaps.svg")).unwrap();
            let width = format!("width=\"{}\"", panel * panels + 130);
            assert!(svg.lines().next().unwrap().contains(&width), "{panels} panel(s): {}", svg.lines().next().unwrap());
        }
    }

    /// With a chance level: one more panel (the chance matrix) in `heatmaps`, and
    /// `heatmaps_minus_chance` with each checkpoint's cells less their chance level.
    #[test]
    fn the_chance_level_is_a_panel_and_a_view_of_its_own() {
        let layers: Vec<String> = vec!["fc1".into(), "fc2".into()];
        let mut d = dynamics(&layers, vec![(100, 1.0, vec![vec![Some(0.9), Some(0.6)], vec![Some(0.5), None]])]);
        d.chance = vec![vec![Some(0.2), Some(0.1)], vec![Some(0.3), Some(0.4)]];
        let panel = (heatmap_cell_pixels(2) * 2 + 130).max(360);
        let dir = tempfile::tempdir().unwrap();
        plot(dir.path(), &d).unwrap();
        // The fills of the cells drawn left of the colour bar (the last 130 pixels).
        let cells = |name: &str, panels: u32| -> Vec<String> {
            let text = std::fs::read_to_string(dir.path().join(FOLDER).join(name)).unwrap();
            assert!(text.lines().next().unwrap().contains(&format!("width=\"{}\"", panels * panel + 130)), "{name}: {panels} panel(s)");
            text.split("<rect")
                .filter(|r| {
                    r.split(" x=\"")
                        .nth(1)
                        .and_then(|x| x.split('"').next()?.parse::<f64>().ok())
                        .is_some_and(|x| x < (panels * panel) as f64)
                })
                .filter_map(|r| r.split(" fill=\"").nth(1).and_then(|f| f.split('"').next()).map(str::to_string))
                .collect()
        };
        let fill = |v: f64| {
            let c = colour(Some(v));
            format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
        };
        let heat = cells("heatmaps.svg", 2);
        for v in [0.9, 0.6, 0.5, 0.2, 0.1, 0.3, 0.4] {
            assert!(heat.contains(&fill(v)), "{v}: the step's and the chance panel's cells are drawn");
        }
        let minus = cells("heatmaps_minus_chance.svg", 1);
        for v in [0.7, 0.5, 0.2] {
            assert!(minus.contains(&fill(v)), "0.9 - 0.2, 0.6 - 0.1, 0.5 - 0.3: {v} drawn");
        }
        assert!(!minus.contains(&fill(0.9)) && !minus.contains(&fill(0.6)), "the cells are less their chance");
        assert!(minus.contains(&fill(f64::NAN)), "a cell without a similarity stays empty");
    }

    #[test]
    fn freeze_steps_draw_one_dashed_line_each_in_a_colour_of_their_own() {
        assert_eq!(freeze_lines(&[300, 100, 300, 200, 900], 600), [100, 200, 300]);
        // Not a series colour, and not grey like the grid.
        assert!(!SERIES.contains(&FREEZE_LINE));
        let RGBColor(r, g, b) = FREEZE_LINE;
        assert!(r.max(g).max(b) - r.min(g).min(b) > 100, "{FREEZE_LINE:?} is too near grey");
        let dir = tempfile::tempdir().unwrap();
        let band = |name: &str| (name.to_string(), (0..=6).map(|k| (k * 100, 0.8 + 0.01 * k as f64, 0.01)).collect::<Vec<_>>());
        // The dashes in the freeze colour, as (x, y) point lists of the SVG's polylines.
        let dashes = |svg: &str| -> Vec<Vec<(i32, i32)>> {
            let c = FREEZE_LINE;
            let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
            svg.lines()
                .filter(|l| l.contains(&stroke))
                .map(|l| {
                    assert!(l.contains("<polyline"), "{l}");
                    let points = l.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
                    points
                        .split_whitespace()
                        .map(|p| {
                            let (x, y) = p.split_once(',').unwrap();
                            (x.parse().unwrap(), y.parse().unwrap())
                        })
                        .collect()
                })
                .collect()
        };
        accuracy_plot(dir.path(), "t", &[band("base"), band("freeze")], &[300, 100, 300, 200, 900]).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("accuracy.svg")).unwrap();
        let drawn = dashes(&svg);
        let vertical: Vec<&Vec<(i32, i32)>> = drawn.iter().filter(|d| d.iter().all(|p| p.0 == d[0].0)).collect();
        let mut xs: Vec<i32> = vertical.iter().map(|d| d[0].0).collect();
        xs.dedup();
        assert_eq!(xs.len(), 3, "one line per distinct step on the axis: {xs:?}");
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        // Dashed: each line is broken into many dashes of at most the dash length.
        for x in &xs {
            let on_it: Vec<_> = vertical.iter().filter(|d| d[0].0 == *x).collect();
            assert!(on_it.len() > 10, "the line at x = {x} is not dashed: {on_it:?}");
            assert!(on_it.iter().all(|d| (d[0].1 - d.last().unwrap().1).abs() <= FREEZE_DASH.0 as i32 + 1));
        }
        // The rest is the legend's swatch: horizontal.
        assert!(drawn.len() > vertical.len() && drawn.iter().all(|d| d.iter().all(|p| p.0 == d[0].0) || d.iter().all(|p| p.1 == d[0].1)));
        assert!(svg.contains("a layer froze"));
        accuracy_plot(dir.path(), "t", &[band("base"), band("freeze")], &[]).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("accuracy.svg")).unwrap();
        assert!(dashes(&svg).is_empty());
        assert!(!svg.contains("a layer froze"));
    }
}
