//! Every HTTP error answered with the JSON error body
//! ([`frames::error_body`]), including the two kinds the handlers never
//! see:
//!
//! - axum's own rejections (a WebSocket endpoint fetched without an
//!   upgrade, an unreadable query string) come with a plain-text body:
//!   [`with_json_body`] rewrites them, keeping their status and text.
//! - hyper answers a request head it cannot parse (400: a bad method, URI,
//!   header line or `Content-Length`; 414: a URI over its 64 KiB; 431: a
//!   head over its buffer or 100 headers) by itself, with an empty body,
//!   and closes. It has no hook for that answer, and its limits are not
//!   settable, so [`JsonErrorHeads`] wraps the connection's stream and
//!   rewrites exactly that answer on its way out: a complete 4xx/5xx head
//!   with `content-length: 0` written alone. No handler's response looks
//!   like that once [`with_json_body`] has run.
//!
//! Nothing here decides whether a request is an error; it only says so in
//! the protocol's shape.

use super::ApiError;
use crate::wire::{frames, ErrorCode, Failure};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest text of a rejection kept as the error's message.
const MAX_MESSAGE: usize = 200;

/// The host code for an error status nobody chose a code for.
fn code_for(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        426 => ErrorCode::UpgradeRequired,
        429 => ErrorCode::RateLimitExceeded,
        431 => ErrorCode::HeadersTooLarge,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

/// A response layer (`axum::middleware::map_response`): an error status
/// whose body is not JSON gets the error body, with the original text as
/// its message.
pub async fn with_json_body(response: Response) -> Response {
    let status = response.status();
    let json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_owned(),
        text => text.chars().take(MAX_MESSAGE).collect(),
    };
    ApiError::with_status(status, Failure::new(code_for(status), message)).into_response()
}

/// A connection's stream, passing everything through except hyper's
/// body-less answer to an unparseable request head, which it rewrites
/// with the JSON error body (see the module doc).
pub struct JsonErrorHeads<IO> {
    inner: IO,
    /// A rewritten answer not yet written, and how much of it was.
    pending: Vec<u8>,
    written: usize,
    /// A `101 Switching Protocols` went out: what follows are WebSocket
    /// frames, passed through unread (a partial write could otherwise start
    /// with a client-chosen payload that looks like an error head).
    upgraded: bool,
}

impl<IO> JsonErrorHeads<IO> {
    pub fn new(inner: IO) -> Self {
        JsonErrorHeads { inner, pending: Vec::new(), written: 0, upgraded: false }
    }
}

impl<IO: AsyncWrite + Unpin> JsonErrorHeads<IO> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Take `buf` as written if it is hyper's answer, queuing the rewrite.
    fn intercept(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if self.upgraded {
            return None;
        }
        if buf.starts_with(b"HTTP/1.1 101 ") {
            self.upgraded = true;
            return None;
        }
        let rewritten = rewrite(buf)?;
        self.pending = rewritten;
        self.written = 0;
        // Written now if the socket takes it, else by the flush hyper does next.
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

/// hyper's answer to `buf`'s head, with the error body; `None` for any
/// other bytes.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let status = StatusCode::from_u16(status).ok().filter(|s| s.is_client_error() || s.is_server_error())?;
    let head = std::str::from_utf8(buf).ok()?.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines: Vec<&str> = head.split("\r\n").collect();
    let length = lines.iter().position(|line| line.eq_ignore_ascii_case("content-length: 0"))?;
    let message = match status.as_u16() {
        414 => "the request URI is longer than the HTTP parser takes (64 KiB)",
        431 => "the request head is larger than the HTTP parser takes",
        _ => "the request head could not be parsed: its method, URI, a header line or its Content-Length",
    };
    let body = frames::error_body(&Failure::new(code_for(status), message));
    let length_line = format!("content-length: {}", body.len());
    lines[length] = &length_line;
    lines.insert(length, "content-type: application/json");
    Some(format!("{}\r\n\r\n{body}", lines.join("\r\n")).into_bytes())
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonErrorHeads<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonErrorHeads<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = self.intercept(cx, buf) {
            return answer;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(answer) = self.intercept(cx, first) {
                return answer;
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_error_answer_is_rewritten() {
        let answer = rewrite(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n").unwrap();
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["data"]["code"], "URI_TOO_LONG");

        for untouched in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"\x81\x05hello",
            b"{\"type\":\"reply\"}",
        ] {
            assert!(rewrite(untouched).is_none(), "{}", String::from_utf8_lossy(untouched));
        }
    }

    #[tokio::test]
    async fn after_an_upgrade_frames_pass_through_unread() {
        use tokio::io::AsyncWriteExt;
        let error_head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let mut plain = JsonErrorHeads::new(Vec::new());
        plain.write_all(error_head).await.unwrap();
        assert!(plain.inner.ends_with(b"}"), "an error head before any upgrade gets its body");

        let mut upgraded = JsonErrorHeads::new(Vec::new());
        let switching = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n";
        upgraded.write_all(switching).await.unwrap();
        // A partial frame write that happens to look like an error head.
        upgraded.write_all(error_head).await.unwrap();
        assert_eq!(upgraded.inner, [switching.as_slice(), error_head].concat());
    }
}
