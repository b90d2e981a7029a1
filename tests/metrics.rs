//! `GET /metrics` as a scraper sees it: the real bridge relays one message each way, then the whole
//! exposition is parsed by a strict parser (OpenMetrics, as Prometheus asks for it, and the text format
//! 0.0.4 for everyone else), the histograms are checked, no secret shows, and every series the Grafana
//! dashboard and the alerting guide name is really exposed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use openmetrics_parser::{HistogramValue, MetricFamily, OpenMetricsType, OpenMetricsValue, PrometheusType};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const CUSTOMER: &str = "5511999998888@s.whatsapp.net";
const WAIT: Duration = Duration::from_secs(6);
/// What Prometheus sends (scrape_protocols' default order).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `GET /metrics` with `accept` (none: like curl); the content type and the body.
async fn scrape(stack: &Stack, accept: Option<&str>) -> (String, String) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut request = client.get(format!("{}/metrics", stack.bridge.url));
    if let Some(accept) = accept {
        request = request.insert_header(("accept", accept));
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    let body = response.body().limit(16 * 1024 * 1024).await.unwrap();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// A stack with one message relayed each way (a customer's message to Chatwoot, the agent's reply to
/// WhatsApp), both recorded done. Returns it and the secrets it holds.
async fn relayed_both_ways() -> (Stack, Vec<String>) {
    let stack = Stack::start(BRIDGE).await;
    let instance_token = activation("suporte", "")["instanceToken"].as_str().unwrap().to_owned();
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", WAIT).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0MET01", CUSTOMER, "Maria", "Olá")).unwrap();
    let chatwoot = &stack.chatwoot;
    eventually("the customer's message in Chatwoot", WAIT, || chatwoot.message_count() == 1).await;
    let conversation = chatwoot.conversations()[0].display_id;
    chatwoot.agent_reply(conversation, "Olá, Maria", false).unwrap();
    let sim = &stack.ryzeapi;
    eventually("the reply sent to WhatsApp", WAIT, || {
        sim.requests("suporte").iter().any(|c| c.path.starts_with("/api/message/") && c.status == 200)
    })
    .await;
    // Both rows recorded done (the histograms are observed when the outcome is recorded).
    let bridge = &stack.bridge;
    eventually_async("both messages recorded", WAIT, || async {
        let view = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await.1;
        view["queues"]["to_chatwoot_pending"] == 0
            && view["queues"]["to_whatsapp_pending"] == 0
            && view["totals"]["messages_to_whatsapp"].as_u64() >= Some(1)
    })
    .await;
    // The outcome is stored a moment before it is observed: wait for the scrape to show both.
    let stack_ref = &stack;
    eventually_async("both messages observed", WAIT, || async {
        let (_, text) = scrape(stack_ref, None).await;
        ["to_chatwoot", "to_whatsapp"].iter().all(|direction| {
            let series = format!("bridge_message_latency_seconds_count{{direction=\"{direction}\",outcome=\"done\"}} ");
            text.lines().any(|l| l.strip_prefix(series.as_str()).is_some_and(|n| n != "0"))
        })
    })
    .await;
    let inbox = stack.chatwoot.inboxes().into_iter().next().unwrap();
    let webhook_secret = inbox.webhook_url.rsplit('/').next().unwrap().to_owned();
    let secrets = vec![
        ADMIN.to_owned(),
        AGENT.to_owned(),
        instance_token,
        webhook_secret,
        inbox.secret.clone(),
        stack.bridge.token.clone(),
    ];
    (stack, secrets)
}

fn label<V: openmetrics_parser::RenderableMetricValue + Clone>(
    sample: &openmetrics_parser::Sample<V>,
    name: &str,
) -> Option<String> {
    sample.get_labelset().ok()?.get_label_value(name).map(str::to_owned)
}

/// Buckets non-decreasing, ending in `+Inf` whose count is the histogram's count.
fn assert_cumulative(name: &str, histogram: &HistogramValue) {
    let buckets = &histogram.buckets;
    assert!(buckets.len() >= 10, "{name}: {} buckets", buckets.len());
    for pair in buckets.windows(2) {
        assert!(pair[0].upper_bound < pair[1].upper_bound, "{name}: bounds rise: {buckets:?}");
        assert!(pair[0].count.as_f64() <= pair[1].count.as_f64(), "{name}: cumulative: {buckets:?}");
    }
    let last = buckets.last().unwrap();
    assert_eq!(last.upper_bound, f64::INFINITY, "{name}: ends in +Inf: {buckets:?}");
    assert_eq!(Some(last.count.as_f64() as u64), histogram.count, "{name}: +Inf counts everything");
    assert!(histogram.sum.is_some(), "{name}: has a sum");
}

/// The histogram samples of `family` whose labels include `wanted`, by their count.
fn histogram_counts(
    families: &std::collections::HashMap<String, MetricFamily<OpenMetricsType, OpenMetricsValue>>,
    family: &str,
    wanted: &[(&str, &str)],
) -> Vec<u64> {
    let family_value = families.get(family).unwrap_or_else(|| panic!("{family} is exposed"));
    assert_eq!(family_value.family_type, OpenMetricsType::Histogram, "{family}");
    family_value
        .iter_samples()
        .filter(|s| wanted.iter().all(|(k, v)| label(s, k).as_deref() == Some(*v)))
        .map(|s| match &s.value {
            OpenMetricsValue::Histogram(h) => {
                assert_cumulative(family, h);
                h.count.unwrap_or_default()
            }
            other => panic!("{family}: {other:?}"),
        })
        .collect()
}

