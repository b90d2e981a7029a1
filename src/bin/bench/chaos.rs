//! Fault injection (`bench chaos`): customer messages and agent replies across many integrations while the
//! bench, at random moments, kills -9 and restarts the bridge, drops RyzeAPI WebSockets, makes Chatwoot
//! answer 5xx/429 or hang past the bridge's timeout, answer message creates with its catch-all 422 (before
//! or after the message is committed), deliver webhooks twice, and deliver them late and shuffled. At the end every
//! customer message must be in Chatwoot once and every reply the bridge accepted on WhatsApp once, in order
//! within each chat, with no integration stuck. One person in [`SWITCH_EVERY`] switches forms mid-stream
//! (LID-only, then phone-only, then some with both; unknown to RyzeAPI's contact look-up), so the bridge
//! splits and merges them: each of their messages must still be in Chatwoot once, in order per form, and
//! every person must end as exactly one Chatwoot contact. The check of `tests/chaos.rs`, at the size, on the
//! bench's stack, with a hard deadline (`--seconds`) for the whole run.
//!
//! Message `k` of each direction goes to chat `k mod chats` (as in `inbound`). Both directions are paced per
//! chat ([`PER_CHAT_RATE`], at most [`PER_CHAT_BACKLOG`] outstanding), so that no conversation nears the
//! fake's 200 messages a minute even when the bridge catches up after a fault.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ryze_integrations::fakes::chatwoot::{FakeChatwoot, Fault};
use ryze_integrations::fakes::ryzeapi::{self as sim, RyzeApiSim};
use serde_json::Value;

use crate::Opts;
use crate::inbound::{Traffic, log_notes};
use crate::report::{self, Table};
use crate::stack::{BenchDb, Bridge, Res, Stack};

/// Messages a second offered per chat and direction, at most.
const PER_CHAT_RATE: f64 = 1.0;
/// Messages per chat and direction sent but not arrived yet, at most. With [`PER_CHAT_RATE`] a conversation
/// gets at most (60 + 25) × 2 = 170 messages in any minute, below the fake's limit of 200.
const PER_CHAT_BACKLOG: usize = 25;
/// Webhook deliveries queued in the fake above which nothing more is offered. The fake delivers on a few
/// workers (Sidekiq's 10), so a backlog builds when the bridge answers slowly; a kill -9 then fails every queued delivery at
/// once, and the replies among them never reach the bridge (Chatwoot marks them failed). Keeping the
/// backlog short keeps most replies checkable.
const WEBHOOK_BACKLOG: usize = 200;
/// A hang lasts longer than the bridge's Chatwoot timeout (`BRIDGE_CHATWOOT_TIMEOUT_MS` below), so the
/// bridge gives up on calls that Chatwoot then carries out.
const HANG: Duration = Duration::from_millis(2000);
/// A kill -9 at most this often: the bridge needs a moment to reconnect every link.
const MIN_RESTART_GAP: Duration = Duration::from_secs(8);
/// How often a 422 window arms one more catch-all 422 on message create.
const UNPROCESSABLE_EVERY: Duration = Duration::from_millis(250);
/// Texts of the exceptions `messages_controller.rb#create` rescues as 422: before the save (nothing created)
/// and in an after-commit callback (the message exists).
const BEFORE_COMMIT: &str = "Aws::S3::Errors::ServiceUnavailable";
const AFTER_COMMIT: &str = "Redis::CannotConnectError";
/// Shuffled webhooks are delayed up to this, below the bridge's reply order window (500 ms by default).
const SHUFFLE_MAX_MS: u64 = 400;
/// Webhooks queued in the fake at most when a shuffle window starts (its workers: Sidekiq's 10).
const SHUFFLE_BACKLOG: usize = 10;
/// `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT`, the fake's default (as Chatwoot's).
const CONVERSATION_LIMIT: usize = 200;
/// One chat in this many is a person who switches forms mid-stream (issue 15): the first messages come
/// LID-only, later ones phone-only, some with both (RyzeAPI's contact look-up does not know them), so that
/// the bridge splits them into two chats and merges them again.
const SWITCH_EVERY: usize = 5;
/// A switching person's messages below this sequence number are LID-only, then phone-only up to twice it;
/// after that the forms rotate (both, LID-only, phone-only).
const SWITCH_AFTER: u64 = 3;
/// Seed of the fault sequence when `--seed` is not given.
pub const DEFAULT_SEED: u64 = 0xC4A0_5EED;

/// Short link and retry timings (the contract's defaults are seconds to minutes), as `tests/chaos.rs` uses.
const CHAOS_ENV: &[(&str, &str)] = &[
    ("BRIDGE_LINK_RECONNECT_MIN_MS", "100"),
    ("BRIDGE_LINK_RECONNECT_MAX_MS", "800"),
    ("BRIDGE_LINK_STABLE_MS", "5000"),
    ("BRIDGE_LINK_PING_MS", "500"),
    ("BRIDGE_LINK_DEAD_MS", "3000"),
    ("BRIDGE_LINK_REJECTED_RETRY_MS", "400"),
    ("BRIDGE_RETRY_MIN_MS", "100"),
    ("BRIDGE_RETRY_MAX_MS", "400"),
    ("BRIDGE_CHATWOOT_TIMEOUT_MS", "1500"),
];

/// splitmix64: reproducible fault choices from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high.saturating_sub(low) + 1))
    }
}

/// Who gets which message.
struct Plan {
    instances: Vec<String>,
    /// Chats in use, across all integrations: chat `s` is chat `s / integrations` of integration
    /// `s mod integrations`.
    slots: usize,
    inbound: u64,
    replies: u64,
}

impl Plan {
    fn new(opts: &Opts) -> Self {
        let integrations = opts.integrations.max(1);
        let inbound = opts.messages.div_ceil(2).max(1);
        // Every chat gets a first message (its conversation), or its replies could never be typed.
        let slots = (integrations * opts.chats.max(1)).min(usize::try_from(inbound).unwrap_or(usize::MAX));
        Self {
            instances: (0..integrations).map(|i| format!("chaos-{i:05}")).collect(),
            slots: slots.max(1),
            inbound,
            replies: opts.messages / 2,
        }
    }

    /// Chat and its sequence number of message `k` (in either direction).
    fn slot(&self, k: u64) -> (usize, u64) {
        let slots = self.slots as u64;
        (usize::try_from(k % slots).unwrap_or(0), k / slots)
    }

