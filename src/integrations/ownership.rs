//! Which replica runs which integration, when several bridge processes share one PostgreSQL.
//!
//! Each integration is owned through a lease row (`store::leases`): the owner renews all its leases in
//! one statement every fifth of the TTL; a lease not renewed for a TTL is free, and any replica takes it
//! with the next epoch. The keeper of each replica aims at its fair share, `ceil(leased / replicas
//! alive)`: below it, it takes free leases (in waves, after a random pause, so that the survivors of a
//! dead replica do not all grab at once); above it (a replica joined), it gives up its idlest
//! integrations a few at a time, and the newcomer takes them. The epoch and a local deadline fence a
//! former owner (`crate::fence`): an owner that cannot renew stops its integrations itself before its
//! leases can expire. On SIGTERM a replica gives everything up at once and tells the others.
//!
//! SQLite (one process) has no keeper: every integration runs here, unfenced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix::Addr;

use super::manager::{Lost, Manager, Owned, PickIdle};
use crate::fence::{Fence, LeaseClock};
use crate::state::Shared;
use crate::store::{self, leases};

/// Leases taken per replica per round at most: a failover of thousands of integrations arrives as a few
/// waves, not one burst of connections.
const TAKE_WAVE: u64 = 200;
/// Leases given up per round when above the fair share: a newcomer's share moves over gradually.
const GIVE_WAVE: usize = 10;

/// This process as a replica: its identity, its lease clock and the leases it holds.
pub struct Replica {
    /// The configured (or default) name; a later process of the same name takes over its leases at once.
    pub name: String,
    /// `name#incarnation`: what the lease rows name as owner, unique to this process.
    pub owner: String,
    /// Where the other replicas reach this one's API.
    pub url: String,
    pub ttl: Duration,
    pub clock: Arc<LeaseClock>,
    held: Mutex<HashMap<String, Fence>>,
    /// Integrations to take as soon as possible (activated or resumed here).
    wanted: Mutex<Vec<String>>,
    wake: tokio::sync::Notify,
}

