//! Every client-facing format, in one place.
//!
//! - [`envelope`]: the one [`Envelope`] every dialect decodes into, and the
//!   [`Reply`] or [`Failure`] a call ends in.
//! - [`dialect`]: each accepted client format (canonical, the action
//!   server's request and command forms, the room server's raw objects)
//!   decoded into an envelope, and the answer encoded back in that format.
//! - [`frames`]: what the host sends unasked: acks, events, pushed
//!   messages, and the shared error body.
//! - [`control`]: the video-control proxy's `/api/control` translation.
//! - [`worker`]: the remote-worker protocol.
//! - [`msgpack`]: MessagePack frames read into, and written from, JSON.
//! - [`calls`]: calls the host makes to clients, and their answers.
//! - [`codes`]: every [`ErrorCode`] the host emits, with its HTTP status.
//! - [`close`]: the WebSocket close codes the host sends.
//!
//! Compatibility with the servers Switchyard replaces lives here and
//! nowhere else, so routing and plugins only ever see one envelope. Nothing
//! here does I/O.

pub mod calls;
pub mod close;
pub mod codes;
pub mod control;
pub mod dialect;
pub mod envelope;
pub mod frames;
pub mod msgpack;
pub mod worker;

pub use codes::ErrorCode;
pub use envelope::{Envelope, Failure, Origin, Outcome, Payload, Reply, ServedBy, Transport};