    fn integration(&self, slot: usize) -> usize {
        slot % self.instances.len().max(1)
    }

    fn jid(&self, slot: usize) -> String {
        Traffic::jid(self.integration(slot), slot / self.instances.len().max(1))
    }

    /// Whether the person of chat `slot` switches forms (one in [`SWITCH_EVERY`]).
    fn switches(slot: usize) -> bool {
        slot % SWITCH_EVERY == SWITCH_EVERY - 1
    }

    /// The form the `seq`-th message of chat `slot` names its person by.
    fn form(slot: usize, seq: u64) -> Form {
        match seq {
            _ if !Self::switches(slot) => Form::Both,
            s if s < SWITCH_AFTER => Form::Lid,
            s if s < 2 * SWITCH_AFTER => Form::Phone,
            s => [Form::Both, Form::Lid, Form::Phone][usize::try_from(s % 3).unwrap_or(0)],
        }
    }

    /// Customer message `k` as RyzeAPI sends it, naming its person by the form of its turn.
    fn customer_message(&self, instance: &str, k: u64) -> Value {
        let (slot, seq) = self.slot(k);
        let jid = self.jid(slot);
        let name = format!("Cliente {slot}");
        let mut envelope = sim::text_message(instance, &Self::wa_id(k), &jid, &name, &format!("i{seq} c{slot}"));
        let drop = match Self::form(slot, seq) {
            Form::Both => None,
            Form::Lid => Some("jid"),
            Form::Phone => Some("lid"),
        };
        if let Some(key) = drop {
            for party in ["chat", "sender"] {
                if let Some(map) = envelope.pointer_mut(&format!("/data/{party}")).and_then(Value::as_object_mut) {
                    map.remove(key);
                    if key == "jid" {
                        // A LID-only event names the LID where the phone JID would be.
                        map.insert("lid".into(), Value::String(sim::fake_lid(&jid)));
                    }
                }
            }
        }
        envelope
    }

    fn wa_id(k: u64) -> String {
        format!("3EB0CHAOS{k:011X}")
    }

    /// `k` of a Chatwoot `source_id` the bridge set for inbound message `k`.
    fn parse_source(source_id: &str) -> Option<u64> {
        u64::from_str_radix(source_id.strip_prefix("WAID:3EB0CHAOS")?, 16).ok()
    }

    fn reply_text(slot: usize, seq: u64) -> String {
        format!("o{seq} c{slot}")
    }

    /// `(slot, seq)` of a reply as sent to WhatsApp (the last two words, whatever the bridge put before).
    fn parse_reply(text: &str) -> Option<(usize, u64)> {
        let mut words = text.split_whitespace().rev();
        let slot = words.next()?.strip_prefix('c')?.parse().ok()?;
        let seq = words.next()?.strip_prefix('o')?.parse().ok()?;
        Some((slot, seq))
    }
}

/// How a customer message names its person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Form {
    Both,
    Lid,
    Phone,
}

impl Form {
    /// The bridge's queue of the form: events that name the phone JID share the phone chat's queue (order
    /// holds among them), LID-only ones have the LID's.
    fn queue(self) -> &'static str {
        match self {
            Self::Lid => "LID-only",
            Self::Both | Self::Phone => "with the phone JID",
        }
    }
}

