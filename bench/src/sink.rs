//! The fake Chatwoot's own capacity: messages POSTed straight to it (no bridge), over as many
//! conversations and with the concurrency the bridge would use, so that the bridge's inbound throughput
//! can be read as a fraction of what the sink takes.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::Opts;
use crate::inbound::{PER_CHAT_PER_SECOND, Traffic};
use crate::report::{self, Table};
use crate::stack::{ACCOUNT, ADMIN, Res, client, cpu_time, machine_cores, machine_ticks};

async fn post(http: &awc::Client, url: &str, body: &Value) -> Res<(u16, Value)> {
    let mut response = http
        .post(url)
        .insert_header(("api_access_token", ADMIN))
        .send_json(body)
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response.body().limit(16 * 1024 * 1024).await.map_err(|e| format!("POST {url}: {e}"))?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Creates one inbox per integration and one contact + conversation per chat; returns display ids.
async fn conversations(http: &awc::Client, base: &str, integrations: usize, chats: usize) -> Res<Vec<i64>> {
    let account = format!("{base}/api/v1/accounts/{ACCOUNT}");
    let mut inboxes = Vec::new();
    for i in 0..integrations {
        let body = json!({"name": format!("sink-{i:05}"), "channel": {"type": "api", "webhook_url": ""}});
        let (status, answer) = post(http, &format!("{account}/inboxes"), &body).await?;
        let id = answer.get("id").and_then(Value::as_i64).ok_or_else(|| format!("inbox: HTTP {status}: {answer}"))?;
        inboxes.push(id);
    }
    let pairs: Vec<(usize, usize)> = (0..integrations).flat_map(|i| (0..chats).map(move |c| (i, c))).collect();
    let create = |(i, c): (usize, usize)| {
        let account = account.clone();
        let inbox = inboxes.get(i).copied().unwrap_or_default();
        async move {
            let jid = Traffic::jid(i, c);
            let phone = format!("+{}", jid.trim_end_matches("@s.whatsapp.net"));
            let contact = json!({"name": format!("Cliente {i}-{c}"), "phone_number": phone, "identifier": jid,
                                 "inbox_id": inbox, "source_id": jid});
            let (status, answer) = post(http, &format!("{account}/contacts"), &contact).await?;
            let contact_id = answer
                .pointer("/payload/contact/id")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("contact: HTTP {status}: {answer}"))?;
            let conversation = json!({"inbox_id": inbox, "contact_id": contact_id, "source_id": jid});
            let (status, answer) = post(http, &format!("{account}/conversations"), &conversation).await?;
            answer.get("id").and_then(Value::as_i64).ok_or_else(|| format!("conversation: HTTP {status}: {answer}"))
        }
    };
    let results: Vec<Res<i64>> = futures_util::stream::iter(pairs.into_iter().map(create)).buffered(8).collect().await;
    results.into_iter().collect()
}

