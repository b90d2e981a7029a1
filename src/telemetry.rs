//! Logging setup and the metrics behind `GET /metrics`.
//!
//! Metrics are kept and written by `prometheus-client`, the official Rust client of the Prometheus
//! authors. It replaced a small hand-written registry (one mutex around a map of sums, written out with
//! `format!`), and it beats that code where it matters:
//! - histograms: fixed buckets, written cumulatively with the `+Inf` bucket, `_sum` and `_count`, so a
//!   dashboard can draw p50/p99 (`histogram_quantile`) and not only a mean — the old registry had sums only;
//! - exposition correctness: OpenMetrics 1.0 (counter families named without `_total`, samples with it,
//!   `# EOF`), which Prometheus asks for first, and the Prometheus text format 0.0.4 for everyone else,
//!   label values escaped, bucket bounds written as Go's client writes them; the old code could write
//!   neither OpenMetrics nor a histogram, and typed `…_seconds_sum` as a counter (OpenMetrics counters'
//!   samples end in `_total`);
//! - maintained: the format's own people fix conformance (escaping, `+Inf` bounds, `_total` checks came
//!   in recent releases), so the bridge does not have to track the specs itself.
//!
//! On the hot path (every Chatwoot and RyzeAPI call, thousands a second) a call costs, per series, a
//! shared read lock and the hash of a `Copy` label set, plus the histogram's own short lock — no
//! allocation (the old registry built three `String`s and a `Vec` per call under one global mutex): labels
//! are `&'static str` and the status code a number ([`CallOutcome`]). The message histograms have fixed
//! label sets, made up front and held directly (no lookup at all). [`Metrics`] is one `Arc`, cheap to
//! clone into every client.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, NoLabelSet, prometheus_text, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as GaugeMetric;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

/// Bucket bounds (seconds) of one Chatwoot or RyzeAPI call: a millisecond to the longest timeout.
const CALL_BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Bucket bounds (seconds) of a message's way through the bridge and of its wait in the queue: a
/// millisecond to half an hour (retries, outages); longer ones count in `+Inf` only.
const MESSAGE_BUCKETS: [f64; 17] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

/// Which way a message goes: the label value `direction` (the same words as `bridge_queue_items{queue}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A RyzeAPI event (a WhatsApp message, tick, …) relayed to Chatwoot.
    ToChatwoot = 0,
    /// A Chatwoot webhook job (an agent's reply, a delete, …) relayed to WhatsApp.
    ToWhatsapp = 1,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::ToChatwoot, Direction::ToWhatsapp];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToChatwoot => "to_chatwoot",
            Direction::ToWhatsapp => "to_whatsapp",
        }
    }
}

/// How a message's work ended for good: the label value `outcome` of `bridge_message_latency_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Finished {
    Done = 0,
    /// Failed for good (visible on the message and in `bridge_queue_items{state="failed"}`).
    Failed = 1,
}

impl Finished {
    const ALL: [Finished; 2] = [Finished::Done, Finished::Failed];

    fn as_str(self) -> &'static str {
        match self {
            Finished::Done => "done",
            Finished::Failed => "failed",
        }
    }
}

/// The outcome of one upstream call: a word (`ok`, `transport_error`, `retryable`, …) or the HTTP status.
/// A number, not a `String`, so recording a call allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Named(&'static str),
    Status(u16),
}

impl From<&'static str> for CallOutcome {
    fn from(name: &'static str) -> Self {
        CallOutcome::Named(name)
    }
}

impl From<u16> for CallOutcome {
    fn from(status: u16) -> Self {
        CallOutcome::Status(status)
    }
}

impl EncodeLabelValue for CallOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            CallOutcome::Named(name) => EncodeLabelValue::encode(name, encoder),
            CallOutcome::Status(status) => EncodeLabelValue::encode(status, encoder),
        }
    }
}

