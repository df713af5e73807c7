//! The PNG chart: CPU per check (left) and schedule-lag p99 (right) against the monitor
//! count, one line per implementation and protocol (HTTP solid, TCP dashed), the raw
//! limit as grey lines on the CPU panel.
//!
//! Text is drawn with DejaVu Sans read at run time (Debian's `fonts-dejavu-core`); without
//! it the chart is drawn without text.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::{
    coord::{Shift, ranged1d::ValueFormatter},
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::{
    report::{Report, Row},
    spec::{Impl, Proto},
};

/// Where Debian (and a few other distributions) keep DejaVu Sans.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const FONT: &str = "sans-serif";
const SCALES: [usize; 2] = [1_000, 10_000];

/// Registers DejaVu Sans for the chart's text; `false` when no copy was found.
fn load_font() -> bool {
    FONT_PATHS.iter().any(|path| {
        std::fs::read(path).is_ok_and(|bytes| {
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FONT, FontStyle::Normal, bytes).is_ok()
        })
    })
}

fn color(imp: Impl) -> RGBColor {
    match imp {
        Impl::Ours => RGBColor(31, 119, 180),
        Impl::Naive => RGBColor(255, 127, 14),
        Impl::Pingora => RGBColor(44, 160, 44),
        Impl::Raw => RGBColor(127, 127, 127),
        Impl::Haproxy => RGBColor(214, 39, 40),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    CpuPerCheck,
    LagP99,
}

impl Metric {
    fn of(self, row: &Row) -> Option<f64> {
        match self {
            Metric::CpuPerCheck => row.cpu_us(),
            Metric::LagP99 => row.lag().map(|l| l.p99_ms),
        }
    }
}

/// One line: an implementation and a protocol across the monitor counts.
#[derive(Debug)]
struct Series {
    imp: Impl,
    proto: Proto,
    points: Vec<(f64, f64)>,
}

fn series(report: &Report, metric: Metric) -> Vec<Series> {
    let mut all = Vec::new();
    for imp in [Impl::Ours, Impl::Naive, Impl::Pingora, Impl::Haproxy] {
        for proto in [Proto::Http, Proto::Tcp] {
            let points: Vec<(f64, f64)> = SCALES
                .iter()
                .filter_map(|&n| {
                    let name = format!("{}-{}k-1s", proto.name(), n / 1000);
                    let value = metric.of(report.row(&name, imp)?)?;
                    Some((n as f64, value))
                })
                .collect();
            if !points.is_empty() {
                all.push(Series { imp, proto, points });
            }
        }
    }
    all
}

/// Draws the chart into `path`.
pub(crate) fn draw(report: &Report, path: &Path) -> Result<()> {
    let text = load_font();
    if !text {
        eprintln!("health-bench: DejaVu Sans not found; the chart has no text");
    }
    render(report, path, text)
}

/// Draws the chart, with its text (captions, axes, legends) or without.
fn render(report: &Report, path: &Path, text: bool) -> Result<()> {
    let root = BitMapBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).context("cannot draw")?;
    let (left, right) = root.split_horizontally(700);
    panel(&left, report, Metric::CpuPerCheck, text)?;
    panel(&right, report, Metric::LagP99, text)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    report: &Report,
    metric: Metric,
    text: bool,
) -> Result<()> {
    let lines = series(report, metric);
    let raw: Vec<(Proto, f64)> = if metric == Metric::CpuPerCheck {
        [Proto::Http, Proto::Tcp]
            .into_iter()
            .filter_map(|p| Some((p, report.raw(p)?.cpu_us()?)))
            .collect()
    } else {
        Vec::new()
    };
    let values = lines
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(raw.iter().map(|r| r.1));
    let max = values.clone().fold(0.0f64, f64::max).max(1e-3);
    let min = values.fold(f64::INFINITY, f64::min);
    let x_range = (700.0f64..14_000.0f64).log_scale();

    let mut builder = ChartBuilder::on(area);
    builder.margin(16);
    if text {
        let caption = match metric {
            Metric::CpuPerCheck => "CPU per check (µs), 1 s interval",
            Metric::LagP99 => "schedule lag p99 (ms, log scale), 1 s interval",
        };
        builder
            .caption(caption, (FONT, 24))
            .x_label_area_size(44)
            .y_label_area_size(64);
    }
    match metric {
        Metric::CpuPerCheck => {
            let mut chart = builder
                // Headroom for the legend, top right (the lines fall towards 10k).
                .build_cartesian_2d(x_range, 0.0..max * 1.8)
                .context("cannot build the CPU panel")?;
            mesh(&mut chart, text, "µs per check")?;
            for (proto, value) in &raw {
                let points = vec![(700.0, *value), (14_000.0, *value)];
                let style = color(Impl::Raw).stroke_width(2);
                let drawn = match proto {
                    Proto::Http => chart.draw_series(LineSeries::new(points, style)),
                    Proto::Tcp => chart.draw_series(DashedLineSeries::new(points, 8, 6, style)),
                }
                .context("cannot draw the raw limit")?;
                if text {
                    let dashed = *proto == Proto::Tcp;
                    drawn
                        .label(format!("raw {} (limit)", proto.name()))
                        .legend(move |(x, y)| {
                            // Solid, or two dashes for TCP (coordinates relative to the
                            // anchor).
                            let gap = if dashed { 6 } else { 0 };
                            EmptyElement::at((x, y))
                                + PathElement::new(vec![(0, 0), (9, 0)], style)
                                + PathElement::new(vec![(9 + gap, 0), (24, 0)], style)
                        });
                }
            }
            draw_lines(&mut chart, &lines, text)?;
            legend(&mut chart, text, SeriesLabelPosition::UpperRight)
        }
        Metric::LagP99 => {
            let low = if min.is_finite() { min / 2.0 } else { 0.01 };
            let mut chart = builder
                // Headroom for the legend, top left (log scale).
                .build_cartesian_2d(x_range, (low.max(1e-3)..max * 30.0).log_scale())
                .context("cannot build the lag panel")?;
            mesh(&mut chart, text, "ms")?;
            draw_lines(&mut chart, &lines, text)?;
            legend(&mut chart, text, SeriesLabelPosition::UpperLeft)
        }
    }
}