/// Runs the sink; with `compare_at`, also its rate over its first `compare_at` messages (the fake slows down
/// as it fills, so the bridge is compared with the sink at the size the bridge's run reached). Returns the
/// table and the rate to compare with.
pub async fn sink(opts: &Opts, compare_at: Option<usize>) -> Res<(Table, f64)> {
    let chatwoot = crate::stack::fake_chatwoot()?;
    let total = opts.integrations * opts.chats;
    let concurrency = (16 * opts.integrations).min(total).clamp(1, 512);
    let http = client(concurrency);
    let displays = conversations(&http, chatwoot.url(), opts.integrations, opts.chats).await?;
    let mut table = Table::new(format!(
        "sink: the fake Chatwoot alone — {} conversations, {concurrency} concurrent POSTs, {} s",
        displays.len(),
        opts.seconds
    ));
    let cap = PER_CHAT_PER_SECOND * displays.len() as f64;
    let cap = if opts.rate > 0 { cap.min(opts.rate as f64) } else { cap };
    let base = format!("{}/api/v1/accounts/{ACCOUNT}/conversations", chatwoot.url());
    let next = Cell::new(0u64);
    let seconds = usize::try_from(opts.seconds).unwrap_or(usize::MAX);
    let buckets = RefCell::new(vec![0u64; seconds.saturating_add(1)]);
    let statuses: RefCell<BTreeMap<u16, u64>> = RefCell::default();
    // Seconds since the start at which each message was stored, in completion order.
    let done: RefCell<Vec<f64>> = RefCell::default();
    let (cap_waits, cpu_before, machine_before) = (Cell::new(0u64), cpu_time("self"), machine_ticks());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let worker = || async {
        while Instant::now() < deadline {
            let k = next.get();
            if k as f64 >= cap * started.elapsed().as_secs_f64() {
                cap_waits.set(cap_waits.get() + 1);
                actix_web::rt::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            next.set(k + 1);
            let display = displays.get(usize::try_from(k % displays.len().max(1) as u64).unwrap_or(0)).copied();
            let body = json!({"content": format!("mensagem {k} do cliente, com **negrito** e _itálico_"),
                              "message_type": "incoming", "private": false, "source_id": format!("WAID:SINK{k:011X}"),
                              "content_attributes": {}});
            let status = match post(&http, &format!("{base}/{}/messages", display.unwrap_or_default()), &body).await {
                Ok((status, _)) => status,
                Err(_) => 0,
            };
            *statuses.borrow_mut().entry(status).or_default() += 1;
            if status == 200 {
                done.borrow_mut().push(started.elapsed().as_secs_f64());
            }
            if status == 200 && Instant::now() < deadline {
                let second = usize::try_from(started.elapsed().as_secs()).unwrap_or(0);
                if let Some(bucket) = buckets.borrow_mut().get_mut(second) {
                    *bucket += 1;
                }
            }
        }
    };
    futures_util::future::join_all((0..concurrency).map(|_| worker())).await;
    let elapsed = started.elapsed().min(Duration::from_secs(opts.seconds));
    let machine = machine_cores(machine_before, machine_ticks());
    let bench_cores = match (cpu_before, cpu_time("self")) {
        (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64() / started.elapsed().as_secs_f64().max(1e-9),
        _ => 0.0,
    };
    let per_second: Vec<f64> = buckets.borrow().iter().take(seconds).map(|n| *n as f64).collect();
    let ok: f64 = per_second.iter().sum();
    let throughput = report::rate(ok, elapsed);
    table.info("sink capacity (message creates answered 200)", report::per_s(throughput));
    report::per_second_rows(&mut table, "per-second", &per_second);
    table.info("messages stored at the end", chatwoot.message_count().to_string());
    let done = done.borrow();
    // The rate over stored messages a..b (the fake's cost per create grows with what it holds).
    let band = |a: usize, b: usize| -> Option<f64> {
        let (first, last) = (*done.get(a.saturating_sub(1))?, *done.get(b.checked_sub(1)?)?);
        let first = if a == 0 { 0.0 } else { first };
        (last > first).then(|| (b - a) as f64 / (last - first))
    };
    const BAND: usize = 5000;
    let mut start = 0;
    while start + BAND <= done.len() && start < 200_000 {
        if let Some(rate) = band(start, start + BAND) {
            table.info(
                format!("while holding {}k–{}k messages", start / 1000, (start + BAND) / 1000),
                report::per_s(rate),
            );
        }
        start += BAND;
    }
    let mut compared = throughput;
    if let Some(m) = compare_at.filter(|m| *m > 0 && *m <= done.len())
        && let Some(rate) = band(0, m)
    {
        table.info(format!("over its first {m} messages (as many as the inbound run stored)"), report::per_s(rate));
        compared = rate;
    }
    let answers: Vec<String> = statuses.borrow().iter().map(|(s, n)| format!("{s}: {n}")).collect();
    table.info("answers by status (0 = transport error)", answers.join(", "));
    table.info("CPU: bench process (the fake + the load)", format!("{bench_cores:.2} cores"));
    table.info("CPU: whole machine busy (all processes)", format!("{machine:.2} of {} cores", crate::inbound::cores()));
    if cap_waits.get() > 0 {
        table.note(format!(
            "workers waited for the rate cap ({cap:.0} msg/s: 3 per conversation per second, under the fake's \
             200/min limit) at times: where the cap binds, the sink could take more"
        ));
    }
    table.note("no webhook receiver: the inboxes' webhook_url is blank (the fake still builds each webhook body)");
    Ok((table, compared))
}