/// What the fault injector did.
#[derive(Debug, Default)]
struct Faults {
    restarts: usize,
    restart_times: Vec<Duration>,
    /// When each kill -9 happened.
    kills: Vec<DateTime<Utc>>,
    link_drops: usize,
    sockets_closed: usize,
    flaky_windows: usize,
    hang_windows: usize,
    duplicate_windows: usize,
    /// Catch-all 422 windows on message create, and the 422s they armed: before the commit (nothing
    /// created) and after it (the message exists, the answer is still 422).
    unprocessable_before_windows: usize,
    unprocessable_before_armed: u32,
    unprocessable_after_windows: usize,
    unprocessable_after_armed: u32,
    /// Windows of shuffled late webhooks, and the largest delay used.
    shuffle_windows: usize,
    shuffle_max: Duration,
    /// Shuffle windows not started: the fake's webhook queue did not get short within 5 s.
    shuffle_skipped: usize,
    /// When each window of the newer faults ran (kind, start, end), to line violations up with them.
    windows: Vec<(&'static str, DateTime<Utc>, DateTime<Utc>)>,
    /// Why a restart failed (the run cannot go on).
    broken: Option<String>,
}

/// What the driver sent.
#[derive(Debug, Default)]
struct Sent {
    inbound: u64,
    /// Agent replies typed: chat, sequence number, Chatwoot message id.
    replies: Vec<(usize, u64, i64)>,
    /// Replies the fake refused to create (`agent_reply` gave `None`: the per-minute limit).
    agent_refused: u64,
    /// Conversation (display id) of each chat, once its first message is in Chatwoot.
    conversations: Vec<Option<i64>>,
    /// Conversations already looked at.
    mapped: HashSet<i64>,
    /// Driver ticks, those held back by the webhook backlog, and the largest backlog seen.
    ticks: u64,
    held_by_webhooks: u64,
    max_backlog: usize,
}

/// Sleeps `total`, in steps, returning early once `stop` is set.
async fn pause(total: Duration, stop: &Cell<bool>) {
    let until = Instant::now() + total;
    while !stop.get() && Instant::now() < until {
        let step = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        actix_web::rt::time::sleep(step).await;
    }
}

/// Injects faults at random moments until `stop` is set; clears them afterwards.
async fn inject(
    bridge: &mut Bridge,
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    rng: &mut Rng,
    stop: &Cell<bool>,
    faults: &RefCell<Faults>,
) {
    let mut last_restart: Option<Instant> = None;
    // Faults are drawn from a shuffled bag, so that even a short run sees every kind.
    let mut bag: Vec<u8> = Vec::new();
    while !stop.get() {
        pause(rng.millis(300, 1500), stop).await;
        if stop.get() {
            break;
        }
        if bag.is_empty() {
            bag = vec![0, 1, 1, 2, 3, 4, 5, 6, 7];
            for i in (1..bag.len()).rev() {
                bag.swap(i, usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0));
            }
        }
        match bag.pop().unwrap_or(1) {
            0 if last_restart.is_none_or(|at| at.elapsed() >= MIN_RESTART_GAP) => {
                bridge.kill();
                faults.borrow_mut().kills.push(Utc::now());
                actix_web::rt::time::sleep(rng.millis(50, 500)).await;
                match bridge.spawn().await {
                    Ok(took) => {
                        let mut faults = faults.borrow_mut();
                        faults.restarts += 1;
                        faults.restart_times.push(took);
                    }
                    Err(e) => {
                        faults.borrow_mut().broken = Some(format!("the bridge did not come back after kill -9: {e}"));
                        break;
                    }
                }
                last_restart = Some(Instant::now());
            }
            0 | 1 => {
                let count = 1 + rng.below(3);
                let mut faults = faults.borrow_mut();
                for _ in 0..count {
                    let index = usize::try_from(rng.below(plan.instances.len() as u64)).unwrap_or(0);
                    if let Some(instance) = plan.instances.get(index) {
                        faults.sockets_closed += sim.drop_connections(instance);
                        faults.link_drops += 1;
                    }
                }
            }
            2 => {
                chatwoot.set_fault(Fault::Flaky { percent: 30 });
                faults.borrow_mut().flaky_windows += 1;
                actix_web::rt::time::sleep(rng.millis(500, 3000)).await;
                chatwoot.set_fault(Fault::None);
            }
            3 => {
                chatwoot.set_fault(Fault::Slow(HANG));
                faults.borrow_mut().hang_windows += 1;
                actix_web::rt::time::sleep(rng.millis(500, 2500)).await;
                chatwoot.set_fault(Fault::None);
            }
            4 => {
                chatwoot.set_webhook_duplicates(true);
                faults.borrow_mut().duplicate_windows += 1;
                actix_web::rt::time::sleep(rng.millis(1000, 4000)).await;
                chatwoot.set_webhook_duplicates(false);
            }
            kind @ (5 | 6) => {
                // A window of catch-all 422s: one more armed every UNPROCESSABLE_EVERY, each answering the
                // next message create (the fake counts them, so one armed late may outlast the window).
                let after_commit = kind == 6;
                let began = Utc::now();
                let until = Instant::now() + rng.millis(500, 2500);
                let mut armed = 0u32;
                while Instant::now() < until && !stop.get() {
                    let text = if after_commit { AFTER_COMMIT } else { BEFORE_COMMIT };
                    chatwoot.fail_next_unprocessable("/messages", text, 1, after_commit);
                    armed += 1;
                    actix_web::rt::time::sleep(UNPROCESSABLE_EVERY).await;
                }
                let mut faults = faults.borrow_mut();
                faults.windows.push((
                    if after_commit { "422 after commit" } else { "422 before commit" },
                    began,
                    Utc::now(),
                ));
                if after_commit {
                    faults.unprocessable_after_windows += 1;
                    faults.unprocessable_after_armed += armed;
                } else {
                    faults.unprocessable_before_windows += 1;
                    faults.unprocessable_before_armed += armed;
                }
            }
            _ => {
                // The fake delays each delivery before it takes a worker, so a backlog queued when the
                // shuffle starts is drained into racing sleepers at once: deliveries queued seconds apart
                // then arrive seconds out of order (measured: up to 5.6 s after a restart's backlog), far
                // beyond the 400 ms meant and the bridge's order window. Shuffle only an idle queue.
                let until = Instant::now() + Duration::from_secs(5);
                while chatwoot.webhooks_in_flight() > SHUFFLE_BACKLOG && Instant::now() < until && !stop.get() {
                    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                }
                if chatwoot.webhooks_in_flight() > SHUFFLE_BACKLOG {
                    faults.borrow_mut().shuffle_skipped += 1;
                    continue;
                }
                let delay = rng.millis(100, SHUFFLE_MAX_MS);
                let began = Utc::now();
                chatwoot.set_webhook_shuffle(Some(delay));
                {
                    let mut faults = faults.borrow_mut();
                    faults.shuffle_windows += 1;
                    faults.shuffle_max = faults.shuffle_max.max(delay);
                }
                actix_web::rt::time::sleep(rng.millis(1000, 4000)).await;
                chatwoot.set_webhook_shuffle(None);
                faults.borrow_mut().windows.push(("shuffled webhooks", began, Utc::now()));
            }
        }
    }
    chatwoot.set_fault(Fault::None);
    chatwoot.set_webhook_duplicates(false);
    chatwoot.set_webhook_shuffle(None);
}

/// The most messages any conversation got within one minute (every kind counts towards Chatwoot's
/// per-conversation limit). Chatwoot answers 422 `Too many messages` only once this reaches the limit, so
/// below it no 422 was the pacing's fault, whatever the injected ones did.
fn busiest_minute(chatwoot: &FakeChatwoot) -> usize {
    let mut busiest = 0;
    for conversation in chatwoot.conversations() {
        let mut times: Vec<DateTime<Utc>> =
            chatwoot.messages(conversation.display_id).into_iter().map(|m| m.created_at).collect();
        times.sort_unstable();
        let mut start = 0;
        for (end, at) in times.iter().enumerate() {
            while times.get(start).is_some_and(|first| *at - *first >= chrono::TimeDelta::minutes(1)) {
                start += 1;
            }
            busiest = busiest.max(end + 1 - start);
        }
    }
    busiest
}

/// Finds the chat of conversations not seen yet, by the first customer message in each.
fn map_conversations(chatwoot: &FakeChatwoot, plan: &Plan, sent: &mut Sent) {
    for conversation in chatwoot.conversations() {
        if sent.mapped.contains(&conversation.display_id) {
            continue;
        }
        let first = chatwoot.messages(conversation.display_id).into_iter().find_map(|m| {
            (m.message_type == "incoming").then(|| m.source_id.as_deref().and_then(Plan::parse_source)).flatten()
        });
        let Some(k) = first else { continue };
        sent.mapped.insert(conversation.display_id);
        if let Some(entry) = sent.conversations.get_mut(plan.slot(k).0)
            && entry.is_none()
        {
            *entry = Some(conversation.display_id);
        }
    }
}

/// Replies that are settled without being on WhatsApp yet: Chatwoot's every webhook of them failed.
fn refused_replies(chatwoot: &FakeChatwoot, replies: &[(usize, u64, i64)]) -> usize {
    let outcomes = chatwoot.message_webhook_outcomes("message_created");
    replies.iter().filter(|(_, _, id)| outcomes.get(id).is_some_and(|(n, ok)| *n > 0 && *ok == 0)).count()
}

