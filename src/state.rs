//! Process-wide state shared by the HTTP workers (and later the integration actors).
//!
//! The HTTP server starts before the database is migrated so that it can answer `503 not_ready`; the
//! parts that need the database ([`Services`]) are set once when boot finishes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use actix::Addr;
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::crypto::Sealer;
use crate::error::AppError;
use crate::integrations::manager::Manager;
use crate::integrations::ownership::Replica;
use crate::live::LiveRegistry;
use crate::store;
use crate::telemetry::Metrics;

pub struct Shared {
    pub settings: Settings,
    pub metrics: Metrics,
    /// Live link state and counters, written by the integration actors.
    pub live: LiveRegistry,
    /// Opened webhook credentials (see [`crate::integrations::webhooks::KeyCache`]).
    pub webhook_keys: crate::integrations::webhooks::KeyCache,
    /// One request budget per Chatwoot host, shared by its integrations.
    pub governors: crate::chatwoot::governor::Governors,
    services: OnceLock<Services>,
    manager: OnceLock<Addr<Manager>>,
    /// This process as one of several replicas on one PostgreSQL (none on SQLite).
    replica: OnceLock<Arc<Replica>>,
    /// Boot finished, stored integrations started: the API may serve.
    ready: AtomicBool,
    /// The process is shutting down: background loops end.
    stopping: AtomicBool,
}

/// What exists once boot has finished.
pub struct Services {
    pub db: DatabaseConnection,
    /// Hot-path reads (see [`store::Store::reader`]).
    pub reader: DatabaseConnection,
    pub writers: store::writer::Writers,
    pub sealer: Sealer,
    pub instance_locks: InstanceLocks,
}

impl Shared {
    pub fn new(settings: Settings) -> Self {
        let governors = crate::chatwoot::governor::Governors::new(
            settings.chatwoot_rate_limit,
            settings.chatwoot_rate_limits.clone(),
        );
        Self {
            governors,
            settings,
            metrics: Metrics::default(),
            live: LiveRegistry::default(),
            webhook_keys: Default::default(),
            services: OnceLock::new(),
            manager: OnceLock::new(),
            replica: OnceLock::new(),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// The services for the API: `not_ready` until boot has finished *and* the stored integrations are
    /// started (so an activation never races the boot-time start of the same integration).
    pub fn services(&self) -> Result<&Services, AppError> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(AppError::NotReady);
        }
        self.booted()
    }

    /// The services for the manager and the actors, available as soon as the database is migrated.
    pub fn booted(&self) -> Result<&Services, AppError> {
        self.services.get().ok_or(AppError::NotReady)
    }

    /// Opens the API.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The integration manager, once started.
    pub fn manager(&self) -> Option<&Addr<Manager>> {
        self.manager.get()
    }

    pub fn set_manager(&self, manager: Addr<Manager>) {
        let _ = self.manager.set(manager);
    }

    /// This process as a replica, when integrations are leased (PostgreSQL).
    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.replica.get()
    }

    pub fn set_replica(&self, replica: Arc<Replica>) {
        let _ = self.replica.set(replica);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn mark_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Marks boot as finished. Only the first call has an effect.
    pub fn finish_boot(&self, store: store::Store) {
        let sealer = Sealer::new(self.settings.encryption_key.clone(), self.settings.previous_encryption_key.clone());
        let store::Store { db, reader, writers, shared: _ } = store;
        let _ = self.services.set(Services { db, reader, writers, sealer, instance_locks: InstanceLocks::default() });
    }
}

/// One async lock per instance name: activations, deactivations and pauses of one instance run one at a
/// time in this process (two concurrent activations must not create two inboxes). Across replicas the
/// unique index on `integrations.instance` is the backstop.
#[derive(Default)]
pub struct InstanceLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl InstanceLocks {
    pub async fn lock(&self, instance: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = match self.locks.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Forget locks nobody holds, so the map does not grow with every instance ever seen.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(instance.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}
