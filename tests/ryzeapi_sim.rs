//! The RyzeAPI simulator keeps the contract's side of RyzeAPI (§3 event stream, §4 REST calls): token checks,
//! event ids and acks, re-sends after a reconnect, faults, echoes of sends. Bridge tests rely on every one of
//! these, so each is checked here against real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{Frame, Message};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use ryze_fakes::ryzeapi::{self, RecordedCall, RyzeApiSim};
use serde_json::{Value, json};

const BRIDGE: &str = "bridge-token-0123456789";
const INSTANCE: &str = "suporte";
const INSTANCE_TOKEN: &str = "instance-token-SECRET";
const CUSTOMER: &str = "5511999999999@s.whatsapp.net";

trait Socket: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin {}
impl<T> Socket for T where
    T: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message, Error = WsProtocolError> + Unpin
{
}
type Ws = Box<dyn Socket>;

fn sim() -> RyzeApiSim {
    let sim = RyzeApiSim::start(BRIDGE).unwrap();
    sim.add_instance(INSTANCE, INSTANCE_TOKEN);
    sim
}

/// Opens the event stream as the bridge does; `Err(status)` when the upgrade is refused.
async fn connect(sim: &RyzeApiSim, token: Option<&str>) -> Result<Ws, u16> {
    let mut request = awc::Client::new().ws(sim.ws_url(INSTANCE));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    match request.connect().await {
        Ok((_, framed)) => Ok(Box::new(framed)),
        Err(WsClientError::InvalidResponseStatus(status)) => Err(status.as_u16()),
        Err(e) => panic!("connect: {e}"),
    }
}

async fn connected(sim: &RyzeApiSim) -> Ws {
    let ws = connect(sim, Some(BRIDGE)).await.unwrap();
    assert!(sim.wait_for_connections(INSTANCE, 1, Duration::from_secs(5)).await);
    ws
}

#[derive(Debug)]
enum Next {
    Frame(Frame),
    Closed,
    Timeout,
}

