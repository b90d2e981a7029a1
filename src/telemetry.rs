//! Logging setup and the in-process metrics registry behind `GET /metrics`.
//!
//! Metrics are a small hand-written registry (counters and sums keyed by name and labels) rendered in the
//! Prometheus text format; the bridge needs a handful of series, not a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::LogFormat;

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`), text or JSON lines on stdout.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    // `try_init` fails only when a subscriber is already installed (embedding, tests): keep that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// One series: metric name plus sorted label pairs.
type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// Shared, cloneable metrics registry.
#[derive(Clone, Default)]
pub struct Metrics {
    series: Arc<Mutex<BTreeMap<SeriesKey, f64>>>,
}

/// Help texts of every series the registry can hold (also fixes their order in the output).
const HELP: &[(&str, &str, &str)] = &[
    (
        "bridge_upstream_calls_total",
        "counter",
        "Calls to Chatwoot or RyzeAPI by operation and outcome (ok, HTTP status, transport_error).",
    ),
    ("bridge_upstream_call_seconds_sum", "counter", "Total seconds spent in those calls."),
];

impl Metrics {
    /// Records one call to an upstream (`chatwoot` or `ryzeapi`).
    pub fn observe_call(&self, target: &str, operation: &'static str, outcome: &str, elapsed: Duration) {
        let labels =
            vec![("operation", operation.to_owned()), ("outcome", outcome.to_owned()), ("target", target.to_owned())];
        self.add("bridge_upstream_calls_total", labels.clone(), 1.0);
        self.add("bridge_upstream_call_seconds_sum", labels, elapsed.as_secs_f64());
    }

    fn add(&self, name: &'static str, labels: Vec<(&'static str, String)>, value: f64) {
        if let Ok(mut series) = self.series.lock() {
            *series.entry((name, labels)).or_insert(0.0) += value;
        }
    }

    /// Sum of a counter over all label sets whose labels include `filter`.
    pub fn total(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        let Ok(series) = self.series.lock() else { return 0.0 };
        series
            .iter()
            .filter(|((n, labels), _)| {
                *n == name && filter.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Prometheus text: the registry's series followed by `gauges` computed by the caller at scrape time.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        let snapshot = self.series.lock().map(|s| s.clone()).unwrap_or_default();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((_, labels), value) in snapshot.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{name}{} {value}", format_labels(labels.iter().map(|(k, v)| (*k, v.as_str()))));
            }
        }
        let mut last_name = "";
        for gauge in gauges {
            if gauge.name != last_name {
                let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", gauge.name, gauge.help, gauge.name);
                last_name = gauge.name;
            }
            let _ = writeln!(
                out,
                "{}{} {}",
                gauge.name,
                format_labels(gauge.labels.iter().map(|(k, v)| (*k, v.as_str()))),
                gauge.value
            );
        }
        out
    }
}

/// A value computed at scrape time (integrations by status, queue depths, …).
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

fn format_labels<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = labels
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.observe_call("chatwoot", "profile", "ok", Duration::from_millis(500));
        m.observe_call("chatwoot", "profile", "ok", Duration::from_millis(500));
        m.observe_call("chatwoot", "create_inbox", "401", Duration::from_millis(10));
        let text = m.render(&[Gauge {
            name: "bridge_integrations",
            help: "x",
            labels: vec![("status", "active".into())],
            value: 2.0,
        }]);
        assert!(
            text.contains(r#"bridge_upstream_calls_total{operation="profile",outcome="ok",target="chatwoot"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bridge_upstream_call_seconds_sum{operation="profile",outcome="ok",target="chatwoot"} 1"#),
            "{text}"
        );
        assert!(text.contains("# TYPE bridge_integrations gauge\nbridge_integrations{status=\"active\"} 2"), "{text}");
        assert_eq!(m.total("bridge_upstream_calls_total", &[("target", "chatwoot")]), 3.0);
        assert_eq!(m.total("bridge_upstream_calls_total", &[("outcome", "401")]), 1.0);
    }
}
