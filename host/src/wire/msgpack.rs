//! MessagePack: the same envelope and every legacy form as JSON, carried as
//! MessagePack in binary frames.
//!
//! A connection speaks MessagePack when its endpoint says
//! `encoding = "msgpack"`, or when the client asked for the `msgpack`
//! WebSocket subprotocol. Each binary frame it sends is read here into JSON
//! text, which its dialect then decodes like any other frame; every frame
//! the host sends it (replies, errors, events, acks) is written back as one
//! MessagePack value in a binary frame. Routing and plugins never see the
//! difference.
//!
//! JSON has fewer types than MessagePack, so reading is strict where a
//! silent conversion would change meaning: map keys must be strings,
//! strings must be UTF-8, floats finite, and extension types are refused.
//! A `bin` value becomes an array of its byte values, and the never-used
//! marker `0xc1` reads as nil. Nesting is capped at the JSON parser's own
//! depth.

use crate::wire::{ErrorCode, Failure};
use rmpv::ValueRef;
use serde_json::{Map, Number, Value};

/// Deepest nesting accepted, as for JSON text (serde_json's recursion limit).
const MAX_DEPTH: usize = 128;

/// The subprotocol a client asks for to speak MessagePack on any endpoint.
pub const SUBPROTOCOL: &str = "msgpack";

/// How a connection's frames are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// JSON text in text frames.
    #[default]
    Json,
    /// MessagePack in binary frames.
    MessagePack,
}

/// One MessagePack frame as JSON text, for the dialect to decode.
pub fn to_json(frame: &[u8]) -> Result<String, Failure> {
    let mut reader = frame;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|e| invalid(format!("not a MessagePack value: {e}")))?;
    if !reader.is_empty() {
        return Err(invalid(format!("{} bytes after the MessagePack value; send one message per frame", reader.len())));
    }
    Ok(json(value)?.to_string())
}

/// One JSON frame the host built, as MessagePack.
pub fn from_json(text: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(text.len());
    let mut reader = serde_json::Deserializer::from_slice(text);
    let mut writer = rmp_serde::Serializer::new(&mut out);
    serde_transcode::transcode(&mut reader, &mut writer)
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("cannot encode a frame as MessagePack: {e}")))?;
    Ok(out)
}

fn json(value: ValueRef<'_>) -> Result<Value, Failure> {
    Ok(match value {
        ValueRef::Nil => Value::Null,
        ValueRef::Boolean(b) => Value::Bool(b),
        ValueRef::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(s)) => Value::from(s),
            (None, None) => return Err(invalid("an integer out of range")),
        },
        ValueRef::F32(f) => float(f.into())?,
        ValueRef::F64(f) => float(f)?,
        ValueRef::String(s) => Value::String(text(s)?),
        ValueRef::Binary(bytes) => Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()),
        ValueRef::Array(items) => Value::Array(items.into_iter().map(json).collect::<Result<_, _>>()?),
        ValueRef::Map(entries) => {
            let mut object = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let ValueRef::String(key) = key else {
                    return Err(invalid("a map key that is not a string; JSON objects have string keys"));
                };
                object.insert(text(key)?, json(value)?);
            }
            Value::Object(object)
        }
        ValueRef::Ext(kind, _) => return Err(invalid(format!("extension type {kind}: extension types are not accepted"))),
    })
}

fn float(f: f64) -> Result<Value, Failure> {
    Number::from_f64(f).map(Value::Number).ok_or_else(|| invalid("a float that is NaN or infinite"))
}

fn text(s: rmpv::Utf8StringRef<'_>) -> Result<String, Failure> {
    s.into_str().map(str::to_owned).ok_or_else(|| invalid("a string that is not valid UTF-8"))
}

fn invalid(why: impl std::fmt::Display) -> Failure {
    Failure::new(ErrorCode::InvalidMessage, format!("MessagePack frame refused: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pack(value: &Value) -> Vec<u8> {
        rmp_serde::to_vec(value).unwrap()
    }

    #[test]
    fn every_json_value_round_trips() {
        let value = json!({"type": "echo", "id": 7, "data": {"n": -3, "big": u64::MAX, "f": 1.5, "s": "é", "l": [null, true]}});
        let text = to_json(&pack(&value)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        let back: Value = rmp_serde::from_slice(&from_json(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn what_json_cannot_say_is_refused_with_a_reason() {
        let mut invalid_utf8 = vec![0x81, 0xa1, b'k', 0xa2, 0xc3, 0x28];
        let mut int_key = vec![0x81, 0x01, 0x02];
        let ext = vec![0xd4, 0x05, 0x00];
        let nan = {
            let mut v = vec![0xcb];
            v.extend(f64::NAN.to_be_bytes());
            v
        };
        let mut trailing = pack(&json!({"type": "x"}));
        trailing.push(0xc0);
        let mut deep = vec![0x91; 200];
        deep.push(0xc0);
        for (frame, why) in [
            (&mut invalid_utf8, "not valid UTF-8"),
            (&mut int_key, "not a string"),
            (&mut ext.clone(), "extension type"),
            (&mut nan.clone(), "NaN"),
            (&mut trailing, "after the MessagePack value"),
            (&mut deep, "not a MessagePack value"),
            (&mut vec![0xdc, 0xff], "not a MessagePack value"),
        ] {
            let failure = to_json(frame).unwrap_err();
            assert!(failure.is(ErrorCode::InvalidMessage));
            assert!(failure.message.contains(why), "{why}: {}", failure.message);
        }
    }

    /// Found by the fuzzer: a float read from MessagePack, written to JSON
    /// and back, must be the same float (serde_json's `float_roundtrip`).
    #[test]
    fn floats_survive_json_and_back_exactly() {
        let frame = [0x91, 0x91, 0x92, 0x00, 0x91, 0xcb, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0xc0];
        let text = to_json(&frame).unwrap();
        let again = to_json(&from_json(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn bin_becomes_byte_values() {
        let frame = [0x81, 0xa1, b'b', 0xc4, 0x02, 0x00, 0xff];
        assert_eq!(to_json(&frame).unwrap(), r#"{"b":[0,255]}"#);
    }
}
