//! The fake Chatwoot's contact merge (`POST …/actions/contact_merge`, `contact_merges_controller.rb` and
//! `app/actions/contact_merge_action.rb`) and contact update (`contacts_controller.rb#update`), as issue 15
//! ("one person, one contact") needs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use ryze_fakes::chatwoot::FakeSender;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
/// Refused at once: deliveries are recorded with an error, which is all these tests look at.
const HOOK: &str = "http://127.0.0.1:9/hook";
const MERGE: &str = "/api/v1/accounts/5/actions/contact_merge";

async fn cw(fake: &FakeChatwoot, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::default();
    let req = client
        .request(method.parse().unwrap(), format!("{}{path}", fake.url()))
        .insert_header(("api_access_token", token));
    let mut res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .unwrap();
    let bytes = res.body().limit(8 * 1024 * 1024).await.unwrap();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (res.status().as_u16(), value)
}

async fn admin(fake: &FakeChatwoot, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    cw(fake, method, &format!("/api/v1/accounts/{ACCOUNT}{path}"), ADMIN, body).await
}

async fn merge(fake: &FakeChatwoot, token: &str, base: Value, mergee: Value) -> (u16, Value) {
    cw(fake, "POST", MERGE, token, Some(json!({"base_contact_id": base, "mergee_contact_id": mergee}))).await
}

/// A contact with a contact_inbox for `source_id` and an open conversation in `inbox`: (contact, display id).
async fn person(fake: &FakeChatwoot, inbox: i64, source_id: &str, fields: Value) -> (i64, i64) {
    let mut body = json!({"inbox_id": inbox, "source_id": source_id});
    body.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    let (status, created) = admin(fake, "POST", "/contacts", Some(body)).await;
    assert_eq!(status, 200, "{created}");
    let contact = created["payload"]["contact"]["id"].as_i64().unwrap();
    let (status, conversation) = admin(
        fake,
        "POST",
        "/conversations",
        Some(json!({"inbox_id": inbox, "contact_id": contact, "source_id": source_id})),
    )
    .await;
    assert_eq!(status, 200, "{conversation}");
    (contact, conversation["id"].as_i64().unwrap())
}

async fn inbox(fake: &FakeChatwoot) -> i64 {
    let (status, inbox) = admin(
        fake,
        "POST",
        "/inboxes",
        Some(json!({"name": "WhatsApp - suporte", "channel": {"type": "api", "webhook_url": HOOK}})),
    )
    .await;
    assert_eq!(status, 200, "{inbox}");
    inbox["id"].as_i64().unwrap()
}

