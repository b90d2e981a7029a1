//! The RyzeAPI link (contract §3): connect, heartbeat, reconnect with backoff, refusals, acknowledgement
//! after durable storage, deduplication, crash recovery, and actors that stop for good.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const CUSTOMER: &str = "5511999998888@s.whatsapp.net";

#[actix_web::test]
async fn activation_connects_within_a_second() {
    let stack = Stack::start(BRIDGE).await;
    let started = Instant::now();
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(stack.ryzeapi.connections("suporte"), 1);
    let view = stack.view(&id).await;
    assert_eq!(view["connection"]["reconnects"], 0);
    assert!(view["connection"]["since"].as_str().unwrap().ends_with('Z'));
}

#[actix_web::test]
async fn reconnects_after_drops_with_growing_backoff() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    let mut delays = Vec::new();
    for round in 1..=4 {
        let dropped_at = Instant::now();
        stack.ryzeapi.drop_connections("suporte");
        let sim = &stack.ryzeapi;
        eventually("reconnect", Duration::from_secs(5), || sim.total_connects("suporte") == round + 1).await;
        delays.push(dropped_at.elapsed());
    }
    // 100 ms doubling (±20 %), capped at 800 ms: 100, 200, 400, 800.
    assert!(delays[0] >= Duration::from_millis(75), "{delays:?}");
    assert!(delays[3] >= Duration::from_millis(600), "{delays:?}");
    assert!(delays[3] > delays[0] * 3, "backoff grows: {delays:?}");
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    assert_eq!(stack.view(&id).await["connection"]["reconnects"], 4);
}

#[actix_web::test]
async fn a_silent_link_is_declared_dead_and_replaced() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    stack.ryzeapi.set_silent(true);
    let silent_since = Instant::now();
    let sim = &stack.ryzeapi;
    eventually("a new connection after the heartbeat timeout", Duration::from_secs(5), || {
        sim.total_connects("suporte") >= 2
    })
    .await;
    assert!(silent_since.elapsed() >= Duration::from_millis(900), "dead only after 1 s of silence");
    assert!(stack.ryzeapi.received_pings("suporte") > 0, "the bridge pings");
    stack.ryzeapi.set_silent(false);
}

