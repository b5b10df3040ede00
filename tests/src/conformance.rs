//! RFC 6455 conformance cases, driven with [`raw`](crate::raw) frames
//! against any [`Target`]: the host's `/ws`, or the same cases through the
//! reverse proxy against an upstream echo server.
//!
//! Every case opens its own connections, asserts the close code the server
//! sends and that it then closes TCP, and ends by checking the target still
//! serves a new connection. A case panics with what it saw.
//!
//! The close codes: an echo of the client's code when the client closes;
//! 1002 for a protocol error (reserved bits, reserved opcodes, control frames
//! over 125 bytes or fragmented, a continuation with nothing to continue, an
//! unmasked frame, an invalid close code or a one-byte close payload); 1007
//! for invalid UTF-8 in a text message or a close reason.

use crate::raw::{opcode, Ended, Frame, RawSocket, RSV1, RSV2, RSV3, WAIT};
use futures_util::{stream, StreamExt};
use std::future::Future;
use std::net::SocketAddr;

pub const PROTOCOL_ERROR: u16 = 1002;
pub const INVALID_PAYLOAD: u16 = 1007;

/// Close codes a client may send (RFC 6455 7.4, and the ranges registered
/// for libraries and applications): each is echoed back.
pub const VALID_CLOSE_CODES: [u16; 13] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];

/// Close codes no endpoint may send: reserved, meant for reports only
/// (1005, 1006, 1015), or out of range. Each is answered with 1002.
pub const INVALID_CLOSE_CODES: [u16; 12] = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];

/// Byte sequences that are not UTF-8, each after a valid prefix: cut short,
/// overlong, a surrogate, past U+10FFFF, a stray continuation byte, a byte
/// that never appears in UTF-8.
pub const INVALID_UTF8: [&[u8]; 8] = [
    b"caf\xc3",
    b"\xe2\x82 euro cut short",
    b"\xf0\x9d\x84 clef cut short",
    b"overlong \xc0\xaf",
    b"surrogate \xed\xa0\x80",
    b"too high \xf4\x90\x80\x80",
    b"stray \x80 continuation",
    b"never \xff in UTF-8",
];

/// What a target answers, so a case can tell a real answer from anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// A host endpoint in the envelope format: it sends a frame unasked on
    /// connecting (the acknowledgement), and answers `{"type":"ping","id":ID}`
    /// with a `pong` carrying the same id.
    HostPing,
    /// An echo server: nothing unasked, every message comes back as sent.
    Echo,
}

/// Where the cases run.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub answers: Answers,
}

impl Target {
    /// A host endpoint such as `/ws`.
    pub fn host(addr: SocketAddr, path: &str) -> Target {
        Target { addr, path: path.into(), answers: Answers::HostPing }
    }

    /// An echo server (through the proxy, say).
    pub fn echo(addr: SocketAddr, path: &str) -> Target {
        Target { addr, path: path.into(), answers: Answers::Echo }
    }

    /// A new connection, past anything the target sends unasked.
    pub async fn open(&self) -> RawSocket {
        let mut socket = RawSocket::connect(self.addr, &self.path).await;
        if self.answers == Answers::HostPing {
            socket.text().await;
        }
        socket
    }

    /// A text message the target answers, carrying `tag`.
    pub fn request(&self, tag: &str) -> String {
        match self.answers {
            Answers::HostPing => serde_json::json!({ "type": "ping", "id": tag }).to_string(),
            Answers::Echo => format!("conformance {tag}"),
        }
    }

    /// Whether `reply` answers [`request(tag)`](Self::request).
    pub fn is_answer(&self, tag: &str, reply: &str) -> bool {
        match self.answers {
            Answers::HostPing => serde_json::from_str::<serde_json::Value>(reply)
                .is_ok_and(|reply| reply["type"] == "pong" && reply["id"] == tag),
            Answers::Echo => reply == self.request(tag),
        }
    }

    /// A new connection is answered and closes cleanly: the target survived
    /// whatever the case did.
    pub async fn serves(&self, after: &str) {
        let mut socket = self.open().await;
        socket.send(&Frame::text(self.request("still serving"))).await;
        let reply = socket.text().await;
        assert!(self.is_answer("still serving", &reply), "after {after}: a new connection got {reply:?}");
        close_from_the_client(&mut socket, 1000, b"done", after).await;
    }
}

/// Send `code` in a Close; the server must echo it, then close TCP.
async fn close_from_the_client(socket: &mut RawSocket, code: u16, reason: &[u8], case: &str) {
    socket.send(&Frame::close(code, reason)).await;
    let ended = socket.ending().await;
    assert_eq!(ended.code(), Some(code), "{case}: the server must answer a Close with a Close echoing its code, got {ended:?}");
    assert!(socket.tcp_closes_within(WAIT).await, "{case}: the server must close TCP after the closing handshake");
}

