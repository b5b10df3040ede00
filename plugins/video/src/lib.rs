//! `video`: `video_command` with actions play, pause, stop, seek and status.
//!
//! Playback state lives in the host key-value store, so a hot swap keeps it;
//! every change is published on the `video_status` topic.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_sdk::{events, export_plugin, json, kv, Failure, Manifest, Message, Plugin, Value};

#[derive(Deserialize)]
struct Command {
    action: String,
    video_path: Option<String>,
    position: Option<f64>,
}

#[derive(Serialize, Deserialize, Default)]
struct Playback {
    state: String, // "playing" | "paused" | "stopped"
    video_path: Option<String>,
    position: f64,      // seconds, as of `since_ms`
    since_ms: Option<u64>, // set while playing
}

impl Playback {
    fn position_now(&self, now: u64) -> f64 {
        self.position + self.since_ms.map_or(0.0, |since| now.saturating_sub(since) as f64 / 1000.0)
    }
}

struct Video;

impl Plugin for Video {
    fn manifest() -> Manifest {
        Manifest::new("video", env!("CARGO_PKG_VERSION"))
            .description("Video playback control")
            .claim("video_command")
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        let cmd: Command = msg.data()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut pb: Playback = kv::get("playback").unwrap_or_else(|| Playback { state: "stopped".into(), ..Default::default() });
        let position = pb.position_now(now);
        match cmd.action.as_str() {
            "status" => return Ok(view(&pb, now)),
            "play" => {
                if let Some(path) = cmd.video_path {
                    if pb.video_path.as_deref() != Some(path.as_str()) {
                        pb.position = 0.0;
                    }
                    pb.video_path = Some(path);
                } else if pb.video_path.is_none() {
                    return Err(Failure::new("NO_VIDEO", "play needs a video_path: nothing is loaded"));
                }
                if pb.state != "playing" {
                    pb.since_ms = Some(now);
                }
                pb.state = "playing".into();
            }
            "pause" => (pb.state, pb.position, pb.since_ms) = ("paused".into(), position, None),
            "stop" => (pb.state, pb.position, pb.since_ms) = ("stopped".into(), 0.0, None),
            "seek" => {
                let to = cmd.position.filter(|p| *p >= 0.0)
                    .ok_or_else(|| Failure::invalid_data("seek needs a non-negative `position` in seconds"))?;
                pb.position = to;
                pb.since_ms = (pb.state == "playing").then_some(now);
            }
            other => return Err(Failure::new("UNKNOWN_ACTION", format!("unknown action {other:?}; expected play, pause, stop, seek or status"))),
        }
        kv::set("playback", &pb)?;
        let status = view(&pb, now);
        events::publish("video_status", &status)?;
        Ok(status)
    }
}

fn view(pb: &Playback, now: u64) -> Value {
    json!({ "state": pb.state, "video_path": pb.video_path, "position": pb.position_now(now) })
}

export_plugin!(Video);