fn whatsapp_sends(sim: &RyzeApiSim, plan: &Plan) -> usize {
    plan.instances.iter().map(|i| sim.sent_message_ids(i).len()).sum()
}

/// Sends every customer message and types every reply, paced; `Err` when the deadline passes first.
async fn drive(
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    rate: u64,
    deadline: Instant,
    faults: &RefCell<Faults>,
    sent: &RefCell<Sent>,
) -> Res<()> {
    let mut cap = PER_CHAT_RATE * plan.slots as f64;
    if rate > 0 {
        cap = cap.min(rate as f64);
    }
    // Closed loop, never more per chat than the fake's per-minute limit allows, and no more than the webhook
    // backlog bound: each message that arrives makes the fake queue about two webhooks.
    let window = WEBHOOK_BACKLOG.min(PER_CHAT_BACKLOG * plan.slots) as u64;
    // Token buckets holding at most a second's worth, so a stall is not followed by a burst.
    let (mut in_tokens, mut out_tokens) = (1.0f64, 1.0f64);
    let mut last = Instant::now();
    let (mut next_map, mut next_settle) = (Instant::now(), Instant::now());
    let mut settled_replies = 0u64;
    let mut next_reply = 0u64;
    loop {
        // One tick, with the record borrowed only until the sleep.
        {
            let mut sent = sent.borrow_mut();
            if sent.inbound >= plan.inbound && next_reply >= plan.replies {
                return Ok(());
            }
            if let Some(problem) = &faults.borrow().broken {
                return Err(problem.clone());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "deadline reached while sending: {} of {} customer messages and {next_reply} of {} replies sent",
                    sent.inbound, plan.inbound, plan.replies
                ));
            }
            let now = Instant::now();
            let dt = now.duration_since(last).as_secs_f64();
            last = now;
            in_tokens = (in_tokens + cap * dt).min(cap.max(1.0));
            out_tokens = (out_tokens + cap * dt).min(cap.max(1.0));

            let backlog = chatwoot.webhooks_in_flight();
            sent.ticks += 1;
            sent.max_backlog = sent.max_backlog.max(backlog);
            let open = backlog <= WEBHOOK_BACKLOG;
            if !open {
                sent.held_by_webhooks += 1;
            }

            // Customer messages: what is not in Chatwoot yet is outstanding (replies are its other messages).
            let arrived = (chatwoot.message_count() as u64).saturating_sub(sent.replies.len() as u64);
            let outstanding = sent.inbound.saturating_sub(arrived);
            let n = (in_tokens as u64).min(window.saturating_sub(outstanding)).min(plan.inbound - sent.inbound);
            let n = if open { n } else { 0 };
            for _ in 0..n {
                let k = sent.inbound;
                let integration = plan.integration(plan.slot(k).0);
                let Some(instance) = plan.instances.get(integration) else { break };
                sim.send_event(instance, plan.customer_message(instance, k));
                sent.inbound += 1;
            }
            in_tokens -= n as f64;

            // Agent replies, once the chat's conversation exists.
            if now >= next_map && sent.conversations.iter().any(Option::is_none) {
                map_conversations(chatwoot, plan, &mut sent);
                next_map = now + Duration::from_millis(250);
            }
            if now >= next_settle {
                settled_replies = (whatsapp_sends(sim, plan) + refused_replies(chatwoot, &sent.replies)) as u64;
                next_settle = now + Duration::from_millis(250);
            }
            let outstanding = (sent.replies.len() as u64).saturating_sub(settled_replies);
            let n = (out_tokens as u64).min(window.saturating_sub(outstanding)).min(plan.replies - next_reply);
            let n = if open { n } else { 0 };
            let mut typed = 0u64;
            for _ in 0..n {
                let (slot, seq) = plan.slot(next_reply);
                let Some(display_id) = sent.conversations.get(slot).copied().flatten() else { break };
                match chatwoot.agent_reply(display_id, &Plan::reply_text(slot, seq), false) {
                    Some(id) => sent.replies.push((slot, seq, id)),
                    None => sent.agent_refused += 1,
                }
                next_reply += 1;
                typed += 1;
            }
            out_tokens -= typed as f64;
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Customer messages as Chatwoot holds them.
#[derive(Debug, Default)]
struct InboundCheck {
    /// Distinct messages of the plan found.
    delivered: u64,
    duplicates: u64,
    lost: u64,
    /// Messages stored after a later message of the same chat.
    out_of_order: u64,
    /// Conversations beyond the first for one chat (of a person who keeps one form).
    extra_conversations: u64,
    /// Conversations beyond the first of a person who switched forms: split, then merged (Chatwoot's merge
    /// keeps both conversations under the surviving contact).
    split_conversations: u64,
    /// Chatwoot contacts beyond the first holding one person's messages (issue 15: one person, one contact).
    extra_contacts: u64,
    /// Outgoing messages with a WhatsApp source id: copies of the bridge's own sends (none are typed on the phone).
    echo_copies: u64,
    /// Incoming messages that are not the plan's.
    foreign: u64,
    /// The first violations, described (for a reproduction).
    examples: Vec<String>,
}

/// How many violations are described at most.
const EXAMPLES: usize = 10;

fn example(examples: &mut Vec<String>, text: impl FnOnce() -> String) {
    if examples.len() < EXAMPLES {
        examples.push(text());
    }
}

/// `HH:MM:SS.mmm` (UTC), to line violations up with the kill times and the bridge log.
fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S%.3f").to_string()
}

