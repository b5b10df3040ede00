//! WebSocket close codes the host sends, on every endpoint and through the
//! proxy: the RFC 6455 ones it uses and its own in the 4000 range. The
//! table in `docs/protocol.md` lists the same.
//!
//! A peer's Close is answered with its own code (RFC 6455 5.5.1); which
//! code the host owes for a failed read is `transport::closing`'s to say.

/// The exchange is over (either side asked).
pub const NORMAL: u16 = 1000;
/// The host is shutting down (in-flight requests were answered first), or,
/// towards a proxy's upstream, the client went away without a close.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke RFC 6455: reserved bits or opcodes, a control frame over
/// 125 bytes or fragmented, a stray continuation, an unmasked client frame,
/// or a Close with an invalid code.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Never sent: a connection that ended without a Close frame, as logs and
/// client libraries report it.
pub const ABNORMAL: u16 = 1006;
/// A text message or a close reason that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A worker's registration was refused, or an `opaque` endpoint's frame
/// was (its key's scopes, the message rate).
pub const POLICY: u16 = 1008;
/// A frame over `limits.max_frame_bytes`.
pub const TOO_BIG: u16 = 1009;
/// The host failed in a way the peer did not cause, or an `opaque`
/// endpoint's plugin failed on a frame (the reason is its message).
pub const INTERNAL_ERROR: u16 = 1011;
/// Proxy: no upstream in rotation, or none would connect.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Proxy: the upstream went away without a close frame.
pub const BAD_GATEWAY: u16 = 1014;
/// No frame, not even a pong, within the idle timeout; or a worker that
/// missed its heartbeats or was replaced by a rejoin under its id.
pub const IDLE_TIMEOUT: u16 = 4000;
/// Authentication failed, or the connection's key was revoked.
pub const AUTHENTICATION_FAILED: u16 = 4001;
/// The connection's send queue overflowed: it was not reading.
pub const SLOW_CONSUMER: u16 = 4008;

/// A close frame's reason is at most 123 bytes (RFC 6455 5.5: a control
/// frame's payload is at most 125, two of which are the code).
pub const MAX_REASON_BYTES: usize = 123;

/// `reason` cut to what a close frame can carry, on a character boundary.
pub fn reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        assert_eq!(super::reason("short"), "short");
        let long = "é".repeat(100);
        let cut = super::reason(&long);
        assert!(cut.len() <= super::MAX_REASON_BYTES && cut.len().is_multiple_of(2));
    }
}