/// Labels of the upstream call series, in the order they are written (the order the old registry used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: CallOutcome,
    target: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    direction: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// Shared, cloneable metrics: the registry and direct handles on its series.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Series>,
}

struct Series {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    /// The old `bridge_upstream_call_seconds_sum`, kept for the dashboards and the bench that read it.
    call_seconds: Family<CallLabels, GaugeMetric<f64, AtomicU64>>,
    call_duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    /// By `[direction][finished]`.
    message_latency: [[Histogram; 2]; 2],
    /// By `[direction]`.
    queue_wait: [Histogram; 2],
}

impl Default for Series {
    fn default() -> Self {
        let calls = Family::<CallLabels, Counter>::default();
        let call_seconds = Family::<CallLabels, GaugeMetric<f64, AtomicU64>>::default();
        let call_duration = Family::<CallLabels, Histogram, fn() -> Histogram>::new_with_constructor(call_histogram);
        let latency_family = Family::<MessageLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            Histogram::new(MESSAGE_BUCKETS)
        });
        let wait_family = Family::<DirectionLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            Histogram::new(MESSAGE_BUCKETS)
        });
        // Every label set exists from the start (a series at 0 is graphed and alerted on; a missing one is not).
        let message_latency = Direction::ALL.map(|direction| {
            Finished::ALL.map(|finished| {
                latency_family
                    .get_or_create_owned(&MessageLabels { direction: direction.as_str(), outcome: finished.as_str() })
            })
        });
        let queue_wait = Direction::ALL
            .map(|direction| wait_family.get_or_create_owned(&DirectionLabels { direction: direction.as_str() }));

        // Help texts without a final period: the library adds one.
        let mut registry = Registry::default();
        registry.register(
            "bridge_upstream_calls",
            "Calls to Chatwoot or RyzeAPI by operation and outcome (ok, the HTTP status, transport_error, timeout, \
             retryable, unanswered, final)",
            calls.clone(),
        );
        registry.register(
            "bridge_upstream_call_seconds_sum",
            "Seconds spent in those calls, summed (kept for old dashboards; \
             bridge_upstream_call_duration_seconds_sum is the same)",
            call_seconds.clone(),
        );
        registry.register(
            "bridge_upstream_call_duration_seconds",
            "Time of one call to Chatwoot or RyzeAPI, from sending the request to the answer read (or the failure)",
            call_duration.clone(),
        );
        registry.register(
            "bridge_message_latency_seconds",
            "A message's way through the bridge: from its event received on the RyzeAPI link (to_chatwoot) or its \
             Chatwoot webhook stored (to_whatsapp) until its work ended for good (done or failed), retries included",
            latency_family,
        );
        registry.register(
            "bridge_queue_wait_seconds",
            "How long a stored message waited before the bridge first started working on it",
            wait_family,
        );
        Series { registry, calls, call_seconds, call_duration, message_latency, queue_wait }
    }
}

/// Seconds from `since` until now; 0 if `since` is in the future (another replica's clock ahead of ours).
fn seconds_since(since: DateTime<Utc>) -> f64 {
    let micros = (Utc::now() - since).num_microseconds().unwrap_or(i64::MAX);
    (micros.max(0) as f64) / 1_000_000.0
}

impl Metrics {
    /// Records one call to an upstream (`target` = `chatwoot` or `ryzeapi`).
    pub fn observe_call(
        &self,
        target: &'static str,
        operation: &'static str,
        outcome: impl Into<CallOutcome>,
        elapsed: Duration,
    ) {
        let labels = CallLabels { operation, outcome: outcome.into(), target };
        let seconds = elapsed.as_secs_f64();
        let series = &self.inner;
        series.calls.get_or_create(&labels).inc();
        series.call_seconds.get_or_create(&labels).inc_by(seconds);
        series.call_duration.get_or_create(&labels).observe(seconds);
    }

