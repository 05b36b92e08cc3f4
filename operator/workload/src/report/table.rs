//! The plain-text comparison for the terminal, readable in 120 columns.

use std::fmt::Write;

use commlab_api::{
    Pattern,
    results::{Claim, ClaimVerdict},
};

use super::{
    PatternReport, Report,
    format::{format_ms, format_ratio, format_score},
};

/// Widest line the table aims for.
pub const WIDTH: usize = 120;

/// A table as cells: the HTML renders the same cells.
pub(crate) struct Grid {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Lines under the table, each its own paragraph.
    pub notes: Vec<String>,
}

/// Baseline latency, consistency and the five scores, one row per pattern.
pub(crate) fn summary_grid(report: &Report) -> Grid {
    let headers = [
        "pattern",
        "resp p50",
        "resp p99",
        "done p50",
        "done p99",
        "stale",
        "stale p99",
        "perf",
        "scal",
        "isol",
        "cplx",
        "cons",
    ];
    let rows = report
        .patterns
        .iter()
        .map(|p| {
            let (b, s) = (&p.baseline, &p.scores);
            vec![
                p.pattern.to_string(),
                format_ms(b.response_ms.p50),
                format_ms(b.response_ms.p99),
                format_ms(b.completion_ms.p50),
                format_ms(b.completion_ms.p99),
                format_ratio(b.stale_ratio),
                format_ms(b.staleness_ms.p99),
                format_score(s.performance),
                format_score(s.scalability),
                format_score(s.isolation),
                format_score(s.complexity),
                format_score(s.consistency),
            ]
        })
        .collect();
    Grid {
        title: "Baseline latency, stale prices and scores (0-100, higher is better)".into(),
        headers: headers.map(str::to_owned).to_vec(),
        rows,
        notes: vec![
            "resp = orders answered, done = checkout priced; scores: performance, scalability, isolation, complexity, consistency"
                .into(),
        ],
    }
}

/// Fault names of all patterns, applied or not, in the order they first appear.
fn fault_names(report: &Report) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for pattern in &report.patterns {
        let applied = pattern.faults.iter().map(|f| &f.name);
        let not_applied = pattern.faults_not_applied.iter().map(|f| &f.name);
        for name in applied.chain(not_applied) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// What a fault that was not applied shows where its figures would be.
pub(crate) const NOT_APPLIED: &str = "not applied";

/// `not applied: <reason>` for each fault of `pattern` that was not applied.
pub(crate) fn not_applied_lines(pattern: &PatternReport) -> Vec<String> {
    pattern
        .faults_not_applied
        .iter()
        .map(|f| {
            format!(
                "`{}` for {}: {NOT_APPLIED}: {}",
                f.name, pattern.pattern, f.reason
            )
        })
        .collect()
}

fn availability_cell(pattern: &PatternReport, name: &str) -> String {
    if pattern.faults_not_applied.iter().any(|f| f.name == name) {
        return NOT_APPLIED.to_owned();
    }
    match pattern.faults.iter().find(|f| f.name == name) {
        None => "-".to_owned(),
        Some(f) if pattern.pattern.completes_asynchronously() => {
            format!(
                "{}/{}",
                format_ratio(f.availability),
                format_ratio(f.completed_ratio)
            )
        }
        Some(f) => format_ratio(f.availability),
    }
}

/// Orders' availability under each fault, one row per pattern; `None`
/// without faults.
pub(crate) fn availability_grid(report: &Report) -> Option<Grid> {
    let names = fault_names(report);
    if names.is_empty() {
        return None;
    }
    let mut headers = vec!["pattern".to_owned()];
    headers.extend(names.iter().cloned());
    let rows = report
        .patterns
        .iter()
        .map(|p| {
            let mut row = vec![p.pattern.to_string()];
            row.extend(names.iter().map(|name| availability_cell(p, name)));
            row
        })
        .collect();
    let asynchronous = report
        .patterns
        .iter()
        .any(|p| p.pattern.completes_asynchronously());
    let legend = if asynchronous {
        format!(
            "{}: accepted / priced by the end of the run; - = fault not run for this pattern",
            Pattern::AsyncMessaging
        )
    } else {
        "- = fault not run for this pattern".to_owned()
    };
    let mut notes = vec![legend];
    notes.extend(report.patterns.iter().flat_map(not_applied_lines));
    Some(Grid {
        title: "Availability of orders under each fault".into(),
        headers,
        rows,
        notes,
    })
}

/// Truncates to `width` characters, marking the cut with `~`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('~');
        cut
    }
}

