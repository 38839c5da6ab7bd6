//! The chart in docs/performance.md: aggregate events/s and peak RSS per open stream against concurrency,
//! plugin and direct SDK, as a PNG.

use crate::Spread;
use plotters::prelude::*;
use std::path::Path;

/// One level of scenario 3: medians and ranges over the repetitions.
pub struct Level {
    pub streams: usize,
    pub plugin_events_per_s: Spread,
    pub direct_events_per_s: Spread,
    pub plugin_kib_per_stream: Spread,
    pub direct_kib_per_stream: Spread,
}

/// Fonts are not bundled: the chart needs a TrueType sans font installed (DejaVu on Debian).
const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn register_font() -> Result<(), String> {
    let path = FONTS.iter().find(|p| Path::new(p).is_file()).ok_or_else(|| format!("no DejaVuSans.ttf in {FONTS:?}"))?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path).map_err(|e| format!("{path}: {e}"))?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{path}: not a usable font"))
}

pub fn draw(path: &Path, levels: &[Level], machine: &str) -> Result<(), String> {
    if levels.is_empty() {
        return Err("no concurrency levels were measured".into());
    }
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root.titled(&format!("bedrock-plugin vs aws-sdk-bedrockruntime, streams of 1,000 deltas ({machine})"), ("sans-serif", 20)).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(600);
    let max_streams = levels.iter().map(|l| l.streams).max().unwrap_or(1) as f64;
    let x_range = (0.8f64..max_streams * 1.25).log_scale();
    let thousands = |s: Spread| Spread { median: s.median / 1e3, min: s.min / 1e3, max: s.max / 1e3 };
    let panels: [(&str, &str, &dyn Fn(&Level) -> (Spread, Spread)); 2] = [
        ("aggregate events/s (median, bars: min–max)", "events/s (thousands)", &|l| (thousands(l.plugin_events_per_s), thousands(l.direct_events_per_s))),
        ("peak RSS per open stream (median, bars: min–max)", "KiB", &|l| (l.plugin_kib_per_stream, l.direct_kib_per_stream)),
    ];
    for (area, (title, y_label, values)) in [left, right].iter().zip(panels) {
        let top = levels.iter().map(|l| { let (p, d) = values(l); p.max.max(d.max) }).fold(0.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range.clone(), 0.0..top.max(1.0))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("concurrent streams")
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (name, color, pick) in [("plugin (C ABI)", RED, 0), ("direct SDK", BLUE, 1)] {
            let spreads: Vec<(f64, Spread)> = levels.iter().map(|l| { let v = values(l); (l.streams as f64, if pick == 0 { v.0 } else { v.1 }) }).collect();
            let points: Vec<(f64, f64)> = spreads.iter().map(|(x, s)| (*x, s.median)).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(|e| e.to_string())?;
            // The range of the repetitions, slightly offset so the two series' bars do not overlap.
            let nudge = if pick == 0 { 0.97 } else { 1.03 };
            chart
                .draw_series(spreads.iter().map(|(x, s)| PathElement::new(vec![(x * nudge, s.min), (x * nudge, s.max)], color.stroke_width(2))))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
