//! A WebSocket client that builds every byte itself, for what a conforming
//! client library will not send: reserved bits, reserved opcodes, control
//! frames over 125 bytes, fragmented control frames, invalid UTF-8 split
//! anywhere, invalid close codes.
//!
//! It does the HTTP upgrade by hand, writes masked client frames and reads
//! the server's frames without a WebSocket library, so a test sees exactly
//! what went over the wire. It answers nothing by itself: no pongs, no close
//! replies. It checks what RFC 6455 asks of every server frame (unmasked,
//! reserved bits clear).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the client waits for any one thing the server owes it.
pub const WAIT: Duration = Duration::from_secs(10);

/// The opcodes RFC 6455 defines; 3-7 and 0xB-0xF are reserved.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The reserved header bits, as they sit in a frame's first byte.
pub const RSV1: u8 = 0x40;
pub const RSV2: u8 = 0x20;
pub const RSV3: u8 = 0x10;

/// The masking key of every frame this client sends (RFC 6455's example);
/// not zero, so a server that forgets to unmask reads garbage.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame, as sent or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// Reserved bits, as in the first byte ([`RSV1`] | [`RSV2`] | [`RSV3`]).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// Sent masked (every client frame must be).
    pub masked: bool,
}

impl Frame {
    /// A final, masked frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame { fin: true, rsv: 0, opcode, payload: payload.into(), masked: true }
    }

    pub fn text(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(opcode::TEXT, payload)
    }

    pub fn ping(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(opcode::PING, payload)
    }

    /// A Close frame with `code` and `reason` (bytes, so they may be invalid UTF-8).
    pub fn close(code: u16, reason: &[u8]) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        Frame::new(opcode::CLOSE, payload)
    }

    /// One message in `fragments`: the first frame with `opcode`, then
    /// continuations, the last final.
    pub fn fragments(opcode: u8, fragments: &[&[u8]]) -> Vec<Frame> {
        let last = fragments.len().saturating_sub(1);
        fragments
            .iter()
            .enumerate()
            .map(|(i, part)| Frame {
                fin: i == last,
                opcode: if i == 0 { opcode } else { opcode::CONTINUATION },
                ..Frame::new(opcode, *part)
            })
            .collect()
    }

    pub fn not_final(self) -> Frame {
        Frame { fin: false, ..self }
    }

    pub fn with_rsv(self, rsv: u8) -> Frame {
        Frame { rsv, ..self }
    }

    pub fn unmasked(self) -> Frame {
        Frame { masked: false, ..self }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![u8::from(self.fin) << 7 | (self.rsv & 0x70) | (self.opcode & 0x0f)];
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let length = self.payload.len();
        if length < 126 {
            bytes.push(mask_bit | length as u8);
        } else if let Ok(length) = u16::try_from(length) {
            bytes.push(mask_bit | 126);
            bytes.extend_from_slice(&length.to_be_bytes());
        } else {
            bytes.push(mask_bit | 127);
            bytes.extend_from_slice(&(length as u64).to_be_bytes());
        }
        if self.masked {
            bytes.extend_from_slice(&MASK);
            bytes.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        } else {
            bytes.extend_from_slice(&self.payload);
        }
        bytes
    }

    /// A Close frame's code, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// What ended a read: the server's Close frame, or the connection itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A Close frame: its code (none if empty) and reason bytes.
    Closed { code: Option<u16>, reason: Vec<u8> },
    /// TCP closed (or was reset) without a Close frame: what a client
    /// library reports as 1006.
    Dropped,
}

impl Ended {
    pub fn code(&self) -> Option<u16> {
        match self {
            Ended::Closed { code, .. } => *code,
            Ended::Dropped => None,
        }
    }
}

/// A client connection after its upgrade.
pub struct RawSocket {
    tcp: TcpStream,
    /// Read but not yet parsed.
    buffer: Vec<u8>,
}

