//! The group-commit writer, on SQLite or (with `DATABASE_URL`) PostgreSQL: writes submitted together are
//! committed as one statement per kind, and each caller still gets its own write's result — new or
//! duplicate, in submission order, duplicates within one group included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::collections::HashSet;
use std::time::Duration;

use common::TestDb;
use futures_util::future::join_all;
use ryze_integrations::store::events::{NewEvent, Stored};
use ryze_integrations::store::jobs::NewJob;
use ryze_integrations::store::messages::{Direction, MappingState, NewMapping, Outgoing, Tick};
use ryze_integrations::store::{self, events, jobs, messages};

fn event(integration: &str, id: usize) -> NewEvent {
    NewEvent {
        integration_id: integration.into(),
        event_id: Some(format!("ev-{id}")),
        message_key: Some(format!("msg-{id}")),
        chat_key: format!("chat-{}", id % 7),
        kind: "message.exchange".into(),
        payload: format!("{{\"n\":{id}}}"),
    }
}

fn mapping(integration: &str, id: usize) -> NewMapping {
    NewMapping {
        integration_id: integration.into(),
        wa_id: format!("WA{id}"),
        chat_id: 1,
        direction: Direction::Incoming,
        conversation_id: 10 + i64::try_from(id).unwrap(),
    }
}

#[actix_web::test]
async fn events_without_keys_in_one_group_each_get_their_own_row() {
    // Without RyzeAPI's eventId, receipts and state events have no key at all: nothing tells their rows
    // apart but the order they were inserted in, and each caller must still get its own row.
    let test_db = TestDb::new().await;
    let store = store::open(&test_db.url).await.unwrap();
    let writer = store.writers.of("int_a");
    let keyless = |n: usize| NewEvent { event_id: None, message_key: None, ..event("int_a", n) };
    let batch: Vec<NewEvent> = (0..40).map(keyless).collect();
    let results = join_all(batch.iter().map(|e| writer.store_event(e.clone()))).await;
    for (n, result) in results.into_iter().enumerate() {
        let Stored::New(id) = result.unwrap() else { panic!("keyless event {n} reported duplicate") };
        let row = events::find(&store.db, id).await.unwrap().unwrap();
        assert_eq!(row.payload, format!("{{\"n\":{n}}}"), "the caller of event {n} got row {id}");
    }
}

