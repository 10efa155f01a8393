//! `dcgan plot`: the loss chart. The font is compiled in, so it draws its text on a machine
//! with no system fonts (a bare CI box, a container).

pub mod animation;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::data::write_png;
use crate::run::{LossRow, MetricRow};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// Each epoch's preview grid of a run, `samples/epoch_NNNN.png`, in epoch order.
pub fn preview_frames(samples: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let entries = std::fs::read_dir(samples).map_err(|e| {
        anyhow::anyhow!(
            "cannot list {} ({e}): train first, or pass the run folder with --run",
            samples.display()
        )
    })?;
    let mut frames: Vec<(usize, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let epoch = name
                .strip_prefix("epoch_")?
                .strip_suffix(".png")?
                .parse()
                .ok()?;
            Some((epoch, e.path()))
        })
        .collect();
    frames.sort();
    Ok(frames)
}

/// The animated GIF of a run's preview grids, one frame of `frame_ms` per epoch.
pub fn preview_gif(samples: &Path, frame_ms: u16) -> Result<(Vec<u8>, usize)> {
    let frames = preview_frames(samples)?;
    Ok((
        animation::encode_gif(&frames, FONT, frame_ms)?,
        frames.len(),
    ))
}
const FAMILY: &str = "dcgan-mono";

/// A series to draw: legend name, the field it plots, its colour.
type Line = (&'static str, fn(&LossRow) -> f32, RGBColor);

/// Trailing moving average over `window` points.
pub fn moving_average(v: &[f32], window: usize) -> Vec<f32> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(v.len());
    let mut sum = 0f64;
    for (i, x) in v.iter().enumerate() {
        sum += *x as f64;
        if i >= window {
            sum -= v[i - window] as f64;
        }
        out.push((sum / (i + 1).min(window) as f64) as f32);
    }
    out
}

fn register_font() {
    // Registering twice only replaces the entry; ignore a (never expected) parse failure
    // here and let drawing report it.
    let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
}

/// Draws losses (top) and D's mean outputs (middle) per batch to a PNG, and below them the
/// SWD curve when the run tracked one.
pub fn plot(rows: &[LossRow], metrics: &[MetricRow], out: &Path) -> Result<()> {
    if rows.is_empty() {
        bail!("the loss log has no rows yet: train for at least one batch first");
    }
    register_font();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    let steps: Vec<f32> = rows.iter().map(|r| r.step as f32).collect();
    let window = (rows.len() / 50).clamp(1, 500);
    let series = |f: fn(&LossRow) -> f32| rows.iter().map(f).collect::<Vec<f32>>();
    let (x0, x1) = (steps[0], steps[steps.len() - 1].max(steps[0] + 1.0));

    let (w, h) = (1200u32, if metrics.is_empty() { 900u32 } else { 1250 });
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (top, rest) = root.split_vertically(500);
        let (bottom, swd_area) = rest.split_vertically(400);
        if !metrics.is_empty() {
            draw_swd(&swd_area, metrics, x0..x1).map_err(|e| err(&e))?;
        }

        let panels: [(&DrawingArea<_, _>, &str, &str, [Line; 2]); 2] = [
            (
                &top,
                "DCGAN losses per batch",
                "binary cross-entropy",
                [
                    ("D loss (real + fake)", |r| r.d_loss, RGBColor(31, 119, 180)),
                    ("G loss", |r| r.g_loss, RGBColor(214, 39, 40)),
                ],
            ),
            (
                &bottom,
                "Discriminator outputs per batch",
                "mean D output",
                [
                    ("D(x), real", |r| r.d_real_mean, RGBColor(44, 160, 44)),
                    ("D(G(z)), fake", |r| r.d_fake_mean, RGBColor(255, 127, 14)),
                ],
            ),
        ];
        for (area, title, ylabel, lines) in panels {
            let values: Vec<Vec<f32>> = lines.iter().map(|(_, f, _)| series(*f)).collect();
            draw_panel(
                area,
                (title, ylabel),
                &lines,
                &steps,
                &values,
                window,
                x0..x1,
            )
            .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).expect("buffer matches size");
    write_png(&img, out)
}

/// One panel: two series per batch, faint, with their moving averages drawn over them.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    (title, ylabel): (&str, &str),
    lines: &[Line; 2],
    steps: &[f32],
    values: &[Vec<f32>],
    window: usize,
    xs: std::ops::Range<f32>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (lo, hi) = values
        .iter()
        .flatten()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(xs, (lo - pad)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("batch")
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_desc(ylabel)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()?;
    for ((name, _, color), v) in lines.iter().zip(values) {
        let faint = color.mix(0.25);
        chart.draw_series(LineSeries::new(
            steps.iter().copied().zip(v.iter().copied()),
            faint,
        ))?;
        let avg = moving_average(v, window);
        chart
            .draw_series(LineSeries::new(
                steps.iter().copied().zip(avg),
                color.stroke_width(3),
            ))?
            .label(format!("{name} (mean of {window})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
}

/// SWD (mean over pyramid levels) at each scored epoch, the best one marked, and the moving
/// average of G beside it when the run keeps one.
fn draw_swd<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    metrics: &[MetricRow],
    xs: std::ops::Range<f32>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let pts: Vec<(f32, f32)> = metrics
        .iter()
        .map(|m| (m.step as f32, m.swd_mean as f32))
        .collect();
    let ema: Vec<(f32, f32)> = metrics
        .iter()
        .filter_map(|m| Some((m.step as f32, m.ema_swd_mean? as f32)))
        .collect();
    let (lo, hi) = pts
        .iter()
        .chain(&ema)
        .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((hi - lo) * 0.1).max(0.5);
    let color = RGBColor(148, 103, 189);
    let ema_color = RGBColor(44, 160, 44);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Sliced Wasserstein distance to real faces (lower is better)",
            (FAMILY, 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(xs, (lo - pad).max(0.0)..(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("batch")
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_desc("SWD x1e3, mean of levels")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()?;
    for (name, curve, color) in [("G", &pts, color), ("moving average of G", &ema, ema_color)] {
        if curve.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                curve.iter().copied(),
                color.stroke_width(3),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(curve.iter().map(|p| Circle::new(*p, 5, color.filled())))?;
    }
    if let Some(best) = metrics.iter().rev().find(|m| m.best) {
        let p = (best.step as f32, best.swd_mean as f32);
        chart.draw_series(std::iter::once(Circle::new(p, 9, BLACK.stroke_width(2))))?;
    }
    // A legend only when there are two curves to tell apart.
    if !ema.is_empty() {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_trailing_mean() {
        assert_eq!(
            moving_average(&[1.0, 3.0, 5.0, 7.0], 2),
            vec![1.0, 2.0, 4.0, 6.0]
        );
    }
}
