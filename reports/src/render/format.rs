//! How figures read in the renderings. Registered as template filters, so the templates decide
//! where a figure goes and these decide how it reads: one place for units and precision.
//! An absent figure (`None`, or a missing attribute) reads as an em dash everywhere.

use minijinja::Value;

const ABSENT: &str = "—";

/// Milliseconds, with fewer decimals as the figure grows.
pub fn ms(v: Option<f64>) -> String {
    v.map_or(ABSENT.into(), |v| format!("{} ms", sig(v)))
}

/// Seconds.
pub fn secs(v: Option<f64>) -> String {
    v.map_or(ABSENT.into(), |v| format!("{} s", sig(v)))
}

/// A fraction as a percentage (0.021 reads 2.10 %).
pub fn pct(v: Option<f64>) -> String {
    v.map_or(ABSENT.into(), |v| format!("{:.2} %", v * 100.0))
}

/// A rate or count: whole above 100, one decimal below.
pub fn num(v: Option<f64>) -> String {
    v.map_or(ABSENT.into(), sig)
}

/// A ratio, e.g. a gain (7.17×).
pub fn times(v: Option<f64>) -> String {
    v.map_or(ABSENT.into(), |v| format!("{v:.2}×"))
}

/// About three significant figures (whole numbers from 100 up), without trailing zeros past
/// the point: small fractions keep their digits (0.0021, not 0).
fn sig(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 || a == 0.0 || !a.is_finite() {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        ((-a.log10()).floor() as usize + 3).min(8)
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A run's duration from milliseconds: `850 ms`, `12.3 s`, `3 min 02 s`, `1 h 05 min`.
pub fn duration(ms: Option<f64>) -> String {
    let Some(ms) = ms else {
        return ABSENT.into();
    };
    let s = ms / 1000.0;
    match s {
        _ if ms < 1000.0 => format!("{ms:.0} ms"),
        _ if s < 60.0 => format!("{s:.1} s"),
        _ if s < 3600.0 => format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64),
        _ => format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
    }
}

/// ✅/❌/❔ for a validity (`valid`, `invalid`, `unknown`), a claim verdict (`confirmed`,
/// `refuted`, `not-yet-tested`) or a held/passed flag (true, false, none).
pub fn icon(v: Value) -> &'static str {
    if v.is_none() || v.is_undefined() {
        return "❔";
    }
    if let Some(s) = v.as_str() {
        return match s {
            "valid" | "confirmed" => "✅",
            "invalid" | "refuted" => "❌",
            _ => "❔",
        };
    }
    if v.is_true() {
        "✅"
    } else {
        "❌"
    }
}

/// [`icon`] in glyphs that common text fonts carry (DejaVu, Liberation): the HTML page must
/// read on a machine without an emoji font, where ✅ would be a blank box.
pub fn glyph(v: Value) -> &'static str {
    match icon(v) {
        "✅" => "✔",
        "❌" => "✘",
        _ => "?",
    }
}

/// A held/passed flag in words.
pub fn held(v: Value) -> &'static str {
    match icon(v) {
        "✅" => "✅ held",
        "❌" => "❌ broken",
        _ => "❔ undecided",
    }
}

/// A claim verdict or validity in words (`not-yet-tested` reads `not yet tested`).
pub fn words(v: Value) -> String {
    v.as_str().unwrap_or(ABSENT).replace('-', " ")
}

/// Any value as one line of JSON, cut at `max` characters (strings stay unquoted).
pub fn compact(v: Value, max: Option<usize>) -> String {
    let text = match v.as_str() {
        Some(s) => s.to_string(),
        None => serde_json::to_string(&v).unwrap_or_default(),
    };
    cut(&text, max.unwrap_or(200))
}

/// Any value as indented JSON, for counterexamples.
pub fn pretty(v: Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Makes text safe inside a Markdown table cell: a `|` would end the cell and a newline the
/// row.
pub fn cell(v: Value) -> String {
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
    text.replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

/// A path relative to the run directory it came from, made relative to the rendered file's
/// directory by prefixing `base` (the run's directory relative to the top run's). Absolute
/// paths and URLs are left as they are.
pub fn under(path: &str, base: &str) -> String {
    if path.starts_with('/') || path.contains("://") {
        path.to_string()
    } else {
        format!("{base}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_with_their_units() {
        assert_eq!(ms(Some(68.04)), "68 ms");
        assert_eq!(ms(Some(1.5)), "1.5 ms");
        assert_eq!(ms(Some(480.0)), "480 ms");
        assert_eq!(ms(None), "—");
        assert_eq!(pct(Some(0.021)), "2.10 %");
        assert_eq!(num(Some(860.0)), "860");
        assert_eq!(num(Some(0.0021)), "0.0021");
        assert_eq!(num(Some(0.5)), "0.5");
        assert_eq!(times(Some(7.1666)), "7.17×");
        assert_eq!(duration(Some(850.0)), "850 ms");
        assert_eq!(duration(Some(12_340.0)), "12.3 s");
        assert_eq!(duration(Some(88_000.0)), "1 min 28 s");
        assert_eq!(duration(Some(3_900_000.0)), "1 h 05 min");
    }

    #[test]
    fn cells_and_links_are_made_safe() {
        assert_eq!(cell(Value::from("a|b\nc")), "a\\|b<br>c");
        assert_eq!(under("history.jsonl", "chaos/"), "chaos/history.jsonl");
        assert_eq!(under("/tmp/x", "chaos/"), "/tmp/x");
        assert_eq!(compact(Value::from("abcdef"), Some(3)), "abc…");
    }
}
