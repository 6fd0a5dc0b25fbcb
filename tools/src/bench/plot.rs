//! `--plot FILE.svg`: a hand-written SVG of the bench results, no plotting library.
//!
//! Stack rows become requests/s against connections (log scale), one line per scenario;
//! driver rows become bars of packets/s (log scale) per driver, test and frame size; loss rows
//! become goodput against loss rate (log scale), one line per RTT, with the Mathis bound
//! dashed.

use std::fmt::Write as _;

use super::Row;

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 90.0;
const BOTTOM: f64 = 360.0;
const TOP: f64 = 40.0;
const RIGHT: f64 = 740.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn log_pos(value: f64, lo: f64, hi: f64, from: f64, to: f64) -> f64 {
    let (v, lo, hi) = (value.max(1.0).log10(), lo.log10(), hi.log10());
    from + (to - from) * ((v - lo) / (hi - lo).max(1e-9))
}

fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = 10f64.powf(lo.max(1.0).log10().floor());
    let hi = 10f64.powf(hi.max(10.0).log10().ceil());
    (lo, hi.max(lo * 10.0))
}

fn header(svg: &mut String, title: &str, y_label: &str) {
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text><text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">{y_label}</text><line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="black"/>"#,
        W / 2.0,
        (TOP + BOTTOM) / 2.0,
        (TOP + BOTTOM) / 2.0,
    );
}

fn y_axis(svg: &mut String, lo: f64, hi: f64) {
    let mut tick = lo;
    while tick <= hi * 1.0001 {
        let y = log_pos(tick, lo, hi, BOTTOM, TOP);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            human(tick)
        );
        tick *= 10.0;
    }
}

fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{}G", x / 1e9),
        x if x >= 1e6 => format!("{}M", x / 1e6),
        x if x >= 1e3 => format!("{}k", x / 1e3),
        x => format!("{x}"),
    }
}

/// The `i`th series: a solid polyline through `coords` ("x,y"), a dot on each point, and
/// `label` in the legend, all in the series' colour.
fn series(svg: &mut String, coords: &[String], i: usize, label: &str) {
    let color = COLORS[i % COLORS.len()];
    let _ = write!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
        coords.join(" ")
    );
    for c in coords {
        let (x, y) = c.split_once(',').unwrap_or(("0", "0"));
        let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"/>"#);
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" fill="{color}">{label}</text>"#,
        RIGHT - 200.0,
        TOP + 16.0 * (i as f64 + 1.0)
    );
}

/// Requests/s against connections, one polyline per scenario.
pub fn stack_svg(rows: &[Row]) -> String {
    let mut svg = String::new();
    header(
        &mut svg,
        "sirocco in memory: requests/s on one core",
        "requests/s",
    );
    let points: Vec<(&str, f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.get_str("scenario")?,
                r.get_f64("connections")?,
                r.get_f64("requests_per_sec")?,
            ))
        })
        .collect();
    let (xlo, xhi) = decades(
        points.iter().map(|p| p.1).fold(f64::MAX, f64::min),
        points.iter().map(|p| p.1).fold(1.0, f64::max),
    );
    let (ylo, yhi) = decades(
        points.iter().map(|p| p.2).fold(f64::MAX, f64::min),
        points.iter().map(|p| p.2).fold(1.0, f64::max),
    );
    y_axis(&mut svg, ylo, yhi);
    let mut tick = xlo;
    while tick <= xhi * 1.0001 {
        let x = log_pos(tick, xlo, xhi, LEFT, RIGHT);
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            BOTTOM + 18.0,
            human(tick)
        );
        tick *= 10.0;
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">concurrent connections</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 40.0
    );
    let mut names: Vec<&str> = points.iter().map(|p| p.0).collect();
    names.dedup();
    for (i, name) in names.iter().enumerate() {
        let coords: Vec<String> = points
            .iter()
            .filter(|p| p.0 == *name)
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    log_pos(p.1, xlo, xhi, LEFT, RIGHT),
                    log_pos(p.2, ylo, yhi, BOTTOM, TOP)
                )
            })
            .collect();
        series(&mut svg, &coords, i, name);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Goodput (Mbit/s, log scale) against loss rate (evenly spaced), one solid line per RTT, and
