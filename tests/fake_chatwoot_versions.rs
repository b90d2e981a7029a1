//! The fake Chatwoot behaves as the real one does, version by version and under its limits: access-token
//! spellings and proxies, Rack::Attack, the message builder before 3.4 and 4.9, the flood limit, 422
//! catch-alls, webhooks built when delivered and sent concurrently, retry's two updates, webhook text and
//! attachment JSON by version, message paging, contact deletion, secret reset and Liquid's `raw`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Status, headers and body (JSON when it parses, else the text).
async fn raw(
    fake: &FakeChatwoot,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, HashMap<String, String>, Value) {
    let client = awc::Client::default();
    let mut req = client.request(method.parse().unwrap(), format!("{}{path}", fake.url()));
    for header in headers {
        req = req.insert_header(*header);
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = res.body().limit(8 * 1024 * 1024).await.unwrap();
    let headers =
        res.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (res.status().as_u16(), headers, value)
}

async fn cw(fake: &FakeChatwoot, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let (status, _, value) = raw(fake, method, path, &[("api_access_token", token)], body).await;
    (status, value)
}

async fn admin(fake: &FakeChatwoot, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    cw(fake, method, &format!("/api/v1/accounts/{ACCOUNT}{path}"), ADMIN, body).await
}

/// Headers and raw body of one received webhook.
type Hit = (HashMap<String, String>, Vec<u8>);

/// A webhook receiver that records raw bodies and headers, answers `status` after `delay`, and counts how
/// many requests it holds at once.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> Self {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let (peak, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/webhooks/chatwoot/int_1/s3cret", listener.local_addr().unwrap());
        let (h, s, d, p) = (hits.clone(), status.clone(), delay_ms.clone(), peak.clone());
        let server = HttpServer::new(move || {
            let (h, s, d, p, o) = (h.clone(), s.clone(), d.clone(), p.clone(), open.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (h, s, d, p, o) = (h.clone(), s.clone(), d.clone(), p.clone(), o.clone());
                async move {
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    let delay = d.load(Ordering::SeqCst) as u64;
                    if delay > 0 {
                        actix_web::rt::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    h.lock().unwrap().push((headers, body.to_vec()));
                    o.fetch_sub(1, Ordering::SeqCst);
                    HttpResponse::build(StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()).finish()
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Self { url, hits, status, delay_ms, peak }
    }

    fn hits(&self) -> Vec<(HashMap<String, String>, Value, Vec<u8>)> {
        let hits = self.hits.lock().unwrap();
        hits.iter().map(|(h, b)| (h.clone(), serde_json::from_slice(b).unwrap(), b.clone())).collect()
    }
}

/// A fake with one API inbox (webhook to `webhook_url`), contact Maria and an open conversation.
struct World {
    fake: FakeChatwoot,
    inbox: i64,
    contact: i64,
    display_id: i64,
}

async fn world_on(version: &str, webhook_url: &str) -> World {
    let fake = fake_chatwoot();
    fake.set_version(version);
    let (status, inbox) = admin(
        &fake,
        "POST",
        "/inboxes",
        Some(json!({"name": "WhatsApp - suporte", "channel": {"type": "api", "webhook_url": webhook_url}})),
    )
    .await;
    assert_eq!(status, 200, "{inbox}");
    let inbox = inbox["id"].as_i64().unwrap();
    let (status, created) = admin(
        &fake,
        "POST",
        "/contacts",
        Some(
            json!({"inbox_id": inbox, "source_id": "5511999999999", "name": "Maria", "phone_number": "+5511999999999"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let contact = created["payload"]["contact"]["id"].as_i64().unwrap();
    let (status, conversation) = admin(
        &fake,
        "POST",
        "/conversations",
        Some(json!({"inbox_id": inbox, "contact_id": contact, "source_id": "5511999999999"})),
    )
    .await;
    assert_eq!(status, 200, "{conversation}");
    World { fake, inbox, contact, display_id: conversation["id"].as_i64().unwrap() }
}

async fn world(webhook_url: &str) -> World {
    world_on("4.15.1", webhook_url).await
}

fn messages_path(display_id: i64) -> String {
    format!("/conversations/{display_id}/messages")
}

fn hex_hmac(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_web::test]
async fn both_token_spellings_work_and_a_default_nginx_drops_the_underscored_one() {
    let fake = fake_chatwoot();
    let profile = "/api/v1/profile";
    assert_eq!(raw(&fake, "GET", profile, &[("api_access_token", ADMIN)], None).await.0, 200);
    assert_eq!(raw(&fake, "GET", profile, &[("Api-Access-Token", ADMIN)], None).await.0, 200);

    fake.set_proxy_drops_underscore_headers(true);
    let (status, _, body) = raw(&fake, "GET", profile, &[("api_access_token", ADMIN)], None).await;
    assert_eq!(
        (status, body),
        (401, json!({"errors": ["You need to sign in or sign up before continuing."]})),
        "nginx dropped the header: devise's answer"
    );
    assert_eq!(raw(&fake, "GET", profile, &[("Api-Access-Token", ADMIN)], None).await.0, 200);
    let (status, _, body) = raw(&fake, "GET", profile, &[("Api-Access-Token", "nope")], None).await;
    assert_eq!((status, body), (401, json!({"error": "Invalid Access Token"})));
}

#[actix_web::test]
async fn rack_attack_throttles_per_minute_without_retry_after() {
    let fake = fake_chatwoot();
    fake.set_rate_limit(Some(3));
    let inboxes = format!("/api/v1/accounts/{ACCOUNT}/inboxes");
    for _ in 0..3 {
        assert_eq!(raw(&fake, "GET", &inboxes, &[("api_access_token", ADMIN)], None).await.0, 200);
    }
    let (status, headers, body) = raw(&fake, "GET", &inboxes, &[("api_access_token", ADMIN)], None).await;
    assert_eq!((status, body), (429, Value::String("Retry later\n".into())));
    assert!(headers["content-type"].starts_with("text/plain"), "{headers:?}");
    assert!(!headers.contains_key("retry-after"), "rack-attack 6.7 sends no Retry-After: {headers:?}");
    // Before authentication: an unknown token is throttled too.
    assert_eq!(raw(&fake, "GET", &inboxes, &[("api_access_token", "x")], None).await.0, 429);
    fake.set_rate_limit(None);
    assert_eq!(raw(&fake, "GET", &inboxes, &[("api_access_token", ADMIN)], None).await.0, 200);

    // The 429 fault page is the same page.
    fake.set_fault(Fault::Status(429));
    let (status, headers, body) = raw(&fake, "GET", "/api", &[], None).await;
    assert_eq!((status, body), (429, Value::String("Retry later\n".into())));
    assert!(!headers.contains_key("retry-after"));
}

#[actix_web::test]
async fn the_message_builder_drops_source_id_before_3_4_and_content_attributes_before_4_9() {
    let World { fake, display_id, .. } = world_on("3.3.0", "").await;
    let path = messages_path(display_id);
    let (status, old) =
        admin(&fake, "POST", &path, Some(json!({"content": "oi", "message_type": "incoming", "source_id": "WAID:A"})))
            .await;
    assert_eq!((status, &old["source_id"]), (200, &Value::Null), "no source_id before 3.4");

    fake.set_version("4.8.0");
    let (_, first) =
        admin(&fake, "POST", &path, Some(json!({"content": "oi", "message_type": "incoming", "source_id": "WAID:B"})))
            .await;
    assert_eq!(first["source_id"], "WAID:B");
    let first = first["id"].as_i64().unwrap();
    let (_, by_external) = admin(
        &fake,
        "POST",
        &path,
        Some(json!({"content": "re", "message_type": "incoming",
                    "content_attributes": {"in_reply_to_external_id": "WAID:B", "x": 1}})),
    )
    .await;
    assert_eq!(by_external["content_attributes"], json!({}), "before 4.9 only in_reply_to survives");
    let (_, by_id) = admin(
        &fake,
        "POST",
        &path,
        Some(json!({"content": "re", "message_type": "incoming", "content_attributes": {"in_reply_to": first}})),
    )
    .await;
    assert_eq!(
        by_id["content_attributes"],
        json!({"in_reply_to": first, "in_reply_to_external_id": "WAID:B"}),
        "InReplyToMessageBuilder fills the external id from the quoted message"
    );

    fake.set_version("4.9.0");
    let (_, newer) = admin(
        &fake,
        "POST",
        &path,
        Some(json!({"content": "re", "message_type": "incoming",
                    "content_attributes": {"in_reply_to_external_id": "WAID:B", "x": 1}})),
    )
    .await;
    assert_eq!(newer["content_attributes"], json!({"in_reply_to": first, "in_reply_to_external_id": "WAID:B", "x": 1}));
}

#[actix_web::test]
async fn the_flood_limit_counts_every_message_of_the_last_minute() {
    let World { fake, display_id, .. } = world("").await;
    let path = messages_path(display_id);
    // Chatwoot's default, 200: dashboard notes and replies count too.
    for i in 0..199 {
        assert!(fake.agent_reply(display_id, &format!("note {i}"), i % 2 == 0).is_some());
    }
    let body = json!({"content": "oi", "message_type": "incoming"});
    let (status, last) = admin(&fake, "POST", &path, Some(body.clone())).await;
    assert_eq!(status, 200, "the 200th is fine");
    assert_eq!(
        admin(&fake, "POST", &path, Some(body.clone())).await,
        (422, json!({"error": "Validation failed: Too many messages"}))
    );
    assert_eq!(fake.messages(display_id).len(), 200);
    // `update!` validates too: a status PATCH in a flooded conversation is a RecordInvalid.
    let id = last["id"].as_i64().unwrap();
    assert_eq!(
        admin(&fake, "PATCH", &format!("{path}/{id}"), Some(json!({"status": "read"}))).await,
        (422, json!({"message": "Too many messages", "attributes": ["base"]}))
    );
    fake.set_conversation_message_limit(None);
    assert_eq!(admin(&fake, "POST", &path, Some(body.clone())).await.0, 200);
    fake.set_conversation_message_limit(Some(201));
    assert_eq!(admin(&fake, "POST", &path, Some(body)).await.0, 422);
}

#[actix_web::test]
async fn a_rescued_exception_is_a_422_with_or_without_the_message() {
    let receiver = Receiver::start().await;
    let World { fake, display_id, .. } = world(&receiver.url).await;
    assert!(fake.webhooks_settled(WAIT).await);
    fake.clear_webhook_deliveries();
    let path = messages_path(display_id);
    let body = json!({"content": "oi", "message_type": "incoming", "source_id": "WAID:X"});
    fake.fail_next_unprocessable("/messages", "Aws::S3::Errors::ServiceUnavailable", 1, false);
    assert_eq!(
        admin(&fake, "POST", &path, Some(body.clone())).await,
        (422, json!({"error": "Aws::S3::Errors::ServiceUnavailable"}))
    );
    assert!(fake.messages(display_id).is_empty(), "nothing was created");

    fake.fail_next_unprocessable("/messages", "Redis::TimeoutError", 1, true);
    assert_eq!(admin(&fake, "POST", &path, Some(body.clone())).await, (422, json!({"error": "Redis::TimeoutError"})));
    let stored = fake.messages(display_id);
    assert_eq!(stored.len(), 1, "the after-commit exception came after the message was saved");
    assert_eq!(stored[0].source_id.as_deref(), Some("WAID:X"));
    assert!(fake.webhooks_settled(WAIT).await);
    assert_eq!(fake.webhook_deliveries_of("message_created").len(), 1);
    assert_eq!(admin(&fake, "POST", &path, Some(body)).await.0, 200, "the fault is used up");
}

#[actix_web::test]
async fn webhooks_are_built_when_delivered_and_sent_concurrently() {
    let receiver = Receiver::start().await;
    let World { fake, display_id, .. } = world(&receiver.url).await;
    assert!(fake.webhooks_settled(WAIT).await);
    fake.clear_webhook_deliveries();

    // Deleted before its message_created went out: it arrives deleted.
    fake.pause_webhooks();
    let id = fake.agent_reply(display_id, "oops", false).unwrap();
    assert!(fake.agent_delete(id));
    fake.resume_webhooks();
    assert!(fake.webhooks_settled(WAIT).await);
    let created = &fake.webhook_deliveries_of("message_created")[0];
    assert_eq!(created.body["id"], id);
    assert_eq!(created.body["content"], "This message was deleted");
    assert_eq!(created.body["content_attributes"], json!({"deleted": true}));

    // Ten workers by default: slow answers overlap. One worker: one at a time, in order.
    receiver.delay_ms.store(200, Ordering::SeqCst);
    fake.clear_webhook_deliveries();
    let started = Instant::now();
    for i in 0..5 {
        fake.agent_reply(display_id, &format!("parallel {i}"), false).unwrap();
    }
    assert!(fake.webhooks_settled(WAIT).await);
    assert!(receiver.peak.load(Ordering::SeqCst) >= 3, "peak {}", receiver.peak.load(Ordering::SeqCst));
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    receiver.delay_ms.store(20, Ordering::SeqCst);
    fake.set_webhook_workers(1);
    fake.clear_webhook_deliveries();
    let ids: Vec<i64> = (0..6).map(|i| fake.agent_reply(display_id, &format!("serial {i}"), false).unwrap()).collect();
    assert!(fake.webhooks_settled(WAIT).await);
    let order: Vec<i64> =
        fake.webhook_deliveries_of("message_created").iter().map(|d| d.body["id"].as_i64().unwrap()).collect();
    assert_eq!(order, ids, "one worker keeps the order");

    // Shuffled: the same messages arrive out of order.
    receiver.delay_ms.store(0, Ordering::SeqCst);
    fake.set_webhook_workers(10);
    fake.set_webhook_shuffle(Some(Duration::from_millis(300)));
    fake.clear_webhook_deliveries();
    let ids: Vec<i64> =
        (0..12).map(|i| fake.agent_reply(display_id, &format!("shuffled {i}"), false).unwrap()).collect();
    assert!(fake.webhooks_settled(WAIT).await);
    let order: Vec<i64> =
        fake.webhook_deliveries_of("message_created").iter().map(|d| d.body["id"].as_i64().unwrap()).collect();
    assert_eq!(order.len(), ids.len());
    assert_ne!(order, ids, "shuffled deliveries overtake each other");
    fake.set_webhook_shuffle(None);

    // Doubling covers message_updated too.
    fake.set_webhook_duplicates(true);
    fake.clear_webhook_deliveries();
    fake.agent_delete(ids[0]);
    assert!(fake.webhooks_settled(WAIT).await);
    let updated = fake.webhook_deliveries_of("message_updated");
    assert_eq!(updated.len(), 2);
    assert_ne!(updated[0].delivery_id, updated[1].delivery_id);
}

#[actix_web::test]
async fn retry_makes_two_updates_and_can_keep_the_attributes() {
    let receiver = Receiver::start().await;
    let World { fake, display_id, .. } = world(&receiver.url).await;
    let (_, incoming) = admin(
        &fake,
        "POST",
        &messages_path(display_id),
        Some(json!({"content": "q", "message_type": "incoming",
                                                                      "source_id": "WAID:Q"})),
    )
    .await;
    let quoted = incoming["id"].as_i64().unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    receiver.status.store(500, Ordering::SeqCst);
    let id = fake.agent_reply_to(display_id, "answer", quoted).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    assert_eq!(fake.message(id).unwrap().status, "failed");
    receiver.status.store(200, Ordering::SeqCst);

    // PR #15912: everything but external_error survives.
    fake.set_retry_keeps_attributes(true);
    fake.pause_webhooks();
    assert!(fake.agent_retry(id));
    assert_eq!(fake.held_webhooks(), 2, "StatusUpdateService's update, then the content_attributes update");
    fake.resume_webhooks();
    assert!(fake.webhooks_settled(WAIT).await);
    let message = fake.message(id).unwrap();
    assert_eq!(message.status, "sent");
    assert_eq!(
        Value::Object(message.content_attributes),
        json!({"in_reply_to": quoted, "in_reply_to_external_id": "WAID:Q"})
    );

    // 4.10.1: emptied.
    fake.set_retry_keeps_attributes(false);
    receiver.status.store(500, Ordering::SeqCst);
    let id = fake.agent_reply_to(display_id, "again", quoted).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    receiver.status.store(200, Ordering::SeqCst);
    fake.clear_webhook_deliveries();
    assert!(fake.agent_retry(id));
    assert!(fake.webhooks_settled(WAIT).await);
    let updates = fake.webhook_deliveries_of("message_updated");
    assert_eq!(updates.len(), 2);
    assert!(updates.iter().all(|d| d.body["content_attributes"] == json!({})), "{updates:?}");
}

#[actix_web::test]
async fn agent_text_reaches_the_webhook_as_stored_until_4_13() {
    let receiver = Receiver::start().await;
    let World { fake, display_id, .. } = world_on("4.12.1", &receiver.url).await;
    let stored = "line1\\\nline2\n\n";
    fake.agent_reply(display_id, stored, false).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    assert_eq!(fake.webhook_deliveries_of("message_created")[0].body["content"], stored);
    fake.set_version("4.13.0");
    fake.clear_webhook_deliveries();
    let id = fake.agent_reply(display_id, stored, false).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    assert_eq!(fake.webhook_deliveries_of("message_created")[0].body["content"], "line1\nline2");
    assert_eq!(fake.message(id).unwrap().content.as_deref(), Some(stored), "stored as given");
}

#[actix_web::test]
async fn attachment_json_follows_the_version() {
    let World { fake, display_id, .. } = world_on("4.12.0", "").await;
    let audio = fake.agent_reply_with_attachment(display_id, "", false, "a.ogg", "audio/ogg", b"OggS").unwrap();
    let jpg = fake.agent_reply_with_attachment(display_id, "", false, "b.jpg", "image/jpg", b"\xff\xd8").unwrap();
    let (_, list) = admin(&fake, "GET", &messages_path(display_id), None).await;
    let find = |id: i64| list["payload"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap().clone();
    let old = &find(audio)["attachments"][0];
    assert_eq!(old["extension"], Value::Null, "the column is never filled before PR #13945");
    assert!(old.get("content_type").is_none());
    assert!(!old["data_url"].as_str().unwrap().contains("disposition"));
    assert_eq!(find(jpg)["attachments"][0]["file_type"], "file", "image/jpg is not an image");

    fake.set_version("4.13.0");
    let (_, list) = admin(&fake, "GET", &messages_path(display_id), None).await;
    let new = list["payload"].as_array().unwrap().iter().find(|m| m["id"] == audio).unwrap()["attachments"][0].clone();
    assert_eq!((new["extension"].as_str(), new["content_type"].as_str()), (Some("ogg"), Some("audio/ogg")));
    assert!(new["data_url"].as_str().unwrap().ends_with("?disposition=inline"));
}

#[actix_web::test]
async fn messages_page_with_before_and_after() {
    let World { fake, display_id, .. } = world("").await;
    let ids: Vec<i64> = (0..130).map(|i| fake.agent_reply(display_id, &format!("m{i}"), false).unwrap()).collect();
    let page = |query: String| {
        let fake = &fake;
        async move {
            let (status, list) = admin(fake, "GET", &format!("{}?{query}", messages_path(display_id)), None).await;
            assert_eq!(status, 200, "{list}");
            list["payload"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(String::new()).await, ids[110..].to_vec(), "latest 20");
    assert_eq!(page(format!("before={}", ids[50])).await, ids[30..50].to_vec(), "the 20 just older");
    assert_eq!(page(format!("after={}", ids[10])).await, ids[11..111].to_vec(), "up to 100 newer");
    assert_eq!(page(format!("after={}&before={}", ids[10], ids[20])).await, ids[10..20].to_vec(), "between");
    assert_eq!(page("before=&after=".into()).await, ids[110..].to_vec(), "blank is absent");
}

#[actix_web::test]
async fn contact_inboxes_filter_answers_the_contact_partial() {
    let World { fake, inbox, contact, .. } = world("").await;
    let (status, found) =
        admin(&fake, "POST", "/contact_inboxes/filter", Some(json!({"inbox_id": inbox, "source_id": "5511999999999"})))
            .await;
    assert_eq!(status, 200);
    let mut keys: Vec<&str> = found.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "additional_attributes",
            "availability_status",
            "blocked",
            "contact_inboxes",
            "created_at",
            "custom_attributes",
            "email",
            "id",
            "identifier",
            "name",
            "phone_number",
            "thumbnail"
        ],
        "no last_activity_at before any activity: {found}"
    );
    assert_eq!(found["id"], contact);
    assert_eq!(found["contact_inboxes"][0]["source_id"], "5511999999999");
    assert_eq!(found["contact_inboxes"][0]["inbox"]["id"], inbox);
    assert_eq!(
        admin(&fake, "POST", "/contact_inboxes/filter", Some(json!({"inbox_id": 999, "source_id": "x"}))).await,
        (404, json!({"error": "Resource could not be found"})),
        "ensure_inbox: find raises RecordNotFound"
    );
}

#[actix_web::test]
async fn a_deleted_contact_takes_its_conversations_along() {
    let World { fake, inbox, contact, display_id } = world("").await;
    fake.agent_reply(display_id, "hi", false).unwrap();
    assert!(fake.delete_contact_directly(contact));
    assert!(!fake.delete_contact_directly(contact));
    assert_eq!((fake.contact_count(), fake.conversation_count(), fake.message_count()), (0, 0, 0));
    assert!(fake.contact_inboxes().is_empty());
    let not_found = (404, json!({"error": "Resource could not be found"}));
    assert_eq!(
        admin(
            &fake,
            "POST",
            "/conversations",
            Some(json!({"inbox_id": inbox, "contact_id": contact, "source_id": "5511999999999"}))
        )
        .await,
        not_found
    );
    assert_eq!(
        admin(&fake, "POST", &messages_path(display_id), Some(json!({"content": "x", "message_type": "incoming"})))
            .await,
        not_found
    );
    assert_eq!(
        admin(&fake, "POST", "/contact_inboxes/filter", Some(json!({"inbox_id": inbox, "source_id": "5511999999999"})))
            .await,
        (404, Value::String(String::new()))
    );
}

#[actix_web::test]
async fn a_deleted_inbox_takes_its_conversations_along() {
    let World { fake, inbox, contact, display_id } = world("").await;
    fake.agent_reply(display_id, "hi", false).unwrap();
    fake.delete_inbox_directly(inbox);
    assert_eq!((fake.contact_count(), fake.conversation_count(), fake.message_count()), (1, 0, 0));
    assert!(fake.contact_inboxes().is_empty());
    assert_eq!(
        admin(&fake, "POST", &messages_path(display_id), Some(json!({"content": "x", "message_type": "incoming"})))
            .await,
        (404, json!({"error": "Resource could not be found"}))
    );
    assert!(fake.contact(contact).is_some(), "contacts stay");
}

#[actix_web::test]
async fn a_reset_secret_signs_later_webhooks() {
    let receiver = Receiver::start().await;
    let World { fake, inbox, display_id, .. } = world(&receiver.url).await;
    let old = fake.inbox(inbox).unwrap().secret;
    let path = format!("/api/v1/accounts/{ACCOUNT}/inboxes/{inbox}/reset_secret");
    assert_eq!(cw(&fake, "POST", &path, AGENT, None).await.0, 401);
    let (status, shown) = cw(&fake, "POST", &path, ADMIN, None).await;
    assert_eq!(status, 200);
    let secret = shown["secret"].as_str().unwrap().to_owned();
    assert_ne!(secret, old);
    assert_eq!(admin(&fake, "GET", &format!("/inboxes/{inbox}"), None).await.1["secret"], secret);
    let control = fake.reset_inbox_secret(inbox).unwrap();
    assert_ne!(control, secret);

    fake.agent_reply(display_id, "signed", false).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    let hits = receiver.hits();
    let (headers, _, raw) = hits.iter().find(|(_, v, _)| v["event"] == "message_created").unwrap();
    let timestamp = &headers["x-chatwoot-timestamp"];
    assert_eq!(headers["x-chatwoot-signature"], format!("sha256={}", hex_hmac(&control, timestamp, raw)));

    fake.set_version("4.12.0");
    let (status, page) = cw(&fake, "POST", &path, ADMIN, None).await;
    assert_eq!(status, 404);
    assert!(page.as_str().unwrap().contains("<html>"), "no such route before 4.13");
}

#[actix_web::test]
async fn liquid_keeps_raw_blocks_literally() {
    let World { fake, display_id, .. } = world("").await;
    let path = messages_path(display_id);
    let (_, raw) =
        admin(&fake, "POST", &path, Some(json!({"content": "{% raw %}Hi {{name}}{% endraw %} {{contact.name}}"})))
            .await;
    assert_eq!(raw["content"], "Hi {{name}} Maria");
    let (_, broken) = admin(&fake, "POST", &path, Some(json!({"content": "{% raw %}Hi {{contact.name}}"}))).await;
    assert_eq!(broken["content"], "{% raw %}Hi {{contact.name}}", "a syntax error keeps the content");
    let (_, incoming) =
        admin(&fake, "POST", &path, Some(json!({"content": "{% raw %}x{% endraw %}", "message_type": "incoming"})))
            .await;
    assert_eq!(incoming["content"], "{% raw %}x{% endraw %}", "incoming messages are not Liquid");
}

#[actix_web::test]
async fn suspension_comes_before_membership_and_agents_see_their_inboxes() {
    let World { fake, inbox, .. } = world("").await;
    let member = "cw-member-token-ABCDEF123456";
    let member_id = fake.add_user(member, &[(ACCOUNT, Role::Agent)]);
    let list = format!("/api/v1/accounts/{ACCOUNT}/inboxes");
    assert_eq!(cw(&fake, "GET", &list, member, None).await, (200, json!({"payload": []})));
    fake.add_inbox_member(inbox, member_id);
    let (status, listed) = cw(&fake, "GET", &list, member, None).await;
    assert_eq!((status, listed["payload"][0]["id"].as_i64()), (200, Some(inbox)));
    assert!(listed["payload"][0].get("secret").is_none() && listed["payload"][0].get("hmac_token").is_none());
    assert_eq!(cw(&fake, "GET", &format!("{list}/{inbox}"), member, None).await.0, 200);
    assert_eq!(cw(&fake, "GET", &format!("{list}/{inbox}"), AGENT, None).await.0, 401, "not a member");

    fake.add_account(9, "Closed");
    fake.suspend_account(9);
    assert_eq!(
        cw(&fake, "GET", "/api/v1/accounts/9/inboxes", ADMIN, None).await,
        (401, json!({"error": "Account is suspended"})),
        "account.active? is checked before membership"
    );
}
