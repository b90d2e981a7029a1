//! Chatwoot → WhatsApp: how fast the webhook route answers, and how long until RyzeAPI is asked to send.
//!
//! Each agent reply is created in the fake Chatwoot (`agent_reply`, with the inbox's webhook URL blanked
//! so the fake does not deliver it itself), then the bench POSTs the signed `message_created` webhook to
//! the bridge, built from a real delivery of the same conversation. The acknowledgement is timed on that
//! request; the send is seen by polling the simulator's `sent_message_ids` every millisecond (it keeps no
//! timestamps), so send latencies carry up to ~1 ms of polling error.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ryze_fakes::chatwoot::sign_webhook;
use serde_json::{Value, json};

use crate::Opts;
use crate::inbound::{CpuMeter, Traffic, connected_stack};
use crate::report::{self, Table};
use crate::stack::{ACCOUNT, BenchDb, Res, Stack};

/// One integration's conversation and what is needed to post its webhooks.
struct Target {
    instance: String,
    display_id: i64,
    webhook_url: String,
    secret: String,
    template: Value,
    /// Sends the simulator had recorded before the measured replies.
    base_sends: usize,
    /// Instants the measured replies' webhooks were posted, oldest first, not yet seen as sends.
    pending: VecDeque<Instant>,
    seen: usize,
}

fn chatwoot_calls(stack: &Stack) -> usize {
    let prefix = format!("/api/v1/accounts/{ACCOUNT}/conversations/");
    stack.chatwoot.requests().iter().filter(|r| r.path.starts_with(&prefix)).count()
}

async fn targets(stack: &Stack, instances: &[String]) -> Res<Vec<Target>> {
    let inboxes = stack.chatwoot.inboxes();
    let conversations = stack.chatwoot.conversations();
    let mut targets = Vec::new();
    let mut warm_ids = Vec::new();
    for instance in instances {
        let inbox = inboxes.iter().find(|i| &i.name == instance).ok_or_else(|| format!("no inbox named {instance}"))?;
        let conversation = conversations
            .iter()
            .find(|c| c.inbox_id == inbox.id)
            .ok_or_else(|| format!("no conversation in inbox {}", inbox.id))?;
        let reply = stack
            .chatwoot
            .agent_reply(conversation.display_id, "primeira resposta do agente", false)
            .ok_or("agent_reply refused")?;
        warm_ids.push(reply);
        targets.push(Target {
            instance: instance.clone(),
            display_id: conversation.display_id,
            webhook_url: inbox.webhook_url.clone(),
            secret: inbox.secret.clone(),
            template: Value::Null,
            base_sends: 0,
            pending: VecDeque::new(),
            seen: 0,
        });
    }
    // The warm-up replies go through the real path (the fake delivers them); wait for every send.
    let started = Instant::now();
    while targets.iter().any(|t| stack.sim.sent_message_ids(&t.instance).is_empty()) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("warm-up replies were not sent within 60 s; bridge log:\n{}", stack.bridge.log_tail()));
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let deliveries = stack.chatwoot.webhook_deliveries_of("message_created");
    for (target, id) in targets.iter_mut().zip(warm_ids) {
        let delivery = deliveries
            .iter()
            .find(|d| d.body.get("id").and_then(Value::as_i64) == Some(id))
            .ok_or("no webhook delivery of the warm-up reply")?;
        target.template = delivery.body.clone();
        target.base_sends = stack.sim.sent_message_ids(&target.instance).len();
    }
    for inbox in inboxes {
        stack.chatwoot.set_inbox_webhook_url(inbox.id, "");
    }
    Ok(targets)
}

/// The signed webhook of message `id` with `content`, from the conversation's template.
fn webhook(target: &Target, id: i64, content: &str) -> Res<(Vec<u8>, String, String)> {
    let mut body = target.template.clone();
    let map = body.as_object_mut().ok_or("template is not an object")?;
    map.insert("id".into(), json!(id));
    map.insert("content".into(), json!(content));
    let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = sign_webhook(&target.secret, &timestamp, &bytes);
    Ok((bytes, timestamp, signature))
}

#[derive(Default)]
struct Acks {
    millis: Vec<f64>,
    failed: usize,
}

