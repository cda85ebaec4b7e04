//! Rebuild seconds saved against budget, one line per policy, as an SVG
//! written by hand (a few dozen elements; no crate needed).
//!
//! The x axis is the budget as a share of the unbounded footprint, up to
//! the largest budget; the y axis rebuild seconds saved, from zero unless
//! every line is in the upper half (then from a tick below the lowest). Offline lines (Belady, the bound) are
//! dashed; `go-age`, which has no budget, and the unbounded cache are
//! horizontal lines. Colours are the Okabe-Ito palette, which people with
//! the common colour-vision deficiencies tell apart.

use std::fmt::Write;

use super::{PolicyName, Report};

const W: f64 = 780.0;
const H: f64 = 470.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 560.0;
const TOP: f64 = 54.0;
const BOTTOM: f64 = 400.0;

fn style(p: PolicyName) -> (&'static str, &'static str) {
    match p {
        PolicyName::LruGroups => ("#0072B2", ""),
        PolicyName::LruActions => ("#56B4E9", ""),
        PolicyName::GdsfClassic => ("#009E73", ""),
        PolicyName::GdCostClassic => ("#D55E00", ""),
        PolicyName::GoAge => ("#E69F00", "2 4"),
        PolicyName::Belady => ("#CC79A7", "7 4"),
        PolicyName::Lru => ("#0072B2", "4 2"),
        PolicyName::Gdsf => ("#009E73", "4 2"),
        PolicyName::Gds => ("#009E73", "1 2"),
        PolicyName::GdCost => ("#D55E00", "4 2"),
        PolicyName::Lower => ("#555555", "2 3"),
        PolicyName::Bound => ("#000000", "7 4"),
    }
}

fn label(p: PolicyName) -> &'static str {
    match p {
        PolicyName::LruGroups => "lru-groups",
        PolicyName::LruActions => "lru-actions",
        PolicyName::GdsfClassic => "gdsf-classic",
        PolicyName::GdCostClassic => "gd-cost-classic",
        PolicyName::GoAge => "go-age (no limit)",
        PolicyName::Belady => "belady (offline)",
        PolicyName::Lru => "lru (as trim)",
        PolicyName::Gdsf => "gdsf (as trim)",
        PolicyName::Gds => "gds (trim's gdsf, no hits)",
        PolicyName::GdCost => "gd-cost (as trim)",
        PolicyName::Lower => "lower (feasible offline)",
        PolicyName::Bound => "bound (PFOO-L)",
    }
}

/// A step of 1, 2 or 5 times a power of ten giving about `n` ticks.
fn nice_step(range: f64, n: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn seconds(v: f64, step: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if step >= 1000.0 {
        let k = v / 1000.0;
        if (k - k.round()).abs() < 1e-9 {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else if step >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plot of `report`, titled `title`.
pub fn svg(report: &Report, title: &str) -> String {
    let mut policies: Vec<PolicyName> = report
        .budgets
        .iter()
        .flat_map(|b| b.rows.iter().map(|r| r.policy))
        .collect();
    policies.sort_by_key(|p| PolicyName::ALL.iter().position(|q| q == p));
    policies.dedup();
    let axes = Axes::of(report);
    let mut o = String::new();
    frame(&mut o, &axes, report, title);
    // The unbounded cache.
    let yu = axes.y(report.unbounded.saved_s);
    let _ = writeln!(
        o,
        r##"<line x1="{LEFT}" y1="{yu:.1}" x2="{RIGHT}" y2="{yu:.1}" stroke="#888" stroke-width="1"/>"##
    );
    // One line per policy.
    let mut legend: Vec<(String, &str, &str, u32)> = Vec::new();
    for &p in &policies {
        policy_line(&mut o, &axes, report, p);
        let (colour, dash) = style(p);
        legend.push((label(p).to_string(), colour, dash, line_width(p)));
    }
    legend.push(("unbounded cache".into(), "#888", "", 2));
    write_legend(&mut o, &legend);
    o.push_str("</svg>\n");
    o
}

/// The scales: budget shares across, seconds saved up.
struct Axes {
    xstep: f64,
    xmax: f64,
    ystep: f64,
    ymin: f64,
    ymax: f64,
}

impl Axes {
    /// Scales that hold every budget and every policy's seconds saved.
    fn of(report: &Report) -> Axes {
        let shares: Vec<f64> = report.budgets.iter().map(|b| b.share).collect();
        let saved: Vec<f64> = report
            .budgets
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.outcome.saved_s))
            .chain([report.unbounded.saved_s])
            .collect();
        Axes::holding(&shares, &saved)
    }

    /// Scales for budget shares `shares` and seconds `saved`: the x axis
    /// from 0 to the largest budget, the y axis from 0 unless every value
    /// is over half the largest (lines close together would then be drawn
    /// on top of each other), then from a tick below the smallest.
    fn holding(shares: &[f64], saved: &[f64]) -> Axes {
        let max_share = shares.iter().copied().fold(0.0, f64::max);
        let xstep = nice_step(max_share.max(0.01), 6.0);
        let hi = saved.iter().copied().fold(0.0, f64::max);
        let lo = saved.iter().copied().fold(hi, f64::min);
        let span = hi - lo;
        let (from, to) = if lo <= 0.5 * hi || span <= 0.0 {
            (0.0, hi * 1.05)
        } else {
            (lo - 0.1 * span, hi + 0.05 * span)
        };
        let ystep = nice_step(to - from, 6.0);
        let ymin = ((from / ystep).floor() * ystep).max(0.0);
        Axes {
            xstep,
            xmax: if max_share > 0.0 { max_share } else { xstep },
            ystep,
            ymin,
            ymax: ((to / ystep).ceil() * ystep).max(ymin + ystep),
        }
    }

    fn x(&self, share: f64) -> f64 {
        LEFT + (RIGHT - LEFT) * share / self.xmax
    }

    fn y(&self, s: f64) -> f64 {
        BOTTOM - (BOTTOM - TOP) * (s - self.ymin) / (self.ymax - self.ymin)
    }

    /// The y ticks, from the bottom.
    fn yticks(&self) -> Vec<f64> {
        let n = ((self.ymax - self.ymin) / self.ystep).round() as u32;
        (0..=n)
            .map(|i| self.ymin + f64::from(i) * self.ystep)
            .collect()
    }

    /// The x ticks: multiples of the step up to the largest budget.
    fn xticks(&self) -> Vec<f64> {
        let n = (self.xmax / self.xstep * (1.0 + 1e-9)).floor() as u32;
        (0..=n).map(|i| f64::from(i) * self.xstep).collect()
    }
}

/// The opening tag, the title, the grid with its ticks and labels, the
/// plot's border and the axes' names.
fn frame(o: &mut String, axes: &Axes, report: &Report, title: &str) {
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        escape(title)
    );
    // Grid, ticks and labels.
    for v in axes.yticks() {
        let yy = axes.y(v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{RIGHT}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 8.0,
            yy + 4.0,
            seconds(v, axes.ystep)
        );
    }
    for v in axes.xticks() {
        let xx = axes.x(v);
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{BOTTOM}" stroke="#e5e5e5"/><text x="{xx:.1}" y="{}" text-anchor="middle">{:.0}%</text>"##,
            BOTTOM + 20.0,
            v * 100.0
        );
    }
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">budget, share of the unbounded footprint ({})</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 46.0,
        escape(&humansize::format_size(
            report.unbounded.peak_bytes,
            humansize::BINARY
        ))
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(20 {}) rotate(-90)" text-anchor="middle">rebuild seconds saved</text>"#,
        (TOP + BOTTOM) / 2.0
    );
}

