//! The bridge's wire formats: parsers of what RyzeAPI and Chatwoot send, and renderers of what goes back.
//!
//! What belongs here is pure code: no I/O, no runtime (no actix, awc or tokio), no database (no sea-orm,
//! no store), no clock (callers pass "now"). Each function takes bytes, text or JSON and returns a value:
//! RyzeAPI event envelopes and `message.exchange` in both layouts (`ryzeapi_event`), Chatwoot's webhook
//! payloads and their signature check (`chatwoot_webhook`), Chatwoot version gates (`chatwoot_version`),
//! Markdown ⇄ WhatsApp formatting (`format`), chat identity and aliases (`identity`), message and notice
//! rendering (`render`), the pairing QR code as a PNG (`qr_png`), and the make/parse pair of every key
//! format the bridge stores or sends (`keys`). The bridge (`ryze-integrations`)
//! re-exports each module at its old path and does the I/O around them.
//!
//! Why a crate of its own: the fuzz targets (`fuzz/`) depend on this crate only, so a cold sanitizer build
//! compiles a handful of small dependencies instead of actix, sqlx and sea-orm, and `.ci/run` fuzzes on
//! every run, on a fresh machine too. It builds and tests in seconds. Recorded payloads the unit tests
//! parse are in `fixtures/`.

pub mod chatwoot_version;
pub mod chatwoot_webhook;
pub mod format;
pub mod identity;
pub mod keys;
pub mod qr_png;
pub mod render;
pub mod ryzeapi_event;

#[cfg(test)]
mod fixtures;