/// Writes a grid, the first column left-aligned and the rest right-aligned,
/// splitting the columns after the first into blocks that fit `WIDTH`.
fn write_grid(out: &mut String, grid: &Grid) {
    let columns = grid.headers.len();
    let natural = |i: usize| {
        let cells = grid.rows.iter().map(|row| row[i].chars().count());
        cells
            .chain([grid.headers[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let first = natural(0).min(WIDTH / 4);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            if i == 0 {
                first
            } else {
                natural(i).min(WIDTH - first - 2)
            }
        })
        .collect();
    let _ = writeln!(out, "{}", grid.title);
    let mut start = 1;
    while start < columns {
        let mut end = start;
        let mut used = widths[0];
        while end < columns && (end == start || used + 2 + widths[end] <= WIDTH) {
            used += 2 + widths[end];
            end += 1;
        }
        let mut line = |cells: &[String]| {
            let mut text = format!("{:<w$}", fit(&cells[0], widths[0]), w = widths[0]);
            for i in start..end {
                let _ = write!(text, "  {:>w$}", fit(&cells[i], widths[i]), w = widths[i]);
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&grid.headers);
        for row in &grid.rows {
            line(row);
        }
        start = end;
    }
    for note in &grid.notes {
        wrap_into(out, note, "", "");
    }
}

/// Word-wraps `text` to `WIDTH`, the first line after `first`, the rest after `rest`.
fn wrap_into(out: &mut String, text: &str, first: &str, rest: &str) {
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        let prefix = if empty { 0 } else { 1 };
        if !empty && line.chars().count() + prefix + word.chars().count() > WIDTH {
            let _ = writeln!(out, "{line}");
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    let _ = writeln!(out, "{line}");
}

pub(crate) fn verdict_label(verdict: ClaimVerdict) -> &'static str {
    match verdict {
        ClaimVerdict::Confirmed => "confirmed",
        ClaimVerdict::Contradicted => "CONTRADICTED",
        ClaimVerdict::NotMeasured => "not measured",
    }
}

/// Every claim of a report: each pattern's, then the cross-pattern ones,
/// with the pattern they are about (`None` for cross-pattern claims).
pub(crate) fn all_claims(report: &Report) -> Vec<(Option<Pattern>, &Claim)> {
    let per_pattern = report
        .patterns
        .iter()
        .flat_map(|p| p.claims.iter().map(|c| (Some(p.pattern), c)));
    per_pattern
        .chain(report.claims.iter().map(|c| (None, c)))
        .collect()
}

fn write_header(out: &mut String, report: &Report) {
    let m = &report.machine;
    let host = m.hostname_suffix();
    let _ = writeln!(
        out,
        "commlab report {} | started {} | {} cores, {} MiB, {}{host}",
        report.schema, report.started_at, m.cores, m.memory_mib, m.os
    );
    let w = &report.workload;
    let _ = writeln!(
        out,
        "workload: {} checkouts/s for {} after {} warm-up, {} products, {} price changes/s, request timeout {}{}",
        w.rate,
        w.duration,
        w.warmup,
        w.products,
        w.update_rate,
        w.request_timeout,
        if w.capacity_probe {
            ", capacity probe"
        } else {
            ""
        }
    );
}

/// The comparison for the terminal: a latency/score table, an availability
/// table with one column per fault, then every claim with its evidence.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    write_header(&mut out, report);
    out.push('\n');
    write_grid(&mut out, &summary_grid(report));
    if let Some(grid) = availability_grid(report) {
        out.push('\n');
        write_grid(&mut out, &grid);
    }
    let claims = all_claims(report);
    if !claims.is_empty() {
        out.push('\n');
        out.push_str("Claims from the article\n");
        for (pattern, claim) in claims {
            let about = pattern.map(|p| format!("[{p}] ")).unwrap_or_default();
            let first = format!("{:<12}  ", verdict_label(claim.verdict));
            wrap_into(
                &mut out,
                &format!("{about}{}", claim.statement),
                &first,
                &" ".repeat(14),
            );
            wrap_into(&mut out, &claim.evidence, &" ".repeat(14), &" ".repeat(14));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use commlab_api::{FaultKind, Target};

    use super::super::fixtures::{comparison, fault, not_applied};
    use super::*;

    #[test]
    fn table_shows_every_pattern_fault_and_claim() {
        let report = comparison();
        let table = render_table(&report);
        for pattern in Pattern::ALL {
            assert!(
                table.contains(pattern.as_str()),
                "{pattern} missing:\n{table}"
            );
        }
        // Claims are word-wrapped: compare with the line breaks undone.
        let words = table.split_whitespace().collect::<Vec<_>>().join(" ");
        for (_, claim) in all_claims(&report) {
            assert!(
                words.contains(&claim.statement),
                "{} missing:\n{table}",
                claim.statement
            );
            assert!(
                words.contains(&claim.evidence),
                "{} missing:\n{table}",
                claim.evidence
            );
        }
        assert!(table.contains("catalog-down"));
        assert!(table.contains("CONTRADICTED") || table.contains("confirmed"));
        for line in table.lines() {
            assert!(
                line.chars().count() <= WIDTH,
                "too wide ({}): {line}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn rows_carry_the_figures() {
        let table = render_table(&comparison());
        let direct = table
            .lines()
            .find(|l| l.starts_with("DirectApiCall "))
            .unwrap();
        let cells: Vec<_> = direct.split_whitespace().collect();
        assert_eq!(
            &cells[..5],
            ["DirectApiCall", "1.5ms", "7.5ms", "1.5ms", "7.5ms"]
        );
        assert_eq!(cells[cells.len() - 2], "65", "complexity score");
        // The availability table: DirectApiCall was down during the catalog outage.
        let availability = table
            .lines()
            .filter(|l| l.starts_with("DirectApiCall "))
            .nth(1)
            .unwrap();
        assert_eq!(
            availability.split_whitespace().collect::<Vec<_>>(),
            ["DirectApiCall", "2%"]
        );
        let messaging = table
            .lines()
            .filter(|l| l.starts_with("AsyncMessaging "))
            .nth(1)
            .unwrap();
        assert!(messaging.ends_with("100%/100%"), "{messaging}");
    }

    #[test]
    fn many_faults_wrap_into_blocks_within_120_columns() {
        let mut report = comparison();
        for pattern in &mut report.patterns {
            pattern.faults = (0..12)
                .map(|i| {
                    fault(
                        &format!("a-rather-long-fault-{i:02}"),
                        FaultKind::Outage,
                        Target::Catalog,
                        0.5,
                    )
                })
                .collect();
        }
        let table = render_table(&report);
        assert!(table.lines().all(|l| l.chars().count() <= WIDTH));
        for i in 0..12 {
            assert!(
                table.contains(&format!("a-rather-long-fault-{i:02}")),
                "fault {i} missing:\n{table}"
            );
        }
    }

    #[test]
    fn faults_not_run_for_a_pattern_show_a_dash() {
        let mut report = comparison();
        report.patterns[0].faults.push(fault(
            "broker-down",
            FaultKind::Outage,
            Target::Broker,
            1.0,
        ));
        let table = render_table(&report);
        let shared = table
            .lines()
            .filter(|l| l.starts_with("DirectApiCall "))
            .nth(1)
            .unwrap();
        assert!(shared.trim_end().ends_with('-'), "{shared}");
    }

    #[test]
    fn a_fault_not_applied_shows_as_such_with_its_reason() {
        let mut report = comparison();
        let direct = report
            .patterns
            .iter_mut()
            .find(|p| p.pattern == Pattern::DirectApiCall)
            .unwrap();
        direct.faults_not_applied = vec![not_applied(
            "slow-catalog",
            FaultKind::Delay,
            Target::Catalog,
        )];
        let table = render_table(&report);
        let row = table
            .lines()
            .filter(|l| l.starts_with("DirectApiCall "))
            .nth(1)
            .unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["DirectApiCall", "2%", "not", "applied"]
        );
        let other = table
            .lines()
            .filter(|l| l.starts_with("SharedData "))
            .nth(1)
            .unwrap();
        assert!(other.trim_end().ends_with('-'), "{other}");
        let words = table.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains(
                "`slow-catalog` for DirectApiCall: not applied: Chaos Mesh failed to inject it \
                 into lab/shop-catalog-1: Error: Specified qdisc kind is unknown."
            ),
            "{table}"
        );
        assert!(table.lines().all(|l| l.chars().count() <= WIDTH));
    }

    #[test]
    fn long_text_is_wrapped_and_cut() {
        let mut out = String::new();
        wrap_into(&mut out, &"word ".repeat(60), "> ", "  ");
        assert!(out.lines().count() > 1 && out.lines().all(|l| l.len() <= WIDTH));
        assert_eq!(fit("catalog-down", 20), "catalog-down");
        assert_eq!(fit("abcdef", 4), "abc~");
    }
}