/// lru-groups is drawn wide, under lru-actions: the two often coincide.
fn line_width(p: PolicyName) -> u32 {
    if p == PolicyName::LruGroups { 5 } else { 2 }
}

/// The attribute that dashes a line (none for a solid one).
fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

/// Policy `p`'s line: its seconds saved at each budget, with a dot at
/// each; `go-age`, which has no budget, across the whole plot.
fn policy_line(o: &mut String, axes: &Axes, report: &Report, p: PolicyName) {
    let (colour, dash) = style(p);
    let dash_attr = dash_attr(dash);
    let mut pts: Vec<(f64, f64)> = report
        .budgets
        .iter()
        .filter_map(|b| {
            let r = b.rows.iter().find(|r| r.policy == p)?;
            Some((b.share, r.outcome.saved_s))
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if p == PolicyName::GoAge {
        if let Some(&(_, s)) = pts.first() {
            let _ = writeln!(
                o,
                r#"<line x1="{LEFT}" y1="{:.1}" x2="{RIGHT}" y2="{:.1}" stroke="{colour}" stroke-width="2"{dash_attr}/>"#,
                axes.y(s),
                axes.y(s)
            );
        }
        return;
    }
    let path: Vec<String> = pts
        .iter()
        .map(|&(sh, s)| format!("{:.1},{:.1}", axes.x(sh), axes.y(s)))
        .collect();
    let _ = writeln!(
        o,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="{}"{dash_attr}/>"#,
        path.join(" "),
        line_width(p)
    );
    for &(sh, s) in &pts {
        let _ = writeln!(
            o,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/>"#,
            axes.x(sh),
            axes.y(s)
        );
    }
}

/// The legend beside the plot: a line and a name each.
fn write_legend(o: &mut String, legend: &[(String, &str, &str, u32)]) {
    for (i, (name, colour, dash, width)) in legend.iter().enumerate() {
        let ly = TOP + 10.0 + 24.0 * i as f64;
        let dash_attr = dash_attr(dash);
        let _ = writeln!(
            o,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="{width}"{dash_attr}/><text x="{}" y="{}">{}</text>"#,
            RIGHT + 20.0,
            RIGHT + 48.0,
            RIGHT + 56.0,
            ly + 4.5,
            escape(name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(nice_step(0.5, 6.0), 0.1);
        assert_eq!(nice_step(12_345.0, 6.0), 5000.0);
        assert_eq!(seconds(15_000.0, 5000.0), "15k");
        assert_eq!(seconds(2_500.0, 500.0), "2500");
        assert_eq!(seconds(0.0, 5000.0), "0");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn close_lines_get_an_axis_of_their_own_and_the_last_budget_ends_it() {
        // Lines between 41k and 47k: drawn from 40k, not from 0, so that
        // they spread over the plot's height.
        let shares = [0.1, 0.2, 0.3, 0.5, 0.75];
        let a = Axes::holding(&shares, &[41_000.0, 43_500.0, 47_000.0]);
        assert_eq!((a.ymin, a.ystep, a.ymax), (40_000.0, 2_000.0, 48_000.0));
        assert!(a.y(41_000.0) - a.y(47_000.0) > 0.7 * (BOTTOM - TOP));
        // The x axis ends at the last budget (75%), not at a tick past it
        // (80%).
        assert_eq!(a.x(0.75), RIGHT);
        assert_eq!(a.xticks().last().map(|t| (t * 100.0).round()), Some(60.0));
        // Lines far apart keep zero.
        let a = Axes::holding(&shares, &[2_000.0, 47_000.0]);
        assert_eq!(a.ymin, 0.0);
        assert_eq!(a.yticks().first(), Some(&0.0));
        assert!(a.y(47_000.0) >= TOP);
    }
}