/// Names of the samples (`name{…} value` lines) of a text exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Every `bridge_…` series name in `text`.
fn series_named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bridge_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[actix_web::test]
async fn the_exposition_parses_with_histograms_each_way_and_no_secret() {
    let (stack, secrets) = relayed_both_ways().await;

    // OpenMetrics, as Prometheus asks for it.
    let (content_type, openmetrics) = scrape(&stack, Some(PROMETHEUS_ACCEPT)).await;
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&openmetrics)
        .unwrap_or_else(|e| panic!("OpenMetrics does not parse: {e:?}\n{openmetrics}"));
    let families = &parsed.families;

    let calls =
        |target: &str| histogram_counts(families, "bridge_upstream_call_duration_seconds", &[("target", target)]);
    assert!(calls("chatwoot").iter().sum::<u64>() >= 3, "contact, conversation, message…:\n{openmetrics}");
    assert!(calls("ryzeapi").iter().sum::<u64>() >= 1, "the reply's send:\n{openmetrics}");
    for direction in ["to_chatwoot", "to_whatsapp"] {
        let done = histogram_counts(
            families,
            "bridge_message_latency_seconds",
            &[("direction", direction), ("outcome", "done")],
        );
        assert_eq!(done.len(), 1, "{direction}");
        assert!(done[0] >= 1, "{direction} latency observed:\n{openmetrics}");
        let failed = histogram_counts(
            families,
            "bridge_message_latency_seconds",
            &[("direction", direction), ("outcome", "failed")],
        );
        assert_eq!(failed, vec![0], "{direction}: the failed series exists from the start, at 0");
        let waited = histogram_counts(families, "bridge_queue_wait_seconds", &[("direction", direction)]);
        assert_eq!(waited.len(), 1, "{direction}");
        assert!(waited[0] >= 1, "{direction} queue wait observed:\n{openmetrics}");
    }
    // Counters are counter families (samples `…_total`), scrape-time values gauges.
    for (family, kind) in [
        ("bridge_upstream_calls", OpenMetricsType::Counter),
        ("bridge_chatwoot_throttled", OpenMetricsType::Counter),
        ("bridge_chatwoot_governed_calls", OpenMetricsType::Counter),
        ("bridge_ready", OpenMetricsType::Gauge),
        ("bridge_ryzeapi_links", OpenMetricsType::Gauge),
        ("bridge_queue_items", OpenMetricsType::Gauge),
        ("bridge_chatwoot_waiting", OpenMetricsType::Gauge),
    ] {
        let found = families.get(family).unwrap_or_else(|| panic!("{family} missing:\n{openmetrics}"));
        assert_eq!(found.family_type, kind, "{family}");
    }
    let links = &families["bridge_ryzeapi_links"];
    let connected: Vec<f64> = links
        .iter_samples()
        .filter(|s| label(s, "state").as_deref() == Some("connected"))
        .map(|s| match &s.value {
            OpenMetricsValue::Gauge(n) => n.as_f64(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(connected, vec![1.0]);

    // The text format 0.0.4, for a client that does not ask (curl, the bench, older scrapers).
    let (content_type, text) = scrape(&stack, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("the text format does not parse: {e:?}\n{text}"));
    for (family, kind) in [
        ("bridge_upstream_calls_total", PrometheusType::Counter),
        ("bridge_upstream_call_duration_seconds", PrometheusType::Histogram),
        ("bridge_message_latency_seconds", PrometheusType::Histogram),
        ("bridge_queue_wait_seconds", PrometheusType::Histogram),
        ("bridge_ryzeapi_links", PrometheusType::Gauge),
    ] {
        let found = parsed.families.get(family).unwrap_or_else(|| panic!("{family} missing:\n{text}"));
        assert_eq!(found.family_type, kind, "{family}");
    }
    // The lines the tests and the bench read by name stay as they were.
    assert!(text.contains("bridge_ryzeapi_links{state=\"connected\"} 1\n"), "{text}");
    assert!(text.contains("bridge_ready 1\n"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(
            "bridge_upstream_calls_total{operation=\"create_message\",outcome=\"ok\",target=\"chatwoot\"} "
        )),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with(
            "bridge_upstream_call_seconds_sum{operation=\"send_text\",outcome=\"ok\",target=\"ryzeapi\"} "
        )),
        "{text}"
    );

    for secret in &secrets {
        assert!(!openmetrics.contains(secret.as_str()) && !text.contains(secret.as_str()), "a secret in /metrics");
    }

    // Every series the dashboard and the alerting guide query is one `/metrics` really has.
    let exposed = sample_names(&text);
    let dashboard = read("docs/grafana-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert_eq!(json["schemaVersion"], 39);
    assert_eq!(json["templating"]["list"][0]["type"], "datasource");
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 15, "{exprs:?}");
    let used = series_named(&exprs.join("\n"));
    for wanted in [
        "bridge_message_latency_seconds_bucket",
        "bridge_message_latency_seconds_count",
        "bridge_queue_wait_seconds_bucket",
        "bridge_upstream_call_duration_seconds_bucket",
        "bridge_upstream_calls_total",
        "bridge_queue_items",
        "bridge_ryzeapi_links",
        "bridge_chatwoot_throttled_total",
        "bridge_chatwoot_waiting",
    ] {
        assert!(used.contains(wanted), "the dashboard graphs {wanted}: {used:?}");
    }
    let alerting = read("docs/alerting.md");
    let in_guide = series_named(&alerting);
    assert!(in_guide.len() >= 6, "{in_guide:?}");
    for name in &used {
        assert!(exposed.contains(name), "the dashboard queries {name}, which /metrics does not have:\n{exposed:?}");
    }
    // The guide's prose may name a histogram by its family (`bridge_message_latency_seconds`).
    for name in &in_guide {
        assert!(
            exposed.contains(name) || exposed.contains(&format!("{name}_bucket")),
            "the alerting guide names {name}, which /metrics does not have:\n{exposed:?}"
        );
    }
}