#[actix_web::test]
async fn a_group_answers_each_write_with_its_own_result() {
    let test_db = TestDb::new().await;
    let store = store::open(&test_db.url).await.unwrap();
    // Any writer takes any integration's writes; which one an integration uses only keeps its order.
    let writer = store.writers.of("int_a");

    // 300 events at once (more than one group): 200 distinct, then the first 100 again, interleaved with
    // another integration's events that reuse the same ids (keys are per integration).
    let mut batch: Vec<NewEvent> = (0..200).map(|i| event("int_a", i)).collect();
    batch.extend((0..100).map(|i| event("int_a", i)));
    batch.extend((0..50).map(|i| event("int_b", i)));
    let results = join_all(batch.iter().map(|e| writer.store_event(e.clone()))).await;
    let results: Vec<Stored> = results.into_iter().map(Result::unwrap).collect();
    let new_ids: Vec<i64> = results[..200]
        .iter()
        .map(|r| match r {
            Stored::New(id) => *id,
            Stored::Duplicate => panic!("a first event was reported duplicate: {results:?}"),
        })
        .collect();
    assert!(new_ids.windows(2).all(|w| w[0] < w[1]), "ids rise in submission order: {new_ids:?}");
    assert!(results[200..300].iter().all(|r| *r == Stored::Duplicate), "repeats within the groups are duplicates");
    assert!(results[300..].iter().all(|r| matches!(r, Stored::New(_))), "the other integration's are new");
    // A repeat of a stored event, and an event sharing only the message key with one, are duplicates.
    assert_eq!(writer.store_event(event("int_a", 5)).await.unwrap(), Stored::Duplicate);
    let mut same_message = event("int_a", 6);
    same_message.event_id = Some("ev-other".into());
    assert_eq!(writer.store_event(same_message).await.unwrap(), Stored::Duplicate);
    // The rows hold what was submitted.
    let row = events::find(&store.db, new_ids[42]).await.unwrap().unwrap();
    assert_eq!(
        (row.event_id.as_deref(), row.payload.as_str(), row.state.as_str()),
        (Some("ev-42"), "{\"n\":42}", "pending")
    );
    assert_eq!(events::pending(&store.db, "int_a").await.unwrap().len(), 200);

    // Message starts: the first of each id is fresh; a repeat in the same group gets that row, not fresh.
    let starts: Vec<NewMapping> = (0..40).map(|i| mapping("int_a", i)).chain([mapping("int_a", 3)]).collect();
    let started: Vec<_> = join_all(starts.iter().map(|m| writer.start_message(m.clone())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(started[..40].iter().all(|s| s.fresh && s.mapping.state == MappingState::Attempted));
    assert!(!started[40].fresh);
    assert_eq!(started[40].mapping.id, started[3].mapping.id);
    let distinct: HashSet<i64> = started[..40].iter().map(|s| s.mapping.id).collect();
    assert_eq!(distinct.len(), 40);

    // Completions, "done"s and jobs all in one go (a mixed group, one transaction), each with its own
    // Chatwoot id: the CASE must not mix them up.
    let completes = started[..40]
        .iter()
        .enumerate()
        .map(|(i, s)| writer.complete_message(s.mapping.id, 1000 + i64::try_from(i).unwrap(), 77));
    let dones = new_ids.iter().map(|id| writer.event_done_later(*id));
    let job = |message: i64, kind: &str| NewJob {
        integration_id: "int_a".into(),
        chatwoot_message_id: message,
        kind: kind.parse().unwrap(),
        conversation_id: 77,
        payload: "{}".into(),
    };
    let jobs = [job(1, "send"), job(2, "send"), job(1, "send"), job(1, "retry-1")];
    let (completed, done, stored_jobs) = futures_util::join!(
        join_all(completes),
        join_all(dones),
        join_all(jobs.iter().map(|j| writer.store_job(j.clone())))
    );
    assert!(completed.iter().chain(done.iter()).all(Result::is_ok));
    let stored_jobs: Vec<Option<i64>> = stored_jobs.into_iter().map(Result::unwrap).collect();
    assert!(stored_jobs[0].is_some() && stored_jobs[1].is_some() && stored_jobs[3].is_some());
    assert_eq!(stored_jobs[2], None, "the same (message, kind) twice is one job");
    assert_eq!(writer.store_job(job(2, "send")).await.unwrap(), None, "and so is a stored one");

    // Single-row changes share a group (and its transaction) too; a repeated outgoing mapping is no error.
    let (first_job, second_job) = (stored_jobs[0].unwrap(), stored_jobs[1].unwrap());
    let since = chrono::Utc::now();
    let outgoing = Outgoing {
        integration_id: "int_a".into(),
        wa_id: "WAOUT1".into(),
        chatwoot_message_id: Some(555),
        conversation_id: 77,
        chat_id: 1,
    };
    let changes = futures_util::join!(
        writer.job_sending(first_job, Some(since)),
        writer.job_finished(second_job, jobs::WorkState::Failed, "RyzeAPI said no"),
        writer.record_outgoing(outgoing.clone()),
        writer.record_outgoing(outgoing),
        writer.set_last_status(started[0].mapping.id, Tick::Read),
        writer.job_parts_sent(first_job, 2),
    );
    for result in [changes.0, changes.1, changes.2, changes.3, changes.4, changes.5] {
        result.unwrap();
    }
    let first = jobs::find(&store.db, first_job).await.unwrap().unwrap();
    assert_eq!((first.parts_sent, first.sending_at), (2, None), "parts recorded after the send started");
    let second = jobs::find(&store.db, second_job).await.unwrap().unwrap();
    assert_eq!((second.state.as_str(), second.last_error.as_str()), ("failed", "RyzeAPI said no"));
    let sent = messages::find_by_chatwoot_id(&store.db, "int_a", 555).await.unwrap().unwrap();
    assert_eq!((sent.wa_id.as_str(), sent.direction.as_str()), ("WAOUT1", "outgoing"));
    let ticked = messages::find_by_wa_id(&store.db, "int_a", "WA0").await.unwrap().unwrap();
    assert_eq!(ticked.last_status.map(Tick::as_str), Some("read"));

    for (i, s) in started[..40].iter().enumerate() {
        let row = messages::find_by_wa_id(&store.db, "int_a", &s.mapping.wa_id).await.unwrap().unwrap();
        assert_eq!(row.state, MappingState::Created);
        assert_eq!(row.chatwoot_message_id, Some(1000 + i64::try_from(i).unwrap()), "{}", s.mapping.wa_id);
        assert_eq!(row.conversation_id, Some(77));
    }
    // "Done" is not awaited: it lands with a later group.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !events::pending(&store.db, "int_a").await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "events were never marked done");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(events::pending(&store.db, "int_b").await.unwrap().len(), 50, "only the ones marked done");
}
