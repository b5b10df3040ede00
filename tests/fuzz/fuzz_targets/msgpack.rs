//! The MessagePack reader: any bytes are read into JSON text or refused
//! with `INVALID_MESSAGE`; what it reads is JSON a strict parser reads
//! back, and writing that JSON as MessagePack and reading it again gives
//! the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_fuzz::wire::msgpack::{from_json, to_json};
use switchyard_fuzz::wire::ErrorCode;

fuzz_target!(|bytes: &[u8]| {
    match to_json(bytes) {
        Ok(text) => {
            let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("read into text that is not JSON ({e}): {text}"));
            let packed = from_json(text.as_bytes()).expect("JSON the reader made can be written back");
            let again = to_json(&packed).expect("what the host writes, it reads");
            assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), value);
        }
        Err(failure) => assert!(failure.is(ErrorCode::InvalidMessage), "{failure}"),
    }
});
