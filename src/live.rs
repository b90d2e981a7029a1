//! What the running side knows about each integration right now: the link state, counters, the chat
//! cache and the journal of attempts. A leaf: actors write their entry, the relay and the view read it.
//!
//! Actors write their entry; `GET /v1/integrations/{id}` and `/metrics` read it without messaging the
//! actor (which may be busy on another arbiter).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use entity::chat;

/// The RyzeAPI link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connected,
    Connecting,
    Disconnected,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Connecting => "connecting",
            Self::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinkSnapshot {
    pub state: LinkState,
    pub since: DateTime<Utc>,
    pub reconnects: u64,
    pub last_event_at: Option<DateTime<Utc>>,
}

/// One integration's live entry.
#[derive(Debug)]
pub struct Live {
    link: Mutex<LinkSnapshot>,
    pub events_received: AtomicU64,
    pub messages_to_chatwoot: AtomicU64,
    pub messages_to_whatsapp: AtomicU64,
    /// Chats merged because they turned out to be one person.
    pub chats_merged: AtomicU64,
    /// Chats the relay looked up lately.
    pub chats: ChatCache,
    /// What happened to each piece of work lately, for the message trace.
    pub journal: Journal,
}

/// A piece of work of the relay: a stored RyzeAPI event or a stored Chatwoot webhook job (by row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkRef {
    Event(i64),
    Job(i64),
}

/// One run of a piece of work and how it ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub work: WorkRef,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    /// `done`, `retry`, `later` (paced, not counted), `failed`, `halted`.
    pub outcome: &'static str,
    /// The error, in the relay's words (no secrets: the relay's errors never carry tokens).
    pub error: Option<String>,
    /// The wait before the next run (retry, later).
    pub next_in: Option<std::time::Duration>,
}

/// The last [`JOURNAL_ATTEMPTS`] attempts of an integration, in memory only (a restart forgets them; the
/// stored rows keep the counts and the last error).
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<std::collections::VecDeque<Attempt>>,
}

const JOURNAL_ATTEMPTS: usize = 4096;

impl Journal {
    pub fn record(&self, attempt: Attempt) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= JOURNAL_ATTEMPTS {
            entries.pop_front();
        }
        entries.push_back(attempt);
    }

    /// The attempts of `work`, oldest first.
    pub fn of(&self, work: WorkRef) -> Vec<Attempt> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.iter().filter(|a| a.work == work).cloned().collect()
    }
}

/// The chats the relay looked up lately, by alias, so that a message in a known chat costs no database
/// read. Whoever changes a chat row tells the cache ([`ChatCache::forget`]) after the change is stored;
/// a lookup that started before a change is never kept after it (the generation check), so the cache is
/// never older than a read of the database would be.
#[derive(Debug, Default)]
pub struct ChatCache {
    inner: Mutex<ChatCacheInner>,
}

#[derive(Debug, Default)]
struct ChatCacheInner {
    by_alias: HashMap<String, Arc<chat::Model>>,
    /// Bumped by every `forget`.
    generation: u64,
}

/// Aliases kept per integration at most; past it the cache starts over (it is only a shortcut).
const CHAT_CACHE_ALIASES: usize = 16_384;

impl ChatCache {
    fn inner(&self) -> MutexGuard<'_, ChatCacheInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The chat all of `aliases` belong to, if the cache knows every one of them.
    pub fn get(&self, aliases: &[String]) -> Option<chat::Model> {
        let inner = self.inner();
        let mut chats = aliases.iter().map(|alias| inner.by_alias.get(alias));
        let first = chats.next()??;
        chats.all(|chat| chat.is_some_and(|chat| chat.id == first.id)).then(|| chat::Model::clone(first))
    }

    /// Where a lookup starts: pass it to [`ChatCache::keep`].
    pub fn generation(&self) -> u64 {
        self.inner().generation
    }

    /// Remembers `chat` under `aliases`, read from the database at generation `read_at`, unless a chat
    /// changed since (then the read may be stale).
    pub fn keep(&self, aliases: &[String], chat: &chat::Model, read_at: u64) {
        let mut inner = self.inner();
        if inner.generation != read_at {
            return;
        }
        if inner.by_alias.len() + aliases.len() > CHAT_CACHE_ALIASES {
            inner.by_alias.clear();
        }
        let chat = Arc::new(chat.clone());
        for alias in aliases {
            inner.by_alias.insert(alias.clone(), chat.clone());
        }
    }

    /// Drops the chats `changed` selects (call after the change is stored).
    pub fn forget(&self, changed: impl Fn(&chat::Model) -> bool) {
        let mut inner = self.inner();
        inner.generation = inner.generation.wrapping_add(1);
        inner.by_alias.retain(|_, chat| !changed(chat));
    }
}

impl Default for Live {
    fn default() -> Self {
        Self {
            link: Mutex::new(LinkSnapshot {
                state: LinkState::Disconnected,
                since: Utc::now(),
                reconnects: 0,
                last_event_at: None,
            }),
            events_received: AtomicU64::new(0),
            messages_to_chatwoot: AtomicU64::new(0),
            messages_to_whatsapp: AtomicU64::new(0),
            chats_merged: AtomicU64::new(0),
            chats: ChatCache::default(),
            journal: Journal::default(),
        }
    }
}

impl Live {
    fn link(&self) -> MutexGuard<'_, LinkSnapshot> {
        self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        self.link().clone()
    }

    /// Moves the link to `state` (keeps `since` when the state does not change).
    pub fn set_state(&self, state: LinkState) {
        let mut link = self.link();
        if link.state != state {
            link.state = state;
            link.since = Utc::now();
        }
    }

    pub fn count_reconnect(&self) {
        self.link().reconnects += 1;
    }

    /// A frame arrived (stored or not).
    pub fn event_received(&self) {
        self.link().last_event_at = Some(Utc::now());
    }

    /// A new event was stored (duplicates are not counted).
    pub fn event_stored(&self) {
        self.events_received.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every integration's live entry, by id.
#[derive(Default)]
pub struct LiveRegistry {
    entries: Mutex<HashMap<String, Arc<Live>>>,
}

impl LiveRegistry {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry of `id`, created fresh if there is none.
    pub fn entry(&self, id: &str) -> Arc<Live> {
        self.entries().entry(id.to_owned()).or_default().clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.entries().get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.entries().remove(id);
    }

    /// Drops every cached chat (another replica may have changed some while this one was not listening).
    pub fn forget_all_chats(&self) {
        let entries: Vec<Arc<Live>> = self.entries().values().cloned().collect();
        for live in entries {
            live.chats.forget(|_| true);
        }
    }

    /// How many links are in each state.
    pub fn count_by_state(&self) -> [(LinkState, usize); 3] {
        let entries = self.entries();
        let count = |s: LinkState| entries.values().filter(|l| l.snapshot().state == s).count();
        [
            (LinkState::Connected, count(LinkState::Connected)),
            (LinkState::Connecting, count(LinkState::Connecting)),
            (LinkState::Disconnected, count(LinkState::Disconnected)),
        ]
    }
}
