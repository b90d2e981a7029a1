//! A store transaction whose caller goes away (an actor that stops drops its futures) while PostgreSQL's
//! answer to `BEGIN` is on its way must not leave the pooled connection inside a transaction: with sqlx
//! 0.9.0 it did (transact-rs/sqlx#4393), and the next single-statement writes on that connection — the
//! writer's acknowledged ones included — ran inside it and were lost when the connection closed. Found by
//! `bench chaos --replicas 3`: replies answered 200 whose jobs were never in the database.
//! Always on PostgreSQL (the machine's when `DATABASE_URL` names none): the fault is PostgreSQL's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestDb;
use ryze_integrations::store::{self, chats};
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database};

/// A TCP proxy to PostgreSQL that, once armed, holds back the server's answers from the first `BEGIN` the
/// client sends on (until `hold` is cleared): the moment between `BEGIN` reaching the server and its
/// answer reaching the client.
struct AnswerHolder {
    addr: String,
    arm: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
}

impl AnswerHolder {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (arm, hold) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (armed, held) = (arm.clone(), hold.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let (client_reader, server_writer) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (armed, holds) = (armed.clone(), held.clone());
                std::thread::spawn(move || copy(client_reader, server_writer, Some((armed, holds)), None));
                let held = held.clone();
                std::thread::spawn(move || copy(server, client, None, Some(held)));
            }
        });
        Self { addr, arm, hold }
    }
}

/// Copies `from` to `to`. Client to server: when armed and the bytes hold a `BEGIN`, start holding the
/// answers. Server to client: wait while answers are held.
fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    arm: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
    hold: Option<Arc<AtomicBool>>,
) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 {
            break;
        }
        if let Some((armed, holds)) = &arm
            && buffer[..n].windows(5).any(|w| w == b"BEGIN")
            && armed.swap(false, Ordering::SeqCst)
        {
            holds.store(true, Ordering::SeqCst);
        }
        while hold.as_ref().is_some_and(|h| h.load(Ordering::SeqCst)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[actix_web::test]
async fn a_transaction_whose_caller_goes_away_during_begin_leaves_no_open_transaction_behind() {
    let db = TestDb::postgres().await;
    drop(store::connect_and_migrate(&db.url).await.unwrap());
    let direct = db.connect().await;
    direct.execute_unprepared("CREATE TABLE probe (n integer)").await.unwrap();

    let url = url::Url::parse(&db.url).unwrap();
    let holder = AnswerHolder::start(format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432)));
    let mut via_holder = url.clone();
    let (host, port) = holder.addr.split_once(':').unwrap();
    via_holder.set_host(Some(host)).unwrap();
    via_holder.set_port(Some(port.parse().unwrap())).unwrap();
    // In clear, so that the proxy sees the `BEGIN`.
    via_holder.query_pairs_mut().append_pair("sslmode", "disable");
    // One connection, so that the write after the cancelled transaction runs on the same one; not pinged
    // before each use, so that what the held answer delays is the `BEGIN`.
    let mut options = ConnectOptions::new(via_holder.to_string());
    options.max_connections(1).min_connections(1).test_before_acquire(false).sqlx_logging(false);
    let pooled = Database::connect(options).await.unwrap();
    pooled.execute_unprepared("SELECT 1").await.unwrap();

    // The caller gives up while the server's answer to BEGIN is held back.
    holder.arm.store(true, Ordering::SeqCst);
    let aliases = vec!["5511999998888@s.whatsapp.net".to_owned()];
    let create = chats::create(&pooled, "int_cancelled", "chat-1", chats::ChatKind::Private, "Maria", &aliases);
    assert!(tokio::time::timeout(Duration::from_millis(300), create).await.is_err(), "held answers: no result yet");
    assert!(holder.hold.load(Ordering::SeqCst), "the BEGIN reached the server and its answer was held");
    holder.hold.store(false, Ordering::SeqCst);

    // A single-statement write on the pool's one connection: committed at once, as the writer expects.
    pooled.execute_unprepared("INSERT INTO probe VALUES (1)").await.unwrap();
    let seen = direct.query_one_raw(sea_orm::Statement::from_string(
        direct.get_database_backend(),
        "SELECT count(*) AS n FROM probe",
    ));
    let count: i64 = seen.await.unwrap().unwrap().try_get("", "n").unwrap();
    assert_eq!(count, 1, "the write ran inside the cancelled caller's transaction, which nobody ends");

    // And the transaction itself ran to its end in its own task: the chat is there, once.
    let chats_stored = direct.query_one_raw(sea_orm::Statement::from_string(
        direct.get_database_backend(),
        "SELECT count(*) AS n FROM chats WHERE integration_id = 'int_cancelled'",
    ));
    let chats_stored: i64 = chats_stored.await.unwrap().unwrap().try_get("", "n").unwrap();
    assert_eq!(chats_stored, 1);
}