/// Open a connection, send `bytes`, and expect the server to fail the
/// connection with `code`: its Close frame, then TCP closed (after this
/// client answers, as a client library does).
pub async fn expect_failure(target: &Target, case: &str, bytes: Vec<u8>, code: u16) {
    let mut socket = target.open().await;
    socket.send_bytes(&bytes).await;
    let ended = socket.ending().await;
    assert_eq!(ended.code(), Some(code), "{case}: expected close {code}, got {ended:?}");
    socket.answer_close(code).await;
    assert!(socket.tcp_closes_within(WAIT).await, "{case}: the server must close TCP after its Close");
}

/// How many cases run at once, each on its own connection.
const AT_ONCE: usize = 16;

/// Run `cases`, a few at a time, then check the target still serves.
async fn all(target: &Target, what: &str, cases: impl IntoIterator<Item = impl Future<Output = ()>>) {
    stream::iter(cases).buffer_unordered(AT_ONCE).collect::<Vec<()>>().await;
    target.serves(what).await;
}

fn bytes(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(Frame::encode).collect()
}

/// The client closes with each valid code (and with an empty Close): the
/// server echoes the code, then closes TCP.
pub async fn client_close_is_echoed(target: &Target) {
    all(
        target,
        "client closes",
        VALID_CLOSE_CODES.map(|code| async move {
            let mut socket = target.open().await;
            close_from_the_client(&mut socket, code, b"bye", &format!("client close {code}")).await;
        }),
    )
    .await;
    let mut socket = target.open().await;
    socket.send(&Frame::new(opcode::CLOSE, [])).await;
    match socket.ending().await {
        // An empty Close may be answered empty or with 1000.
        Ended::Closed { code: None | Some(1000), .. } => {}
        other => panic!("an empty Close must be answered with a Close, got {other:?}"),
    }
    assert!(socket.tcp_closes_within(WAIT).await, "the server must close TCP after an empty Close");
    // A Close right behind a message: the answer may come first or not at
    // all, the echo always comes.
    let mut socket = target.open().await;
    socket.send_all(&[Frame::text(target.request("last words")), Frame::close(1000, b"")]).await;
    assert_eq!(socket.ending().await.code(), Some(1000), "a Close right after a message is echoed");
    assert!(socket.tcp_closes_within(WAIT).await);
}

/// Reserved bits, reserved opcodes, control frames over 125 bytes or
/// fragmented, continuations with nothing to continue, a new message inside
/// a fragmented one, unmasked frames, and one-byte close payloads: 1002.
pub async fn protocol_violations_close_with_1002(target: &Target) {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, rsv) in [("RSV1", RSV1), ("RSV2", RSV2), ("RSV3", RSV3), ("RSV1|RSV2|RSV3", RSV1 | RSV2 | RSV3)] {
        cases.push((format!("text with {name}"), Frame::text(target.request("rsv")).with_rsv(rsv).encode()));
        cases.push((format!("ping with {name}"), Frame::ping("rsv").with_rsv(rsv).encode()));
    }
    for code in (0x3..=0x7).chain(0xB..=0xF) {
        cases.push((format!("reserved opcode {code:#x}"), Frame::new(code, "reserved").encode()));
        cases.push((format!("reserved opcode {code:#x}, empty"), Frame::new(code, []).encode()));
    }
    let big = vec![b'p'; 126];
    cases.push(("ping of 126 bytes".into(), Frame::ping(big.clone()).encode()));
    cases.push(("pong of 126 bytes".into(), Frame::new(opcode::PONG, big).encode()));
    cases.push(("close of 126 bytes".into(), Frame::close(1000, &[b'r'; 124]).encode()));
    cases.push(("fragmented ping".into(), bytes(&[Frame::ping("a").not_final(), Frame::new(opcode::CONTINUATION, "b")])));
    cases.push(("fragmented close".into(), Frame::close(1000, b"").not_final().encode()));
    cases.push(("continuation with nothing to continue".into(), Frame::new(opcode::CONTINUATION, "x").encode()));
    let open = Frame::text(&b"{\"type\""[..]).not_final();
    cases.push(("a new text message inside a fragmented one".into(), bytes(&[open.clone(), Frame::text("x")])));
    cases.push(("a binary message inside a fragmented one".into(), bytes(&[open, Frame::new(opcode::BINARY, "x")])));
    cases.push(("an unmasked client frame".into(), Frame::text(target.request("unmasked")).unmasked().encode()));
    cases.push(("a close payload of one byte".into(), Frame::new(opcode::CLOSE, [0x03]).encode()));
    let runs = cases.iter().map(|(case, bytes)| expect_failure(target, case, bytes.clone(), PROTOCOL_ERROR));
    all(target, "protocol violations", runs).await;
}

