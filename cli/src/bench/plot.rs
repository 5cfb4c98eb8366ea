//! The SVG plot of a bench run: throughput and lag over time.

use super::Sample;

/// A line chart of throughput (left axis) and lag (right axis) over time, as SVG.
pub fn plot_svg(samples: &[Sample], title: &str) -> String {
    let (width, height, margin) = (800.0, 400.0, 60.0);
    let max_t = samples.iter().map(|s| s.seconds).fold(1.0, f64::max);
    let max_rate = samples.iter().map(|s| s.handled_per_s).fold(1.0, f64::max);
    let max_lag = samples.iter().map(|s| s.lag as f64).fold(1.0, f64::max);
    let x = |t: f64| margin + t / max_t * (width - 2.0 * margin);
    let y = |v: f64, max: f64| height - margin - v / max * (height - 2.0 * margin);
    let line = |f: &dyn Fn(&Sample) -> (f64, f64)| -> String {
        samples
            .iter()
            .map(|s| {
                let (px, py) = f(s);
                format!("{px:.1},{py:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rate = line(&|s| (x(s.seconds), y(s.handled_per_s, max_rate)));
    let lag = line(&|s| (x(s.seconds), y(s.lag as f64, max_lag)));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{margin}" y="25" font-size="14">{title}</text>
<line x1="{margin}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{b}" stroke="black"/>
<line x1="{r}" y1="{margin}" x2="{r}" y2="{b}" stroke="black"/>
<text x="{margin}" y="{below}">0 s</text><text x="{r}" y="{below}" text-anchor="end">{max_t:.1} s</text>
<text x="5" y="{margin}" fill="#1f77b4">{max_rate:.0}/s</text>
<text x="{rr}" y="{margin}" fill="#d62728">{max_lag:.0}</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{rate}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="{lag}"/>
<text x="{legend}" y="45" fill="#1f77b4">matches persisted per second</text>
<text x="{legend}" y="60" fill="#d62728">lag: published, not yet persisted</text>
</svg>
"##,
        b = height - margin,
        r = width - margin,
        below = height - margin + 18.0,
        rr = width - margin + 5.0,
        legend = width / 2.0,
    )
}