#[actix_web::test]
async fn a_refused_token_is_an_error_retried_slowly_until_it_works() {
    let stack = Stack::start(BRIDGE).await;
    stack.ryzeapi.refuse_upgrades(Some(401));
    let id = stack.activate("suporte").await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let view = stack.view(&id).await;
        if view["status"] == "error" {
            assert_eq!(view["last_error"], "RyzeAPI rejected the bridge token");
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let attempts = stack.ryzeapi.upgrade_attempts("suporte");
    actix_web::rt::time::sleep(Duration::from_millis(900)).await;
    let more = stack.ryzeapi.upgrade_attempts("suporte") - attempts;
    assert!((1..=3).contains(&more), "slow retry (every 400 ms here), not backoff: {more}");

    stack.ryzeapi.refuse_upgrades(None);
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    let sim = &stack.ryzeapi;
    eventually("connected", Duration::from_secs(2), || sim.connections("suporte") == 1).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while stack.view(&id).await["status"] != "active" {
        assert!(Instant::now() < deadline, "the link error clears once connected");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stack.view(&id).await["last_error"], "");
}

#[actix_web::test]
async fn a_missing_route_says_what_to_configure() {
    let stack = Stack::start(BRIDGE).await;
    stack.ryzeapi.refuse_upgrades(Some(404));
    let id = stack.activate("suporte").await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let view = stack.view(&id).await;
        if view["status"] == "error" {
            assert_eq!(
                view["last_error"],
                "RyzeAPI has no /ws/chatwoot route — set BRIDGE_URL and BRIDGE_TOKEN on RyzeAPI"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn events_are_acknowledged_after_storage_and_relayed() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    let event_id = stack
        .ryzeapi
        .send_event("suporte", sim::text_message("suporte", "3EB0AA01", CUSTOMER, "Maria", "Olá"))
        .unwrap();
    let sim = &stack.ryzeapi;
    eventually("ack", Duration::from_secs(2), || sim.acked("suporte").contains(&event_id)).await;
    let chatwoot = &stack.chatwoot;
    eventually("message in Chatwoot", Duration::from_secs(3), || chatwoot.message_count() == 1).await;
    stack.wait_drained(&id).await;
    let view = stack.view(&id).await;
    assert_eq!(view["totals"]["events_received"], 1);
    assert_eq!(view["totals"]["messages_to_chatwoot"], 1);
    assert_eq!(view["queues"]["to_chatwoot_pending"], 0);
    assert!(view["connection"]["last_event_at"].is_string());
}

#[actix_web::test]
async fn redelivered_and_repeated_events_are_not_duplicated() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    // The same event id twice (a RyzeAPI re-delivery), then the same WhatsApp message under a new event id.
    stack.ryzeapi.set_ack_extension(false);
    let mut event = sim::text_message("suporte", "3EB0DUP1", CUSTOMER, "Maria", "uma vez");
    event["eventId"] = json!("redelivered-1");
    stack.ryzeapi.send_event("suporte", event.clone());
    stack.ryzeapi.send_event("suporte", event.clone());
    event["eventId"] = json!("another-id");
    stack.ryzeapi.send_event("suporte", event);
    let sim = &stack.ryzeapi;
    eventually("three acks", Duration::from_secs(2), || {
        sim.unexpected_frames("suporte").len() + sim.acked("suporte").len() >= 3
    })
    .await;
    let chatwoot = &stack.chatwoot;
    eventually("one message", Duration::from_secs(3), || chatwoot.message_count() == 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.chatwoot.message_count(), 1);
    assert_eq!(stack.view(&id).await["totals"]["events_received"], 1, "stored once");
}

#[actix_web::test]
async fn malformed_frames_are_skipped_and_the_link_lives_on() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    for garbage in [json!("just a string"), json!({"no": "event"}), json!({"event": "message.exchange", "data": 7})] {
        stack.ryzeapi.send_event("suporte", garbage);
    }
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0OK01", CUSTOMER, "Maria", "ainda aqui"));
    let chatwoot = &stack.chatwoot;
    eventually("the good event is relayed", Duration::from_secs(3), || chatwoot.message_count() == 1).await;
    assert_eq!(stack.ryzeapi.total_connects("suporte"), 1, "the link was never dropped");
    let output = stack.bridge.output();
    assert!(output.contains("skipped a malformed frame") && output.contains(&id), "logged with the integration id");
}

#[actix_web::test]
async fn pause_resume_and_delete_stop_the_actor_for_good() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;

    stack.bridge.call("POST", &format!("/v1/integrations/{id}/pause"), None).await;
    let sim = &stack.ryzeapi;
    eventually("socket closed on pause", Duration::from_secs(2), || sim.connections("suporte") == 0).await;
    let attempts = stack.ryzeapi.upgrade_attempts("suporte");
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(stack.ryzeapi.upgrade_attempts("suporte"), attempts, "no reconnects while paused");
    assert_eq!(stack.view(&id).await["connection"]["state"], "disconnected");

    stack.bridge.call("POST", &format!("/v1/integrations/{id}/resume"), None).await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;

    stack.bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    eventually("socket closed on delete", Duration::from_secs(2), || sim.connections("suporte") == 0).await;
    let attempts = stack.ryzeapi.upgrade_attempts("suporte");
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(stack.ryzeapi.upgrade_attempts("suporte"), attempts, "no zombie reconnects after delete");
}

#[actix_web::test]
async fn an_event_stored_before_a_crash_is_processed_once_after_restart() {
    let mut stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    // Chatwoot hangs: the event is stored and acknowledged, but processing cannot finish.
    stack.chatwoot.set_fault(Fault::Slow(Duration::from_secs(30)));
    let event_id = stack
        .ryzeapi
        .send_event("suporte", sim::text_message("suporte", "3EB0CRASH", CUSTOMER, "Maria", "antes do crash"))
        .unwrap();
    let sim = &stack.ryzeapi;
    eventually("ack", Duration::from_secs(2), || sim.acked("suporte").contains(&event_id)).await;
    stack.bridge.kill();
    stack.chatwoot.set_fault(Fault::None);
    stack.bridge.restart().await;
    let chatwoot = &stack.chatwoot;
    eventually("processed after restart", Duration::from_secs(5), || chatwoot.message_count() == 1).await;
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.chatwoot.message_count(), 1, "exactly once");
    assert_eq!(stack.chatwoot.contact_count(), 1);
    assert_eq!(stack.chatwoot.conversation_count(), 1);
}

#[actix_web::test]
async fn two_hundred_integrations_connect_at_once() {
    let stack = Stack::start(BRIDGE).await;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(stack.activate(&format!("inst{n}")).await);
    }
    let sim = &stack.ryzeapi;
    eventually("200 connections", Duration::from_secs(10), || {
        (0..200).all(|n| sim.connections(&format!("inst{n}")) == 1)
    })
    .await;
    let (_, metrics) = request(&format!("{}/metrics", stack.bridge.url), "GET", None, None).await;
    assert!(metrics.as_str().unwrap().contains("bridge_ryzeapi_links{state=\"connected\"} 200"), "{metrics}");
}