pub async fn outbound(opts: &Opts, db: &BenchDb) -> Res<Table> {
    let (stack, instances) = connected_stack(db, opts.integrations).await?;
    let mut traffic = Traffic::new(instances.clone(), 1);
    traffic.warm_up(&stack).await?;
    let mut targets = targets(&stack, &instances).await?;
    let rate = (opts.rate as f64).max(1.0);
    let mut table = Table::new(format!(
        "outbound (agent replies) — {rate:.0} replies/s for {} s over {} integrations, {}",
        opts.seconds,
        opts.integrations,
        db.kind()
    ));
    let ryzeapi_calls = |stack: &Stack| instances.iter().map(|i| stack.sim.requests(i).len()).sum::<usize>();
    let (cw_before, ryze_before) = (chatwoot_calls(&stack), ryzeapi_calls(&stack));
    let acks: Rc<RefCell<Acks>> = Rc::default();
    let in_flight: Rc<Cell<usize>> = Rc::default();
    let mut send_latency: Vec<f64> = Vec::new();
    let mut skipped = 0usize;
    let cpu = CpuMeter::start(&stack);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let mut sent = 0u64;
    let poll = |targets: &mut [Target], samples: &mut Vec<f64>| {
        let now = Instant::now();
        for target in targets.iter_mut().filter(|t| !t.pending.is_empty()) {
            let count = stack.sim.sent_message_ids(&target.instance).len().saturating_sub(target.base_sends);
            while target.seen < count {
                target.seen += 1;
                if let Some(at) = target.pending.pop_front() {
                    samples.push(now.duration_since(at).as_secs_f64() * 1000.0);
                }
            }
        }
    };
    while Instant::now() < deadline {
        let due = ((rate * started.elapsed().as_secs_f64()) as u64).saturating_sub(sent).min(1000);
        for _ in 0..due {
            let index = usize::try_from(sent % targets.len() as u64).unwrap_or(0);
            sent += 1;
            let Some(target) = targets.get_mut(index) else { continue };
            if in_flight.get() >= 512 {
                skipped += 1;
                continue;
            }
            let content = format!("resposta {sent} do **agente**");
            let id = stack.chatwoot.agent_reply(target.display_id, &content, false).ok_or("agent_reply refused")?;
            let (body, timestamp, signature) = webhook(target, id, &content)?;
            let request = stack
                .http
                .post(&target.webhook_url)
                .insert_header(("content-type", "application/json"))
                .insert_header(("x-chatwoot-delivery", format!("bench-{sent}")))
                .insert_header(("x-chatwoot-timestamp", timestamp))
                .insert_header(("x-chatwoot-signature", signature));
            let (acks, in_flight) = (acks.clone(), in_flight.clone());
            in_flight.set(in_flight.get() + 1);
            let posted = Instant::now();
            target.pending.push_back(posted);
            actix_web::rt::spawn(async move {
                let ok = match request.send_body(body).await {
                    Ok(mut response) => {
                        let _ = response.body().await;
                        response.status().as_u16() == 200
                    }
                    Err(_) => false,
                };
                let took = posted.elapsed().as_secs_f64() * 1000.0;
                let mut acks = acks.borrow_mut();
                acks.millis.push(took);
                if !ok {
                    acks.failed += 1;
                }
                in_flight.set(in_flight.get().saturating_sub(1));
            });
        }
        poll(&mut targets, &mut send_latency);
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
    let offered = report::rate(sent as f64, started.elapsed());
    let drain = Instant::now();
    while (in_flight.get() > 0 || targets.iter().any(|t| !t.pending.is_empty()))
        && drain.elapsed() < Duration::from_secs(60)
    {
        poll(&mut targets, &mut send_latency);
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
    let unsent: usize = targets.iter().map(|t| t.pending.len()).sum();
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let replies = (sent as usize).saturating_sub(skipped).max(1);
    let acks = acks.borrow();
    table.info(
        "replies offered (achieved rate)",
        format!("{sent} ({})", report::per_s(offered).replace("msg", "replies")),
    );
    report::latency_rows(
        &mut table,
        "webhook acknowledgement",
        &acks.millis,
        Some((5.0, "≤ 5 ms (the issue's target)")),
    );
    table.target("webhooks not answered 200", acks.failed.to_string(), "0", acks.failed == 0);
    report::latency_rows(&mut table, "webhook posted → RyzeAPI send", &send_latency, None);
    table.target("replies never sent (60 s after the window)", unsent.to_string(), "0", unsent == 0);
    let cw = chatwoot_calls(&stack) - cw_before;
    let ryze = ryzeapi_calls(&stack) - ryze_before;
    table.info("Chatwoot calls per reply (sent tick)", format!("{:.2}", cw as f64 / replies as f64));
    table.info("RyzeAPI calls per reply (send + markRead)", format!("{:.2}", ryze as f64 / replies as f64));
    cpu.rows(&stack, &mut table, replies as u64, "reply");
    if skipped > 0 {
        table.note(format!("{skipped} replies skipped: 512 webhooks already in flight"));
    }
    table.note("send instants are seen by polling the simulator every ~1 ms (it records no timestamps)");
    crate::inbound::log_notes(&stack, &mut table);
    Ok(table)
}
