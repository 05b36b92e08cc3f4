//! `report.html`: one self-contained page with inline SVG charts drawn by
//! plotters, the comparison tables and the claims. It loads nothing from the
//! network, so it opens the same on an air-gapped machine.

use std::fmt::Write;

use commlab_api::results::{ClaimVerdict, TimelineRow};
use plotters::prelude::*;

use super::{
    FaultWindow, PatternReport, Report, ReportError,
    format::{format_ms, format_ratio, format_rps},
    table::{Grid, all_claims, availability_grid, not_applied_lines, summary_grid, verdict_label},
    topology::LinkPath,
};

const CHART_SIZE: (u32, u32) = (760, 260);
/// Fill of the shaded fault windows, drawn at [`SHADE_OPACITY`].
pub(crate) const SHADE: RGBColor = RGBColor(0xF5, 0x9E, 0x0B);
const SHADE_OPACITY: f64 = 0.25;
const P50_COLOR: RGBColor = RGBColor(0x25, 0x63, 0xEB);
const P99_COLOR: RGBColor = RGBColor(0xDC, 0x26, 0x26);
const SUCCESS_COLOR: RGBColor = RGBColor(0x05, 0x96, 0x69);
/// Lowest latency the logarithmic axis shows, in milliseconds.
const LATENCY_FLOOR_MS: f64 = 0.1;

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1f2937; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; }
.meta { color: #4b5563; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 0.25rem 0.6rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
.note { color: #6b7280; font-size: 0.85rem; }
.not-applied { color: #b45309; }
.claims { list-style: none; padding: 0; }
.claims li { margin: 0.5rem 0; padding-left: 0.6rem; border-left: 4px solid #9ca3af; }
.claims li.confirmed { border-color: #059669; }
.claims li.contradicted { border-color: #dc2626; }
.verdict { font-weight: 700; text-transform: uppercase; font-size: 0.8rem; margin-right: 0.4rem; }
.evidence { color: #4b5563; font-size: 0.9rem; }
svg.chart { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
.swatch { display: inline-block; width: 0.9rem; height: 0.9rem; background: rgba(245, 158, 11, 0.25); border: 1px solid #f59e0b; vertical-align: middle; }
section.pattern { border-top: 2px solid #e5e7eb; margin-top: 2rem; }
";

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn chart_error(
    pattern: &PatternReport,
    chart: &'static str,
    error: impl std::fmt::Display,
) -> ReportError {
    ReportError::Chart {
        pattern: pattern.pattern,
        chart,
        message: error.to_string(),
    }
}

/// The seconds the x axis spans: the timeline and every fault window.
fn x_range(timeline: &[TimelineRow], windows: &[FaultWindow]) -> f64 {
    let last_second = timeline
        .iter()
        .map(|r| f64::from(r.second) + 1.0)
        .fold(0.0, f64::max);
    let last_window = windows.iter().map(|w| w.to_s).fold(0.0, f64::max);
    last_second.max(last_window).max(1.0)
}

/// Makes plotters' standalone SVG an inline element of the page: drops the
/// XML namespace (implied in HTML) and labels it for screen readers.
fn inline_svg(svg: &str, label: &str) -> String {
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    svg.replacen(
        "<svg ",
        &format!(
            "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" ",
            escape(label)
        ),
        1,
    )
}

/// Checkouts answered with 2xx in time, per second, in percent.
fn success_chart(pattern: &PatternReport) -> Result<String, ReportError> {
    let error = |e| chart_error(pattern, "success ratio", e);
    let timeline = &pattern.timeline;
    let x_max = x_range(timeline, &pattern.fault_windows);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: checkouts answered in time", pattern.pattern),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..x_max, 0.0..105.0)
            .map_err(error)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}%"))
            .x_desc("seconds since the measured run started")
            .y_desc("of scheduled checkouts")
            .draw()
            .map_err(error)?;
        draw_windows(&mut chart, &pattern.fault_windows, 0.0, 105.0).map_err(error)?;
        let points = timeline.iter().filter(|r| r.offered > 0).map(|r| {
            (
                f64::from(r.second),
                100.0 * f64::from(r.ok) / f64::from(r.offered),
            )
        });
        chart
            .draw_series(LineSeries::new(points, SUCCESS_COLOR.stroke_width(2)))
            .map_err(error)?;
        root.present().map_err(error)?;
    }
    Ok(inline_svg(
        &svg,
        &format!("{}: success ratio over time", pattern.pattern),
    ))
}

/// Response latency p50 and p99 per second, on a logarithmic axis so the
/// baseline stays readable beside timeouts.
fn latency_chart(pattern: &PatternReport) -> Result<String, ReportError> {
    let error = |e| chart_error(pattern, "latency", e);
    let timeline = &pattern.timeline;
    let x_max = x_range(timeline, &pattern.fault_windows);
    let y_max = timeline
        .iter()
        .flat_map(|r| [r.p50_ms, r.p99_ms])
        .filter(|ms| ms.is_finite())
        .fold(10.0, f64::max)
        * 2.0;
    let measured = |r: &&TimelineRow| r.offered > 0 && r.p50_ms.is_finite() && r.p99_ms.is_finite();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{}: response latency", pattern.pattern),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x_max, (LATENCY_FLOOR_MS..y_max).log_scale())
            .map_err(error)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format_ms(*y))
            .x_desc("seconds since the measured run started")
            .y_desc("logarithmic")
            .draw()
            .map_err(error)?;
        draw_windows(&mut chart, &pattern.fault_windows, LATENCY_FLOOR_MS, y_max).map_err(error)?;
        for (name, color, value) in [
            (
                "p50",
                P50_COLOR,
                (|r: &TimelineRow| r.p50_ms) as fn(&TimelineRow) -> f64,
            ),
            ("p99", P99_COLOR, |r: &TimelineRow| r.p99_ms),
        ] {
            let points = timeline
                .iter()
                .filter(measured)
                .map(|r| (f64::from(r.second), value(r).max(LATENCY_FLOOR_MS)));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(error)?;
        root.present().map_err(error)?;
    }
    Ok(inline_svg(
        &svg,
        &format!(
            "{}: response latency p50 and p99 over time",
            pattern.pattern
        ),
    ))
}

/// Shades each fault window across the plot's height and names it.
fn draw_windows<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    windows: &[FaultWindow],
    y_low: f64,
    y_high: f64,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart.draw_series(windows.iter().map(|w| {
        Rectangle::new(
            [(w.from_s, y_low), (w.to_s, y_high)],
            SHADE.mix(SHADE_OPACITY).filled(),
        )
    }))?;
    chart.draw_series(windows.iter().map(|w| {
        Text::new(
            w.name.clone(),
            (w.from_s, y_high),
            ("sans-serif", 12).into_font().color(&BLACK),
        )
    }))?;
    Ok(())
}

fn write_grid(out: &mut String, grid: &Grid) {
    let _ = writeln!(out, "<table>\n<caption>{}</caption>", escape(&grid.title));
    out.push_str("<thead><tr>");
    for header in &grid.headers {
        let _ = write!(out, "<th>{}</th>", escape(header));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &grid.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    for note in &grid.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(note));
    }
}

fn verdict_class(verdict: ClaimVerdict) -> &'static str {
    match verdict {
        ClaimVerdict::Confirmed => "confirmed",
        ClaimVerdict::Contradicted => "contradicted",
        ClaimVerdict::NotMeasured => "not-measured",
    }
}

fn write_claims(out: &mut String, report: &Report) {
    let claims = all_claims(report);
    if claims.is_empty() {
        return;
    }
    out.push_str("<h2>Claims from the article</h2>\n<ul class=\"claims\">\n");
    for (pattern, claim) in claims {
        let about = pattern.map(|p| format!("[{p}] ")).unwrap_or_default();
        let _ = writeln!(
            out,
            "<li class=\"{}\" id=\"claim-{}\"><span class=\"verdict\">{}</span>{}{}<div class=\"evidence\">{}</div></li>",
            verdict_class(claim.verdict),
            escape(&format!(
                "{}{}",
                pattern.map(|p| format!("{p}-")).unwrap_or_default(),
                claim.id
            )),
            escape(verdict_label(claim.verdict)),
            escape(&about),
            escape(&claim.statement),
            escape(&claim.evidence)
        );
    }
    out.push_str("</ul>\n");
}

fn write_pattern(out: &mut String, pattern: &PatternReport) -> Result<(), ReportError> {
    let name = pattern.pattern.as_str();
    let _ = writeln!(
        out,
        "<section class=\"pattern\" id=\"pattern-{name}\">\n<h2>{name}</h2>"
    );
    let topology = &pattern.topology;
    let components = topology
        .components
        .iter()
        .map(|c| format!("{} ({} x{})", c.name.as_str(), c.technology, c.replicas))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "<p><b>Deployed:</b> {}</p>", escape(&components));
    out.push_str("<ul>\n");
    for link in &topology.links {
        let path = match link.path {
            LinkPath::Response => "on the response path",
            LinkPath::Completion => "on the completion path",
            LinkPath::Background => "in the background",
        };
        let _ = writeln!(
            out,
            "<li>{} &rarr; {} over {}{}, {}: {}</li>",
            link.from.as_str(),
            link.to.as_str(),
            link.protocol.as_str(),
            if link.asynchronous {
                " (asynchronous)"
            } else {
                ""
            },
            path,
            escape(&link.purpose)
        );
    }
    out.push_str("</ul>\n");
    if let Some(capacity) = pattern.capacity_rps {
        let _ = writeln!(
            out,
            "<p><b>Capacity:</b> {}</p>",
            escape(&format_rps(capacity))
        );
    }
    if !pattern.faults.is_empty() {
        let grid = Grid {
            title: format!("{name} under each fault"),
            headers: [
                "fault",
                "kind",
                "target",
                "available",
                "priced",
                "resp p99",
                "done p99",
                "stale",
                "recovery",
            ]
            .map(str::to_owned)
            .to_vec(),
            rows: pattern
                .faults
                .iter()
                .map(|f| {
                    vec![
                        f.name.clone(),
                        f.fault.to_string(),
                        f.target.to_string(),
                        format_ratio(f.availability),
                        format_ratio(f.completed_ratio),
                        format_ms(f.response_ms.p99),
                        format_ms(f.completion_ms.p99),
                        format_ratio(f.stale_ratio),
                        f.recovery_s
                            .map_or_else(|| "never".to_owned(), |s| format_ms(s * 1000.0)),
                    ]
                })
                .collect(),
            notes: Vec::new(),
        };
        write_grid(out, &grid);
    }
    for line in not_applied_lines(pattern) {
        let _ = writeln!(out, "<p class=\"not-applied\">{}</p>", escape(&line));
    }
    out.push_str(&success_chart(pattern)?);
    out.push_str(&latency_chart(pattern)?);
    if !pattern.fault_windows.is_empty() {
        let windows = pattern
            .fault_windows
            .iter()
            .map(|w| format!("{} {}-{} s", escape(&w.name), w.from_s, w.to_s))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "<p class=\"note\"><span class=\"swatch\"></span> fault windows: {windows}</p>"
        );
    }
    out.push_str("</section>\n");
    Ok(())
}

/// The whole report as one self-contained HTML page.
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<title>commlab report {}</title>",
        escape(&report.started_at)
    );
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    out.push_str("<h1>commlab report</h1>\n");
    let m = &report.machine;
    let host = m.hostname_suffix();
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} &middot; started {} &middot; {} cores, {} MiB, {}{}</p>",
        escape(&report.schema),
        escape(&report.started_at),
        m.cores,
        m.memory_mib,
        escape(&m.os),
        escape(&host)
    );
    let w = &report.workload;
    let _ = writeln!(
        out,
        "<p class=\"meta\">{} checkouts/s for {} after {} warm-up, {} products, {} price changes/s, request timeout {}{}</p>",
        w.rate,
        escape(w.duration.as_str()),
        escape(w.warmup.as_str()),
        w.products,
        w.update_rate,
        escape(w.request_timeout.as_str()),
        if w.capacity_probe {
            ", capacity probe"
        } else {
            ""
        }
    );
    write_grid(&mut out, &summary_grid(report));
    if let Some(grid) = availability_grid(report) {
        write_grid(&mut out, &grid);
    }
    write_claims(&mut out, report);
    for pattern in &report.patterns {
        write_pattern(&mut out, pattern)?;
    }
    out.push_str("<p class=\"note\">Patterns and claims from \"Comparing Techniques for Communicating Between Services\" (Steve Smith, 2021). Score formulas: docs/report.md.</p>\n");
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::comparison;
    use super::*;

    fn shade_fill() -> String {
        format!("fill=\"#{:02X}{:02X}{:02X}\"", SHADE.0, SHADE.1, SHADE.2)
    }

    #[test]
    fn one_svg_per_chart_two_charts_per_pattern() {
        let report = comparison();
        let html = render_html(&report).unwrap();
        assert_eq!(html.matches("<svg").count(), 2 * report.patterns.len());
        assert_eq!(html.matches("</svg>").count(), 2 * report.patterns.len());
        for pattern in &report.patterns {
            assert!(html.contains(&format!("id=\"pattern-{}\"", pattern.pattern)));
            assert!(html.contains(&format!(
                "aria-label=\"{}: success ratio over time\"",
                pattern.pattern
            )));
        }
    }

    #[test]
    fn fault_windows_are_shaded_in_every_chart() {
        let report = comparison();
        let html = render_html(&report).unwrap();
        // One window per pattern, shaded in both of its charts.
        let shaded = html.matches(&shade_fill()).count();
        assert_eq!(
            shaded,
            2 * report.patterns.len(),
            "{shaded} shaded rectangles"
        );
        assert!(html.contains(&format!("opacity=\"{SHADE_OPACITY}\" {}", shade_fill())));
        assert!(html.contains("fault windows: catalog-down 20-35 s"));
        let mut quiet = report.clone();
        for pattern in &mut quiet.patterns {
            pattern.fault_windows.clear();
        }
        assert_eq!(
            render_html(&quiet).unwrap().matches(&shade_fill()).count(),
            0
        );
    }

    #[test]
    fn page_is_self_contained() {
        let html = render_html(&comparison()).unwrap();
        assert!(!html.contains("http://"), "http:// reference in the page");
        assert!(!html.contains("https://"), "https:// reference in the page");
        for loader in ["<script", "<link", "<img", "@import", "url("] {
            assert!(!html.contains(loader), "{loader} in the page");
        }
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn page_has_the_tables_and_every_claim() {
        let report = comparison();
        let html = render_html(&report).unwrap();
        assert!(html.contains("<caption>Baseline latency"));
        assert!(html.contains("<caption>Availability of orders under each fault</caption>"));
        for (_, claim) in all_claims(&report) {
            assert!(
                html.contains(&escape(&claim.statement)),
                "{}",
                claim.statement
            );
            assert!(
                html.contains(&escape(&claim.evidence)),
                "{}",
                claim.evidence
            );
        }
        assert!(html.contains("class=\"confirmed\""));
    }

    #[test]
    fn a_fault_not_applied_is_named_with_its_reason_and_not_shaded() {
        use commlab_api::{FaultKind, Target};

        let mut report = comparison();
        let first = &mut report.patterns[0];
        first.faults.clear();
        first.fault_windows.clear();
        first.faults_not_applied = vec![super::super::fixtures::not_applied(
            "catalog-down",
            FaultKind::Outage,
            Target::Catalog,
        )];
        let html = render_html(&report).unwrap();
        let line = format!(
            "<p class=\"not-applied\">`catalog-down` for {}: not applied: Chaos Mesh failed to inject it \
             into lab/shop-catalog-1: Error: Specified qdisc kind is unknown.</p>",
            report.patterns[0].pattern
        );
        assert!(html.contains(&line), "{html}");
        assert!(html.contains("<td>not applied</td>"));
        assert_eq!(
            html.matches(&shade_fill()).count(),
            2 * (report.patterns.len() - 1),
            "the window of a fault not applied is not shaded"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<b a="1">&'"#),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
        let mut report = comparison();
        report.started_at = "<script>alert(1)</script>".into();
        report.machine.hostname = Some("\"evil\" & <host>".into());
        report.patterns[0].fault_windows[0].name = "<i>window</i>".into();
        report.patterns[0].claims[0].evidence = "a < b & c > d".into();
        let html = render_html(&report).unwrap();
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<i>window</i>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;evil&quot; &amp; &lt;host&gt;"));
        assert!(html.contains("a &lt; b &amp; c &gt; d"));
    }

    #[test]
    fn odd_figures_still_draw() {
        let mut report = comparison();
        let timeline = &mut report.patterns[0].timeline;
        timeline[3].p99_ms = f64::INFINITY;
        timeline[4].p50_ms = f64::NAN;
        timeline[5].offered = 0;
        timeline[6].p50_ms = 0.0;
        let html = render_html(&report).unwrap();
        assert!(!html.contains("NaN") && !html.contains("=\"inf"));
    }

    #[test]
    fn empty_timelines_still_draw() {
        let mut report = comparison();
        for pattern in &mut report.patterns {
            pattern.timeline.clear();
            pattern.fault_windows.clear();
        }
        let html = render_html(&report).unwrap();
        assert_eq!(html.matches("<svg").count(), 2 * report.patterns.len());
    }
}
