//! The fake Chatwoot's contacts, conversations, messages and webhooks answer as the reference
//! (`shared/reference/chatwoot-api.md` §3–§7) says the real Chatwoot does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn cw(fake: &FakeChatwoot, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::default();
    let req = client
        .request(method.parse().unwrap(), format!("{}{path}", fake.url()))
        .insert_header(("api_access_token", token));
    let res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    };
    read(res.unwrap()).await
}

async fn read<S>(mut res: awc::ClientResponse<S>) -> (u16, Value)
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let bytes = res.body().limit(8 * 1024 * 1024).await.unwrap();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (res.status().as_u16(), value)
}

async fn admin(fake: &FakeChatwoot, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    cw(fake, method, &format!("/api/v1/accounts/{ACCOUNT}{path}"), ADMIN, body).await
}

/// Headers and raw body of one received webhook.
type Hit = (HashMap<String, String>, Vec<u8>);

/// A webhook receiver on 127.0.0.1:0 that records headers and raw bodies and answers `status`.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Self {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/webhooks/chatwoot/int_1/s3cret", listener.local_addr().unwrap());
        let (h, s) = (hits.clone(), status.clone());
        let server = HttpServer::new(move || {
            let (h, s) = (h.clone(), s.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (h, s) = (h.clone(), s.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    h.lock().unwrap().push((headers, body.to_vec()));
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
        Self { url, hits, status }
    }

    fn hits(&self) -> Vec<(HashMap<String, String>, Value, Vec<u8>)> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_slice(b).unwrap(), b.clone()))
            .collect()
    }
}

/// A fake with one API inbox (webhook to `webhook_url`), contact Maria and an open conversation.
struct World {
    fake: FakeChatwoot,
    inbox: i64,
    contact: i64,
    display_id: i64,
}

