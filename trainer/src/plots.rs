//! PNG plots: loss curves from the log, and target vs. predicted spectrograms.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use tch::{Kind, Tensor};

use crate::checkpoint::LogRow;

const FONT: &str = "sans-serif";

/// plotters needs a registered font for text; egui's embedded Ubuntu Light (OFL) serves.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// One curve of the loss plot: its label, colour and (epoch, loss) points.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

pub fn loss_curves(path: &Path, log: &[LogRow]) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let series: Vec<Series> = vec![
        (
            "train",
            BLUE,
            log.iter().map(|r| (r.epoch as f64, r.train_loss)).collect(),
        ),
        (
            "validation",
            RED,
            log.iter()
                .filter_map(|r| r.valid_loss.map(|v| (r.epoch as f64, v)))
                .collect(),
        ),
        (
            "test",
            GREEN,
            log.iter()
                .filter_map(|r| r.test_loss.map(|v| (r.epoch as f64, v)))
                .collect(),
        ),
    ];
    let values = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo <= hi {
        (lo * 0.95, hi * 1.05 + 1e-9)
    } else {
        (0.0, 1.0)
    };
    let epochs = log.len().max(2) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("training loss", (FONT, 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1f64..epochs, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (name, color, points) in series.into_iter().filter(|s| !s.2.is_empty()) {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(err)
}

/// The series' labels in a framed box at `position`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Log-magnitude spectrogram in dB, (bins, frames), normalised to the loudest bin of `reference`.
fn spectrogram_db(x: &Tensor, n_fft: i64) -> Result<(Vec<f32>, usize, usize)> {
    let window = Tensor::hann_window(n_fft, (Kind::Float, x.device()));
    let spec = x.to_kind(Kind::Float).stft(
        n_fft,
        n_fft / 4,
        n_fft,
        Some(&window),
        false,
        true,
        true,
        false,
    );
    let db = (spec.abs() + 1e-7).log10() * 20.0;
    let size = db.size();
    let values: Vec<f32> = Vec::try_from(db.to_device(tch::Device::Cpu).flatten(0, -1))?;
    Ok((values, size[0] as usize, size[1] as usize))
}

/// Two spectrograms stacked (target above, model below), 80 dB range, frequency up.
pub fn spectrograms(path: &Path, target: &Tensor, pred: &Tensor, sample_rate: u32) -> Result<()> {
    register_font();
    let n_fft = ((sample_rate / 16).next_power_of_two() as i64).max(256);
    let (t, bins, frames) = spectrogram_db(target, n_fft)?;
    let (p, _, _) = spectrogram_db(pred, n_fft)?;
    let top = t.iter().chain(&p).copied().fold(f32::MIN, f32::max);
    let (w, h) = (frames.max(1) as u32, bins as u32);
    let (width, height) = (900u32, 620u32);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((2, 1));
    for (area, (values, title)) in panels.iter().zip([(&t, "target"), (&p, "model")]) {
        let area = area.titled(title, (FONT, 18)).map_err(err)?;
        let (aw, ah) = area.dim_in_pixel();
        for py in 0..ah {
            let bin = ((ah - 1 - py) as u64 * h as u64 / ah as u64) as usize;
            for px in 0..aw {
                let frame = (px as u64 * w as u64 / aw as u64) as usize;
                let db = values[bin * frames + frame];
                let level = ((db - (top - 80.0)) / 80.0).clamp(0.0, 1.0) as f64;
                area.draw_pixel((px as i32, py as i32), &magma(level))
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)
}

/// A dark-to-bright colour ramp close to matplotlib's magma.
fn magma(x: f64) -> RGBColor {
    let stops = [
        (0.0, (0, 0, 4)),
        (0.25, (81, 18, 124)),
        (0.5, (183, 55, 121)),
        (0.75, (252, 137, 97)),
        (1.0, (252, 253, 191)),
    ];
    let i = stops
        .iter()
        .rposition(|s| s.0 <= x)
        .unwrap_or(0)
        .min(stops.len() - 2);
    let (a, b) = (stops[i], stops[i + 1]);
    let f = (x - a.0) / (b.0 - a.0);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(
        mix(a.1 .0, b.1 .0),
        mix(a.1 .1, b.1 .1),
        mix(a.1 .2, b.1 .2),
    )
}

/// The stereo image: per key (MIDI note), the left–right balance in dB of the Salamander and
/// of a model, as `trainer stereo` measures them (`keys`: (key, Salamander, model)).
pub fn balance(path: &Path, keys: &[(u8, f64, f64)], model: &str) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (800, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let peak = keys
        .iter()
        .flat_map(|k| [k.1.abs(), k.2.abs()])
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "stereo image: louder on the left (+) or the right (−)",
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(20f64..109f64, -peak..peak)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("key (MIDI note; 21 = A0, 60 = middle C, 108 = C8)")
        .y_desc("left − right, dB")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (name, color, of) in [("Salamander", BLACK, 1), (model, RED, 2)] {
        let points: Vec<(f64, f64)> = keys
            .iter()
            .map(|k| (k.0 as f64, if of == 1 { k.1 } else { k.2 }))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present().map_err(err)
}