#[actix_web::test]
async fn merge_moves_conversations_and_contact_inboxes_to_the_base_and_destroys_the_mergee() {
    let fake = fake_chatwoot();
    let inbox = inbox(&fake).await;
    let (base, base_chat) = person(
        &fake,
        inbox,
        "5511999999999",
        json!({"name": "Maria", "phone_number": "+5511999999999",
               "custom_attributes": {"wa_jid": "5511999999999@s.whatsapp.net", "empty_old": ""}}),
    )
    .await;
    let (mergee, mergee_chat) = person(
        &fake,
        inbox,
        "123456789012345",
        json!({"name": "Maria LID", "email": "Maria@Example.com", "identifier": "123456789012345@lid",
               "custom_attributes": {"wa_jid": "123456789012345@lid", "wa_lid": "123456789012345@lid"},
               "additional_attributes": {"city": "Recife"}}),
    )
    .await;
    let path = format!("/conversations/{mergee_chat}/messages");
    let (status, sent) = admin(&fake, "POST", &path, Some(json!({"content": "oi", "message_type": "incoming"}))).await;
    assert_eq!(status, 200, "{sent}");
    let old_message = sent["id"].as_i64().unwrap();
    assert!(fake.webhooks_settled(WAIT).await);
    fake.clear_webhook_deliveries();

    // An agent may merge (no policy); the answer is the base's `_contact` partial, unwrapped, no contact_inboxes.
    let (status, merged) = merge(&fake, AGENT, json!(base), json!(mergee.to_string())).await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["id"], json!(base), "{merged}");
    assert!(merged.get("payload").is_none() && merged.get("contact_inboxes").is_none(), "{merged}");
    // Base values win; blank ones are filled from the mergee; the attribute hashes merge key by key.
    assert_eq!(merged["name"], "Maria");
    assert_eq!(merged["phone_number"], "+5511999999999");
    assert_eq!(merged["email"], "maria@example.com");
    assert_eq!(merged["identifier"], "123456789012345@lid");
    assert_eq!(
        merged["custom_attributes"],
        json!({"wa_jid": "5511999999999@s.whatsapp.net", "wa_lid": "123456789012345@lid", "empty_old": ""})
    );
    assert_eq!(merged["additional_attributes"], json!({"city": "Recife"}));

    // Webhooks: the moved message's `message_updated` (now from the base); no `conversation_updated`
    // (contact_id is not in `list_of_keys`) and no contact event (those go to account webhooks only).
    assert!(fake.webhooks_settled(WAIT).await);
    let events: Vec<(String, Value)> =
        fake.webhook_deliveries().into_iter().map(|d| (d.event, d.body["id"].clone())).collect();
    assert_eq!(events, [("message_updated".to_owned(), json!(old_message))]);
    let updated = &fake.webhook_deliveries_of("message_updated")[0].body;
    assert_eq!(updated["sender"]["id"], json!(base), "{updated}");

    // The mergee is gone.
    let (status, gone) = admin(&fake, "GET", &format!("/contacts/{mergee}"), None).await;
    assert_eq!((status, gone), (404, json!({"error": "Resource could not be found"})));
    assert!(fake.contact(mergee).is_none());
    assert!(fake.contacts().iter().all(|c| c.id != mergee));
    assert_eq!(fake.contact_count(), 1);

    // Its conversation, contact_inbox and messages belong to the base.
    assert_eq!(fake.conversation(mergee_chat).unwrap().contact_id, base);
    assert_eq!(fake.conversation(base_chat).unwrap().contact_id, base);
    assert!(fake.contact_inboxes().iter().all(|ci| ci.contact_id == base));
    assert_eq!(fake.message(old_message).unwrap().sender, FakeSender::Contact(base));
    let (status, shown) = admin(&fake, "GET", &format!("/contacts/{base}"), None).await;
    assert_eq!(status, 200);
    let mut sources: Vec<&str> = shown["payload"]["contact_inboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["source_id"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["123456789012345", "5511999999999"]);
    let (status, chats) = admin(&fake, "GET", &format!("/contacts/{base}/conversations"), None).await;
    assert_eq!((status, chats["payload"].as_array().unwrap().len()), (200, 2));

    // contact_inboxes/filter with the mergee's source_id finds the base.
    let (status, found) = admin(
        &fake,
        "POST",
        "/contact_inboxes/filter",
        Some(json!({"inbox_id": inbox, "source_id": "123456789012345"})),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], json!(base));

    // A message in the moved conversation works, from the base.
    let (status, sent) =
        admin(&fake, "POST", &path, Some(json!({"content": "again", "message_type": "incoming"}))).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["sender"]["id"], json!(base), "{sent}");
    assert_eq!(fake.message(sent["id"].as_i64().unwrap()).unwrap().sender, FakeSender::Contact(base));

    // Merging the deleted mergee again: `contacts.find` raises RecordNotFound.
    let (status, again) = merge(&fake, ADMIN, json!(base), json!(mergee)).await;
    assert_eq!((status, again), (404, json!({"error": "Resource could not be found"})));
    assert_eq!(fake.count("POST", MERGE), 2);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn merge_refusals_and_the_same_contact_twice() {
    let fake = fake_chatwoot();
    fake.add_account(6, "Other");
    fake.add_user("cw-other-admin-token-123456", &[(6, Role::Administrator)]);
    fake.add_bot("cw-bot-token-ABCDEF123456", ACCOUNT);
    let inbox = inbox(&fake).await;
    let (base, _) =
        person(&fake, inbox, "5511999999999", json!({"name": "Maria", "phone_number": "+5511999999999"})).await;
    let (mergee, _) = person(&fake, inbox, "5511988887777", json!({"name": "João"})).await;
    let not_found = (404, json!({"error": "Resource could not be found"}));

    // base == mergee: `perform` returns the base untouched.
    let (status, same) = merge(&fake, ADMIN, json!(base), json!(base)).await;
    assert_eq!((status, &same["id"], &same["name"]), (200, &json!(base), &json!("Maria")));
    assert_eq!(fake.contact_count(), 2);

    // Missing or unknown ids, either side: RecordNotFound.
    assert_eq!(merge(&fake, ADMIN, json!(base), json!(999_999)).await, not_found);
    assert_eq!(merge(&fake, ADMIN, json!(999_999), json!(mergee)).await, not_found);
    assert_eq!(cw(&fake, "POST", MERGE, ADMIN, Some(json!({"base_contact_id": base}))).await, not_found);
    assert_eq!(cw(&fake, "POST", MERGE, ADMIN, Some(json!({}))).await, not_found);
    // Another account's contacts are not in `Current.account.contacts`.
    let other = cw(
        &fake,
        "POST",
        "/api/v1/accounts/6/actions/contact_merge",
        "cw-other-admin-token-123456",
        Some(json!({"base_contact_id": base, "mergee_contact_id": mergee})),
    )
    .await;
    assert_eq!(other, not_found);
    // Agent bots are refused by `validate_bot_access_token!`; no token is devise's 401.
    let (status, refused) = merge(&fake, "cw-bot-token-ABCDEF123456", json!(base), json!(mergee)).await;
    assert_eq!((status, refused), (401, json!({"error": "Access to this endpoint is not authorized for bots"})));
    let client = awc::Client::default();
    let res = client.post(format!("{}{MERGE}", fake.url())).send_json(&json!({})).await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(fake.contact_count(), 2);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn contact_update_stores_name_and_avatar_url_and_sends_no_inbox_webhook() {
    let fake = fake_chatwoot();
    let inbox = inbox(&fake).await;
    let (contact, _) = person(&fake, inbox, "5511999999999", json!({"name": "5511999999999"})).await;
    assert!(fake.webhooks_settled(WAIT).await);
    fake.clear_webhook_deliveries();

    let avatar = "https://pps.whatsapp.net/v/t61/maria.jpg";
    let (status, updated) =
        admin(&fake, "PATCH", &format!("/contacts/{contact}"), Some(json!({"name": "Maria", "avatar_url": avatar})))
            .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["payload"]["name"], "Maria");
    let stored = fake.contact(contact).unwrap();
    assert_eq!((stored.name.as_str(), stored.avatar_url.as_deref()), ("Maria", Some(avatar)));
    let (_, shown) = admin(&fake, "GET", &format!("/contacts/{contact}"), None).await;
    assert_eq!(shown["payload"]["name"], "Maria");

    // `contact_updated` goes to account webhooks only (`WebhookListener#deliver_account_webhooks`).
    assert!(fake.webhooks_settled(WAIT).await);
    assert!(fake.webhook_deliveries().is_empty(), "{:?}", fake.webhook_deliveries());
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