fn check_inbound(chatwoot: &FakeChatwoot, plan: &Plan) -> InboundCheck {
    let mut check = InboundCheck::default();
    let mut seen = vec![0u32; usize::try_from(plan.inbound).unwrap_or(0)];
    let mut first: HashMap<u64, String> = HashMap::new();
    let mut per_chat: HashMap<usize, u64> = HashMap::new();
    let mut contacts: HashMap<usize, HashSet<i64>> = HashMap::new();
    // Messages of people who switch forms, by Chatwoot id: their order holds per form, across conversations.
    let mut switched: Vec<(i64, u64)> = Vec::new();
    for conversation in chatwoot.conversations() {
        let mut latest: Option<u64> = None;
        let mut chat = None;
        for message in chatwoot.messages(conversation.display_id) {
            let source = message.source_id.as_deref();
            let at = || {
                format!(
                    "Chatwoot message {} in conversation {} at {}",
                    message.id,
                    conversation.display_id,
                    clock(message.created_at)
                )
            };
            match (message.message_type.as_str(), source.and_then(Plan::parse_source)) {
                ("incoming", Some(k)) if k < plan.inbound => {
                    if let Some(count) = seen.get_mut(usize::try_from(k).unwrap_or(usize::MAX)) {
                        *count += 1;
                        if *count == 1 {
                            first.insert(k, at());
                        } else {
                            let original = first.get(&k).cloned().unwrap_or_default();
                            example(&mut check.examples, || {
                                format!(
                                    "inbound duplicate: {} (chat {}): {original}; again {}",
                                    Plan::wa_id(k),
                                    plan.slot(k).0,
                                    at()
                                )
                            });
                        }
                    }
                    let slot = plan.slot(k).0;
                    contacts.entry(slot).or_default().insert(conversation.contact_id);
                    if Plan::switches(slot) {
                        switched.push((message.id, k));
                    } else if let Some(l) = latest.filter(|l| k < *l) {
                        check.out_of_order += 1;
                        example(&mut check.examples, || {
                            format!(
                                "inbound out of order: {} stored after {} ({})",
                                Plan::wa_id(k),
                                Plan::wa_id(l),
                                at()
                            )
                        });
                    }
                    if !Plan::switches(slot) {
                        latest = latest.max(Some(k));
                    }
                    chat = Some(slot);
                }
                ("incoming", _) => check.foreign += 1,
                ("outgoing", _) if source.is_some_and(|s| s.starts_with("WAID:")) => {
                    check.echo_copies += 1;
                    example(&mut check.examples, || format!("copy of a WhatsApp send: {source:?}, {}", at()));
                }
                _ => {}
            }
        }
        if let Some(chat) = chat {
            *per_chat.entry(chat).or_default() += 1;
        }
    }
    for (k, count) in seen.into_iter().enumerate() {
        match count {
            0 => {
                check.lost += 1;
                let k = k as u64;
                example(&mut check.examples, || format!("inbound lost: {} (chat {})", Plan::wa_id(k), plan.slot(k).0));
            }
            n => {
                check.delivered += 1;
                check.duplicates += u64::from(n - 1);
            }
        }
    }
    let extra = |switching: bool| -> u64 {
        per_chat.iter().filter(|(slot, _)| Plan::switches(**slot) == switching).map(|(_, n)| n.saturating_sub(1)).sum()
    };
    check.extra_conversations = extra(false);
    check.split_conversations = extra(true);
    let mut people: Vec<(&usize, &HashSet<i64>)> = contacts.iter().filter(|(_, ids)| ids.len() > 1).collect();
    people.sort_by_key(|(slot, _)| **slot);
    for (slot, ids) in people {
        check.extra_contacts += ids.len() as u64 - 1;
        example(&mut check.examples, || format!("chat {slot} is {} Chatwoot contacts: {ids:?}", ids.len()));
    }
    switched.sort_unstable();
    let mut latest: HashMap<(usize, &'static str), u64> = HashMap::new();
    for (id, k) in switched {
        let (slot, seq) = plan.slot(k);
        let queue = Plan::form(slot, seq).queue();
        let last = latest.entry((slot, queue)).or_insert(k);
        if k < *last {
            check.out_of_order += 1;
            let after = *last;
            example(&mut check.examples, || {
                format!(
                    "inbound out of order ({queue}): {} (Chatwoot message {id}) stored after {}",
                    Plan::wa_id(k),
                    Plan::wa_id(after)
                )
            });
        }
        *last = (*last).max(k);
    }
    check
}

/// Agent replies as WhatsApp (the simulator) got them.
#[derive(Debug, Default)]
struct OutboundCheck {
    /// Replies whose `message_created` webhook the bridge answered 200 at least once.
    accepted: u64,
    /// Replies whose every webhook failed (the bridge was down): Chatwoot marks them failed, as the real one
    /// does; the agent sees it. Not expected on WhatsApp.
    refused: u64,
    /// Replies whose webhook is still queued in the fake.
    pending_webhook: u64,
    /// Accepted replies on WhatsApp.
    delivered: u64,
    duplicates: u64,
    lost: u64,
    out_of_order: u64,
    /// Each reply sent after a later one of its chat: its Chatwoot id and the later one's.
    reordered: Vec<(i64, i64)>,
    /// Of `out_of_order`, those whose job the bridge stored more than its reply order window after the
    /// later reply's (the webhook came that late: the window's documented limit), with the largest gap.
    late_webhooks: u64,
    late_gap: Duration,
    /// Sent to another integration's instance than the chat's.
    misrouted: u64,
    /// Sent although Chatwoot saw their webhook fail (stored just before a kill): fine, counted apart.
    sent_unaccepted: u64,
    /// `message_created` deliveries beyond the first of the same message (every message, both directions).
    doubled_webhooks: u64,
    /// The first violations, described (for a reproduction).
    examples: Vec<String>,
}

fn check_outbound(
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    replies: &[(usize, u64, i64)],
) -> OutboundCheck {
    let mut check = OutboundCheck::default();
    let outcomes = chatwoot.message_webhook_outcomes("message_created");
    check.doubled_webhooks = outcomes.values().map(|(n, _)| n.saturating_sub(1) as u64).sum();
    let mut accepted = HashSet::new();
    for (slot, seq, id) in replies {
        match outcomes.get(id) {
            Some((_, ok)) if *ok > 0 => {
                accepted.insert((*slot, *seq));
            }
            Some(_) => check.refused += 1,
            None => check.pending_webhook += 1,
        }
    }
    check.accepted = accepted.len() as u64;
    let describe = |slot: usize, seq: u64| {
        let id = replies.iter().find(|r| r.0 == slot && r.1 == seq).map_or(0, |r| r.2);
        let typed = chatwoot.message(id).map(|m| clock(m.created_at)).unwrap_or_default();
        let (n, ok) = outcomes.get(&id).copied().unwrap_or_default();
        format!(
            "\"{}\" (chat {slot}, instance {}, Chatwoot message {id} typed at {typed}, {n} webhook deliveries, {ok} answered 2xx)",
            Plan::reply_text(slot, seq),
            plan.instances.get(plan.integration(slot)).map_or("?", String::as_str)
        )
    };
    let mut sends: HashMap<(usize, u64), u64> = HashMap::new();
    let mut latest: HashMap<usize, u64> = HashMap::new();
    for (integration, instance) in plan.instances.iter().enumerate() {
        for call in sim.requests(instance) {
            if !call.path.starts_with("/api/message/text/") || call.status != 200 {
                continue;
            }
            let Some((slot, seq)) = call.body.get("message").and_then(Value::as_str).and_then(Plan::parse_reply) else {
                continue;
            };
            if plan.integration(slot) != integration {
                check.misrouted += 1;
                example(&mut check.examples, || format!("reply sent through {instance}: {}", describe(slot, seq)));
            }
            *sends.entry((slot, seq)).or_default() += 1;
            let last = latest.entry(slot).or_insert(seq);
            if seq < *last {
                check.out_of_order += 1;
                let after = *last;
                let id_of = |seq: u64| replies.iter().find(|r| r.0 == slot && r.1 == seq).map_or(0, |r| r.2);
                check.reordered.push((id_of(seq), id_of(after)));
                example(&mut check.examples, || format!("reply out of order: {} after o{after}", describe(slot, seq)));
            }
            *last = (*last).max(seq);
        }
    }
    check.duplicates = sends.values().map(|n| n.saturating_sub(1)).sum();
    let mut twice: Vec<(&(usize, u64), &u64)> = sends.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    for ((slot, seq), n) in twice {
        example(&mut check.examples, || format!("reply sent {n} times: {}", describe(*slot, *seq)));
    }
    let mut missing: Vec<&(usize, u64)> = accepted.iter().filter(|key| !sends.contains_key(key)).collect();
    missing.sort();
    for (slot, seq) in missing {
        example(&mut check.examples, || format!("reply lost: {}", describe(*slot, *seq)));
    }
    check.delivered = accepted.iter().filter(|key| sends.contains_key(key)).count() as u64;
    check.lost = check.accepted - check.delivered;
    check.sent_unaccepted = sends.keys().filter(|key| !accepted.contains(key)).count() as u64;
    check
}

/// The bridge's order window (`BRIDGE_REPLY_ORDER_WINDOW_MS`, its default: the bench does not set it).
const REPLY_ORDER_WINDOW: Duration = Duration::from_millis(500);

/// For each reordered pair, how much later the bridge stored the earlier reply's job than the later one's
/// (read from the bridge's database): beyond the order window, the earlier webhook simply came too late.
async fn measure_reordering(db: &BenchDb, check: &mut OutboundCheck) {
    use sea_orm::{ConnectionTrait as _, Statement};
    if check.reordered.is_empty() {
        return;
    }
    let Ok(conn) = sea_orm::Database::connect(&db.url).await else { return };
    let ids: Vec<String> = check.reordered.iter().flat_map(|(a, b)| [a.to_string(), b.to_string()]).collect();
    let sql = format!(
        "SELECT chatwoot_message_id, created_at FROM outbound_jobs WHERE kind = 'send' AND chatwoot_message_id IN ({})",
        ids.join(",")
    );
    let Ok(rows) = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await else { return };
    let stored: HashMap<i64, DateTime<Utc>> = rows
        .iter()
        .filter_map(|row| {
            Some((row.try_get::<i64>("", "chatwoot_message_id").ok()?, row.try_get("", "created_at").ok()?))
        })
        .collect();
    for (earlier, later) in check.reordered.clone() {
        let (Some(a), Some(b)) = (stored.get(&earlier), stored.get(&later)) else { continue };
        let gap = (*a - *b).to_std().unwrap_or_default();
        example(&mut check.examples, || {
            format!(
                "  Chatwoot message {earlier}'s job was stored at {}, {} ms after {later}'s ({})",
                clock(*a),
                gap.as_millis(),
                clock(*b)
            )
        });
        if gap > REPLY_ORDER_WINDOW {
            check.late_webhooks += 1;
            check.late_gap = check.late_gap.max(gap);
        }
    }
    let _ = conn.close().await;
}

/// Waits until every customer message is in Chatwoot and every accepted reply on WhatsApp, with no webhook
/// left in the fake's queue; false at the deadline (or when a restart failed).
async fn drain(
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    replies: &[(usize, u64, i64)],
    deadline: Instant,
    faults: &RefCell<Faults>,
) -> bool {
    loop {
        let settled = chatwoot.webhooks_settled(Duration::ZERO).await;
        let inbound = check_inbound(chatwoot, plan);
        let outbound = check_outbound(chatwoot, sim, plan, replies);
        if settled && inbound.lost == 0 && outbound.lost == 0 && outbound.pending_webhook == 0 {
            return true;
        }
        if remaining(deadline).is_zero() || faults.borrow().broken.is_some() {
            return false;
        }
        actix_web::rt::time::sleep(Duration::from_secs(1).min(remaining(deadline))).await;
    }
}

/// Replies on WhatsApp, by chat and sequence number.
fn whatsapp_replies(sim: &RyzeApiSim, plan: &Plan) -> HashSet<(usize, u64)> {
    plan.instances
        .iter()
        .flat_map(|instance| sim.requests(instance))
        .filter(|call| call.path.starts_with("/api/message/text/") && call.status == 200)
        .filter_map(|call| call.body.get("message").and_then(Value::as_str).and_then(Plan::parse_reply))
        .collect()
}

/// What an agent does about a reply Chatwoot marked failed: presses retry (`message_updated`, status `sent`,
/// no attributes). Returns `(retried, then sent to WhatsApp within 5 s)`. Done after the checks, since a
/// retried reply is naturally sent after later ones.
async fn retry_refused(stack: &Stack, plan: &Plan, replies: &[(usize, u64, i64)], deadline: Instant) -> (u64, u64) {
    let outcomes = stack.chatwoot.message_webhook_outcomes("message_created");
    let already = whatsapp_replies(&stack.sim, plan);
    let mut retried = Vec::new();
    for (slot, seq, id) in replies {
        let refused = outcomes.get(id).is_some_and(|(n, ok)| *n > 0 && *ok == 0);
        if refused && !already.contains(&(*slot, *seq)) && stack.chatwoot.agent_retry(*id) {
            retried.push((*slot, *seq));
        }
    }
    let until = Instant::now() + Duration::from_secs(5).min(remaining(deadline));
    loop {
        let sent = whatsapp_replies(&stack.sim, plan);
        let count = retried.iter().filter(|key| sent.contains(key)).count();
        if count == retried.len() || Instant::now() >= until {
            return (retried.len() as u64, count as u64);
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Integrations not `active` with empty queues and a connected link, with what is wrong.
async fn stuck(stack: &Stack, ids: &[String]) -> Res<Vec<String>> {
    let mut stuck = Vec::new();
    for id in ids {
        let (status, view) = stack.call(awc::http::Method::GET, &format!("/v1/integrations/{id}"), None).await?;
        let pending = |key: &str| view.pointer(&format!("/queues/{key}")).and_then(Value::as_u64).unwrap_or(u64::MAX);
        let ok = status == 200
            && view.get("status").and_then(Value::as_str) == Some("active")
            && view.pointer("/connection/state").and_then(Value::as_str) == Some("connected")
            && pending("to_chatwoot_pending") == 0
            && pending("to_whatsapp_pending") == 0;
        if !ok {
            stuck.push(format!(
                "{id}: HTTP {status}, status {}, link {}, queues {}",
                view.get("status").unwrap_or(&Value::Null),
                view.pointer("/connection/state").unwrap_or(&Value::Null),
                view.get("queues").unwrap_or(&Value::Null)
            ));
        }
    }
    Ok(stuck)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `future`, or an error naming `what` once the deadline passes.
async fn within<T>(deadline: Instant, what: &str, future: impl std::future::Future<Output = Res<T>>) -> Res<T> {
    match actix_web::rt::time::timeout(remaining(deadline), future).await {
        Ok(result) => result,
        Err(_) => Err(format!("deadline reached while {what}")),
    }
}

pub async fn chaos(opts: &Opts, db: &BenchDb) -> Res<Table> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let plan = Plan::new(opts);
    let integrations = plan.instances.len();
    let mut table = Table::new(format!(
        "chaos — {} customer messages + {} agent replies over {integrations} integrations × {} chats, seed {}, \
         deadline {} s, {}",
        plan.inbound,
        plan.replies,
        plan.slots.div_ceil(integrations),
        opts.seed,
        opts.seconds,
        db.kind()
    ));
    let mut stack = within(deadline, "starting the bridge", Stack::start_with(db, CHAOS_ENV)).await?;
    let ids = within(deadline, "activating", stack.activate_all(&plan.instances, 4)).await?;
    let connect = stack.wait_connected(integrations, remaining(deadline));
    within(deadline, "connecting the links", connect).await?;
    let setup = started.elapsed();

    let traffic_started = Instant::now();
    let stop = Cell::new(false);
    let faults = RefCell::new(Faults::default());
    let sent = RefCell::new(Sent { conversations: vec![None; plan.slots], ..Sent::default() });
    let mut rng = Rng(opts.seed);
    let sending = Cell::new(Duration::ZERO);
    // Faults go on until every message arrived, not only while sending: most of the work is the bridge's backlog.
    let (driven, drained) = {
        let Stack { bridge, chatwoot, sim, .. } = &mut stack;
        let (chatwoot, sim) = (&*chatwoot, &*sim);
        let driver = async {
            let driven = drive(chatwoot, sim, &plan, opts.rate, deadline, &faults, &sent).await;
            sending.set(traffic_started.elapsed());
            let replies = sent.borrow().replies.clone();
            let drained = driven.is_ok() && drain(chatwoot, sim, &plan, &replies, deadline, &faults).await;
            stop.set(true);
            (driven, drained)
        };
        let injector = inject(bridge, chatwoot, sim, &plan, &mut rng, &stop, &faults);
        futures_util::future::join(driver, injector).await.0
    };
    let traffic = traffic_started.elapsed();
    let replies = sent.borrow().replies.clone();
    // Once more after a pause, for late duplicates (and the figures of an incomplete run).
    if drained {
        actix_web::rt::time::sleep(Duration::from_secs(1).min(remaining(deadline))).await;
    }
    let inbound = check_inbound(&stack.chatwoot, &plan);
    let mut outbound = check_outbound(&stack.chatwoot, &stack.sim, &plan, &replies);
    measure_reordering(db, &mut outbound).await;
    // No integration stuck: all active, links up and queues empty (they may need a moment after the last fault).
    let mut stuck_list = stuck(&stack, &ids).await?;
    while !stuck_list.is_empty() && !remaining(deadline).is_zero() {
        actix_web::rt::time::sleep(Duration::from_millis(500).min(remaining(deadline))).await;
        stuck_list = stuck(&stack, &ids).await?;
    }
    let retry = if drained { retry_refused(&stack, &plan, &replies, deadline).await } else { (0, 0) };
    let requests = stack.chatwoot.requests();
    let answered_422 =
        requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/messages") && r.status == 422).count();
    let busiest = busiest_minute(&stack.chatwoot);
    let paced_out = u64::from(busiest >= CONVERSATION_LIMIT);
    let faulted = requests.iter().filter(|r| matches!(r.status, 429 | 503)).count();
    let merges = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/actions/contact_merge") && r.status == 200)
        .count();

    let sent = sent.borrow();
    let faults = faults.borrow();
    let zero = |table: &mut Table, figure: &str, value: u64| table.target(figure, value.to_string(), "0", value == 0);
    table.info("customer messages sent (WhatsApp → bridge)", sent.inbound.to_string());
    table.info("  delivered to Chatwoot (distinct)", inbound.delivered.to_string());
    zero(&mut table, "  duplicates in Chatwoot", inbound.duplicates);
    zero(&mut table, "  lost", inbound.lost);
    zero(&mut table, "  out of order within a chat", inbound.out_of_order);
    zero(&mut table, "  extra conversations for one chat", inbound.extra_conversations);
    zero(&mut table, "  extra Chatwoot contacts for one person", inbound.extra_contacts);
    let switchers = (0..plan.slots).filter(|slot| Plan::switches(*slot)).count();
    table.info(
        "  people switching forms (LID-only → phone-only → both) / contact merges / split conversations kept",
        format!("{switchers} / {merges} / {}", inbound.split_conversations),
    );
    zero(&mut table, "  copies of the bridge's own WhatsApp sends in Chatwoot", inbound.echo_copies);
    if inbound.foreign > 0 {
        table.info("  other incoming messages in Chatwoot", inbound.foreign.to_string());
    }
    table.info("agent replies typed (Chatwoot → bridge)", sent.replies.len().to_string());
    table.info("  webhook answered 200 by the bridge (expected on WhatsApp)", outbound.accepted.to_string());
    table.info(
        "  every webhook failed: bridge down (Chatwoot marks them failed)",
        format!("{} ({} of them sent anyway)", outbound.refused, outbound.sent_unaccepted),
    );
    if retry.0 > 0 {
        table.info("  of those, retried by the agent afterwards → then sent", format!("{} → {}", retry.0, retry.1));
    }
    if outbound.pending_webhook > 0 {
        table.info("  webhook never delivered by the fake", outbound.pending_webhook.to_string());
    }
    table.info("  delivered to WhatsApp (distinct, of the expected)", outbound.delivered.to_string());
    zero(&mut table, "  duplicates on WhatsApp", outbound.duplicates);
    zero(&mut table, "  lost", outbound.lost);
    let reordered = outbound.out_of_order - outbound.late_webhooks;
    zero(&mut table, "  out of order within a chat (webhooks within the order window)", reordered);
    if outbound.late_webhooks > 0 {
        table.info(
            "  out of order: the earlier reply's webhook came later than the 500 ms window (its documented limit)",
            format!("{} (largest gap {} ms)", outbound.late_webhooks, outbound.late_gap.as_millis()),
        );
    }
    zero(&mut table, "  sent to another integration's instance", outbound.misrouted);
    let mean_restart =
        faults.restart_times.iter().sum::<Duration>().as_secs_f64() * 1000.0 / faults.restart_times.len().max(1) as f64;
    table.info(
        "kill -9 + restart of the bridge",
        format!("{} (mean start → /readyz {mean_restart:.0} ms)", faults.restarts),
    );
    table.info("RyzeAPI WebSocket drops", format!("{} ({} sockets closed)", faults.link_drops, faults.sockets_closed));
    table.info(
        "Chatwoot fault windows: 5xx/429 (30 %) / hangs (2 s > 1.5 s timeout)",
        format!("{} / {} ({faulted} requests answered 503/429)", faults.flaky_windows, faults.hang_windows),
    );
    table.info(
        "doubled-webhook windows / webhooks delivered twice",
        format!("{} / {}", faults.duplicate_windows, outbound.doubled_webhooks),
    );
    table.info(
        "catch-all 422 windows on message create: before commit / after commit (message exists)",
        format!(
            "{} / {} ({} / {} armed; {answered_422} creates answered 422)",
            faults.unprocessable_before_windows,
            faults.unprocessable_after_windows,
            faults.unprocessable_before_armed,
            faults.unprocessable_after_armed
        ),
    );
    table.info(
        "shuffled late webhook windows (delay up to; skipped: webhook backlog)",
        format!("{} ({} ms; {})", faults.shuffle_windows, faults.shuffle_max.as_millis(), faults.shuffle_skipped),
    );
    table.target(
        "busiest conversation minute (messages; Chatwoot refuses from its limit: a pacing fault)",
        busiest.to_string(),
        format!("< {CONVERSATION_LIMIT}"),
        paced_out == 0,
    );
    zero(&mut table, "agent replies the fake refused (per-minute limit)", sent.agent_refused);
    zero(&mut table, "stuck integrations (not active, link down or queue not empty)", stuck_list.len() as u64);
    table.info(
        "wall time: setup / sending / until all arrived / whole run",
        format!(
            "{} / {} / {} / {}",
            report::secs(setup),
            report::secs(sending.get()),
            report::secs(traffic),
            report::secs(started.elapsed())
        ),
    );
    let rate = |n: u64| report::per_s(report::rate(n as f64, traffic));
    table.info(
        "throughput under faults: customer messages / replies / both",
        format!(
            "{} / {} / {}",
            rate(inbound.delivered),
            rate(outbound.delivered),
            rate(inbound.delivered + outbound.delivered)
        ),
    );
    table.info(
        "fake Chatwoot's webhook queue: largest backlog / sending held by it",
        format!(
            "{} / {:.0}% of ticks",
            sent.max_backlog,
            100.0 * sent.held_by_webhooks as f64 / sent.ticks.max(1) as f64
        ),
    );
    table.note(format!(
        "pacing: at most {PER_CHAT_RATE:.0} message/s and {PER_CHAT_BACKLOG} outstanding per chat and direction, \
         nothing while more than {WEBHOOK_BACKLOG} webhooks wait in the fake; --seed fixes the fault sequence, not \
         its timing"
    ));
    for line in inbound.examples.iter().chain(&outbound.examples) {
        table.note(line.clone());
    }
    if !faults.kills.is_empty() {
        let kills: Vec<String> = faults.kills.iter().map(|at| clock(*at)).collect();
        table.note(format!("kill -9 at {} (UTC)", kills.join(", ")));
    }
    if !faults.windows.is_empty() {
        let windows: Vec<String> =
            faults.windows.iter().map(|(kind, from, to)| format!("{kind} {}–{}", clock(*from), clock(*to))).collect();
        table.note(format!("422 and shuffle windows (UTC): {}", windows.join(", ")));
    }
    for line in stuck_list.iter().take(5) {
        table.note(format!("stuck: {line}"));
    }
    log_notes(&stack, &mut table);

    let violations = inbound.duplicates
        + inbound.lost
        + inbound.out_of_order
        + inbound.extra_conversations
        + inbound.extra_contacts
        + inbound.echo_copies
        + outbound.duplicates
        + outbound.lost
        + (outbound.out_of_order - outbound.late_webhooks)
        + outbound.misrouted
        + paced_out
        + sent.agent_refused
        + stuck_list.len() as u64;
    let broken = faults.broken.clone();
    let problem = match (driven, drained) {
        (Err(e), _) => Some(e),
        (Ok(()), false) if broken.is_some() => broken,
        (Ok(()), false) => Some(format!("deadline ({} s) reached before every message arrived", opts.seconds)),
        (Ok(()), true) if violations > 0 => Some(format!("{violations} violations")),
        _ => None,
    };
    if problem.is_some()
        && let Some(path) = stack.bridge.keep_log()
    {
        table.note(format!("the bridge's log is kept at {}", path.display()));
    }
    match problem {
        None => Ok(table),
        Some(problem) => Err(format!("{}chaos: {problem}", table.render())),
    }
}