/// Close codes no endpoint may send are answered with 1002.
pub async fn invalid_close_codes_close_with_1002(target: &Target) {
    let runs = INVALID_CLOSE_CODES.map(|code| async move {
        expect_failure(target, &format!("close code {code}"), Frame::close(code, b"").encode(), PROTOCOL_ERROR).await
    });
    all(target, "invalid close codes", runs).await;
}

/// Invalid UTF-8 in a text message, in one frame, written a byte at a time,
/// split across two fragments at every position, or in a close reason: 1007.
pub async fn invalid_utf8_closes_with_1007(target: &Target) {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (n, sequence) in INVALID_UTF8.iter().enumerate() {
        cases.push((format!("invalid UTF-8 #{n} in one frame"), Frame::text(*sequence).encode()));
        for split in 0..=sequence.len() {
            let (head, tail) = sequence.split_at(split);
            let frames = Frame::fragments(opcode::TEXT, &[head, tail]);
            cases.push((format!("invalid UTF-8 #{n} split at byte {split}"), bytes(&frames)));
            // A ping between the fragments changes nothing.
            let mut with_ping = frames.clone();
            with_ping.insert(1, Frame::ping("between"));
            cases.push((format!("invalid UTF-8 #{n} split at byte {split}, ping between"), bytes(&with_ping)));
        }
        cases.push((format!("invalid UTF-8 #{n} as a close reason"), Frame::close(1000, sequence).encode()));
    }
    let runs = cases.iter().map(|(case, bytes)| expect_failure(target, case, bytes.clone(), INVALID_PAYLOAD));
    all(target, "invalid UTF-8", runs).await;
    // Byte by byte through the server's frame parser.
    let mut socket = target.open().await;
    socket.trickle(&Frame::text(INVALID_UTF8[1])).await;
    assert_eq!(socket.ending().await.code(), Some(INVALID_PAYLOAD), "invalid UTF-8 written a byte at a time");
}

/// A text message fragmented with multi-byte characters cut at every
/// position is answered once, whole; a Ping between fragments gets exactly
/// one Pong, with its payload, and does not end the message.
pub async fn fragments_with_interleaved_pings_are_one_message(target: &Target) {
    let tag = "frägment €𝄞";
    let request = target.request(tag).into_bytes();
    let at = request.windows(tag.len()).position(|w| w == tag.as_bytes()).expect("the request carries its tag");
    // Every cut from just before the tag to just after it: between and
    // inside its two-, three- and four-byte characters.
    let runs = (at..=at + tag.len()).map(|split| {
        let request = request.clone();
        async move {
            let case = format!("fragments split at byte {split}");
            let (head, tail) = request.split_at(split);
            let (middle, last) = tail.split_at(tail.len() / 2);
            let mut frames = Frame::fragments(opcode::TEXT, &[head, middle, last]);
            let ping = format!("between {split}");
            frames.insert(1, Frame::ping(ping.as_bytes()));
            let mut socket = target.open().await;
            socket.send_all(&frames).await;
            // Then a Ping of our own: once its Pong is back, every frame
            // the server sent for the message is in.
            socket.send(&Frame::ping("sync")).await;
            let (mut pongs, mut answers) = (Vec::new(), Vec::new());
            while pongs.last().map(Vec::as_slice) != Some(&b"sync"[..]) {
                let frame = socket.frame().await.unwrap_or_else(|| panic!("{case}: the connection ended"));
                match frame.opcode {
                    opcode::PONG => pongs.push(frame.payload),
                    opcode::TEXT => answers.push(String::from_utf8(frame.payload).expect("text frames are UTF-8")),
                    opcode::PING => {}
                    _ => panic!("{case}: unexpected {frame:?}"),
                }
            }
            assert_eq!(pongs, [ping.into_bytes(), b"sync".to_vec()], "{case}: one Pong per Ping, with its payload, in order");
            // The answer can only follow the last fragment, after the Pong.
            if answers.is_empty() {
                answers.push(socket.text().await);
            }
            assert_eq!(answers.len(), 1, "{case}: one answer: {answers:?}");
            assert!(target.is_answer(tag, &answers[0]), "{case}: the whole message is answered: {answers:?}");
            close_from_the_client(&mut socket, 1000, b"", &case).await;
        }
    });
    all(target, "fragmented messages", runs).await;
}