impl RawSocket {
    /// Upgrade `path` on `addr` by hand.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawSocket {
        Self::connect_with(addr, path, &[]).await
    }

    /// Upgrade with extra request headers (`Authorization: Bearer ...`).
    pub async fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawSocket {
        let mut tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.expect("connects in time").expect("connects");
        tcp.set_nodelay(true).expect("set TCP_NODELAY");
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await.expect("send the upgrade request");
        let mut socket = RawSocket { tcp, buffer: Vec::new() };
        let end = loop {
            if let Some(end) = socket.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(socket.fill().await, "the connection ended before the upgrade response");
        };
        let head = String::from_utf8_lossy(&socket.buffer[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "expected 101 Switching Protocols, got:\n{head}");
        // RFC 6455's example key has this accept value.
        assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        socket.buffer.drain(..end + 4);
        socket
    }

    /// Read more from TCP; false once the connection has ended (EOF or reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await.expect("the server sends or closes in time");
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Write raw bytes in one go.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write to the server");
    }

    pub async fn send(&mut self, frame: &Frame) {
        self.send_bytes(&frame.encode()).await;
    }

    pub async fn send_all(&mut self, frames: &[Frame]) {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        self.send_bytes(&bytes).await;
    }

    /// Answer the server's Close as a client does; the server may already
    /// have closed TCP, so a failed write is no error.
    pub async fn answer_close(&mut self, code: u16) {
        let _ = self.tcp.write_all(&Frame::close(code, b"").encode()).await;
    }

    /// Write a frame one byte per TCP segment, so the server parses it
    /// from every possible partial read.
    pub async fn trickle(&mut self, frame: &Frame) {
        for byte in frame.encode() {
            self.tcp.write_all(&[byte]).await.expect("write to the server");
            self.tcp.flush().await.expect("flush");
            tokio::task::yield_now().await;
        }
    }

    /// The server's next frame; `None` once the connection has ended.
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buffer) {
                self.buffer.drain(..used);
                assert!(!frame.masked, "a server frame is masked (RFC 6455 5.1 forbids it): {frame:?}");
                assert_eq!(frame.rsv, 0, "a server frame has reserved bits set: {frame:?}");
                return Some(frame);
            }
            if !self.fill().await {
                assert!(self.buffer.is_empty(), "the connection ended inside a frame: {:?}", self.buffer);
                return None;
            }
        }
    }

    /// The next data frame (text or binary), skipping pings and pongs;
    /// panics on a Close or the end of the connection.
    pub async fn data(&mut self) -> Frame {
        loop {
            match self.frame().await {
                Some(frame) if matches!(frame.opcode, opcode::PING | opcode::PONG) => continue,
                Some(frame) => {
                    assert!(frame.opcode != opcode::CLOSE, "expected data, the server closed: {:?}", Ended::from(frame));
                    return frame;
                }
                None => panic!("expected data, the connection ended"),
            }
        }
    }

    /// The next text message, as a string.
    pub async fn text(&mut self) -> String {
        let frame = self.data().await;
        assert_eq!(frame.opcode, opcode::TEXT, "expected a text frame: {frame:?}");
        assert!(frame.fin, "the server fragments its messages: {frame:?}");
        String::from_utf8(frame.payload).expect("the server's text is UTF-8")
    }

    /// Read (skipping data, pings and pongs) until the server closes.
    pub async fn ending(&mut self) -> Ended {
        loop {
            match self.frame().await {
                Some(frame) if frame.opcode == opcode::CLOSE => return Ended::from(frame),
                Some(_) => continue,
                None => return Ended::Dropped,
            }
        }
    }

    /// After the server's Close: whether it then closes TCP within `within`,
    /// sending nothing more.
    pub async fn tcp_closes_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return self.buffer.is_empty(),
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

impl From<Frame> for Ended {
    fn from(frame: Frame) -> Ended {
        let reason = frame.payload.get(2..).unwrap_or_default().to_vec();
        Ended::Closed { code: frame.close_code(), reason }
    }
}

/// One whole frame at the start of `bytes`, and how many bytes it took.
fn parse(bytes: &[u8]) -> Option<(Frame, usize)> {
    let (&first, &second) = (bytes.first()?, bytes.get(1)?);
    let masked = second & 0x80 != 0;
    let (length, mut at) = match second & 0x7f {
        126 => (u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize, 10),
        short => (short as usize, 2),
    };
    let mask = if masked {
        let key: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    let mut payload = bytes.get(at..at + length)?.to_vec();
    if let Some(key) = mask {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
    }
    let frame = Frame { fin: first & 0x80 != 0, rsv: first & 0x70, opcode: first & 0x0f, payload, masked };
    Some((frame, at + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_encode_and_parse() {
        for length in [0, 5, 125, 126, 65_535, 65_536] {
            let frame = Frame::text(vec![b'a'; length]).with_rsv(RSV2).not_final();
            let bytes = frame.encode();
            assert_eq!(parse(&bytes), Some((frame.clone(), bytes.len())), "length {length}");
            assert_eq!(parse(&bytes[..bytes.len() - 1]), None, "a partial frame is not parsed");
        }
    }

    #[test]
    fn masking_follows_rfc_6455s_example() {
        // RFC 6455 5.7: a masked "Hello" with key 37 fa 21 3d.
        assert_eq!(Frame::text("Hello").encode(), [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!(Frame::text("Hello").unmasked().encode(), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }
}
