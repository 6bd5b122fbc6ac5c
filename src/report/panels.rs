//! A grid of small line charts from plain curves, as PNG and SVG: the toy regression's
//! Figures 1 and 3 (curves against the 1-D input), drawn from [`Panel`]s that know
//! nothing of networks.

use super::{err, png, register_font, svg, SERIES};
use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One curve of a panel.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// In the legend of the first panel that has this label (empty: in no legend).
    pub label: String,
    /// Index into the report's series colours.
    pub colour: usize,
    /// Drawn light and wide, under the other lines (a reference the others are read against).
    pub faint: bool,
    pub points: Vec<(f64, f64)>,
}

/// One chart: a title over its lines.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub title: String,
    pub lines: Vec<Line>,
}

/// The panels in rows of `cols`, each `panel` pixels (width, height), under `caption`, as
/// `name`.png and `name`.svg in `dir`; every panel shares `x_desc`. Returns the files
/// written.
pub(crate) fn panel_grid(
    dir: &Path,
    name: &str,
    caption: &str,
    cols: usize,
    panel: (u32, u32),
    panels: &[Panel],
    x_desc: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (panel.0 * cols as u32 + 20, panel.1 * rows as u32 + 40);
    Ok(vec![
        png(&dir.join(format!("{name}.png")), size, |a| grid(a, caption, cols, panels, x_desc))?,
        svg(&dir.join(format!("{name}.svg")), size, |a| grid(a, caption, cols, panels, x_desc))?,
    ])
}

fn grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    caption: &str,
    cols: usize,
    panels: &[Panel],
    x_desc: &str,
) -> anyhow::Result<()> {
    let root = root.titled(caption, ("sans-serif", 20)).map_err(err)?;
    let rows = panels.len().div_ceil(cols).max(1);
    let areas = root.split_evenly((rows, cols));
    let mut labelled = std::collections::HashSet::new();
    for (area, panel) in areas.iter().zip(panels) {
        let xs = panel.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
        let (x0, x1) = range(xs);
        let (y0, y1) = range(panel.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
        let pad = 0.06 * (y1 - y0);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 13))
            .margin(6)
            .margin_right(12)
            .x_label_area_size(32)
            .y_label_area_size(40)
            .build_cartesian_2d(x0..x1, y0 - pad..y1 + pad)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .x_labels(5)
            .y_labels(5)
            .axis_desc_style(("sans-serif", 11))
            .label_style(("sans-serif", 10))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let mut legend = false;
        // Faint lines first, so the others are drawn over them.
        for line in panel.lines.iter().filter(|l| l.faint).chain(panel.lines.iter().filter(|l| !l.faint)) {
            let c = SERIES[line.colour % SERIES.len()];
            let style = if line.faint { c.mix(0.3).stroke_width(5) } else { c.stroke_width(2) };
            let drawn = chart.draw_series(LineSeries::new(line.points.clone(), style)).map_err(err)?;
            if !line.label.is_empty() && labelled.insert(line.label.clone()) {
                legend = true;
                drawn.label(line.label.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
        }
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .label_font(("sans-serif", 10))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    Ok(())
}

/// The smallest and largest finite value, widened when they coincide (or none).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_draws_every_panel_and_labels_once() {
        let line = |label: &str, colour, faint, k: f64| Line {
            label: label.into(),
            colour,
            faint,
            points: (0..=20).map(|i| (i as f64 / 10.0 - 1.0, (k * i as f64).sin())).collect(),
        };
        let panels: Vec<Panel> = (0..4)
            .map(|p| Panel {
                title: format!("panel {p}"),
                lines: vec![line("net A", 0, false, 0.1 * p as f64), line("net B", 1, true, 0.2)],
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let files = panel_grid(dir.path(), "g", "caption", 2, (300, 250), &panels, "x").unwrap();
        assert_eq!(files.len(), 2);
        let text = std::fs::read_to_string(dir.path().join("g.svg")).unwrap();
        for p in 0..4 {
            assert!(text.contains(&format!("panel {p}")), "panel {p} missing");
        }
        // One legend entry per label, though every panel has both (a flat line, panel 0's
        // first, is drawn too).
        for label in ["net A", "net B"] {
            assert_eq!(text.lines().filter(|l| l.trim() == label).count(), 1, "{label}");
        }
        assert!(std::fs::metadata(dir.path().join("g.png")).unwrap().len() > 1000);
    }
}
