//! The `integrations` queries, on SQLite or (with `DATABASE_URL`) PostgreSQL, through real migrations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use chrono::{Duration, Utc};
use common::TestDb;
use entity::integration::{Model, Status};
use ryze_integrations::store::{self, StoreError, integrations};

fn model(id: &str, instance: &str, minutes_ago: i64) -> Model {
    let at = Utc::now() - Duration::minutes(minutes_ago);
    Model {
        id: id.into(),
        instance: instance.into(),
        ryzeapi_url: "http://ryzeapi:8080".into(),
        instance_token_sealed: "v1.k.x".into(),
        chatwoot_base_url: "https://cw".into(),
        chatwoot_account_id: 5,
        chatwoot_token_sealed: "v1.k.y".into(),
        inbox_id: 42,
        inbox_name: "WhatsApp".into(),
        webhook_secret_sealed: "v1.k.z".into(),
        signing_secret_sealed: None,
        sign_messages: false,
        ignore_groups: true,
        start_as_pending: false,
        reopen_resolved: true,
        status: "active".into(),
        last_error: String::new(),
        chatwoot_version: Some("4.15.1".into()),
        created_at: at,
        updated_at: at,
    }
}

#[actix_web::test]
async fn crud_round_trip() {
    let test_db = TestDb::new().await;
    let db = store::connect_and_migrate(&test_db.url).await.unwrap();
    // Migrating twice is harmless (a restart runs migrations again).
    let db2 = store::connect_and_migrate(&test_db.url).await.unwrap();
    drop(db2);

    let inserted = integrations::insert(&db, model("int_b", "beta", 1)).await.unwrap();
    integrations::insert(&db, model("int_a", "alpha", 5)).await.unwrap();
    assert_eq!(inserted.instance, "beta");
    assert!(inserted.ignore_groups && inserted.reopen_resolved);

    let found = integrations::find(&db, "int_b").await.unwrap().unwrap();
    assert_eq!(found.chatwoot_version.as_deref(), Some("4.15.1"));
    assert_eq!(found.created_at.timestamp(), inserted.created_at.timestamp());
    assert!(integrations::find(&db, "int_zz").await.unwrap().is_none());
    assert_eq!(integrations::find_by_instance(&db, "alpha").await.unwrap().unwrap().id, "int_a");

    let listed: Vec<String> = integrations::list(&db, None).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(listed, vec!["int_a", "int_b"], "oldest first");
    assert_eq!(integrations::list(&db, Some("beta")).await.unwrap().len(), 1);

    let err = integrations::insert(&db, model("int_c", "beta", 0)).await.unwrap_err();
    assert!(matches!(err, StoreError::InstanceTaken(ref i) if i == "beta"), "{err}");

    let mut changed = found.clone();
    changed.inbox_name = "Renamed".into();
    changed.signing_secret_sealed = Some("v1.k.s".into());
    integrations::replace(&db, changed).await.unwrap();
    let reread = integrations::find(&db, "int_b").await.unwrap().unwrap();
    assert_eq!(reread.inbox_name, "Renamed");
    assert_eq!(reread.signing_secret_sealed.as_deref(), Some("v1.k.s"));

    let errored =
        integrations::set_status(&db, "int_b", Status::Error, "Chatwoot token revoked").await.unwrap().unwrap();
    assert_eq!((errored.status.as_str(), errored.last_error.as_str()), ("error", "Chatwoot token revoked"));
    assert!(errored.updated_at > reread.updated_at);
    assert!(integrations::set_status(&db, "int_zz", Status::Paused, "").await.unwrap().is_none());

    let mut counts = integrations::count_by_status(&db).await.unwrap();
    counts.sort();
    assert_eq!(counts, vec![("active".to_owned(), 1), ("error".to_owned(), 1)]);

    assert!(integrations::delete(&db, "int_b").await.unwrap());
    assert!(!integrations::delete(&db, "int_b").await.unwrap());
    assert_eq!(integrations::list(&db, None).await.unwrap().len(), 1);
    store::ping(&db).await.unwrap();
}
