//! Retention: processed events and done replies are pruned after `BRIDGE_RETENTION_MS`; failed rows and
//! the message mappings (needed for ticks, quotes and deletes) stay. Runs on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const MARIA: &str = "5511999998888@s.whatsapp.net";

async fn count(stack: &Stack, sql: &str) -> i64 {
    use sea_orm::{ConnectionTrait as _, Statement};
    let conn = stack.db.connect().await;
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[actix_web::test]
async fn processed_rows_are_pruned_after_the_retention_and_failures_stay() {
    let stack = Stack::start_with(BRIDGE, vec![("BRIDGE_RETENTION_MS".into(), "1000".into())]).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    for n in 0..3 {
        let text = format!("m{n}");
        stack
            .ryzeapi
            .send_event("suporte", sim::text_message("suporte", &format!("3EB0RET{n}"), MARIA, "Maria", &text));
    }
    // Malformed, with an event id: kept as a failed event.
    stack.ryzeapi.send_event("suporte", json!({"event": "message.exchange", "data": 7}));
    let chatwoot = &stack.chatwoot;
    eventually("three messages", Duration::from_secs(5), || chatwoot.message_count() == 3).await;
    let display_id = stack.chatwoot.conversations()[0].display_id;
    stack.chatwoot.agent_reply(display_id, "resposta", false).unwrap();
    let sim = &stack.ryzeapi;
    eventually("the reply is sent", Duration::from_secs(5), || !sim.sent_message_ids("suporte").is_empty()).await;
    assert!(count(&stack, "SELECT COUNT(*) FROM inbound_events WHERE state = 'done'").await >= 3);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let done_events = count(&stack, "SELECT COUNT(*) FROM inbound_events WHERE state = 'done'").await;
        let done_jobs = count(&stack, "SELECT COUNT(*) FROM outbound_jobs WHERE state = 'done'").await;
        if done_events == 0 && done_jobs == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {done_events} events and {done_jobs} jobs");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&stack, "SELECT COUNT(*) FROM inbound_events WHERE state = 'failed'").await, 1, "failures stay");
    assert_eq!(count(&stack, "SELECT COUNT(*) FROM message_map").await, 4, "mappings stay (3 in, 1 out)");
    let view = stack.view(&id).await;
    // 3 messages, the malformed frame and WhatsApp's echo of the reply.
    assert_eq!(view["totals"]["events_received"], 5, "totals count since start, not rows left: {view}");
    assert_eq!(view["queues"]["failed"], 1);
    assert!(stack.bridge.output().contains("pruned processed rows"));
}
