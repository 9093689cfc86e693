//! Script-free plots: histograms as inline SVG with axes, ticks, units and an exact
//! count per bar on hover, and the colour scale of coloured text as a legend.

use std::fmt::Write;

use crate::escape;

/// One bar of a histogram: `[low, high)` on the x axis and its count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Left edge.
    pub low: f64,
    /// Right edge.
    pub high: f64,
    /// Height.
    pub count: u64,
}

/// How a histogram is labelled.
pub struct Axes<'a> {
    /// What the x axis measures, with its unit.
    pub x_label: &'a str,
    /// What the y axis counts.
    pub y_label: &'a str,
    /// Formats an x tick value.
    pub x_tick: &'a dyn Fn(f64) -> String,
    /// The accessible name of the plot.
    pub title: &'a str,
}

const WIDTH: f64 = 460.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 52.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 8.0;
const RIGHT: f64 = 12.0;

/// "Nice" tick values from 0 to at least `max`: steps of 1, 2 or 5 × 10^n.
fn nice_ticks(max: f64, wanted: usize) -> Vec<f64> {
    if max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let rough = max / wanted.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(magnitude * 10.0);
    let top = (max / step).ceil() * step;
    (0..=((top / step).round() as usize))
        .map(|i| i as f64 * step)
        .collect()
}

/// A histogram with a y axis of counts (ticks at round numbers), an x axis with ticks at
/// the bars' edges (at most about eight labelled), axis titles, and each bar's range and
/// count in its `<title>`.
pub fn histogram(bars: &[Bar], axes: &Axes<'_>) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let peak = bars.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    let y_ticks = nice_ticks(peak, 4);
    let y_top = y_ticks.last().copied().unwrap_or(1.0).max(1.0);
    let mut svg = format!(
        "<svg class=\"plot\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(axes.title)
    );
    let y_of = |count: f64| TOP + plot_h * (1.0 - count / y_top);
    for tick in &y_ticks {
        let y = y_of(*tick);
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 4.0,
            y + 4.0,
            count_label(*tick)
        );
    }
    let n = bars.len().max(1) as f64;
    let bar_w = plot_w / n;
    for (i, bar) in bars.iter().enumerate() {
        let y = y_of(bar.count as f64);
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{} – {}: {}</title></rect>",
            LEFT + i as f64 * bar_w + 0.5,
            (bar_w - 1.0).max(0.5),
            TOP + plot_h - y,
            escape(&(axes.x_tick)(bar.low)),
            escape(&(axes.x_tick)(bar.high)),
            bar.count
        );
    }
    let every = bars.len().div_ceil(8).max(1);
    for i in (0..=bars.len()).step_by(every) {
        let value = bars
            .get(i)
            .map(|b| b.low)
            .or_else(|| bars.last().map(|b| b.high));
        let Some(value) = value else { break };
        let x = LEFT + i as f64 * bar_w;
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 4.0,
            TOP + plot_h + 16.0,
            escape(&(axes.x_tick)(value))
        );
    }
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
<text class=\"label\" transform=\"translate(12 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text></svg>",
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h,
        TOP + plot_h,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(axes.x_label),
        TOP + plot_h / 2.0,
        escape(axes.y_label)
    );
    svg
}

/// A count for a tick: `1200` → `1.2k`.
fn count_label(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{}k", value / 1e3)
    } else {
        format!("{value}")
    }
}

/// A feature's activation histogram: `bins` equal bins over `(0, max]`.
pub fn activation_histogram(histogram: &[u32], max: f64) -> String {
    let n = histogram.len().max(1) as f64;
    let bars: Vec<Bar> = histogram
        .iter()
        .enumerate()
        .map(|(i, count)| Bar {
            low: max * i as f64 / n,
            high: max * (i + 1) as f64 / n,
            count: u64::from(*count),
        })
        .collect();
    histogram_with(
        &bars,
        "activation value (SAE units)",
        "tokens",
        "activation histogram",
        &|v| format!("{v:.2}"),
    )
}

fn histogram_with(
    bars: &[Bar],
    x_label: &str,
    y_label: &str,
    title: &str,
    x_tick: &dyn Fn(f64) -> String,
) -> String {
    histogram(
        bars,
        &Axes {
            x_label,
            y_label,
            x_tick,
            title,
        },
    )
}

/// The overview's feature-density histogram over `log10(density)` edges.
pub fn density_histogram(log10_edges: &[f64], counts: &[u64]) -> String {
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(i, count)| Bar {
            low: log10_edges[i],
            high: log10_edges[i + 1],
            count: *count,
        })
        .collect();
    histogram_with(
        &bars,
        "density: fraction of counted tokens a feature fires on (log scale)",
        "features",
        "feature density histogram",
        &|v| {
            let rounded = v.round();
            if (v - rounded).abs() < 1e-9 {
                format!("1e{rounded}")
            } else {
                format!("{:.1e}", 10f64.powf(v))
            }
        },
    )
}

/// The colour scale of text coloured by activation: a gradient from 0 to `max` with
/// ticks, as the token spans colour them (`rgba(230,126,34, value / max)`).
pub fn colour_legend(max: f32, what: &str) -> String {
    let ticks: String = [0.0f32, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|f| format!("<span>{:.2}</span>", f * max))
        .collect();
    format!(
        "<figure class=\"legend\" aria-label=\"colour scale\"><div class=\"gradient\"></div><div class=\"ticks\">{ticks}</div><figcaption>{}</figcaption></figure>",
        escape(what)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(7.0, 4), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(1000.0, 4), vec![0.0, 500.0, 1000.0]);
        assert_eq!(nice_ticks(0.0, 4), vec![0.0, 1.0]);
        assert_eq!(count_label(1500.0), "1.5k");
    }

    #[test]
    fn histograms_have_axes_ticks_units_and_exact_counts() {
        let svg = activation_histogram(&[3, 0, 1, 7], 2.0);
        assert!(svg.contains("activation value (SAE units)"), "{svg}");
        assert!(svg.contains(">tokens<"), "{svg}");
        assert!(svg.contains("<title>1.50 – 2.00: 7</title>"), "{svg}");
        assert!(svg.contains(">0.00<") && svg.contains(">2.00<"), "{svg}");
        let density = density_histogram(&[-4.0, -3.0, -2.0], &[5, 1]);
        assert!(
            density.contains(">1e-4<") && density.contains(">1e-2<"),
            "{density}"
        );
        assert!(density.contains("log scale"), "{density}");
        assert!(colour_legend(4.0, "feature 3").contains("<span>2.00</span>"));
    }
}
