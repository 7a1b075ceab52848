//! The GEMM plot: GFLOP/s against N on log-log axes, WGSL against the CPU BLAS, with the
//! adapter in the title, a tick at every measured N and the legend under the chart.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::gemm::Row;

/// A line: its legend, its colour, and the figure it plots (`None` where not measured).
type Series = (&'static str, RGBColor, fn(&Row) -> Option<f64>);

const SERIES: [Series; 3] = [
    ("WGSL on the first rank, wall time", BLUE, |r| {
        Some(r.wgsl_gflops)
    }),
    ("WGSL, GPU timestamps", RGBColor(0, 140, 0), |r| {
        r.kernel_gflops
    }),
    ("gemm crate, all cores", RED, |r| Some(r.cpu_gflops)),
];

/// A series as drawn: the measured (N, GFLOP/s) points.
struct Line {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Chart size in pixels; the legend adds one line per series below it.
const WIDTH: u32 = 760;
const CHART_HEIGHT: u32 = 440;
const LEGEND_LINE: u32 = 22;

/// Writes the plot of `rows`, measured on `adapter`, to `path` (SVG), creating its folder.
pub fn gemm(path: &Path, adapter: &str, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    // Lines with at least one positive value (a log axis has no room for 0).
    let lines: Vec<Line> = SERIES
        .iter()
        .map(|&(name, color, value)| Line {
            name,
            color,
            points: rows
                .iter()
                .filter_map(|r| value(r).filter(|v| *v > 0.0).map(|v| (r.n as f64, v)))
                .collect(),
        })
        .filter(|l| !l.points.is_empty())
        .collect();
    let values = || lines.iter().flat_map(|l| l.points.iter().map(|&(_, v)| v));
    let (Some(lo), Some(hi)) = (values().reduce(f64::min), values().reduce(f64::max)) else {
        return Ok(());
    };
    let mut sizes: Vec<f64> = rows.iter().map(|r| r.n as f64).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let (n_lo, n_hi) = (sizes[0], sizes[sizes.len() - 1]);
    let (y_lo, y_hi) = (lo / 1.6, hi * 1.6);

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let legend_height = 12 + LEGEND_LINE * lines.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, CHART_HEIGHT + legend_height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(CHART_HEIGHT);
    let mut chart = ChartBuilder::on(&upper)
        .caption(
            format!("f32 GEMM [N, N] x [N, N] on {adapter}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (n_lo / 1.25..n_hi * 1.25)
                .log_scale()
                .with_key_points(sizes),
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(one_two_five(y_lo, y_hi)),
        )?;
    chart
        .configure_mesh()
        .x_desc("N (log scale)")
        .y_desc("GFLOP/s (log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()?;
    for l in &lines {
        let (points, color) = (l.points.iter().copied(), l.color);
        chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
        chart.draw_series(points.map(|p| Circle::new(p, 4, color.filled())))?;
    }

    // The legend, one line per series, in the strip under the x axis labels.
    let label =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, Line { name, color, .. }) in lines.iter().enumerate() {
        let (x, y) = (76, (LEGEND_LINE / 2 + LEGEND_LINE * i as u32) as i32);
        lower.draw(&PathElement::new(
            vec![(x, y), (x + 28, y)],
            color.stroke_width(2),
        ))?;
        lower.draw(&Circle::new((x + 14, y), 4, color.filled()))?;
        lower.draw(&Text::new(*name, (x + 38, y), label.clone()))?;
    }
    root.present()?;
    Ok(())
}

/// The values 1, 2 and 5 times a power of ten in `lo..=hi`: the y axis ticks.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    (first..=last)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}
