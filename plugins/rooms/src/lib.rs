//! `rooms`: the room server's protocol, verbatim, on the `/rooms` endpoint
//! (raw format, namespace `rooms`, untyped messages are `identify`).
//!
//! Rooms and presence live in the host; which rooms exist and each device's
//! last room live in this plugin's key-value store, so a device returns to
//! its room after a reconnect, across plugin swaps too.

use serde::Deserialize;
use std::hash::{BuildHasher, Hasher};
use switchyard_sdk::{export_plugin, identity, json, kv, rooms, Failure, Manifest, Member, Message, Plugin, Value};

#[derive(Deserialize)]
struct Identify { device_id: String, identity: Option<String>, room_id: Option<String> }

#[derive(Deserialize)]
struct Chat { content: Value, timestamp: Option<Value>, target_device_id: Option<String> }

struct Rooms;

impl Plugin for Rooms {
    fn manifest() -> Manifest {
        Manifest::new("rooms", env!("CARGO_PKG_VERSION")).description("Room server protocol").claim("rooms.*")
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        let conn = msg.origin.connection_id.as_str();
        if msg.type_ == "rooms.identify" {
            return identify(conn, msg.data()?);
        }
        let me = identity::get(conn).ok_or_else(|| error("identify first: send {\"device_id\", \"identity\"}"))?;
        let room = rooms::room_of(conn).ok_or_else(|| error("you are not in a room"))?;
        match msg.type_.as_str() {
            "rooms.message" => chat(conn, &me, &room, msg.data()?),
            "rooms.query_room" => {
                let members = rooms::members(&room);
                let others: Vec<Value> = members.iter().filter(|m| m.connection_id != conn)
                    .map(|m| json!({ "device_id": m.device_id, "identity": m.identity })).collect();
                Ok(json!({ "type": "room_info", "room_id": room, "total_clients": members.len(), "clients": others }))
            }
            other => Err(error(&format!("unknown message type {:?}", other.trim_start_matches("rooms.")))),
        }
    }
}

fn identify(conn: &str, Identify { device_id, identity: who, room_id }: Identify) -> Result<Value, Failure> {
    identity::set(conn, &device_id, who.as_deref())?;
    let exists = |room: &str| kv::get::<bool>(&format!("room:{room}")).map(|known| known.is_some());
    let (room, status) = match room_id {
        Some(id) if exists(&id)? => (id, "joined_existing"),
        Some(id) => return Ok(json!([connected(), { "type": "room", "room_id": id, "status": "room_not_found" }])),
        None => match kv::get::<String>(&format!("device:{device_id}"))? {
            Some(last) if exists(&last)? => (last, "reconnected"),
            _ => (new_room()?, "created_new"),
        },
    };
    rooms::join(conn, &room)?;
    kv::set(&format!("device:{device_id}"), &room)?;
    Ok(json!([connected(), { "type": "room", "room_id": room, "status": status }]))
}

fn chat(conn: &str, me: &Member, room: &str, chat: Chat) -> Result<Value, Failure> {
    let kind = if chat.target_device_id.is_some() { "direct" } else { "broadcast" };
    let message = json!({ "type": "message", "content": chat.content, "from_device_id": me.device_id,
        "message_type": kind, "timestamp": chat.timestamp });
    match chat.target_device_id {
        None => rooms::broadcast(room, &message, Some(conn)).map(drop)?,
        Some(target) => {
            let here = rooms::members(room).iter().any(|m| m.device_id.as_deref() == Some(target.as_str()));
            if !here {
                return Err(error(&format!("device {target} is not in room {room}")));
            }
            identity::send_to_device(&target, &message)?;
        }
    }
    Ok(Value::Null)
}

fn new_room() -> Result<String, Failure> {
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let (mut bits, alphabet) = (seed.finish(), b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789");
    let id: String = (0..6).map(|_| { let c = alphabet[(bits % 32) as usize] as char; bits /= 32; c }).collect();
    kv::set(&format!("room:{id}"), &true)?;
    Ok(id)
}

fn connected() -> Value {
    json!({ "type": "connection", "message": "Connected successfully" })
}

fn error(message: &str) -> Failure {
    Failure::new("ROOM_ERROR", message)
}

export_plugin!(Rooms);