impl Replica {
    pub fn new(name: &str, url: String, ttl: Duration) -> Arc<Self> {
        let name = name.replace('#', "-");
        let mut bytes = [0u8; 6];
        let _ = getrandom::fill(&mut bytes);
        let incarnation: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Arc::new(Self {
            owner: format!("{name}#{incarnation}"),
            name,
            url,
            ttl,
            clock: LeaseClock::new(),
            held: Mutex::default(),
            wanted: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Fence>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fence of an integration this replica holds.
    pub fn fence_of(&self, id: &str) -> Option<Fence> {
        self.held().get(id).cloned()
    }

    pub fn owns(&self, id: &str) -> bool {
        self.held().contains_key(id)
    }

    pub fn held_count(&self) -> usize {
        self.held().len()
    }

    /// Asks the keeper to take `id` now (it does, if the lease is free).
    pub fn want(&self, id: &str) {
        self.wanted.lock().unwrap_or_else(PoisonError::into_inner).push(id.to_owned());
        self.wake.notify_one();
    }

    /// Runs the keeper's next round now (leases were freed somewhere).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Forgets `ids` and revokes their fences (nothing of theirs acts here any more); answers what was held.
    fn drop_leases(&self, ids: &[String]) -> Vec<leases::Held> {
        let mut held = self.held();
        ids.iter()
            .filter_map(|id| {
                let fence = held.remove(id)?;
                fence.revoke();
                Some((id.clone(), fence.epoch().unwrap_or(0)))
            })
            .collect()
    }

    /// Drops the lease of `id` here (it was fenced off: paused or deleted).
    pub fn forget(&self, id: &str) {
        self.drop_leases(&[id.to_owned()]);
    }

    /// Revokes every fence (stopping, or the leases could not be renewed in time).
    pub fn drop_all(&self) -> Vec<String> {
        let mut held = self.held();
        for fence in held.values() {
            fence.revoke();
        }
        held.drain().map(|(id, _)| id).collect()
    }
}

/// The default replica name: the host and the data dir (distinct for processes on one host with their
/// own data dirs; the same for the same process restarted).
pub fn default_name(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "bridge".to_owned());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{host}:{}", dir.display())
}

/// The first round (before the API reports ready: what this replica runs at boot is decided), then a
/// round every fifth of the TTL, or when woken.
pub async fn run(shared: Arc<Shared>, replica: Arc<Replica>, manager: Addr<Manager>) {
    round(&shared, &replica, &manager, true).await;
    actix_web::rt::spawn(async move {
        let every = replica.ttl / 5;
        loop {
            let jitter = Duration::from_millis(u64::from(random_u16()) % (every.as_millis().max(1) as u64 / 4 + 1));
            tokio::select! {
                () = tokio::time::sleep(every + jitter) => {}
                () = replica.wake.notified() => {}
            }
            if shared.is_stopping() {
                return;
            }
            round(&shared, &replica, &manager, false).await;
        }
    });
}

fn random_u16() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    u16::from_le_bytes(bytes)
}

/// One round: renew, count, then take or give up to approach the fair share.
async fn round(shared: &Shared, replica: &Replica, manager: &Addr<Manager>, first: bool) {
    let Ok(services) = shared.booted() else { return };
    let db = &services.db;
    let ttl = replica.ttl;
    let margin = ttl * 3 / 10;

    let sent = Instant::now();
    // A renewal that hangs (a cut network: the statement waits on a dead connection) must not keep this
    // replica from noticing that its deadline passed: it is given until then, at least a moment.
    let patience = replica.clock.remaining().max(ttl / 10);
    let renewed = match tokio::time::timeout(patience, leases::renew(db, &replica.owner, ttl)).await {
        Ok(renewed) => renewed,
        Err(_) => Err(store::StoreError::Db(sea_orm::DbErr::Custom(format!(
            "the renewal did not answer within {} ms",
            patience.as_millis()
        )))),
    };
    match renewed {
        Ok(renewed) => {
            replica.clock.renewed(sent, ttl, margin);
            let renewed: HashMap<String, i64> = renewed.into_iter().collect();
            let lost: Vec<String> = {
                let held = replica.held();
                held.iter()
                    .filter(|(id, fence)| renewed.get(*id) != fence.epoch().as_ref())
                    .map(|(id, _)| id.clone())
                    .collect()
            };
            if !lost.is_empty() {
                tracing::warn!(
                    count = lost.len(),
                    "leases lost to another replica or revoked; stopping those integrations"
                );
                replica.drop_leases(&lost);
                manager.do_send(Lost(lost));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot renew the leases");
            if !replica.clock.holds() && replica.held_count() > 0 {
                let ids = replica.drop_all();
                tracing::error!(
                    count = ids.len(),
                    "the leases could not be renewed in time; stopping every integration here"
                );
                manager.do_send(Lost(ids));
            }
            return;
        }
    }

    let (alive, leased) =
        match (leases::heartbeat(db, &replica.owner, &replica.url, ttl).await, leases::prepare(db).await) {
            (Ok(alive), Ok(leased)) => (alive, leased),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot count the replicas");
                return;
            }
        };
    shared.governors.split_among(u32::try_from(alive).unwrap_or(u32::MAX));
    let share = usize::try_from(leased.div_ceil(alive)).unwrap_or(usize::MAX);
    let mut held = replica.held_count();

    let wanted: Vec<String> = std::mem::take(&mut *replica.wanted.lock().unwrap_or_else(PoisonError::into_inner));
    let mut taken = Vec::new();
    for id in wanted {
        if held + taken.len() >= share.max(1) && !first {
            // Above the share: someone below it takes it at their next round.
            continue;
        }
        match leases::acquire(db, &replica.owner, None, ttl, 1, Some(&id)).await {
            Ok(got) => taken.extend(got),
            Err(error) => tracing::warn!(integration_id = %id, %error, "cannot take the lease"),
        }
    }
    held += taken.len();
    if held < share {
        if !first {
            // Survivors of a dead replica spread their grabs over a moment.
            let pause = Duration::from_millis(u64::from(random_u16()) % (ttl.as_millis() as u64 / 20 + 1));
            tokio::time::sleep(pause).await;
        }
        let want = u64::try_from(share - held).unwrap_or(0).min(TAKE_WAVE);
        match leases::acquire(db, &replica.owner, first.then_some(replica.name.as_str()), ttl, want, None).await {
            Ok(got) => taken.extend(got),
            Err(error) => tracing::warn!(%error, "cannot take free leases"),
        }
    }
    if !taken.is_empty() {
        // The clock set by this round's renewal is conservative for them: they were taken after it.
        let mut fences = Vec::with_capacity(taken.len());
        {
            let mut held = replica.held();
            for (id, epoch) in taken {
                let fence = Fence::leased(&id, epoch, replica.clock.clone());
                held.insert(id.clone(), fence.clone());
                fences.push(id);
            }
        }
        tracing::info!(count = fences.len(), held = replica.held_count(), share, alive, "took integrations");
        manager.do_send(Owned(fences));
    } else if held > share {
        let excess = (held - share).min(GIVE_WAVE);
        let Ok(idle) = manager.send(PickIdle(excess)).await else { return };
        let given = replica.drop_leases(&idle);
        manager.do_send(Lost(idle));
        if let Err(error) = leases::release(db, &replica.owner, &given).await {
            tracing::warn!(%error, "cannot give up leases; they expire instead");
        }
        tracing::info!(
            count = given.len(),
            held = replica.held_count(),
            share,
            alive,
            "gave up integrations for a new replica"
        );
        super::bus::publish_remote(shared, super::bus::Signal::LeasesFreed).await;
    }
}

/// SIGTERM: stop relaying here, give every lease up and tell the others to take them now.
pub async fn leave(shared: &Shared, replica: &Replica) {
    let ids = replica.drop_all();
    let Ok(services) = shared.booted() else { return };
    if let Err(error) = leases::leave(&services.db, &replica.owner).await {
        tracing::warn!(%error, "cannot give up the leases; they expire instead");
        return;
    }
    super::bus::publish_remote(shared, super::bus::Signal::LeasesFreed).await;
    tracing::info!(count = ids.len(), "handed the integrations over to the other replicas");
}

/// Fences an integration off whoever runs it (paused or deleted from any replica): its epoch moves on,
/// so the owner's next write is refused and its next renewal drops it.
pub async fn fence_off(db: &sea_orm::DatabaseConnection, id: &str) -> Result<(), store::StoreError> {
    leases::fence_off(db, id).await
}
