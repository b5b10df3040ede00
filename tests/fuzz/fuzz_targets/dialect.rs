//! The dialect decoder, every form (canonical, action server, requester,
//! video proxy, raw with a namespace and default type): any text decodes
//! or is rejected with a host code, and whatever the host answers, a reply
//! or the rejection, is JSON a strict parser reads back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_fuzz::wire::dialect::{decode, frames, Profile};
use switchyard_fuzz::wire::{ErrorCode, Failure, Reply, ServedBy};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let profiles = [
        Profile { raw: false, namespace: None, default_type: None },
        Profile { raw: false, namespace: None, default_type: Some("video_command".into()) },
        Profile { raw: true, namespace: Some("rooms".into()), default_type: Some("identify".into()) },
    ];
    for profile in &profiles {
        let answers = match decode(text, 1 << 20, profile) {
            Ok(request) => {
                let reply = Reply {
                    data: serde_json::value::to_raw_value(&serde_json::json!({"ok": true})).unwrap(),
                    served_by: ServedBy { name: "fuzz".into(), version: "1".into() },
                    reply_type: "reply",
                };
                let mut answers = frames(&request.reply_to, &Ok(reply));
                answers.extend(frames(&request.reply_to, &Err(Failure::new(ErrorCode::UnknownType, "x"))));
                answers
            }
            Err(rejection) => {
                assert!(ErrorCode::parse(&rejection.failure.code).is_some(), "{}", rejection.failure);
                frames(&rejection.reply_to, &Err(rejection.failure))
            }
        };
        for answer in answers {
            if let Err(e) = serde_json::from_str::<Value>(&answer) {
                panic!("the host would send text that is not JSON ({e}): {answer}");
            }
        }
    }
});
