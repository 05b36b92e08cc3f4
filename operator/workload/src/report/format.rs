//! How figures are written for people: in the table, the HTML, the claims'
//! evidence and the printer columns.

/// A duration in milliseconds, e.g. `0.4ms`, `12.4ms`, `250ms`, `1.2s`, `125s`.
pub fn format_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".to_owned();
    }
    let ms = ms.max(0.0);
    if ms == 0.0 {
        "0ms".to_owned()
    } else if ms < 99.95 {
        format!("{ms:.1}ms")
    } else if ms < 999.5 {
        format!("{ms:.0}ms")
    } else if ms < 99_950.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format!("{:.0}s", ms / 1000.0)
    }
}

/// A ratio in `0.0..=1.0` as a percentage, e.g. `97.5%`, `100%`, `0%`.
///
/// Never rounds to a figure it did not reach: a ratio just under one is at
/// most `99.99%`, a ratio just over zero at least `0.01%`, so an availability
/// of 0.9999 is not shown as `100%` and a single stale read not as `0%`.
pub fn format_ratio(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "-".to_owned();
    }
    let percent = (ratio * 100.0).clamp(0.0, 100.0);
    let text = if percent == 0.0 || percent == 100.0 {
        format!("{percent:.0}")
    } else if percent < 0.1 {
        format!("{:.2}", percent.max(0.01))
    } else if percent > 99.9 {
        format!("{:.2}", (percent * 100.0).floor() / 100.0)
    } else {
        format!("{percent:.1}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}%")
}

/// A score, or `-` when its axis was not measured.
pub fn format_score(score: Option<f64>) -> String {
    score.map_or_else(|| "-".to_owned(), |score| format!("{score:.0}"))
}

/// A rate in checkouts per second, e.g. `1500/s`.
pub fn format_rps(rps: f64) -> String {
    if rps >= 100.0 {
        format!("{rps:.0}/s")
    } else {
        format!("{rps:.1}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_printer_columns() {
        assert_eq!(format_ms(0.0), "0ms");
        assert_eq!(format_ms(0.42), "0.4ms");
        assert_eq!(format_ms(12.44), "12.4ms");
        assert_eq!(format_ms(99.99), "100ms");
        assert_eq!(format_ms(250.2), "250ms");
        assert_eq!(format_ms(1234.0), "1.2s");
        assert_eq!(format_ms(125_000.0), "125s");
        assert_eq!(format_ms(f64::NAN), "-");
    }

    #[test]
    fn ratios_never_round_to_a_figure_not_reached() {
        assert_eq!(format_ratio(1.0), "100%");
        assert_eq!(format_ratio(0.975), "97.5%");
        assert_eq!(format_ratio(0.99), "99%");
        assert_eq!(format_ratio(0.9999), "99.99%");
        assert_eq!(format_ratio(0.99999), "99.99%");
        assert_eq!(format_ratio(0.0), "0%");
        assert_eq!(format_ratio(0.000_01), "0.01%");
        assert_eq!(format_ratio(0.0004), "0.04%");
        assert_eq!(format_ratio(0.021), "2.1%");
    }

    #[test]
    fn scores_and_rates() {
        assert_eq!(format_score(None), "-");
        assert_eq!(format_score(Some(83.4)), "83");
        assert_eq!(format_rps(1500.4), "1500/s");
        assert_eq!(format_rps(12.34), "12.3/s");
    }
}
