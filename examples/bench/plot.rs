//! `benchmarks-gemm.svg`: GEMM GFLOP/s against N, WGSL against the CPU BLAS.

use std::path::Path;

use plotters::prelude::*;

use crate::gemm::Row;

/// A line: its legend, its colour, and the figure it plots.
type Series = (&'static str, RGBColor, fn(&Row) -> f64);

pub fn gemm(path: &Path, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    if rows.is_empty() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = rows
        .iter()
        .map(|r| r.wgsl_gflops.max(r.cpu_gflops))
        .fold(1.0, f64::max)
        * 1.15;
    let (lo, hi) = (
        rows.iter().map(|r| r.n).min().unwrap_or(1) as f64,
        rows.iter().map(|r| r.n).max().unwrap_or(1) as f64,
    );
    let mut chart = ChartBuilder::on(&root)
        .caption("f32 GEMM, [N, N] x [N, N]", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("N")
        .y_desc("GFLOP/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let series: [Series; 3] = [
        ("WGSL on the first rank, wall time", BLUE, |r| r.wgsl_gflops),
        ("WGSL, GPU timestamps (0 if none)", GREEN, |r| {
            r.kernel_gflops.unwrap_or(0.0)
        }),
        ("gemm crate, all cores", RED, |r| r.cpu_gflops),
    ];
    for (name, color, value) in series {
        let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.n as f64, value(r))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