    /// Records a message whose work ended for good; `since` is when it was received (inbound) or its
    /// webhook stored (outbound).
    pub fn observe_message(&self, direction: Direction, finished: Finished, since: DateTime<Utc>) {
        self.inner.message_latency[direction as usize][finished as usize].observe(seconds_since(since));
    }

    /// Records the first start of work on a message stored at `since`.
    pub fn observe_queue_wait(&self, direction: Direction, since: DateTime<Utc>) {
        self.inner.queue_wait[direction as usize].observe(seconds_since(since));
    }

    /// The exposition in `format`: the registry's series followed by `gauges` computed by the caller at
    /// scrape time.
    pub fn render(&self, gauges: Vec<Gauge>, format: Exposition) -> Result<String, std::fmt::Error> {
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(ScrapeValues::new(gauges)));
        let mut out = String::with_capacity(16 * 1024);
        match format {
            Exposition::OpenMetrics => {
                text::encode_registry(&mut out, &self.inner.registry)?;
                text::encode_registry(&mut out, &scraped)?;
                text::encode_eof(&mut out)?;
            }
            Exposition::Text => {
                prometheus_text::encode(&mut out, &self.inner.registry)?;
                prometheus_text::encode(&mut out, &scraped)?;
            }
        }
        Ok(out)
    }
}

/// The two text formats `/metrics` can answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0: what Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: for everyone who does not ask for OpenMetrics.
    Text,
}

impl Exposition {
    /// OpenMetrics when the `Accept` header prefers it (Prometheus sends
    /// `application/openmetrics-text;version=1.0.0,…,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`), else the
    /// text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else { return Exposition::Text };
        let (mut openmetrics, mut plain) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q =
                parts.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.trim().parse::<f64>().ok()).unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= plain { Exposition::OpenMetrics } else { Exposition::Text }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Text => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// A value computed at scrape time (integrations by status, queue depths, …). A name ending in `_total`
/// is a counter (the naming convention: the governor's running totals), any other a gauge.
#[derive(Debug, Clone)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The scrape-time values, written through the library's encoder (one block per name, as both formats
/// want; a stable sort keeps the caller's order within a name).
#[derive(Debug)]
struct ScrapeValues(Vec<Gauge>);

impl ScrapeValues {
    fn new(mut gauges: Vec<Gauge>) -> Self {
        gauges.sort_by_key(|g| g.name);
        ScrapeValues(gauges)
    }
}

/// Integral values are written as integers (`200`, not `200.0`), as the hand-written registry did.
fn integral(value: f64) -> Option<i64> {
    (value.fract() == 0.0 && value.abs() < 9.0e15).then_some(value as i64)
}

