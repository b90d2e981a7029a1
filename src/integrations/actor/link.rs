//! The actor's RyzeAPI link: `connecting → connected → (lost) → waiting (backoff) → connecting …`, forever,
//! kept alive by pings and dropped when silent past the heartbeat timeout. A 401/403/404 on the upgrade
//! sets the integration to `error` and retries slowly; a later successful connect clears that error.
//! Frames are read here (fragments joined); their text goes to `ingest`.

use std::time::{Duration, Instant};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_http::ws::Item as Fragment;
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message as WsMessage};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, StreamExt as _};

use super::IntegrationActor;
use crate::integrations::Status;
use crate::live::LinkState;
use crate::ryzeapi::link::{self, Link, LinkError, MAX_FRAME_BYTES, Refusal};
use crate::store;

type LinkSink = SplitSink<Link, WsMessage>;

pub(super) struct OpenLink {
    pub(super) sink: SinkWrite<WsMessage, LinkSink>,
    stream: SpawnHandle,
    opened: Instant,
}

impl IntegrationActor {
    pub(super) fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.link.is_some() {
            return;
        }
        let Some(http) = self.http.clone() else { return };
        self.connecting = true;
        self.live.set_state(LinkState::Connecting);
        let url = link::ws_url(&self.cfg.ryzeapi_url, &self.cfg.instance);
        let token = self.cfg.bridge_token.clone();
        let attempt = async move { link::connect(&http, &url, &token).await };
        ctx.spawn(attempt.into_actor(self).map(|result, act, ctx| {
            act.connecting = false;
            match result {
                Ok(link) => act.on_connected(link, ctx),
                Err(error) => act.on_connect_failed(error, ctx),
            }
        }));
    }

    fn on_connected(&mut self, link: Link, ctx: &mut Context<Self>) {
        let (sink, stream) = link.split();
        let sink = SinkWrite::new(sink, ctx);
        let stream = ctx.add_stream(stream);
        self.link = Some(OpenLink { sink, stream, opened: Instant::now() });
        self.last_heard = Instant::now();
        self.live.set_state(LinkState::Connected);
        tracing::info!(integration_id = %self.cfg.id, "RyzeAPI link connected");
        // A link error shown on the integration is over now.
        if let Some(db) = self.db() {
            let id = self.cfg.id.clone();
            ctx.spawn(
                async move {
                    if let Ok(Some(model)) = store::integrations::find(&db, &id).await
                        && model.status() == Some(Status::Error)
                        && Refusal::from_reason(&model.last_error).is_some()
                    {
                        let _ = store::integrations::set_status_if(&db, &id, Status::Error, Status::Active, "").await;
                    }
                }
                .into_actor(self),
            );
        }
    }

    fn on_connect_failed(&mut self, error: LinkError, ctx: &mut Context<Self>) {
        self.live.set_state(LinkState::Disconnected);
        let delay = if error.needs_operator() {
            tracing::warn!(integration_id = %self.cfg.id, error = %error, "RyzeAPI refused the link; retrying slowly");
            if let Some(db) = self.db() {
                let (id, message) = (self.cfg.id.clone(), error.to_string());
                ctx.spawn(
                    async move {
                        let _ =
                            store::integrations::set_status_if(&db, &id, Status::Active, Status::Error, &message).await;
                    }
                    .into_actor(self),
                );
            }
            self.cfg.timing.rejected_retry
        } else {
            let delay = self.backoff.next_delay();
            tracing::info!(integration_id = %self.cfg.id, error = %error, delay_ms = delay.as_millis() as u64, "RyzeAPI link failed; reconnecting");
            delay
        };
        self.schedule_reconnect(delay, ctx);
    }

    fn schedule_reconnect(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if let Some(timer) = self.reconnect_timer.take() {
            ctx.cancel_future(timer);
        }
        self.reconnect_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.reconnect_timer = None;
            act.live.count_reconnect();
            act.connect(ctx);
        }));
    }

    /// The link is gone (closed, broken, silent, or dropped on purpose): forget it and reconnect.
    pub(super) fn on_link_lost(&mut self, why: &str, ctx: &mut Context<Self>) {
        let Some(open) = self.link.take() else { return };
        ctx.cancel_future(open.stream);
        drop(open.sink);
        self.partial_frame = None;
        self.live.set_state(LinkState::Disconnected);
        if open.opened.elapsed() >= self.cfg.timing.stable_after {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        tracing::info!(integration_id = %self.cfg.id, why, delay_ms = delay.as_millis() as u64, "RyzeAPI link lost; reconnecting");
        self.schedule_reconnect(delay, ctx);
    }

    pub(super) fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(open) = self.link.as_mut() else { return };
        if self.last_heard.elapsed() >= self.cfg.timing.dead_after {
            self.on_link_lost("no frame from RyzeAPI within the heartbeat timeout", ctx);
            return;
        }
        if open.opened.elapsed() >= self.cfg.timing.stable_after {
            self.backoff.reset();
        }
        if open.sink.write(WsMessage::Ping(Bytes::new())).is_err() {
            self.on_link_lost("ping could not be written", ctx);
        }
    }
}

impl WriteHandler<WsProtocolError> for IntegrationActor {
    fn error(&mut self, error: WsProtocolError, ctx: &mut Self::Context) -> Running {
        self.on_link_lost(&format!("write failed: {error}"), ctx);
        Running::Continue
    }

    /// The sink closing is not the actor's end (the default would stop it).
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl StreamHandler<Result<Frame, WsProtocolError>> for IntegrationActor {
    fn handle(&mut self, item: Result<Frame, WsProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(Frame::Text(text)) => self.on_text(text, ctx),
            Ok(Frame::Ping(payload)) => {
                let failed = self.link.as_mut().is_some_and(|open| open.sink.write(WsMessage::Pong(payload)).is_err());
                if failed {
                    self.on_link_lost("pong could not be written", ctx);
                }
            }
            Ok(Frame::Pong(_)) => {}
            Ok(Frame::Binary(_)) => tracing::debug!(integration_id = %self.cfg.id, "ignored a binary frame"),
            Ok(Frame::Continuation(item)) => self.on_continuation(item, ctx),
            Ok(Frame::Close(reason)) => {
                let why = format!("closed by RyzeAPI ({reason:?})");
                self.on_link_lost(&why, ctx);
            }
            Err(error) => self.on_link_lost(&format!("protocol error: {error}"), ctx),
        }
    }

    /// The stream ended without a close frame: the link is gone, the actor is not.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.on_link_lost("connection ended", ctx);
    }
}

impl IntegrationActor {
    /// Reassembles fragmented text frames (up to the frame size limit).
    fn on_continuation(&mut self, item: Fragment, ctx: &mut Context<Self>) {
        let last = matches!(item, Fragment::Last(_));
        match item {
            Fragment::FirstText(bytes) => self.partial_frame = Some(BytesMut::from(&bytes[..])),
            Fragment::FirstBinary(_) => self.partial_frame = None,
            Fragment::Continue(bytes) | Fragment::Last(bytes) => {
                let Some(buffer) = self.partial_frame.as_mut() else { return };
                if buffer.len() + bytes.len() > MAX_FRAME_BYTES {
                    tracing::warn!(integration_id = %self.cfg.id, "skipped a fragmented frame over 64 MiB");
                    self.partial_frame = None;
                    return;
                }
                buffer.extend_from_slice(&bytes);
                if last && let Some(done) = self.partial_frame.take() {
                    self.on_text(done.freeze(), ctx);
                }
            }
        }
    }
}