type Chart<'a, Y> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<LogCoord<f64>, Y>>;

fn mesh<Y>(chart: &mut Chart<'_, Y>, text: bool, y_desc: &str) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("monitors")
            .y_desc(y_desc)
            .x_label_formatter(&|x| {
                // Label the decades and their halves only; the log axis offers every
                // thousand.
                let k = x / 1000.0;
                [1.0f64, 2.0, 5.0, 10.0]
                    .into_iter()
                    .find(|t| (k - t).abs() < t * 0.005)
                    .map_or_else(String::new, |t| format!("{t:.0}k"))
            })
            .y_label_formatter(&|y| {
                if *y >= 10.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y:.1}")
                }
            })
            .label_style((FONT, 16));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().context("cannot draw the axes")
}

fn draw_lines<Y>(chart: &mut Chart<'_, Y>, lines: &[Series], text: bool) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    for line in lines {
        let style = color(line.imp).stroke_width(3);
        let drawn = match line.proto {
            Proto::Http => chart.draw_series(LineSeries::new(line.points.clone(), style)),
            Proto::Tcp => {
                chart.draw_series(DashedLineSeries::new(line.points.clone(), 10, 6, style))
            }
        }
        .context("cannot draw a line")?;
        if text {
            let dashed = line.proto == Proto::Tcp;
            drawn
                .label(format!("{} {}", line.imp.name(), line.proto.name()))
                .legend(move |(x, y)| {
                    // Solid, or two dashes for TCP.
                    let gap = if dashed { 6 } else { 0 };
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (9, 0)], style)
                        + PathElement::new(vec![(9 + gap, 0), (24, 0)], style)
                });
        }
        let fill = color(line.imp);
        chart
            .draw_series(line.points.iter().map(|&p| match line.proto {
                Proto::Http => Circle::new(p, 5, fill.filled()),
                Proto::Tcp => Circle::new(p, 5, fill.stroke_width(2)),
            }))
            .context("cannot draw the points")?;
    }
    Ok(())
}

fn legend<Y>(chart: &mut Chart<'_, Y>, text: bool, position: SeriesLabelPosition) -> Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    if text {
        chart
            .configure_series_labels()
            .position(position)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .context("cannot draw the legend")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn draws_a_png_with_and_without_text() {
        let dir = std::env::temp_dir().join(format!("health-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = sample();
        let with_text = dir.join("with-text.png");
        if load_font() {
            render(&report, &with_text, true).unwrap();
            assert!(std::fs::metadata(&with_text).unwrap().len() > 1000);
        }
        let without = dir.join("without-text.png");
        render(&report, &without, false).unwrap();
        assert!(std::fs::metadata(&without).unwrap().len() > 1000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
