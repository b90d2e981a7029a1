//! The Chatwoot governor (issue 16): every integration on one Chatwoot shares one request budget, and the
//! bridge stays under Rack::Attack's limit instead of bouncing off it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

/// A stack whose bridge governs the fake Chatwoot (on loopback, which Rack::Attack would exempt, so the
/// budget is set for its host explicitly) at `budget` requests a minute, and whose fake refuses beyond
/// `fake_limit` a minute as Rack::Attack does.
async fn governed(budget: u32, fake_limit: u32) -> Stack {
    let mut stack = Stack::start(BRIDGE).await;
    let host = stack.chatwoot.url().trim_start_matches("http://").to_owned();
    stack.bridge.restart_with(&[("BRIDGE_CHATWOOT_RATE_LIMITS", Some(&format!("{host}={budget}")))]).await;
    stack.chatwoot.set_rate_limit(Some(fake_limit));
    stack
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_web::test]
async fn integrations_on_one_chatwoot_share_its_budget_and_are_never_throttled() {
    // Rack::Attack allows 60 a minute and the bridge's budget says so; two integrations offer more than that
    // (about 66 calls: activations, contacts, conversations, 56 messages): the bridge waits, and Chatwoot
    // never has to refuse. Without the governor the same load is refused from the 61st call on.
    let stack = governed(60, 60).await;
    let mut ids = Vec::new();
    for instance in ["loja1", "loja2"] {
        let id = stack.activate(instance).await;
        stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
        ids.push(id);
    }
    for instance in ["loja1", "loja2"] {
        for n in 0..28 {
            let event = sim::text_message(
                instance,
                &format!("3EB0{instance}{n:02}"),
                "5511999990000@s.whatsapp.net",
                "Cliente",
                &format!("m{n}"),
            );
            stack.ryzeapi.send_event(instance, event);
        }
    }
    let chatwoot = &stack.chatwoot;
    eventually("56 messages under a shared budget", Duration::from_secs(110), || chatwoot.message_count() == 56).await;
    let refused = chatwoot.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 0, "the bridge stayed under Rack::Attack's limit");
    assert_eq!(assert_ordered_per_conversation(chatwoot, 'm'), vec![28, 28]);

    let (_, metrics) = request(&format!("{}/metrics", stack.bridge.url), "GET", None, None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert_eq!(metric(&metrics, "bridge_chatwoot_budget_per_minute{"), 60.0, "{metrics}");
    assert!(metric(&metrics, "bridge_chatwoot_waited_seconds_total{") > 10.0, "calls waited their turn");
    assert!(metric(&metrics, "bridge_chatwoot_governed_calls_total{") >= 60.0);
    let view = stack.view(&ids[0]).await;
    assert_eq!(view["governor"]["budget_per_minute"], 60, "{view}");
    assert_eq!(view["governor"]["throttled_total"], 0);
}

#[actix_web::test]
async fn a_429_slows_the_host_and_nothing_is_lost() {
    // Chatwoot allows fewer requests than the bridge believes (RACK_ATTACK_LIMIT lowered, say).
    let stack = governed(3000, 20).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    for n in 0..20 {
        let event = sim::text_message(
            "suporte",
            &format!("3EB0T{n:02}"),
            "5511999998888@s.whatsapp.net",
            "Maria",
            &format!("t{n}"),
        );
        stack.ryzeapi.send_event("suporte", event);
    }
    let bridge = &stack.bridge;
    eventually_async("a 429 seen by the governor", Duration::from_secs(20), || async {
        let (_, metrics) = request(&format!("{}/metrics", bridge.url), "GET", None, None).await;
        metric(metrics.as_str().unwrap_or_default(), "bridge_chatwoot_throttled_total{") >= 1.0
    })
    .await;
    let view = stack.view(&id).await;
    assert!(view["governor"]["rate_per_minute"].as_f64().unwrap() < 3000.0 * 0.97, "the rate was lowered: {view}");
    // The fake's minute ends; everything arrives, in order, once.
    let chatwoot = &stack.chatwoot;
    eventually("all 20, after Chatwoot's minute", Duration::from_secs(90), || chatwoot.message_count() == 20).await;
    assert_eq!(assert_ordered_per_conversation(chatwoot, 't'), vec![20]);
    let refused = chatwoot.requests().iter().filter(|r| r.status == 429).count();
    assert!(refused < 120, "backed off instead of hammering: {refused} refusals in a minute");
}