/// The next frame, skipping the server's own pings.
async fn next(ws: &mut Ws, within: Duration) -> Next {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match actix_web::rt::time::timeout(left, ws.next()).await {
            Err(_) => return Next::Timeout,
            Ok(None | Some(Err(_))) => return Next::Closed,
            Ok(Some(Ok(Frame::Ping(_)))) => continue,
            Ok(Some(Ok(frame))) => return Next::Frame(frame),
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws, Duration::from_secs(5)).await {
        Next::Frame(Frame::Text(text)) => serde_json::from_slice(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

async fn send_text(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

async fn ack(ws: &mut Ws, event_id: &str) {
    send_text(ws, json!({"type": "ack", "eventId": event_id}).to_string()).await;
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP call: (status, JSON body or the text as a string, X-RateLimit-Reset).
async fn call(
    sim: &RyzeApiSim,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let client = awc::Client::default();
    let mut request = client.request(method.parse().unwrap(), format!("{}{path}", sim.url()));
    if let Some(token) = token {
        request = request.insert_header(("token", token));
    }
    let mut response = match body {
        Some(body) => request.send_json(&body).await.unwrap(),
        None => request.send().await.unwrap(),
    };
    let reset = response.headers().get("x-ratelimit-reset").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.body().await.unwrap();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (response.status().as_u16(), value, reset)
}

async fn send_text_call(sim: &RyzeApiSim, body: Value) -> (u16, Value) {
    let (status, body, _) = call(sim, "POST", "/api/message/text/suporte", Some(INSTANCE_TOKEN), Some(body)).await;
    (status, body)
}

fn error(message: &str) -> Value {
    json!({"success": false, "error": {"message": message}})
}

fn incoming(id: &str, text: &str) -> Value {
    ryzeapi::text_message(INSTANCE, id, CUSTOMER, "Maria", text)
}

#[actix_web::test]
async fn upgrade_needs_the_bridge_token() {
    let sim = sim();
    assert_eq!(connect(&sim, None).await.err(), Some(401));
    assert_eq!(connect(&sim, Some("wrong-token-0123456789")).await.err(), Some(401));
    let (status, body, _) = call(&sim, "GET", "/ws/chatwoot/suporte", None, None).await;
    assert_eq!((status, body), (401, error("Invalid token")));
    assert_eq!(sim.total_connects(INSTANCE), 0);
    let _ws = connected(&sim).await;
    assert_eq!(sim.total_connects(INSTANCE), 1);
    assert_eq!(sim.upgrade_attempts(INSTANCE), 4);
}

#[actix_web::test]
async fn refused_upgrades_answer_the_configured_status() {
    let sim = sim();
    sim.refuse_upgrades(Some(404));
    assert_eq!(connect(&sim, Some(BRIDGE)).await.err(), Some(404));
    let (status, body, _) = call(&sim, "GET", "/ws/chatwoot/suporte", None, None).await;
    assert_eq!((status, body), (404, error("Not Found")), "route absent: 404 whatever the token");
    sim.refuse_upgrades(Some(503));
    assert_eq!(connect(&sim, Some(BRIDGE)).await.err(), Some(503));
    assert_eq!(sim.total_connects(INSTANCE), 0);
    sim.refuse_upgrades(None);
    let _ws = connected(&sim).await;
    assert_eq!((sim.total_connects(INSTANCE), sim.upgrade_attempts(INSTANCE)), (1, 4));
}

#[actix_web::test]
async fn events_carry_an_event_id_until_acknowledged() {
    let sim = sim();
    let mut ws = connected(&sim).await;
    let id = sim.send_event(INSTANCE, incoming("3EB0C0FFEE000001", "Olá")).unwrap();
    assert_eq!(id, "evt-1");
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["eventId"], id);
    assert_eq!(frame["event"], "message.exchange");
    assert_eq!(frame["data"]["id"], "3EB0C0FFEE000001");
    assert_eq!(frame["data"]["direction"], "incoming");
    assert_eq!(frame["data"]["chat"]["jid"], CUSTOMER);
    assert_eq!(frame["data"]["message"]["content"], "Olá");
    assert_eq!(
        frame["instanceData"],
        json!({"instance": INSTANCE, "baseUrl": sim.url(), "token": INSTANCE_TOKEN}),
        "send_event fills instanceData as RyzeAPI does"
    );
    assert_eq!((sim.unacked(INSTANCE), sim.acked(INSTANCE)), (vec![id.clone()], vec![]));

    ack(&mut ws, &id).await;
    eventually("the ack", || sim.acked(INSTANCE) == vec![id.clone()]).await;
    assert!(sim.unacked(INSTANCE).is_empty());
    assert_eq!(sim.frames_delivered(INSTANCE), 1);

    let second = sim.send_event(INSTANCE, incoming("3EB0C0FFEE000002", "tudo bem?")).unwrap();
    assert_eq!(second, "evt-2");
    assert_eq!(next_json(&mut ws).await["eventId"], second);
    send_text(&mut ws, "hello".into()).await;
    ack(&mut ws, "evt-99").await;
    eventually("unexpected frames", || sim.unexpected_frames(INSTANCE).len() == 2).await;
    assert_eq!(sim.unexpected_frames(INSTANCE)[0], "hello");
    assert_eq!(sim.unacked(INSTANCE), vec![second], "a bogus ack acknowledges nothing");
}

#[actix_web::test]
async fn unacknowledged_events_are_resent_first_and_in_order_on_reconnect() {
    let sim = sim();
    let mut ws = connected(&sim).await;
    let ids: Vec<String> =
        (1..=3).map(|n| sim.send_event(INSTANCE, incoming(&format!("M{n}"), &format!("m{n}"))).unwrap()).collect();
    for id in &ids {
        assert_eq!(&next_json(&mut ws).await["eventId"], id);
    }
    ack(&mut ws, &ids[1]).await;
    eventually("the ack of the second", || sim.acked(INSTANCE) == vec![ids[1].clone()]).await;
    drop(ws);
    assert!(sim.wait_for_connections(INSTANCE, 0, Duration::from_secs(5)).await);

    let while_away = sim.send_event(INSTANCE, incoming("M4", "m4")).unwrap();
    assert_eq!(sim.unacked(INSTANCE), vec![ids[0].clone(), ids[2].clone(), while_away.clone()]);

    let mut ws = connected(&sim).await;
    let newer = sim.send_event(INSTANCE, incoming("M5", "m5")).unwrap();
    let mut received = Vec::new();
    for _ in 0..4 {
        let frame = next_json(&mut ws).await;
        received
            .push((frame["eventId"].as_str().unwrap().to_owned(), frame["data"]["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(
        received,
        vec![
            (ids[0].clone(), "M1".to_owned()),
            (ids[2].clone(), "M3".to_owned()),
            (while_away, "M4".to_owned()),
            (newer, "M5".to_owned())
        ],
        "unacknowledged events first, in their order, the acknowledged one not at all"
    );
    assert!(matches!(next(&mut ws, Duration::from_millis(300)).await, Next::Timeout));
    assert_eq!(sim.total_connects(INSTANCE), 2);
    assert_eq!(sim.frames_delivered(INSTANCE), 7);
}

#[actix_web::test]
async fn without_the_ack_extension_events_sent_while_disconnected_are_lost() {
    let sim = sim();
    sim.set_ack_extension(false);
    let mut ws = connected(&sim).await;
    assert_eq!(sim.send_event(INSTANCE, incoming("M1", "live")), None);
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["data"]["id"], "M1");
    assert!(frame.get("eventId").is_none(), "{frame}");
    drop(ws);
    assert!(sim.wait_for_connections(INSTANCE, 0, Duration::from_secs(5)).await);
    assert_eq!(sim.send_event(INSTANCE, incoming("M2", "into the void")), None);
    let mut ws = connected(&sim).await;
    assert!(matches!(next(&mut ws, Duration::from_millis(500)).await, Next::Timeout));
    assert!(sim.unacked(INSTANCE).is_empty());
    assert_eq!(sim.frames_delivered(INSTANCE), 1);
}

#[actix_web::test]
async fn dropped_connections_end_without_a_close_frame() {
    let sim = sim();
    let mut ws = connected(&sim).await;
    assert_eq!(sim.drop_connections(INSTANCE), 1);
    assert_eq!(sim.connections(INSTANCE), 0);
    let outcome = next(&mut ws, Duration::from_secs(5)).await;
    assert!(matches!(outcome, Next::Closed), "the stream ends, with no close frame: {outcome:?}");
    let _ws = connected(&sim).await;
    assert_eq!(sim.total_connects(INSTANCE), 2);
}

#[actix_web::test]
async fn pings_are_answered_unless_silent() {
    let sim = sim();
    let mut ws = connected(&sim).await;
    ws.send(Message::Ping(Bytes::from_static(b"hb-1"))).await.unwrap();
    match next(&mut ws, Duration::from_secs(5)).await {
        Next::Frame(Frame::Pong(payload)) => assert_eq!(&payload[..], b"hb-1"),
        other => panic!("expected a pong, got {other:?}"),
    }
    assert_eq!(sim.received_pings(INSTANCE), 1);

    sim.set_silent(true);
    ws.send(Message::Ping(Bytes::from_static(b"hb-2"))).await.unwrap();
    let pending = sim.send_event(INSTANCE, incoming("M1", "unheard")).unwrap();
    let outcome = next(&mut ws, Duration::from_millis(1500)).await;
    assert!(matches!(outcome, Next::Timeout), "a silent server writes nothing: {outcome:?}");
    assert_eq!(sim.received_pings(INSTANCE), 2);
    assert_eq!(sim.frames_delivered(INSTANCE), 0);

    sim.set_silent(false);
    ws.send(Message::Ping(Bytes::from_static(b"hb-3"))).await.unwrap();
    match next(&mut ws, Duration::from_secs(5)).await {
        Next::Frame(Frame::Pong(payload)) => assert_eq!(&payload[..], b"hb-3"),
        other => panic!("expected the pong of hb-3, got {other:?}"),
    }
    assert_eq!(sim.unacked(INSTANCE), vec![pending], "the event written during the silence is still pending");
}

#[actix_web::test]
async fn the_server_pings_and_stops_when_silent() {
    let sim = sim();
    sim.set_server_ping_interval(Some(Duration::from_millis(50)));
    let mut ws = connected(&sim).await;
    let first = actix_web::rt::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    let Frame::Ping(payload) = first else { panic!("expected a server ping, got {first:?}") };
    ws.send(Message::Pong(payload)).await.unwrap();
    eventually("the pong", || sim.received_pongs(INSTANCE) >= 1).await;

    sim.set_silent(true);
    // Drain what was already on the wire.
    while let Ok(Some(_)) = actix_web::rt::time::timeout(Duration::from_millis(200), ws.next()).await {}
    let outcome = actix_web::rt::time::timeout(Duration::from_millis(600), ws.next()).await;
    assert!(outcome.is_err(), "no ping from a silent server: {outcome:?}");
}

#[actix_web::test]
async fn a_text_send_is_recorded_answered_and_echoed_with_its_source() {
    let sim = sim();
    let mut ws = connected(&sim).await;
    let request = json!({"number": "5511999999999", "message": "Olá, aqui é a Ana", "replyTo": "3EB0QUOTED", "source": "chatwoot"});
    let (status, body) = send_text_call(&sim, request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["success"].as_bool(), body["status"].as_str()), (Some(true), Some("sent")));
    assert_eq!(body["message"], "Message sent successfully");
    let message_id = body["data"]["messageId"].as_str().unwrap().to_owned();
    assert!(
        message_id.len() == 20
            && message_id.starts_with("3EB0")
            && message_id[4..].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "{message_id}"
    );
    chrono::DateTime::parse_from_rfc3339(body["data"]["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(
        sim.requests(INSTANCE),
        vec![RecordedCall {
            method: "POST".into(),
            path: "/api/message/text/suporte".into(),
            body: request,
            status: 200
        }]
    );

    let echo = next_json(&mut ws).await;
    assert_eq!(echo["event"], "message.exchange");
    assert!(echo["eventId"].is_string());
    assert_eq!(echo["data"]["id"], message_id.as_str());
    assert_eq!(echo["data"]["direction"], "outgoing");
    assert_eq!(echo["data"]["chat"]["jid"], CUSTOMER);
    assert_eq!(echo["data"]["message"]["source"], "chatwoot");
    assert_eq!(echo["data"]["message"]["content"], "Olá, aqui é a Ana");
    assert_eq!(echo["data"]["message"]["context"]["quotedMessageId"], "3EB0QUOTED");

    let media = json!({"number": "5511999999999", "mediaType": "audio", "mediaUrl": "https://files.test/a.ogg",
                       "mimeType": "audio/ogg", "fileName": "a.ogg", "source": "chatwoot"});
    let (status, body, _) = call(&sim, "POST", "/api/message/media/suporte", Some(INSTANCE_TOKEN), Some(media)).await;
    assert_eq!(status, 200, "{body}");
    let echo = next_json(&mut ws).await;
    assert_eq!(echo["data"]["id"], body["data"]["messageId"]);
    assert_eq!(echo["data"]["message"]["type"], "ptt", "audio is a voice note unless isVoice is false");
    assert_eq!(echo["data"]["message"]["media"]["isVoiceNote"], true);
    assert_eq!(echo["data"]["message"]["media"]["mimeType"], "audio/ogg");

    sim.set_echo_delay(None);
    assert_eq!(
        send_text_call(&sim, json!({"number": "5511999999999", "message": "x", "source": "chatwoot"})).await.0,
        200
    );
    assert!(matches!(next(&mut ws, Duration::from_millis(300)).await, Next::Timeout), "echo switched off");
}

#[actix_web::test]
async fn injected_send_failures_then_success() {
    let sim = sim();
    let body = json!({"number": "5511999999999", "message": "oi", "source": "chatwoot"});
    sim.fail_next_sends(1, 503);
    assert_eq!(send_text_call(&sim, body.clone()).await, (503, error("Instance is not connected to WhatsApp")));
    assert_eq!(send_text_call(&sim, body.clone()).await.0, 200);

    sim.fail_next_sends(1, 429);
    let (status, answer, reset) =
        call(&sim, "POST", "/api/message/text/suporte", Some(INSTANCE_TOKEN), Some(body.clone())).await;
    assert_eq!((status, answer), (429, error("Rate limit exceeded. Try again later.")));
    let reset: i64 = reset.expect("X-RateLimit-Reset").parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now..=now + 2).contains(&reset), "reset {reset} is about a second ahead of {now}");

    sim.fail_next_sends(2, 400);
    assert_eq!(send_text_call(&sim, body.clone()).await, (400, error("number not on WhatsApp")));
    assert_eq!(send_text_call(&sim, body.clone()).await, (400, error("number not on WhatsApp")));
    assert_eq!(send_text_call(&sim, body.clone()).await.0, 200);

    let statuses: Vec<u16> = sim.requests(INSTANCE).iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![503, 200, 429, 400, 400, 200]);
    eventually("two echoes", || sim.unacked(INSTANCE).len() == 2).await;
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.unacked(INSTANCE).len(), 2, "failed sends are not echoed");
}

#[actix_web::test]
async fn base64_media_is_not_found_until_stored() {
    let sim = sim();
    let path = "/api/chat/base64/suporte?messageId=3EB0MEDIA";
    assert_eq!(call(&sim, "GET", path, Some(INSTANCE_TOKEN), None).await.0, 404);
    assert_eq!(call(&sim, "GET", path, Some(INSTANCE_TOKEN), None).await.1, error("Message not found"));
    sim.put_media(INSTANCE, "3EB0MEDIA", "aGVsbG8=", "image/jpeg");
    let (status, body, _) = call(&sim, "GET", path, Some(INSTANCE_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"], json!({"base64": "aGVsbG8=", "mimetype": "image/jpeg"}));
    assert_eq!((body["base64"].as_str(), body["mime_type"].as_str()), (Some("aGVsbG8="), Some("image/jpeg")));
    let (status, body, _) = call(&sim, "GET", "/api/chat/base64/suporte", Some(INSTANCE_TOKEN), None).await;
    assert_eq!((status, body), (400, error("messageId is required")));
    let calls = sim.requests(INSTANCE);
    assert_eq!(calls.len(), 4);
    assert_eq!((calls[0].path.as_str(), calls[0].status), (path, 404));
    assert_eq!((calls[2].status, &calls[2].body), (200, &Value::Null));
}

#[actix_web::test]
async fn rest_calls_need_the_instance_token_and_a_contract_shaped_body() {
    let sim = sim();
    let ok = json!({"number": "5511999999999", "message": "oi", "source": "chatwoot"});
    let text = "/api/message/text/suporte";
    assert_eq!(call(&sim, "POST", text, None, Some(ok.clone())).await.1, error("Invalid token"));
    let (status, body, _) = call(&sim, "POST", text, Some("other-token"), Some(ok.clone())).await;
    assert_eq!((status, body), (401, error("Invalid token")));
    let (status, body, _) = call(&sim, "POST", "/api/message/text/nope", Some(INSTANCE_TOKEN), Some(ok)).await;
    assert_eq!((status, body), (404, error("Instance not found")));

    let token = Some(INSTANCE_TOKEN);
    let cases = [
        ("POST", text, json!({"number": "5511999999999", "text": "oi"}), 400, "message is required"),
        ("POST", text, json!({"number": "+55 11 9999", "message": "oi"}), 400, "invalid number: +55 11 9999"),
        ("POST", text, json!([1, 2]), 400, "Invalid request body"),
        (
            "POST",
            "/api/message/media/suporte",
            json!({"number": "5511999999999", "mediaType": "gif", "mediaUrl": "https://x.test/a.gif"}),
            400,
            "mediaType must be one of image, video, audio, document (got gif)",
        ),
        (
            "POST",
            "/api/message/media/suporte",
            json!({"number": "5511999999999", "mediaType": "image"}),
            400,
            "mediaUrl is required",
        ),
        (
            "POST",
            "/api/chat/presence/suporte",
            json!({"number": "5511999999999", "state": "dancing"}),
            400,
            "state must be one of typing, recording, paused (got dancing)",
        ),
        ("POST", "/api/chat/markRead/suporte", json!({"number": "5511999999999"}), 400, "messageId is required"),
        ("DELETE", "/api/chat/delete/suporte", json!({"messageId": "3EB0UNKNOWN"}), 404, "message not found"),
    ];
    for (method, path, body, status, message) in cases {
        let answer = call(&sim, method, path, token, Some(body.clone())).await;
        assert_eq!((answer.0, answer.1), (status, error(message)), "{method} {path} {body}");
    }

    let (status, sent) = send_text_call(&sim, json!({"number": CUSTOMER, "message": "oi", "source": "chatwoot"})).await;
    assert_eq!(status, 200);
    let id = sent["data"]["messageId"].as_str().unwrap();
    let fine = [
        ("DELETE", "/api/chat/delete/suporte", json!({"messageId": id, "deleteForEveryone": true})),
        ("POST", "/api/chat/markRead/suporte", json!({"messageId": "3EB0IN", "number": "5511999999999"})),
        ("POST", "/api/chat/presence/suporte", json!({"number": "5511999999999", "state": "typing", "duration": 5})),
    ];
    for (method, path, body) in fine {
        let (status, answer, _) = call(&sim, method, path, token, Some(body)).await;
        assert_eq!((status, answer["success"].as_bool()), (200, Some(true)), "{method} {path}: {answer}");
    }
    let statuses: Vec<u16> = sim.requests(INSTANCE).iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![401, 401, 400, 400, 400, 400, 400, 400, 400, 404, 200, 200, 200, 200]);
    assert_eq!(sim.requests("nope").len(), 1, "calls for unknown instances are recorded too");
}

#[actix_web::test]
async fn control_api_drives_the_simulator() {
    let sim = sim();
    let mut ws = connected(&sim).await;
    let (status, answer, _) = call(
        &sim,
        "POST",
        "/sim/suporte/messages",
        None,
        Some(json!({"from": "5511988887777", "name": "Maria", "text": "Olá"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["eventId"], answer["eventId"]);
    assert_eq!(frame["data"]["id"], answer["messageId"]);
    assert_eq!(frame["data"]["chat"]["jid"], "5511988887777@s.whatsapp.net");
    assert_eq!(frame["data"]["sender"]["name"], "Maria");
    assert_eq!(frame["data"]["message"]["content"], "Olá");

    let (_, state, _) = call(&sim, "GET", "/sim/suporte/state", None, None).await;
    assert_eq!(state["connections"], 1);
    assert_eq!(state["unacked"], json!([answer["eventId"]]));

    let raw = ryzeapi::instance_state(INSTANCE, "qr_ready", Some("2@abc"));
    let (_, answer, _) = call(&sim, "POST", "/sim/suporte/events", None, Some(raw)).await;
    let frame = next_json(&mut ws).await;
    assert_eq!((&frame["eventId"], &frame["data"]["qrCode"]), (&answer["eventId"], &json!("2@abc")));

    let (_, dropped, _) = call(&sim, "POST", "/sim/suporte/drop", None, None).await;
    assert_eq!(dropped, json!({"dropped": 1}));
    assert!(matches!(next(&mut ws, Duration::from_secs(5)).await, Next::Closed));

    call(&sim, "POST", "/sim/refuse", None, Some(json!({"status": 404}))).await;
    assert_eq!(connect(&sim, Some(BRIDGE)).await.err(), Some(404));
    call(&sim, "POST", "/sim/refuse", None, Some(json!({"status": null}))).await;
    let _ws = connected(&sim).await;

    send_text_call(&sim, json!({"number": "5511988887777", "message": "resposta", "source": "chatwoot"})).await;
    let (_, sent, _) = call(&sim, "GET", "/sim/suporte/sent", None, None).await;
    assert_eq!(sent["calls"].as_array().unwrap().len(), 1);
    assert_eq!(sent["calls"][0]["body"]["message"], "resposta");
    assert_eq!(sent["calls"][0]["status"], 200);

    let (status, page, _) = call(&sim, "GET", "/", None, None).await;
    let page = page.as_str().unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains("<form") && page.contains("/sim/") && !page.contains("src=\"http"),
        "one self-contained page"
    );
}

#[test]
fn builders_follow_the_contract_layouts() {
    let live = ryzeapi::text_message(INSTANCE, "M1", CUSTOMER, "Maria", "Olá");
    assert_eq!(live["event"], "message.exchange");
    assert_eq!(live["data"]["chat"]["type"], "private");
    assert_eq!(live["data"]["sender"]["jid"], CUSTOMER);
    assert_eq!(live["data"]["message"]["type"], "text");
    assert_eq!(live["data"]["message"]["source"], "");
    assert!(live["data"]["message"]["context"].is_null() && live["data"]["message"]["media"].is_null());
    let lid = live["data"]["chat"]["lid"].as_str().unwrap();
    assert!(lid.ends_with("@lid") && lid.len() == 19, "{lid}");
    assert_eq!(ryzeapi::text_message(INSTANCE, "M2", CUSTOMER, "Maria", "x")["data"]["sender"]["lid"], lid, "stable");
    assert_eq!(live["instanceData"]["instance"], INSTANCE);

    let catalog = ryzeapi::catalog_text_message(INSTANCE, "M1", CUSTOMER, "Maria", "Olá");
    assert_eq!(catalog["data"]["id"], "M1");
    assert_eq!(catalog["data"]["message"]["id"], "M1");
    assert_eq!(catalog["data"]["message"]["direction"], "incoming");
    assert_eq!(catalog["data"]["message"]["content"], json!({"text": "Olá"}));
    assert!(catalog["data"].get("chat").is_none());

    let phone = ryzeapi::outgoing_text_message(INSTANCE, "M3", CUSTOMER, "typed on the phone", "");
    assert_eq!(
        (&phone["data"]["direction"], &phone["data"]["sender"]["jid"]),
        (&json!("outgoing"), &json!(ryzeapi::OWN_JID))
    );

    let status = ryzeapi::status_event(INSTANCE, &["M1", "M2"], "read", CUSTOMER);
    assert_eq!(status["event"], "message.status");
    assert_eq!(status["data"]["messageIds"], json!(["M1", "M2"]));
    assert_eq!((&status["data"]["status"], &status["data"]["chat"]["jid"]), (&json!("read"), &json!(CUSTOMER)));

    let state = ryzeapi::instance_state(INSTANCE, "connected", None);
    assert_eq!((&state["event"], &state["data"]["state"]), (&json!("instance.state"), &json!("connected")));
    assert!(state["data"].get("qrCode").is_none());

    let wrapped = ryzeapi::message(INSTANCE, json!({"id": "X"}));
    assert_eq!((&wrapped["event"], &wrapped["data"]), (&json!("message.exchange"), &json!({"id": "X"})));
}
