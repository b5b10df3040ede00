//! The `/api/control` translation: any method, query and body becomes one
//! canonical message the dialect decoder accepts, or a host error.
//! Input: a method byte, then the query string up to the first 0xFF byte,
//! then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::wire::control::{message, Method};
use switchyard_fuzz::wire::dialect::{decode, Profile};
use switchyard_fuzz::wire::ErrorCode;

fuzz_target!(|bytes: &[u8]| {
    let Some((&method, rest)) = bytes.split_first() else { return };
    let method = [Method::Get, Method::Post, Method::Put, Method::Delete][usize::from(method % 4)];
    let (query, body) = match rest.iter().position(|b| *b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&[][..], rest),
    };
    let query: Vec<(String, String)> = String::from_utf8_lossy(query)
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    match message(method, query, body) {
        Ok(text) => {
            let profile = Profile { raw: false, namespace: None, default_type: None };
            if let Err(rejection) = decode(&text, usize::MAX, &profile) {
                panic!("the translation made a message the decoder refuses ({}): {text}", rejection.failure);
            }
        }
        Err(failure) => assert!(ErrorCode::parse(&failure.code).is_some(), "{failure}"),
    }
});