impl Collector for ScrapeValues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for block in self.0.chunk_by(|a, b| a.name == b.name) {
            let Some(first) = block.first() else { continue };
            if let Some(counter) = first.name.strip_suffix("_total") {
                let mut family = encoder.encode_descriptor(counter, first.help, None, MetricType::Counter)?;
                for gauge in block {
                    let mut series = family.encode_family(&gauge.labels)?;
                    match integral(gauge.value).and_then(|v| u64::try_from(v).ok()) {
                        Some(v) => series.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
                        None => series.encode_counter::<NoLabelSet, _, f64>(&gauge.value, None)?,
                    }
                }
            } else {
                let mut family = encoder.encode_descriptor(first.name, first.help, None, MetricType::Gauge)?;
                for gauge in block {
                    let mut series = family.encode_family(&gauge.labels)?;
                    match integral(gauge.value) {
                        Some(v) => series.encode_gauge(&v)?,
                        None => series.encode_gauge(&gauge.value)?,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(name: &'static str, labels: Vec<(&'static str, String)>, value: f64) -> Gauge {
        Gauge { name, help: "x.", labels, value }
    }

    fn sample() -> Metrics {
        let m = Metrics::default();
        m.observe_call("chatwoot", "profile", "ok", Duration::from_millis(500));
        m.observe_call("chatwoot", "profile", "ok", Duration::from_millis(500));
        m.observe_call("chatwoot", "create_inbox", 401, Duration::from_millis(10));
        m.observe_message(Direction::ToChatwoot, Finished::Done, Utc::now() - chrono::Duration::milliseconds(30));
        m.observe_queue_wait(Direction::ToWhatsapp, Utc::now() + chrono::Duration::seconds(5));
        m
    }

    #[test]
    fn keeps_the_old_series_and_adds_histograms() {
        let gauges = vec![
            gauge("bridge_integrations", vec![("status", "active".into())], 2.0),
            gauge("bridge_ready", vec![], 1.0),
            gauge("bridge_integrations", vec![("status", "paused".into())], 0.0),
        ];
        let text = sample().render(gauges, Exposition::Text).unwrap();
        for line in [
            r#"bridge_upstream_calls_total{operation="profile",outcome="ok",target="chatwoot"} 2"#,
            r#"bridge_upstream_calls_total{operation="create_inbox",outcome="401",target="chatwoot"} 1"#,
            r#"bridge_upstream_call_seconds_sum{operation="profile",outcome="ok",target="chatwoot"} 1.0"#,
            r#"bridge_upstream_call_duration_seconds_bucket{operation="profile",outcome="ok",target="chatwoot",le="0.25"} 0"#,
            r#"bridge_upstream_call_duration_seconds_bucket{operation="profile",outcome="ok",target="chatwoot",le="0.5"} 2"#,
            r#"bridge_upstream_call_duration_seconds_bucket{operation="profile",outcome="ok",target="chatwoot",le="+Inf"} 2"#,
            r#"bridge_upstream_call_duration_seconds_count{operation="profile",outcome="ok",target="chatwoot"} 2"#,
            r#"bridge_message_latency_seconds_bucket{direction="to_chatwoot",outcome="done",le="0.05"} 1"#,
            r#"bridge_message_latency_seconds_count{direction="to_whatsapp",outcome="failed"} 0"#,
            // A clock ahead of ours counts as no wait, not as a negative one.
            r#"bridge_queue_wait_seconds_bucket{direction="to_whatsapp",le="0.001"} 1"#,
            "# TYPE bridge_integrations gauge\nbridge_integrations{status=\"active\"} 2\nbridge_integrations{status=\"paused\"} 0\n",
            "bridge_ready 1\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn openmetrics_has_counter_families_and_eof() {
        let gauges = vec![
            gauge("bridge_chatwoot_throttled_total", vec![("host", "http://cw".into())], 3.0),
            gauge("bridge_chatwoot_waited_seconds_total", vec![("host", "http://cw".into())], 1.5),
            gauge("bridge_chatwoot_in_flight", vec![("host", "http://\"odd\"".into())], 0.0),
        ];
        let text = sample().render(gauges, Exposition::OpenMetrics).unwrap();
        assert!(text.contains("# TYPE bridge_upstream_calls counter\n"), "{text}");
        assert!(text.contains("# TYPE bridge_chatwoot_throttled counter\n"), "{text}");
        assert!(text.contains("bridge_chatwoot_throttled_total{host=\"http://cw\"} 3\n"), "{text}");
        assert!(text.contains("bridge_chatwoot_waited_seconds_total{host=\"http://cw\"} 1.5\n"), "{text}");
        assert!(
            text.contains(r#"bridge_chatwoot_in_flight{host="http://\"odd\""} 0"#),
            "label values are escaped: {text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn negotiates_like_prometheus() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Exposition::negotiate(Some(prometheus)), Exposition::OpenMetrics);
        assert_eq!(Exposition::negotiate(None), Exposition::Text);
        assert_eq!(Exposition::negotiate(Some("*/*")), Exposition::Text);
        assert_eq!(Exposition::negotiate(Some("text/plain, application/openmetrics-text;q=0.5")), Exposition::Text);
        assert_eq!(Exposition::negotiate(Some("application/openmetrics-text;q=0")), Exposition::Text);
    }
}