/// the Mathis bound for that RTT dashed.
pub fn loss_svg(rows: &[Row]) -> String {
    let mut svg = String::new();
    header(
        &mut svg,
        "sirocco: goodput of a 1 MiB download through random loss",
        "Mbit/s",
    );
    let points: Vec<(f64, f64, f64, Option<f64>)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.get_f64("rtt_ms")?,
                r.get_f64("loss")?,
                r.get_f64("goodput_mbps")?,
                r.get_f64("mathis_mbps"),
            ))
        })
        .collect();
    let mut losses: Vec<f64> = points.iter().map(|p| p.1).collect();
    losses.sort_by(f64::total_cmp);
    losses.dedup();
    let mut rtts: Vec<f64> = points.iter().map(|p| p.0).collect();
    rtts.sort_by(f64::total_cmp);
    rtts.dedup();
    let values = points
        .iter()
        .flat_map(|p| [Some(p.2), p.3])
        .flatten()
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.1f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Mbit/s below 1 matter here: scale by 1000 so the log helpers (which floor at 1) keep
    // them, and label in Mbit/s.
    let (ylo, yhi) = decades(lo.min(hi) * 1e3, hi * 1e3);
    let mut tick = ylo;
    while tick <= yhi * 1.0001 {
        let y = log_pos(tick, ylo, yhi, BOTTOM, TOP);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            tick / 1e3
        );
        tick *= 10.0;
    }
    let slot = (RIGHT - LEFT) / losses.len().max(1) as f64;
    let x_of = |loss: f64| {
        let i = losses.iter().position(|l| *l == loss).unwrap_or(0);
        LEFT + slot * (i as f64 + 0.5)
    };
    for &loss in &losses {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{loss}%</text>"#,
            x_of(loss),
            BOTTOM + 18.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">loss, each way</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 40.0
    );
    let y_of = |v: f64| log_pos(v * 1e3, ylo, yhi, BOTTOM, TOP);
    for (i, &rtt) in rtts.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<&(f64, f64, f64, Option<f64>)> =
            points.iter().filter(|p| p.0 == rtt).collect();
        let measured: Vec<String> = line
            .iter()
            .map(|p| format!("{:.1},{:.1}", x_of(p.1), y_of(p.2)))
            .collect();
        let bound: Vec<String> = line
            .iter()
            .filter_map(|p| Some(format!("{:.1},{:.1}", x_of(p.1), y_of(p.3?))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-dasharray="5,4"/>"#,
            bound.join(" ")
        );
        series(
            &mut svg,
            &measured,
            i,
            &format!("RTT {rtt} ms (dashed: Mathis)"),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Packets/s per driver, test and frame size, as bars.
pub fn driver_svg(rows: &[Row]) -> String {
    let mut svg = String::new();
    header(&mut svg, "sirocco drivers: packets/s", "packets/s");
    let bars: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                format!(
                    "{} {} {}",
                    r.get_str("driver")?,
                    r.get_str("test")?,
                    r.get_f64("frame_bytes")?
                ),
                r.get_f64("packets_per_sec")?,
            ))
        })
        .collect();
    let (ylo, yhi) = decades(
        bars.iter().map(|b| b.1).fold(f64::MAX, f64::min).min(1e4),
        bars.iter().map(|b| b.1).fold(1.0, f64::max),
    );
    y_axis(&mut svg, ylo, yhi);
    let slot = (RIGHT - LEFT) / bars.len().max(1) as f64;
    for (i, (label, pps)) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let y = log_pos(*pps, ylo, yhi, BOTTOM, TOP);
        let driver = label.split(' ').next().unwrap_or("");
        let color = match driver {
            "memory" => COLORS[0],
            "tap" => COLORS[1],
            _ => COLORS[2],
        };
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{}" transform="rotate(60 {:.1} {})" font-size="9">{label}</text>"#,
            slot * 0.7,
            BOTTOM - y,
            x + 2.0,
            BOTTOM + 10.0,
            x + 2.0,
            BOTTOM + 10.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svgs_are_well_formed_and_carry_every_point() {
        let stack: Vec<Row> = [(10, 1.3e6), (1000, 1.1e6)]
            .iter()
            .map(|&(c, r)| Row {
                json: serde_json::json!({"scenario": "keepalive-512", "connections": c, "requests_per_sec": r}),
            })
            .collect();
        let svg = stack_svg(&stack);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 2);
        let drivers = vec![Row {
            json: serde_json::json!({"driver": "memory", "test": "echo", "frame_bytes": 64, "packets_per_sec": 5e6}),
        }];
        assert_eq!(driver_svg(&drivers).matches("<rect x=").count(), 1);
        let loss: Vec<Row> = [(0.0, 900.0, None), (1.0, 20.0, Some(14.25))]
            .iter()
            .map(|&(loss, goodput, mathis)| Row {
                json: serde_json::json!({"loss": loss, "rtt_ms": 10, "goodput_mbps": goodput, "mathis_mbps": mathis}),
            })
            .collect();
        let svg = loss_svg(&loss);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert_eq!(svg.matches("stroke-dasharray").count(), 1);
    }
}
