//! `video`: `video_command` with actions play, pause, stop, seek and status.
//! Playback state lives in the host key-value store, so a hot swap keeps it;
//! every change is published on the `video_status` topic.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_sdk::{events, export_plugin, json, kv, Failure, Manifest, Message, Plugin, Value};

#[derive(Deserialize)]
struct Command { action: String, video_path: Option<String>, position: Option<f64> }

/// `position` is in seconds as of `since_ms`, which is set while playing.
#[derive(Serialize, Deserialize)]
struct Playback { state: String, video_path: Option<String>, position: f64, since_ms: Option<u64> }

impl Playback {
    fn position_at(&self, now: u64) -> f64 {
        self.position + self.since_ms.map_or(0.0, |since| now.saturating_sub(since) as f64 / 1000.0)
    }

    fn view(&self, now: u64) -> Value {
        json!({ "state": self.state, "video_path": self.video_path, "position": self.position_at(now) })
    }
}

struct Video;

impl Plugin for Video {
    fn manifest() -> Manifest {
        Manifest::new("video", env!("CARGO_PKG_VERSION")).description("Video playback control").claim("video_command")
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        let Command { action, video_path, position } = msg.data()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut pb = kv::get("playback")?
            .unwrap_or(Playback { state: "stopped".into(), video_path: None, position: 0.0, since_ms: None });
        let (state, position) = match action.as_str() {
            "status" => return Ok(pb.view(now)),
            "play" if video_path.is_none() && pb.video_path.is_none() => {
                return Err(Failure::new("NO_VIDEO", "play needs a video_path: nothing is loaded"))
            }
            "play" if video_path.is_some() && video_path != pb.video_path => ("playing", 0.0),
            "play" => ("playing", pb.position_at(now)),
            "pause" => ("paused", pb.position_at(now)),
            "stop" => ("stopped", 0.0),
            "seek" => (pb.state.as_str(), position.filter(|p| *p >= 0.0).ok_or_else(|| {
                Failure::invalid_data("seek needs a non-negative `position` in seconds")
            })?),
            other => return Err(Failure::new("UNKNOWN_ACTION", format!("unknown action {other:?}"))),
        };
        pb = Playback { state: state.into(), video_path: video_path.or(pb.video_path), position, since_ms: (state == "playing").then_some(now) };
        kv::set("playback", &pb)?;
        events::publish("video_status", &pb.view(now))?;
        Ok(pb.view(now))
    }
}

export_plugin!(Video);
