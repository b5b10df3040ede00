//! `opaque` endpoints: each frame's bytes, text or binary, go to the plugin
//! claiming the endpoint's type (its `frames` export), and the plugin's
//! answer comes back as one frame of the kind it chose. No envelope, no
//! acknowledgement, no dialect: with the bundled `echo` plugin the host is a
//! plain echo server that WebSocket conformance suites can drive.
//!
//! Frames are answered one at a time, in order, through the connection's
//! outbox like any other reply. There is no error frame to send, so a frame
//! that cannot be answered closes the connection: 1009 over
//! `limits.max_message_bytes`, 1008 when the caller may not send it (scopes,
//! message rate), 1011 when no plugin with `frames` claims the type or the
//! plugin failed, its message the close reason.

use super::closing::{self, Closing};
use super::Gateway;
use crate::admission::security::Principal;
use crate::hub::Connection;
use crate::wire::close::{self as codes, INTERNAL_ERROR, POLICY};
use crate::wire::{ErrorCode, Origin, Payload};
use axum::extract::ws::{Message, WebSocket};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use std::sync::Arc;

/// The first byte of a queued frame that carries its own opcode. Queued JSON
/// never starts with either (it starts with `{` or `[`).
const TEXT: u8 = 0x01;
const BINARY: u8 = 0x02;

/// Answer frames until the connection ends; returns how it ends.
pub async fn read_loop(
    gateway: &Gateway,
    kind: &str,
    origin: Origin,
    stream: &mut SplitStream<WebSocket>,
    connection: &Arc<Connection>,
    principal: &Principal,
) -> Closing {
    let settings = &gateway.ws;
    let mut bucket = gateway.limits.message_bucket();
    loop {
        let next = tokio::select! {
            _ = gateway.tasks.shutdown_signal().cancelled() => return Closing::close(codes::GOING_AWAY, "server shutting down"),
            _ = connection.evicted() => return super::ws::evicted(connection),
            next = tokio::time::timeout(settings.idle_timeout, stream.next()) => next,
        };
        let payload = match next.map(closing::next_message) {
            Err(_) => return Closing::close(codes::IDLE_TIMEOUT, "idle timeout: no frames or pongs"),
            Ok(Err(closing)) => return closing,
            Ok(Ok(Message::Text(text))) => Payload::Text(text.as_str().to_owned()),
            Ok(Ok(Message::Binary(bytes))) => Payload::Binary(bytes.into()),
            Ok(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))) => continue,
        };
        let limit = gateway.limits.get().max_message_bytes;
        if payload_len(&payload) > limit {
            gateway.metrics.message(kind, true, ErrorCode::PayloadTooLarge.as_str());
            return Closing::close(codes::TOO_BIG, format!("frame over the {limit}-byte message limit"));
        }
        if let Err(failure) = bucket.admit(&gateway.limits).and_then(|()| principal.may_send(kind)) {
            gateway.metrics.message(kind, true, &failure.code);
            return Closing::close(POLICY, codes::reason(&failure.message));
        }
        // Boxed, as on envelope endpoints: the call's state lives only while it runs.
        match Box::pin(gateway.dispatcher.frame(kind, &origin, payload)).await {
            Ok(None) => {}
            Ok(Some(answer)) => {
                if !connection.deliver(tagged(answer), settings.send_timeout).await {
                    return super::ws::evicted(connection);
                }
            }
            Err(failure) => return Closing::close(INTERNAL_ERROR, codes::reason(&failure.message)),
        }
    }
}

fn payload_len(payload: &Payload) -> usize {
    match payload {
        Payload::Text(text) => text.len(),
        Payload::Binary(bytes) => bytes.len(),
    }
}

/// A payload as the outbox carries it: one opcode byte, then the bytes.
fn tagged(payload: Payload) -> Bytes {
    let (tag, bytes) = match payload {
        Payload::Text(text) => (TEXT, text.into_bytes()),
        Payload::Binary(bytes) => (BINARY, bytes),
    };
    let mut frame = BytesMut::with_capacity(bytes.len() + 1);
    frame.put_u8(tag);
    frame.put_slice(&bytes);
    frame.freeze()
}

/// The frame a tagged payload is sent as, or `None` for queued JSON.
pub fn untagged(frame: &Bytes) -> Option<Message> {
    match frame.first() {
        Some(&TEXT) => axum::extract::ws::Utf8Bytes::try_from(frame.slice(1..)).ok().map(Message::Text),
        Some(&BINARY) => Some(Message::Binary(frame.slice(1..))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_keep_their_opcode_through_the_outbox() {
        let text = tagged(Payload::Text("{é}".into()));
        assert!(matches!(untagged(&text), Some(Message::Text(t)) if t.as_str() == "{é}"));
        let binary = tagged(Payload::Binary(vec![0, 0xff, b'{']));
        assert!(matches!(untagged(&binary), Some(Message::Binary(b)) if b.as_ref() == [0, 0xff, b'{']));
        assert!(matches!(untagged(&tagged(Payload::Binary(Vec::new()))), Some(Message::Binary(b)) if b.is_empty()));
        assert!(untagged(&Bytes::from_static(b"{\"type\":\"x\"}")).is_none());
    }
}
