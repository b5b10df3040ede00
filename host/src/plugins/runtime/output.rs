//! A guest's standard output and error, as lines in the host's log.
//!
//! Guests report what went wrong there just before they trap: a Python
//! traceback, a JavaScript exception, a Rust or Go panic message. So each
//! line is logged (target `switchyard::guest`, with the plugin's name and
//! the stream): stdout at `info`, stderr at `warn`. Writing never blocks and
//! never buffers without bound: a line is cut at [`MAX_LINE`] bytes, and past
//! [`LINES_PER_SECOND`] lines a second from one instance's stream the rest
//! are counted, dropped, and reported as one line when the next second
//! starts. The `log` capability's lines go through the same
//! [`LineBudget`].

use arc_swap::ArcSwap;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use crate::sync::lock;

/// The longest line logged; the rest of a longer one is cut.
pub const MAX_LINE: usize = 4096;

/// Lines logged per second from one stream of one instance.
pub const LINES_PER_SECOND: u32 = 50;

/// Where a line goes once complete.
type Emit = Box<dyn FnMut(&str) + Send>;

/// At most [`LINES_PER_SECOND`] lines a second from one source; the rest
/// are counted and reported once the next second starts.
#[derive(Debug)]
pub struct LineBudget {
    window: Instant,
    in_window: u32,
    dropped: u64,
}

impl Default for LineBudget {
    fn default() -> Self {
        LineBudget { window: Instant::now(), in_window: 0, dropped: 0 }
    }
}

impl LineBudget {
    /// Whether one more line may be logged now. When a new second starts
    /// after lines were dropped, `report` is told how many.
    pub fn admit(&mut self, report: impl FnOnce(u64)) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            if self.dropped > 0 {
                report(self.dropped);
            }
            (self.window, self.in_window, self.dropped) = (now, 0, 0);
        }
        if self.in_window < LINES_PER_SECOND {
            self.in_window += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// The message that stands for `dropped` lines over the budget.
pub fn dropped_lines(dropped: u64) -> String {
    format!("({dropped} lines dropped: over {LINES_PER_SECOND} a second)")
}

/// The lines written to one stream: the one in progress and the budget.
struct Lines {
    partial: Vec<u8>,
    cut: bool,
    budget: LineBudget,
    emit: Emit,
}

impl Lines {
    fn new(emit: Emit) -> Lines {
        Lines { partial: Vec::new(), cut: false, budget: LineBudget::default(), emit }
    }

    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.push(&bytes[..end]);
            self.end_line();
            bytes = &bytes[end + 1..];
        }
        self.push(bytes);
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LINE - self.partial.len();
        self.cut |= bytes.len() > room;
        self.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        let emit = &mut self.emit;
        if self.budget.admit(|dropped| emit(&dropped_lines(dropped))) {
            let text = String::from_utf8_lossy(&self.partial);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if self.cut {
                (self.emit)(&format!("{text}… (cut at {MAX_LINE} bytes)"));
            } else {
                (self.emit)(text);
            }
        }
        self.partial.clear();
        self.cut = false;
    }
}

impl Drop for Lines {
    /// What the guest left without a newline still counts.
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.end_line();
        }
    }
}

/// A plugin's name in the log; `(loading)` before its manifest is read.
struct Name<'a>(&'a ArcSwap<String>);

impl std::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.load().as_str() {
            "" => f.write_str("(loading)"),
            name => f.write_str(name),
        }
    }
}

/// One of an instance's two output streams; every stream the guest opens
/// on it shares one [`Lines`].
#[derive(Clone)]
pub struct GuestOutput(Arc<Mutex<Lines>>);

impl GuestOutput {
    /// The guest's stdout, logged at `info` under the plugin's `name`
    /// (which a loading instance learns from its manifest).
    pub fn stdout(name: Arc<ArcSwap<String>>) -> GuestOutput {
        GuestOutput::to(Box::new(move |line| {
            tracing::info!(target: "switchyard::guest", plugin = %Name(&name), stream = "stdout", "{line}")
        }))
    }

    /// The guest's stderr, logged at `warn`.
    pub fn stderr(name: Arc<ArcSwap<String>>) -> GuestOutput {
        GuestOutput::to(Box::new(move |line| {
            tracing::warn!(target: "switchyard::guest", plugin = %Name(&name), stream = "stderr", "{line}")
        }))
    }

    fn to(emit: Emit) -> GuestOutput {
        GuestOutput(Arc::new(Mutex::new(Lines::new(emit))))
    }

    fn write(&self, bytes: &[u8]) {
        lock(&self.0).write(bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Always ready, never full: a write is taken whole.
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect() -> (GuestOutput, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        (GuestOutput::to(Box::new(move |line| sink.lock().unwrap().push(line.to_owned()))), lines)
    }

    #[test]
    fn writes_become_lines_whatever_their_pieces() {
        let (output, lines) = collect();
        output.write(b"Traceback (most recent call last):\n  File \"app.py\"");
        output.write(b", line 3\r\nValueError: bad\n\nno newline");
        assert_eq!(lines.lock().unwrap().clone(), ["Traceback (most recent call last):", "  File \"app.py\", line 3", "ValueError: bad", ""]);
        drop(output);
        assert_eq!(lines.lock().unwrap().last().unwrap(), "no newline", "the rest is logged when the instance goes");
    }

    #[test]
    fn a_long_line_is_cut_and_a_flood_is_counted_not_logged() {
        let (output, lines) = collect();
        output.write(&vec![b'x'; MAX_LINE * 3]);
        output.write(b"\n");
        let first = lines.lock().unwrap()[0].clone();
        assert!(first.starts_with(&"x".repeat(MAX_LINE)) && first.ends_with("(cut at 4096 bytes)"), "{}", first.len());
        output.write("line\n".repeat(1000).as_bytes());
        assert_eq!(lines.lock().unwrap().len(), LINES_PER_SECOND as usize, "one second's budget, the long line included");
        let mut inner = output.0.lock().unwrap();
        assert_eq!(inner.budget.dropped, 1001 - u64::from(LINES_PER_SECOND));
        // The next second reports the drop first.
        inner.budget.window -= Duration::from_secs(1);
        inner.write(b"later\n");
        drop(inner);
        let lines = lines.lock().unwrap();
        assert_eq!(lines[lines.len() - 2..], ["(951 lines dropped: over 50 a second)", "later"]);
    }
}
