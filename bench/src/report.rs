//! Figures: percentiles, rates, and the aligned text table every mode prints at its end.

use std::time::Duration;

/// One line of a table: what was measured, its value, the target and whether it was met.
#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub target: String,
    pub verdict: String,
}

/// The figures of one mode.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub rows: Vec<Row>,
    /// Free-text remarks printed under the table (what bound the figure, warnings).
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), rows: Vec::new(), notes: Vec::new() }
    }

    /// A figure without a target.
    pub fn info(&mut self, figure: impl Into<String>, value: impl Into<String>) {
        self.rows.push(Row {
            figure: figure.into(),
            value: value.into(),
            target: String::new(),
            verdict: String::new(),
        });
    }

    /// A figure with a target; `met` decides the verdict.
    pub fn target(
        &mut self,
        figure: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) {
        self.rows.push(Row {
            figure: figure.into(),
            value: value.into(),
            target: target.into(),
            verdict: if met { "met".into() } else { "NOT met".into() },
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Aligned text: `figure | value | target | verdict`.
    pub fn render(&self) -> String {
        let header = Row {
            figure: "figure".into(),
            value: "value".into(),
            target: "target (issue)".into(),
            verdict: "verdict".into(),
        };
        let all: Vec<&Row> = std::iter::once(&header).chain(self.rows.iter()).collect();
        let width = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
        let (w1, w2, w3) = (width(|r| r.figure.as_str()), width(|r| r.value.as_str()), width(|r| r.target.as_str()));
        let mut out = format!("\n== {}\n", self.title);
        for (i, row) in all.iter().enumerate() {
            let line = format!(
                "{:<w1$} | {:<w2$} | {:<w3$} | {}",
                row.figure,
                row.value,
                row.target,
                row.verdict,
                w1 = w1,
                w2 = w2,
                w3 = w3
            );
            out.push_str(line.trim_end());
            out.push('\n');
            if i == 0 {
                out.push_str(&format!(
                    "{}-+-{}-+-{}-+-{}\n",
                    "-".repeat(w1),
                    "-".repeat(w2),
                    "-".repeat(w3),
                    "-------"
                ));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }
}

/// Percentile `p` (0–100) of sorted values, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Sorts a copy ascending (NaN-free input).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Milliseconds with a precision that suits the size.
pub fn ms(value: f64) -> String {
    if value < 10.0 { format!("{value:.2} ms") } else { format!("{value:.1} ms") }
}

pub fn ms_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), ms)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn rate(count: f64, over: Duration) -> f64 {
    let s = over.as_secs_f64();
    if s > 0.0 { count / s } else { 0.0 }
}

pub fn per_s(value: f64) -> String {
    format!("{value:.0} msg/s")
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Rows for a per-second series: its min / median / max, and whether it held up (first vs last 5 s).
pub fn per_second_rows(table: &mut Table, figure: &str, per_second: &[f64]) {
    let s = sorted(per_second);
    table.info(
        format!("{figure}: min / median / max"),
        format!(
            "{:.0} / {:.0} / {:.0}",
            s.first().copied().unwrap_or(0.0),
            percentile(&s, 50.0).unwrap_or(0.0),
            s.last().copied().unwrap_or(0.0)
        ),
    );
    let head: f64 = per_second.iter().take(5).sum::<f64>() / per_second.len().clamp(1, 5) as f64;
    let tail: f64 = per_second.iter().rev().take(5).sum::<f64>() / per_second.len().clamp(1, 5) as f64;
    table.info("first 5 s vs last 5 s", format!("{head:.0} → {tail:.0} msg/s"));
}

/// The latency rows (p50/p90/p99/p99.9/max) of a set of millisecond samples.
pub fn latency_rows(table: &mut Table, what: &str, samples_ms: &[f64], p99_target: Option<(f64, &str)>) {
    let s = sorted(samples_ms);
    table.info(format!("{what}: samples"), s.len().to_string());
    for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)] {
        let value = percentile(&s, p);
        match (name, p99_target) {
            ("p99", Some((limit, text))) => {
                table.target(format!("{what}: {name}"), ms_opt(value), text, value.is_some_and(|v| v <= limit));
            }
            _ => table.info(format!("{what}: {name}"), ms_opt(value)),
        }
    }
    table.info(format!("{what}: max"), ms_opt(s.last().copied()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 99.9), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
