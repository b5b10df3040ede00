//! The worker protocol: any first frame is a registration or a host error;
//! any later frame is classified, and a response's answer is an outcome
//! whose reply data is JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::wire::worker::{answer, registration, worker_frame, Answer, WorkerFrame};
use switchyard_fuzz::wire::ErrorCode;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Err(failure) = registration(text) {
        assert!(ErrorCode::parse(&failure.code).is_some(), "{failure}");
    }
    if let WorkerFrame::Response { frame, .. } = worker_frame(text) {
        match answer(&frame, "w1") {
            Answer::Answered(Ok(reply)) => {
                serde_json::from_str::<serde_json::Value>(reply.data.get()).expect("reply data is JSON");
            }
            Answer::Answered(Err(failure)) | Answer::Refused(failure) => assert!(!failure.code.is_empty()),
        }
    }
});
