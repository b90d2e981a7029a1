//! RyzeIntegrations: the bridge between RyzeAPI (WhatsApp) and Chatwoot.
//!
//! Layers (`docs/architecture.md`; `tests/layers.rs` keeps them one-way): `http` and `doctor` (entry points)
//! → `integrations` with `state` and `error` (lifecycles, actors, ownership, views; the process's shared
//! services; the API's error envelope) → `relay` (translation) → `chatwoot`, `ryzeapi`, `store` (each the
//! only code that knows Chatwoot's API, RyzeAPI's, or builds queries) → leaves (`config`, `crypto`,
//! `secret`, `telemetry`, `fence`, `retry`, `live`). Pure parsers and renderers are the `ryze-wire` crate
//! (`wire/`); the fakes of the neighbours, the test kit and the bench are crates of their own.

pub mod chatwoot;
pub mod config;
pub mod crypto;
pub mod doctor;
pub mod error;
pub mod fence;
pub mod http;
pub mod integrations;
pub mod live;
pub mod relay;
pub mod retry;
pub mod ryzeapi;
pub mod secret;
pub mod state;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use actix_web::{App, HttpServer, web};

use actix::Actor as _;

use crate::config::Settings;
use crate::integrations::manager::{Manager, StartAll, StopAll};
use crate::state::Shared;

/// Why the bridge stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("database: {0}")]
    Database(#[from] store::StoreError),
    #[error("server: {0}")]
    Server(std::io::Error),
}

pub use config::http_client;

/// Closes every RyzeAPI link with a close frame (their unfinished work stays stored).
async fn stop_integrations(shared: &Shared) {
    if let Some(manager) = shared.manager() {
        let stopped = manager.send(StopAll).await.unwrap_or(0);
        actix_web::rt::time::sleep(std::time::Duration::from_millis(300)).await;
        tracing::info!(integrations = stopped, "stopped");
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stop signal received");
}

/// This process as a replica: its name, and the URL the others reach its API at.
fn replica_of(settings: &Settings, bound: std::net::SocketAddr) -> Arc<integrations::ownership::Replica> {
    let name =
        settings.replica_name.clone().unwrap_or_else(|| integrations::ownership::default_name(&settings.data_dir));
    let url = settings.replica_url.clone().unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
            let host = if host.is_empty() { "localhost".to_owned() } else { host };
            format!("http://{host}:{}", bound.port())
        } else {
            format!("http://{bound}")
        }
    });
    integrations::ownership::Replica::new(&name, url, settings.lease_ttl)
}

/// Runs the bridge until it is told to stop: binds first (answering `503 not_ready`), then connects to the
/// database and migrates, then serves.
pub async fn run(settings: Settings) -> Result<(), RunError> {
    let bind = settings.bind;
    // With PostgreSQL the process may be one of several replicas: it handles SIGTERM itself, to hand its
    // integrations over while its HTTP workers (and the connections they opened) still run.
    let leased_mode = !settings.database_url.starts_with("sqlite");
    let shared = web::Data::from(Arc::new(Shared::new(settings)));
    let app_shared = shared.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_shared.clone())
            .app_data(web::Data::new(http_client()))
            .configure(http::configure)
            .default_service(web::to(http::not_found))
            .wrap_fn(http::log_request)
    })
    // Graceful stop: requests in flight get a few seconds, well inside the 10 s an orchestrator waits.
    .shutdown_timeout(5);
    let server = if leased_mode { server.disable_signals() } else { server };
    let server = server.bind(bind).map_err(|source| RunError::Bind { addr: bind, source })?;
    let server_addrs = server.addrs();
    for addr in &server_addrs {
        tracing::info!("listening on http://{addr}");
    }
    let server = server.run();
    let handle = server.handle();
    let mut serving = actix_web::rt::spawn(server);

    // SQLite serves one process: a second one on the same file stops here, before touching it.
    let _process_lock = match store::ProcessLock::take(&shared.settings.database_url) {
        Ok(lock) => lock,
        Err(e) => {
            handle.stop(false).await;
            return Err(RunError::Database(e));
        }
    };
    let bound = server_addrs.first().copied().unwrap_or(bind);
    let booted = store::open(&shared.settings.database_url).await;
    let mut listener = None;
    match booted {
        Ok(opened) => {
            let db = opened.db.clone();
            // Re-seal before reporting ready: nothing reads a secret sealed with a key about to be dropped.
            let sealer = crypto::Sealer::new(
                shared.settings.encryption_key.clone(),
                shared.settings.previous_encryption_key.clone(),
            );
            match integrations::rotation::reseal_all(&db, &sealer).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "re-sealed stored secrets with the current encryption key"),
                Err(e) => {
                    tracing::error!(error = %e, "re-sealing stored secrets failed; keep BRIDGE_ENCRYPTION_KEY_PREVIOUS set")
                }
            }
            // Boot order: services exist (the manager and actors need them), stored integrations are
            // started, and only then does the API report ready, so an activation never races that start.
            let threads = std::thread::available_parallelism().map_or(2, usize::from);
            let manager = Manager::new(shared.clone().into_inner(), threads).start();
            shared.set_manager(manager.clone());
            let leased = opened.shared;
            shared.finish_boot(opened);
            if leased {
                let replica = replica_of(&shared.settings, bound);
                tracing::info!(replica = %replica.owner, "integrations are leased: several replicas may share this database");
                shared.set_replica(replica.clone());
                listener = Some(actix_web::rt::spawn(integrations::bus::listen(shared.clone().into_inner())));
                integrations::ownership::run(shared.clone().into_inner(), replica, manager.clone()).await;
            }
            let started = manager.send(StartAll).await.unwrap_or(0);
            shared.mark_ready();
            tracing::info!(integrations = started, "ready");
            actix_web::rt::spawn(integrations::retention::run(shared.clone().into_inner()));
        }
        Err(e) => {
            handle.stop(false).await;
            return Err(RunError::Database(e));
        }
    }
    let served = if leased_mode {
        tokio::select! {
            served = &mut serving => served,
            () = stop_signal() => {
                // A replica stops relaying first (fences, then links), gives its leases up and tells the
                // others, and only then drains its HTTP server: webhooks that arrive meanwhile are stored
                // and reach the new owners by the signals.
                shared.mark_stopping();
                if let Some(replica) = shared.replica() {
                    replica.drop_all();
                }
                stop_integrations(&shared).await;
                if let Some(replica) = shared.replica() {
                    integrations::ownership::leave(&shared, replica).await;
                }
                handle.stop(true).await;
                serving.await
            }
        }
    } else {
        // SIGTERM/SIGINT: the HTTP server has drained (within its shutdown timeout); now close every
        // RyzeAPI link cleanly. Anything acknowledged is stored, and resumes at the next start.
        let served = serving.await;
        shared.mark_stopping();
        stop_integrations(&shared).await;
        served
    };
    if let Some(listener) = listener {
        // Ended here, while the runtime runs: its connection goes back to the pool from a task of its own.
        listener.abort();
        let _ = listener.await;
    }
    match served {
        Ok(result) => result.map_err(RunError::Server),
        Err(join) => Err(RunError::Server(std::io::Error::other(join.to_string()))),
    }
}
