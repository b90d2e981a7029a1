//! `ryze-fakes`: fakes of the bridge's neighbours, served over real sockets. Test and trial code, kept out
//! of the production crate: the integration tests, the bench (`bench/`) and two programs
//! (`src/bin/fake-chatwoot.rs`, `src/bin/ryzeapi-sim.rs`, shipped in the image) use it.
//!
//! [`chatwoot::FakeChatwoot`] answers like a real Chatwoot (statuses, bodies, ids — see
//! `shared/reference/chatwoot-api.md`) and records every request, flagging any request a real Chatwoot
//! would reject or silently misread as a *violation*. Tests, the benchmark and the `fake-chatwoot` binary
//! (for trying the bridge with curl) use it.
//!
//! [`ryzeapi::RyzeApiSim`] plays RyzeAPI (`/ws/chatwoot` event stream, REST sends) for tests and `ryzeapi-sim`.

pub mod chatwoot;
pub mod ryzeapi;