async fn world(webhook_url: &str) -> World {
    let fake = fake_chatwoot();
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
        Some(json!({"inbox_id": inbox, "source_id": "5511999999999", "name": "Maria", "phone_number": "+5511999999999",
                    "identifier": "5511999999999@s.whatsapp.net", "custom_attributes": {"wa_jid": "5511999999999@s.whatsapp.net"}})),
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

fn multipart(fields: &[(&str, &str)], files: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----fakeboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    for (filename, content_type, bytes) in files {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"{filename}\"\r\n"
            )
            .bytes(),
        );
        if let Some(ct) = content_type {
            body.extend(format!("Content-Type: {ct}\r\n").bytes());
        }
        body.extend(b"\r\n");
        body.extend(*bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_multipart(fake: &FakeChatwoot, path: &str, content_type: String, body: Vec<u8>) -> (u16, Value) {
    let res = awc::Client::default()
        .post(format!("{}/api/v1/accounts/{ACCOUNT}{path}", fake.url()))
        .insert_header(("api_access_token", ADMIN))
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await;
    read(res.unwrap()).await
}

#[actix_web::test]
async fn contacts_create_validate_find_and_update() {
    let World { fake, inbox, contact, .. } = world("").await;
    let (_, shown) = admin(&fake, "GET", &format!("/contacts/{contact}"), None).await;
    let shown = &shown["payload"];
    assert_eq!(shown["name"], "Maria");
    assert_eq!(shown["phone_number"], "+5511999999999");
    assert_eq!(shown["email"], Value::Null);
    assert_eq!(shown["custom_attributes"], json!({"wa_jid": "5511999999999@s.whatsapp.net"}));
    assert_eq!(shown["contact_inboxes"][0]["source_id"], "5511999999999");
    assert_eq!(shown["contact_inboxes"][0]["inbox"]["channel_type"], "Channel::Api");

    // Uniqueness and format, with Chatwoot's exact bodies.
    assert_eq!(
        admin(&fake, "POST", "/contacts", Some(json!({"name": "Other", "phone_number": "+5511999999999"}))).await,
        (422, json!({"message": "Phone number has already been taken", "attributes": ["phone_number"]}))
    );
    assert_eq!(
        admin(&fake, "POST", "/contacts", Some(json!({"name": "X", "phone_number": "5511988887777"}))).await,
        (422, json!({"message": "Phone number should be in e164 format", "attributes": ["phone_number"]}))
    );
    assert_eq!(
        admin(&fake, "POST", "/contacts", Some(json!({"identifier": "5511999999999@s.whatsapp.net"}))).await,
        (422, json!({"message": "Identifier has already been taken", "attributes": ["identifier"]}))
    );
    assert_eq!(fake.contact_count(), 1, "a refused contact is not stored");

    // Without source_id, an API inbox gets a UUID; without inbox_id there is no contact_inbox.
    let (status, created) =
        admin(&fake, "POST", "/contacts", Some(json!({"inbox_id": inbox, "name": "Joao", "email": "JOAO@X.COM"})))
            .await;
    assert_eq!(status, 200);
    let source_id = created["payload"]["contact_inbox"]["source_id"].as_str().unwrap();
    assert_eq!((source_id.len(), source_id.matches('-').count()), (36, 4), "UUID source_id: {source_id}");
    assert_eq!(created["payload"]["contact_inbox"]["inbox"]["id"], inbox);
    assert_eq!(created["payload"]["contact"]["email"], "joao@x.com", "emails are stored lowercased");
    let (_, bare) = admin(&fake, "POST", "/contacts", Some(json!({"name": "Group", "identifier": "123@g.us"}))).await;
    assert_eq!(bare["payload"]["contact_inbox"], json!({"inbox": null, "source_id": null}));
    assert_eq!(bare["payload"]["contact"]["contact_inboxes"], json!([]));

    // Finding.
    let (status, found) = admin(&fake, "GET", "/contacts/search?q=%2B5511999", None).await;
    assert_eq!(status, 200);
    assert_eq!(found["meta"], json!({"count": 1, "current_page": 1, "has_more": false}));
    assert_eq!(found["payload"][0]["id"], contact);
    assert_eq!(
        admin(&fake, "GET", "/contacts/search?q=", None).await,
        (422, json!({"error": "Specify search string with parameter q"}))
    );
    let filter = json!({"payload": [{"attribute_key": "phone_number", "filter_operator": "equal_to",
                                      "values": ["5511999999999"], "query_operator": null}]});
    let (status, filtered) = admin(&fake, "POST", "/contacts/filter", Some(filter)).await;
    assert_eq!((status, filtered["meta"]["count"].as_i64()), (200, Some(1)), "the service adds the +");
    assert_eq!(filtered["payload"][0]["id"], contact);
    let (status, by_source) =
        admin(&fake, "POST", "/contact_inboxes/filter", Some(json!({"inbox_id": inbox, "source_id": "5511999999999"})))
            .await;
    assert_eq!((status, by_source["id"].as_i64()), (200, Some(contact)), "unwrapped contact: {by_source}");
    assert!(by_source["contact_inboxes"].is_array());
    assert_eq!(
        admin(&fake, "POST", "/contact_inboxes/filter", Some(json!({"inbox_id": inbox, "source_id": "nope"}))).await,
        (404, Value::String(String::new())),
        "a miss is a 404 with an empty body"
    );

    // Update merges custom attributes.
    let (status, updated) = admin(
        &fake,
        "PATCH",
        &format!("/contacts/{contact}"),
        Some(json!({"name": "Maria S", "custom_attributes": {"wa_lid": "123@lid"}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["payload"]["name"], "Maria S");
    assert_eq!(
        updated["payload"]["custom_attributes"],
        json!({"wa_jid": "5511999999999@s.whatsapp.net", "wa_lid": "123@lid"})
    );

    // contact_inboxes: idempotent for the same contact; another contact's source_id is a 500.
    let path = format!("/contacts/{contact}/contact_inboxes");
    let (status, link) =
        admin(&fake, "POST", &path, Some(json!({"inbox_id": inbox, "source_id": "5511999999999"}))).await;
    assert_eq!(status, 200);
    assert_eq!(link["source_id"], "5511999999999");
    assert_eq!(link["inbox"]["id"], inbox);
    assert_eq!(fake.contact_inboxes().len(), 2);
    let joao = created["payload"]["contact"]["id"].as_i64().unwrap();
    let (status, _) = admin(
        &fake,
        "POST",
        &format!("/contacts/{joao}/contact_inboxes"),
        Some(json!({"inbox_id": inbox, "source_id": "5511999999999"})),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(
        admin(&fake, "GET", "/contacts/999999", None).await,
        (404, json!({"error": "Resource could not be found"}))
    );

    // Agents are refused; misshapen requests are flagged.
    assert_eq!(
        cw(&fake, "GET", &format!("/api/v1/accounts/{ACCOUNT}/contacts/{contact}"), AGENT, None).await,
        (401, json!({"error": "You are not authorized to do this action"}))
    );
    let violations = fake.violations();
    assert_eq!(violations.len(), 1, "only the RecordNotUnique: {violations:?}");
    admin(&fake, "POST", "/contacts", Some(json!({"name": "Y", "phone": "+5511911112222"}))).await;
    admin(&fake, "GET", "/contacts/search?q=+5511", None).await;
    let violations = fake.violations();
    assert!(violations.iter().any(|v| v.contains("`phone`")), "{violations:?}");
    assert!(violations.iter().any(|v| v.contains("%2B")), "{violations:?}");
}

#[actix_web::test]
async fn conversations_create_show_toggle_and_lock() {
    let World { fake, inbox, contact, display_id } = world("").await;
    let (status, conversation) = admin(&fake, "GET", &format!("/conversations/{display_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(display_id, 1, "display ids count per account");
    assert_eq!(conversation["inbox_id"], inbox);
    assert_eq!(conversation["account_id"], ACCOUNT);
    assert_eq!(conversation["status"], "open");
    assert_eq!(conversation["meta"]["sender"]["id"], contact);
    assert_eq!(conversation["meta"]["channel"], "Channel::Api");
    assert_eq!(conversation["messages"], json!([]));
    assert_eq!(conversation["can_reply"], true);
    assert_ne!(fake.conversation(display_id).unwrap().id, display_id, "the database id is not the display id");

    // toggle_status with and without a status.
    let path = format!("/conversations/{display_id}/toggle_status");
    assert_eq!(
        admin(&fake, "POST", &path, Some(json!({"status": "resolved"}))).await,
        (
            200,
            json!({"meta": {}, "payload": {"success": true, "conversation_id": display_id, "current_status": "resolved", "snoozed_until": null}})
        )
    );
    let (_, toggled) = admin(&fake, "POST", &path, Some(json!({}))).await;
    assert_eq!(toggled["payload"]["current_status"], "open", "without status it toggles");
    assert_eq!(admin(&fake, "POST", &path, Some(json!({"status": "closed"}))).await.0, 500);
    assert!(fake.violations().iter().any(|v| v.contains("closed")));
    assert_eq!(
        admin(&fake, "GET", "/conversations/99", None).await,
        (404, json!({"error": "Resource could not be found"}))
    );

    // Without the lock, each call creates a conversation; with it, the last one comes back whatever its status.
    let body = json!({"inbox_id": inbox, "contact_id": contact, "source_id": "5511999999999", "status": "pending"});
    let (_, second) = admin(&fake, "POST", "/conversations", Some(body.clone())).await;
    assert_eq!((second["id"].as_i64(), second["status"].as_str()), (Some(2), Some("pending")));
    fake.set_conversation_status(2, "resolved");
    fake.set_lock_to_single_conversation(inbox, true);
    let (_, locked) = admin(&fake, "POST", "/conversations", Some(body.clone())).await;
    assert_eq!((locked["id"].as_i64(), locked["status"].as_str()), (Some(2), Some("resolved")));
    assert_eq!(fake.conversation_count(), 2);
    let (_, inbox_json) = admin(&fake, "GET", &format!("/inboxes/{inbox}"), None).await;
    assert_eq!(inbox_json["lock_to_single_conversation"], true);

    // A source_id of another contact in the same inbox.
    let (_, other) =
        admin(&fake, "POST", "/contacts", Some(json!({"name": "Ze", "phone_number": "+5511955554444"}))).await;
    let other = other["payload"]["contact"]["id"].as_i64().unwrap();
    assert_eq!(
        admin(
            &fake,
            "POST",
            "/conversations",
            Some(json!({"inbox_id": inbox, "contact_id": other, "source_id": "5511999999999"}))
        )
        .await,
        (422, json!({"error": "source_id should be unique"}))
    );

    // The contact's conversations, newest activity first; the conversation list filters by status.
    let (_, list) = admin(&fake, "GET", &format!("/contacts/{contact}/conversations"), None).await;
    let ids: Vec<i64> = list["payload"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    let (_, open) = admin(&fake, "GET", &format!("/conversations?inbox_id={inbox}"), None).await;
    assert_eq!(open["data"]["meta"]["all_count"], 1, "{open}");
    assert_eq!(open["data"]["payload"][0]["id"], 1);
    assert_eq!(cw(&fake, "GET", &format!("/api/v1/accounts/{ACCOUNT}/conversations/1"), AGENT, None).await.0, 401);
}

#[actix_web::test]
async fn messages_are_created_listed_and_quoted() {
    let World { fake, contact, display_id, .. } = world("").await;
    let path = format!("/conversations/{display_id}/messages");
    let (status, incoming) = admin(
        &fake,
        "POST",
        &path,
        Some(json!({"content": "oi", "message_type": "incoming", "source_id": "WAID:AAA", "echo_id": "tmp-1"})),
    )
    .await;
    assert_eq!(status, 200, "{incoming}");
    assert_eq!(incoming["message_type"], 0, "REST uses numeric message types");
    assert_eq!(incoming["conversation_id"], display_id);
    assert_eq!(incoming["status"], "sent");
    assert_eq!(incoming["source_id"], "WAID:AAA");
    assert_eq!(incoming["echo_id"], "tmp-1");
    assert_eq!(incoming["private"], false);
    assert_eq!(incoming["sender"]["id"], contact);
    assert_eq!(incoming["sender"]["type"], "contact");
    let first = incoming["id"].as_i64().unwrap();

    // Quotes: the builder resolves either key in the same conversation and writes both.
    let (_, reply) = admin(
        &fake,
        "POST",
        &path,
        Some(json!({"content": "re", "message_type": "incoming", "source_id": "WAID:BBB",
                    "content_attributes": {"in_reply_to_external_id": "WAID:AAA"}})),
    )
    .await;
    assert_eq!(reply["content_attributes"], json!({"in_reply_to": first, "in_reply_to_external_id": "WAID:AAA"}));
    let (_, lost) = admin(
        &fake,
        "POST",
        &path,
        Some(json!({"content": "re", "message_type": "incoming", "content_attributes": {"in_reply_to_external_id": "WAID:ZZZ"}})),
    )
    .await;
    assert_eq!(lost["content_attributes"], json!({"in_reply_to": null, "in_reply_to_external_id": null}));

    // Outgoing: the token owner is the sender, and Liquid is rendered.
    let (_, outgoing) =
        admin(&fake, "POST", &path, Some(json!({"content": "Oi {{contact.name}}, `{{x}}`", "source_id": "WAID:CCC"})))
            .await;
    assert_eq!(outgoing["message_type"], 1);
    assert_eq!(outgoing["content"], "Oi Maria, `{{x}}`");
    assert_eq!(outgoing["sender"]["type"], "user");

    // Errors.
    assert_eq!(
        admin(&fake, "POST", &path, Some(json!({"content": "x".repeat(150_001), "message_type": "incoming"}))).await,
        (422, json!({"error": "Validation failed: Content is too long (maximum is 150000 characters)"}))
    );
    assert_eq!(
        admin(&fake, "POST", &path, Some(json!({"content": "x", "message_type": "inbound"}))).await,
        (422, json!({"error": "'inbound' is not a valid message_type"}))
    );
    assert_eq!(admin(&fake, "POST", "/conversations/77/messages", Some(json!({"content": "x"}))).await.0, 404);

    let (status, list) = admin(&fake, "GET", &path, None).await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = list["payload"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], first, "oldest first");
    assert_eq!(list["meta"]["contact"]["id"], contact);
    let (_, after) = admin(&fake, "GET", &format!("{path}?after={first}"), None).await;
    assert_eq!(after["payload"].as_array().unwrap().len(), 3);
    assert_eq!(fake.messages(display_id).len(), 4);
    assert!(fake.violations().iter().all(|v| v.contains("inbound")), "{:?}", fake.violations());
}

#[actix_web::test]
async fn an_incoming_message_reopens_a_resolved_conversation() {
    let World { fake, contact, display_id, .. } = world("").await;
    let path = format!("/conversations/{display_id}/messages");
    fake.set_conversation_status(display_id, "resolved");
    admin(&fake, "POST", &path, Some(json!({"content": "from me", "message_type": "outgoing", "source_id": "WAID:1"})))
        .await;
    assert_eq!(fake.conversation(display_id).unwrap().status, "resolved", "outgoing never reopens");
    let (status, _) =
        admin(&fake, "POST", &path, Some(json!({"content": "oi", "message_type": "incoming", "source_id": "WAID:2"})))
            .await;
    assert_eq!(status, 200);
    assert_eq!(fake.conversation(display_id).unwrap().status, "open", "native reopen");
    fake.set_conversation_status(display_id, "snoozed");
    admin(&fake, "POST", &path, Some(json!({"content": "?", "message_type": "incoming"}))).await;
    assert_eq!(fake.conversation(display_id).unwrap().status, "open", "snoozed reopens too");

    fake.set_conversation_status(display_id, "resolved");
    fake.set_contact_blocked(contact, true);
    admin(&fake, "POST", &path, Some(json!({"content": "blocked", "message_type": "incoming"}))).await;
    assert_eq!(fake.conversation(display_id).unwrap().status, "resolved", "muted conversations stay resolved");
}

#[actix_web::test]
async fn multipart_attachments_are_stored_and_served_through_a_redirect() {
    let World { fake, display_id, .. } = world("").await;
    let path = format!("/conversations/{display_id}/messages");
    admin(&fake, "POST", &path, Some(json!({"content": "q", "message_type": "incoming", "source_id": "WAID:Q"}))).await;
    let jpeg: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let (content_type, body) = multipart(
        &[
            ("content", "a foto"),
            ("message_type", "incoming"),
            ("private", "false"),
            ("source_id", "WAID:IMG"),
            ("content_attributes", r#"{"in_reply_to_external_id":"WAID:Q"}"#),
        ],
        &[
            ("foto 1.jpg", Some("image/jpeg"), &jpeg),
            ("voice.ogg", Some("audio/ogg"), b"OggS"),
            ("doc.pdf", Some("application/pdf"), b"%PDF"),
        ],
    );
    let (status, message) = post_multipart(&fake, &path, content_type, body).await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["content"], "a foto");
    assert_eq!(message["source_id"], "WAID:IMG");
    assert_eq!(message["content_attributes"]["in_reply_to_external_id"], "WAID:Q");
    let attachments = message["attachments"].as_array().unwrap();
    let kinds: Vec<&str> = attachments.iter().map(|a| a["file_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["image", "audio", "file"]);
    let image = &attachments[0];
    assert_eq!(image["file_size"], 5000);
    assert_eq!(image["extension"], "jpg");
    assert_eq!(image["content_type"], "image/jpeg");
    assert_eq!(image["message_id"], message["id"]);
    let data_url = image["data_url"].as_str().unwrap();
    assert!(data_url.starts_with(&format!("{}/rails/active_storage/blobs/redirect/", fake.url())), "{data_url}");
    assert!(data_url.ends_with("/foto%201.jpg"), "{data_url}");
    assert!(attachments[1]["data_url"].as_str().unwrap().ends_with("?disposition=inline"));

    // data_url answers 302; the target serves the bytes with their content type.
    let no_redirects = awc::Client::builder().disable_redirects().finish();
    let redirect = no_redirects.get(data_url).send().await.unwrap();
    assert_eq!(redirect.status().as_u16(), 302);
    let location = redirect.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let mut file = no_redirects.get(&location).send().await.unwrap();
    assert_eq!(file.status().as_u16(), 200);
    assert_eq!(file.headers().get("content-type").unwrap(), "image/jpeg");
    assert_eq!(file.body().await.unwrap().to_vec(), jpeg);
    let mut followed = awc::Client::default().get(data_url).send().await.unwrap();
    assert_eq!(followed.body().await.unwrap().len(), 5000, "a client following redirects gets the file");

    let stored = fake.message(message["id"].as_i64().unwrap()).unwrap();
    assert_eq!(stored.attachments[0].file_name, "foto 1.jpg");
    assert_eq!(stored.attachments[0].byte_size, 5000);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let request = fake.requests().into_iter().rfind(|r| r.method == "POST" && r.path.ends_with("/messages")).unwrap();
    assert_eq!(request.body.unwrap()["attachments[]"][0]["filename"], "foto 1.jpg");

    // A file part without Content-Type is flagged.
    let (content_type, body) = multipart(&[("message_type", "incoming")], &[("x.bin", None, b"1")]);
    let (status, message) = post_multipart(&fake, &path, content_type, body).await;
    assert_eq!((status, message["attachments"][0]["file_type"].as_str()), (200, Some("file")));
    assert!(fake.violations().iter().any(|v| v.contains("no Content-Type")), "{:?}", fake.violations());
}

#[actix_web::test]
async fn message_status_patch_and_its_version_gate() {
    let World { fake, display_id, .. } = world("").await;
    let id = fake.agent_reply(display_id, "olá", false).unwrap();
    let path = format!("/conversations/{display_id}/messages/{id}");
    let (status, message) = admin(&fake, "PATCH", &path, Some(json!({"status": "delivered"}))).await;
    assert_eq!((status, message["status"].as_str()), (200, Some("delivered")));
    admin(&fake, "PATCH", &path, Some(json!({"status": "read"}))).await;
    let (status, message) = admin(&fake, "PATCH", &path, Some(json!({"status": "delivered"}))).await;
    assert_eq!((status, message["status"].as_str()), (200, Some("read")), "read → delivered is ignored");
    let (_, failed) =
        admin(&fake, "PATCH", &path, Some(json!({"status": "failed", "external_error": "no route"}))).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["content_attributes"]["external_error"], "no route");
    assert_eq!(fake.message(id).unwrap().external_error.as_deref(), Some("no route"));
    let (_, sent) = admin(&fake, "PATCH", &path, Some(json!({"status": "sent", "external_error": "kept?"}))).await;
    assert_eq!(
        sent["content_attributes"],
        json!({"external_error": null}),
        "external_error is kept only with failed; the store accessor leaves the key as null"
    );
    assert_eq!(fake.message(id).unwrap().external_error, None);
    assert!(fake.violations().is_empty());
    let (status, unchanged) = admin(&fake, "PATCH", &path, Some(json!({"status": "seen"}))).await;
    assert_eq!((status, unchanged["status"].as_str()), (200, Some("sent")), "unknown statuses are ignored silently");
    assert_eq!(fake.violations().len(), 1, "{:?}", fake.violations());
    assert_eq!(
        admin(&fake, "PATCH", &format!("/conversations/{display_id}/messages/1"), Some(json!({"status": "read"})))
            .await
            .0,
        404
    );

    fake.set_version("4.1.0");
    let (status, page) = admin(&fake, "PATCH", &path, Some(json!({"status": "read"}))).await;
    assert_eq!(status, 404);
    assert!(page.as_str().unwrap().contains("<html>"), "no such route before 4.2: {page}");
    assert_eq!(fake.message(id).unwrap().status, "sent");
}

#[actix_web::test]
async fn deleting_a_message_keeps_a_tombstone_and_drops_its_files() {
    let receiver = Receiver::start().await;
    let World { fake, display_id, .. } = world(&receiver.url).await;
    let id = fake.agent_reply_with_attachment(display_id, "see", false, "a.png", "image/png", b"\x89PNG").unwrap();
    let data_url = fake.message(id).unwrap().attachments[0].data_url.clone();
    let (status, deleted) = admin(&fake, "DELETE", &format!("/conversations/{display_id}/messages/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["content"], "This message was deleted");
    assert_eq!(deleted["content_attributes"], json!({"deleted": true}));
    assert!(deleted.get("attachments").is_none());
    let gone = awc::Client::builder().disable_redirects().finish().get(&data_url).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 404);
    assert!(fake.webhooks_settled(WAIT).await);
    let deliveries = fake.webhook_deliveries();
    let updated = deliveries.iter().find(|d| d.event == "message_updated").expect("message_updated");
    assert_eq!(updated.body["content_attributes"], json!({"deleted": true}));
    assert_eq!(updated.body["id"], id);
    assert!(fake.agent_delete(id));
}

fn hex_hmac(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_web::test]
async fn webhooks_are_delivered_with_chatwoot_payloads_and_signed() {
    let receiver = Receiver::start().await;
    let World { fake, inbox, contact, display_id } = world(&receiver.url).await;
    let secret = fake.inbox(inbox).unwrap().secret;
    assert!(fake.webhooks_settled(WAIT).await);
    assert_eq!(fake.webhook_deliveries_of("conversation_created").len(), 1);
    fake.clear_webhook_deliveries();

    let id = fake.agent_reply(display_id, "Olá **Maria**\n", false).unwrap();
    let deliveries = fake.wait_for_webhooks(1, WAIT).await;
    assert_eq!(deliveries[0].event, "message_created");
    assert_eq!(deliveries[0].status, Some(200));
    let body = &deliveries[0].body;
    assert_eq!(body["event"], "message_created");
    assert_eq!(body["id"], id);
    assert_eq!(body["content"], "Olá **Maria**", "trailing newlines normalized");
    assert_eq!(body["message_type"], "outgoing", "webhooks use string message types");
    assert_eq!(body["private"], false);
    assert_eq!(body["source_id"], Value::Null);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["sender"]["type"], "user");
    assert_eq!(body["sender"]["id"], fake.agent_id());
    assert_eq!(body["inbox"], json!({"id": inbox, "name": "WhatsApp - suporte"}));
    assert_eq!(body["account"], json!({"id": ACCOUNT, "name": "Orion"}));
    assert!(body.get("status").is_none() && body.get("attachments").is_none());
    let conversation = &body["conversation"];
    assert_eq!(conversation["id"], display_id);
    assert_eq!(conversation["contact_inbox"]["source_id"], "5511999999999");
    assert_eq!(conversation["meta"]["sender"]["id"], contact);
    assert_eq!(conversation["meta"]["sender"]["type"], "contact");
    assert_eq!(conversation["account"]["id"], ACCOUNT, "4.14.2+");
    assert_eq!(conversation["messages"][0]["id"], id);

    // What the receiver saw: headers and a signature over the raw body.
    let hits = receiver.hits();
    let (headers, value, raw) = hits.iter().find(|(_, v, _)| v["event"] == "message_created").unwrap();
    assert_eq!(value, body);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(headers["x-chatwoot-delivery"].len(), 36);
    let timestamp = &headers["x-chatwoot-timestamp"];
    assert!((chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap()).abs() < 60);
    assert_eq!(headers["x-chatwoot-signature"], format!("sha256={}", hex_hmac(&secret, timestamp, raw)));
    assert_ne!(headers["x-chatwoot-signature"], format!("sha256={}", hex_hmac("wrong", timestamp, raw)));

    // Status changes: conversation_status_changed and conversation_updated.
    fake.clear_webhook_deliveries();
    assert!(fake.set_conversation_status(display_id, "resolved"));
    assert!(fake.webhooks_settled(WAIT).await);
    let events: Vec<String> = fake.webhook_deliveries().iter().map(|d| d.event.clone()).collect();
    assert_eq!(events, ["conversation_status_changed", "conversation_updated"]);
    let updated = &fake.webhook_deliveries()[1].body;
    assert_eq!(updated["status"], "resolved");
    assert_eq!(
        updated["changed_attributes"][0],
        json!({"status": {"previous_value": "open", "current_value": "resolved"}})
    );

    // Typing, private or not.
    fake.clear_webhook_deliveries();
    fake.agent_typing(display_id, true);
    fake.agent_typing_private(display_id, false);
    let deliveries = fake.wait_for_webhooks(2, WAIT).await;
    assert_eq!(deliveries[0].event, "conversation_typing_on");
    assert_eq!(deliveries[0].body["user"]["type"], "user");
    assert_eq!(deliveries[0].body["is_private"], false);
    assert_eq!(deliveries[0].body["conversation"]["id"], display_id);
    assert_eq!(
        (deliveries[1].event.as_str(), &deliveries[1].body["is_private"]),
        ("conversation_typing_off", &json!(true))
    );

    // Duplicates, and pausing.
    fake.clear_webhook_deliveries();
    fake.set_webhook_duplicates(true);
    fake.pause_webhooks();
    fake.agent_reply(display_id, "twice", false).unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    assert!(fake.webhook_deliveries().is_empty(), "nothing is delivered while paused");
    assert_eq!(fake.held_webhooks(), 2);
    fake.resume_webhooks();
    assert!(fake.webhooks_settled(WAIT).await);
    let created = fake.webhook_deliveries_of("message_created");
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].body, created[1].body);
    assert_ne!(created[0].delivery_id, created[1].delivery_id);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn older_versions_send_no_signature_and_no_typing() {
    let receiver = Receiver::start().await;
    let World { fake, display_id, .. } = world(&receiver.url).await;
    fake.set_version("4.1.0");
    fake.agent_typing(display_id, true);
    fake.agent_reply(display_id, "x", false).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    let events: Vec<String> = fake.webhook_deliveries().iter().map(|d| d.event.clone()).collect();
    assert!(!events.iter().any(|e| e.starts_with("conversation_typing")), "{events:?}");
    let hits = receiver.hits();
    let (headers, body, _) = hits.iter().find(|(_, v, _)| v["event"] == "message_created").unwrap();
    assert!(!headers.contains_key("x-chatwoot-signature") && !headers.contains_key("x-chatwoot-timestamp"));
    assert!(headers.contains_key("x-chatwoot-delivery"));
    assert!(body["conversation"].get("account").is_none(), "no account before 4.14.2");
}

#[actix_web::test]
async fn a_failed_delivery_marks_the_message_failed_and_retry_sends_it_again() {
    let receiver = Receiver::start().await;
    let World { fake, display_id, .. } = world(&receiver.url).await;
    assert!(fake.webhooks_settled(WAIT).await);
    receiver.status.store(500, Ordering::SeqCst);
    let id = fake.agent_reply(display_id, "will fail", false).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    let message = fake.message(id).unwrap();
    assert_eq!(message.status, "failed");
    assert_eq!(message.external_error.as_deref(), Some("500 Internal Server Error"));
    let failures: Vec<_> = fake.webhook_deliveries().into_iter().filter(|d| d.event.starts_with("message_")).collect();
    assert_eq!(failures.len(), 2, "message_created, then the message_updated for the failure: {failures:?}");
    assert!(failures.iter().all(|d| d.status == Some(500)));
    assert_eq!((failures[0].event.as_str(), failures[1].event.as_str()), ("message_created", "message_updated"));
    assert_eq!(failures[1].body["content_attributes"]["external_error"], "500 Internal Server Error");

    receiver.status.store(200, Ordering::SeqCst);
    fake.clear_webhook_deliveries();
    assert!(fake.agent_retry(id));
    let deliveries = fake.wait_for_webhooks(1, WAIT).await;
    assert!(fake.webhooks_settled(WAIT).await);
    let updates = fake.webhook_deliveries_of("message_updated");
    assert_eq!(deliveries[0].event, "message_updated");
    assert_eq!(updates.len(), 2, "status update, then content_attributes {{}}: two updates, two webhooks");
    // Both payloads are built when their job runs, after both updates: both show the final state.
    assert!(updates.iter().all(|d| d.body["content_attributes"] == json!({})), "{updates:?}");
    assert_eq!(fake.message(id).unwrap().status, "sent");

    // An unreachable webhook is a transport error.
    fake.set_inbox_webhook_url(fake.inboxes()[0].id, "http://127.0.0.1:9/hook");
    fake.clear_webhook_deliveries();
    let id = fake.agent_reply(display_id, "nobody", false).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    let first = &fake.webhook_deliveries()[0];
    assert_eq!(first.status, None);
    assert!(first.error.as_deref().unwrap().starts_with("Failed to open TCP connection to 127.0.0.1:9"), "{first:?}");
    assert_eq!(fake.message(id).unwrap().status, "failed");
}

#[actix_web::test]
async fn public_api_typing_and_last_seen() {
    let receiver = Receiver::start().await;
    let World { fake, inbox, contact, display_id } = world(&receiver.url).await;
    let identifier = fake.inbox(inbox).unwrap().identifier;
    let reply = fake.agent_reply(display_id, "hi", false).unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    fake.clear_webhook_deliveries();
    let base =
        format!("{}/public/api/v1/inboxes/{identifier}/contacts/5511999999999/conversations/{display_id}", fake.url());
    let client = awc::Client::default();
    let res = client.post(format!("{base}/toggle_typing")).send_json(&json!({"typing_status": "on"})).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let res = client.post(format!("{base}/update_last_seen")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let deliveries = fake.wait_for_webhooks(2, WAIT).await;
    assert_eq!(deliveries[0].event, "conversation_typing_on");
    assert_eq!(deliveries[0].body["user"]["id"], contact);
    assert!(deliveries[0].body["user"].get("type").is_none(), "a contact typist has no type");
    assert_eq!(deliveries[1].event, "message_updated");
    assert_eq!(fake.message(reply).unwrap().status, "read");
    let wrong =
        client.post(format!("{}/public/api/v1/inboxes/nope/contacts/x/conversations/1/toggle_typing", fake.url()));
    assert_eq!(wrong.send_json(&json!({"typing_status": "on"})).await.unwrap().status().as_u16(), 404);
}