#[actix_web::test]
async fn sigterm_during_a_stream_loses_nothing() {
    let mut stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    let customers = ["5511900000001@s.whatsapp.net", "5511900000002@s.whatsapp.net"];
    for n in 0..40 {
        stack.ryzeapi.send_event(
            "suporte",
            sim::text_message("suporte", &format!("3EB0TERM{n:03}"), customers[n % 2], "Cliente", &format!("t{n}")),
        );
        if n == 20 {
            let started = Instant::now();
            let status = stack.bridge.terminate(Duration::from_secs(10)).expect("exits within 10 s");
            assert!(status.success(), "{status:?}");
            assert!(started.elapsed() < Duration::from_secs(10));
            // The process has exited; its last lines may still be on their way through the pipe.
            let bridge = &stack.bridge;
            eventually("links closed on the way out (\" stopped \" logged)", Duration::from_secs(3), || {
                bridge.output().contains(" stopped ")
            })
            .await;
            let sim = &stack.ryzeapi;
            eventually("link closed", Duration::from_secs(2), || sim.connections("suporte") == 0).await;
        }
    }
    stack.bridge.restart().await;
    let chatwoot = &stack.chatwoot;
    eventually("all 40 delivered", Duration::from_secs(10), || chatwoot.message_count() >= 40).await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.chatwoot.message_count(), 40, "exactly once");
    assert_ordered_per_conversation(&stack.chatwoot, 't');
}

#[actix_web::test]
async fn the_link_survives_ryzeapi_restarting() {
    let mut stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    let address = stack.ryzeapi.url().trim_start_matches("http://").to_owned();
    let instance_token = stack.activation("suporte")["instanceToken"].as_str().unwrap().to_owned();
    stack.ryzeapi.stop().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while stack.view(&id).await["connection"]["state"] == "connected" {
        assert!(Instant::now() < deadline, "the bridge notices RyzeAPI is gone");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // RyzeAPI comes back on the same address (a new process: nothing remembered).
    stack.ryzeapi = RyzeApiSim::start_on(&address, &stack.bridge.token).unwrap();
    stack.ryzeapi.add_instance("suporte", &instance_token);
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0BACK", CUSTOMER, "Maria", "de volta"));
    let chatwoot = &stack.chatwoot;
    eventually("relayed after the restart", Duration::from_secs(3), || chatwoot.message_count() == 1).await;
}

/// The bridge dies after Chatwoot opened the conversation and before its answer arrived (a kill, a pause
/// past the lease, a hand-over): whoever relays the chat next finds that conversation instead of opening
/// a second one for the same customer.
#[actix_web::test]
async fn a_conversation_opened_just_before_a_crash_is_found_not_opened_again() {
    let mut stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    stack.chatwoot.answer_late_next("POST", "/conversations", Duration::from_secs(30), 1);
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0OPEN", CUSTOMER, "Maria", "primeira"));
    let chatwoot = &stack.chatwoot;
    eventually("the conversation opened", Duration::from_secs(5), || chatwoot.conversation_count() == 1).await;
    stack.bridge.kill();
    stack.bridge.restart().await;
    eventually("delivered after the restart", Duration::from_secs(15), || chatwoot.message_count() == 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.chatwoot.conversation_count(), 1, "one conversation for the chat");
    assert_eq!(stack.chatwoot.message_count(), 1, "exactly once");
    assert_eq!(stack.chatwoot.contact_count(), 1);
}

/// A backlog RyzeAPI re-sends on connect arrives as one burst, stored in batches of a few hundred rows:
/// each chat's messages reach Chatwoot in the order they were sent. (The batch's events were once handed
/// to the writer through a `join_all`; past the runtime's cooperative budget of 128 sends it queued them
/// out of order, and rows, hence messages, were numbered backwards.)
#[actix_web::test]
async fn a_backlog_replayed_on_connect_keeps_each_chats_order() {
    const CHATS: usize = 4;
    const PER_CHAT: usize = 90;
    let mut stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    stack.bridge.kill();
    for n in 0..PER_CHAT {
        for chat in 0..CHATS {
            let jid = format!("55119000000{chat:02}@s.whatsapp.net");
            let message =
                sim::text_message("suporte", &format!("3EB0BACKLOG{chat:02}{n:04}"), &jid, "Cliente", &format!("{n}"));
            stack.ryzeapi.send_event("suporte", message).unwrap();
        }
    }
    stack.bridge.restart().await;
    let chatwoot = &stack.chatwoot;
    eventually("the backlog relayed", Duration::from_secs(60), || chatwoot.message_count() >= CHATS * PER_CHAT).await;
    let conversations = stack.chatwoot.conversations();
    assert_eq!(conversations.len(), CHATS);
    for conversation in conversations {
        let numbers: Vec<usize> = stack
            .chatwoot
            .messages(conversation.display_id)
            .iter()
            .filter(|m| m.message_type == "incoming")
            .map(|m| m.content.as_deref().unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers, (0..PER_CHAT).collect::<Vec<_>>(), "conversation {}", conversation.display_id);
    }
}
