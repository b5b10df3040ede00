//! Malformed input, generated from a fixed seed (issue 14): thousands of
//! frames and bodies that are not what the protocol asks for, over every
//! way in: the canonical envelope and each legacy form on `/ws`, the raw
//! room form on `/rooms`, `POST /api/v1/messages`, `/api/control`, and the
//! worker protocol. Each must get exactly one error with a code from the
//! host's documented table (in the format the request came in), or the
//! documented close code; the connection survives where the protocol says
//! it does, and the host keeps serving throughout.
//!
//! The generator is deterministic: a failure names the case and its seed,
//! and the same run reproduces it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard::config::{EndpointConfig, EndpointRole};
use switchyard::wire::ErrorCode;
use switchyard_tests::raw::{opcode, Ended, Frame, RawSocket};
use switchyard_tests::Host;

const SEED: u64 = 0x5EED_0014_F0CC_0001;
const MAX_MESSAGE: usize = 4096;
const MAX_FRAME: usize = 16 * 1024;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Well-formed requests in each envelope form, from `docs/protocol.md`.
const TEMPLATES: &[&str] = &[
    r#"{"type":"calculate","id":"c1","timestamp":1714000000.1,"data":{"a":6,"b":3,"op":"/"},"meta":{"trace":"abc"}}"#,
    r#"{"type":"ping"}"#,
    r#"{"type":"echo","id":7,"data":{"message":"hi"}}"#,
    r#"{"type":"subscribe","data":{"events":["alert.cpu","alert.*"],"filters":{"level":["warning","critical"]}}}"#,
    r#"{"type":"request","msg_id":"m1","timestamp":1714000000.1,"data":{"action":"get_time","params":{}}}"#,
    r#"{"request_id":"r-1","command":"echo","data":{"message":"Hello World"}}"#,
    r#"{"type":"video_command","data":{"action":"play","video_path":"/videos/example.mp4"},"timestamp":"2025-04-25T13:51:00Z"}"#,
];

/// Valid JSON that is not a message: each must be `INVALID_MESSAGE`.
const NOT_MESSAGES: &[&str] = &[
    r#"["ping","x"]"#,
    "[]",
    "42",
    "-1.5e3",
    r#""ping""#,
    "null",
    "true",
    "{}",
    r#"{"id":"x"}"#,
    r#"{"type":42}"#,
    r#"{"type":null}"#,
    r#"{"type":["ping"]}"#,
    r#"{"type":{"name":"ping"}}"#,
    r#"{"type":true}"#,
    r#"{"type":"ping","id":{"a":1}}"#,
    r#"{"type":"ping","id":[1]}"#,
    r#"{"type":"ping","id":true}"#,
    r#"{"type":"ping","meta":"x"}"#,
    r#"{"type":"ping","meta":[1]}"#,
    r#"{"type":"request","msg_id":"m1","data":{}}"#,
    r#"{"type":"request","msg_id":"m1","data":{"action":5}}"#,
    r#"{"type":"request","msg_id":"m1"}"#,
    r#"{"type":"request","msg_id":{"x":1},"data":{"action":"get_time"}}"#,
    r#"{"request_id":"r-1","command":7}"#,
    r#"{"request_id":"r-1","command":null}"#,
    r#"{"request_id":"r-1","command":["echo"]}"#,
    r#"{"type":"subscribe","data":{"events":"alert"}}"#,
    r#"{"type":"subscribe","data":{"events":[1,2]}}"#,
    r#"{"type":"subscribe","data":{"events":["a..b"]}}"#,
    r#"{"type":"unsubscribe","data":7}"#,
];

/// Control characters that are never valid unescaped in JSON (tab, line
/// feed and carriage return are whitespace outside strings).
const CONTROLS: &[u8] = &[0, 1, 2, 7, 8, 0x0b, 0x0c, 0x0e, 0x1b, 0x1f];

/// One generated text frame and the codes it may be answered with.
struct Case {
    text: String,
    codes: &'static [&'static str],
    what: String,
}

const JSON: &[&str] = &["INVALID_JSON"];
const MESSAGE: &[&str] = &["INVALID_MESSAGE"];
const JSON_OR_MESSAGE: &[&str] = &["INVALID_JSON", "INVALID_MESSAGE"];
const TOO_LARGE: &[&str] = &["PAYLOAD_TOO_LARGE"];

/// Text frames for an envelope endpoint, every one malformed.
fn text_cases(rng: &mut Rng, count: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, text) in NOT_MESSAGES.iter().enumerate() {
        cases.push(Case { text: text.to_string(), codes: MESSAGE, what: format!("not a message #{i}") });
    }
    while cases.len() < count {
        let template = *rng.pick(TEMPLATES);
        let n = cases.len();
        let case = match rng.below(10) {
            // A proper prefix of an object is never JSON.
            0 => Case { text: template[..1 + rng.below(template.len() - 1)].to_owned(), codes: JSON, what: "truncated".into() },
            // A raw control character or NUL anywhere.
            1 => {
                let mut bytes = template.as_bytes().to_vec();
                bytes.insert(rng.below(bytes.len() + 1), *rng.pick(CONTROLS));
                Case { text: String::from_utf8(bytes).unwrap(), codes: JSON, what: "raw control character".into() }
            }
            // A lone surrogate, or a broken escape, in the type or the id.
            2 => {
                let bad = *rng.pick(&[r"\ud800", r"\udfff", r"\ud83d", r"\u12", r"\x41", r"\q", r"\u00zz"]);
                let text = if rng.below(2) == 0 { format!(r#"{{"type":"echo{bad}","id":"x"}}"#) } else { format!(r#"{{"type":"ping","id":"a{bad}"}}"#) };
                Case { text, codes: JSON_OR_MESSAGE, what: format!("escape {bad}") }
            }
            // Numbers JSON parsers cannot hold.
            3 => {
                let huge = *rng.pick(&["1e400", "-1e400", "1e99999999999", "123456789012345678901234567890e999"]);
                Case { text: format!(r#"{{"type":"ping","id":{huge}}}"#), codes: JSON_OR_MESSAGE, what: format!("number {huge}") }
            }
            // Nesting past any sane depth, at the top or inside the data.
            4 => {
                let depth = 200 + rng.below(2000);
                let (open, close) = if rng.below(2) == 0 { ("[", "]") } else { (r#"{"a":"#, "}") };
                let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                let top = rng.below(2) == 0;
                let text = if top { nested } else { format!(r#"{{"type":"echo","data":{nested}}}"#) };
                if text.len() > MAX_MESSAGE {
                    Case { text, codes: TOO_LARGE, what: format!("nested {depth}, too large") }
                } else if top {
                    Case { text, codes: JSON_OR_MESSAGE, what: format!("nested {depth}") }
                } else {
                    // `data` goes to the plugin unread (skipped without
                    // recursion); echo's SDK refuses it within its own limits.
                    Case { text, codes: &["INVALID_DATA"], what: format!("nested {depth} in data") }
                }
            }
            // Garbage that is UTF-8.
            5 => {
                let text: String = (0..1 + rng.below(64)).map(|_| char::from(b' ' + rng.below(95) as u8)).collect();
                let text = format!("{text}}}"); // never a complete value followed by nothing
                Case { text, codes: JSON_OR_MESSAGE, what: "printable garbage".into() }
            }
            // Trailing data after a message.
            6 => Case { text: format!("{template} {}", rng.pick(&["{}", "x", "1", "[]"])), codes: JSON, what: "trailing data".into() },
            // A field of the right name and the wrong type.
            7 => {
                let field = *rng.pick(&["type", "id", "meta", "command", "msg_id"]);
                let value = *rng.pick(&["{}", "[]", "true", "null"]);
                let text = match field {
                    "command" => format!(r#"{{"request_id":"r","command":{value}}}"#),
                    "msg_id" => format!(r#"{{"type":"request","msg_id":{value},"data":{{"action":"echo"}}}}"#),
                    "type" => format!(r#"{{"type":{value}}}"#),
                    _ if value == "null" => format!(r#"{{"type":"ping","{field}":[]}}"#),
                    _ => format!(r#"{{"type":"ping","{field}":{}}}"#, if field == "meta" { "true" } else { value }),
                };
                // `"msg_id":null` is no msg_id: a canonical message of type
                // `request`, which nothing serves here.
                let codes: &[&str] = if field == "msg_id" && value == "null" { &["UNKNOWN_TYPE"] } else { MESSAGE };
                Case { text, codes, what: format!("{field} mistyped") }
            }
            // Over limits.max_message_bytes (but under the frame limit).
            8 => {
                let size = MAX_MESSAGE + 1 + rng.below(MAX_FRAME - MAX_MESSAGE - 64);
                let text = format!(r#"{{"type":"echo","data":"{}"}}"#, "x".repeat(size));
                Case { text, codes: TOO_LARGE, what: format!("{size} bytes") }
            }
            // Duplicate fields.
            _ => Case { text: r#"{"type":"ping","type":"echo"}"#.into(), codes: JSON_OR_MESSAGE, what: "duplicate type".into() },
        };
        cases.push(Case { what: format!("#{n} {}: {}", case.what, preview(&case.text)), ..case });
    }
    cases
}

fn preview(text: &str) -> String {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}", &text[..end])
}

/// The code of an error reply in any of the host's formats, if it is one:
/// canonical and raw `{"type":"error",...}`, the action server's
/// `"success":false,"error":{"code"}`, the requester's `"success":false,"code"`.
fn error_code(reply: &Value) -> Option<&str> {
    if reply["type"] == "error" {
        return reply["data"]["code"].as_str().or(reply["code"].as_str());
    }
    if reply["success"] == false {
        return reply["error"]["code"].as_str().or(reply["code"].as_str());
    }
    None
}

async fn host() -> Host {
    Host::start_with(&["echo"], |c| {
        c.limits.max_message_bytes = MAX_MESSAGE;
        c.limits.max_frame_bytes = MAX_FRAME;
        let mut workers = EndpointConfig::defaults().remove(1);
        workers.path = "/workers".into();
        workers.role = EndpointRole::Workers;
        c.endpoints.push(workers);
    })
    .await
}

/// After each case, a ping with a fresh id must be the very next frame:
/// the case got one reply, not two, and the connection is still served.
async fn still_served(socket: &mut RawSocket, n: usize) {
    let id = format!("alive-{n}");
    socket.send(&Frame::text(json!({"type": "ping", "id": id}).to_string())).await;
    let pong: Value = serde_json::from_str(&socket.text().await).unwrap();
    assert_eq!((pong["type"].as_str(), pong["id"].as_str()), (Some("pong"), Some(id.as_str())), "one reply per frame: {pong}");
}

#[tokio::test]
async fn malformed_frames_get_one_documented_error_each_and_the_connection_stays() {
    let host = host().await;
    let mut rng = Rng(SEED);
    let mut socket = RawSocket::connect(host.addr(), "/ws").await;
    let ack: Value = serde_json::from_str(&socket.text().await).unwrap();
    assert_eq!(ack["type"], "connection");
    let cases = text_cases(&mut rng, 900);
    for (n, case) in cases.iter().enumerate() {
        socket.send(&Frame::text(case.text.as_bytes())).await;
        let reply: Value = serde_json::from_str(&socket.text().await).unwrap_or_else(|e| panic!("{}: a reply that is not JSON: {e}", case.what));
        let code = error_code(&reply).unwrap_or_else(|| panic!("{}: not an error: {reply}", case.what));
        assert!(ErrorCode::parse(code).is_some(), "{}: {code} is not a documented host code", case.what);
        assert!(case.codes.contains(&code), "{}: {code}, expected one of {:?}: {reply}", case.what, case.codes);
        still_served(&mut socket, n).await;
    }
    // Binary frames are not messages; the connection stays.
    for n in 0..60 {
        let size = rng.below(2048);
        socket.send(&Frame::new(opcode::BINARY, rng.bytes(size))).await;
        let reply: Value = serde_json::from_str(&socket.text().await).unwrap();
        assert_eq!(error_code(&reply), Some("INVALID_MESSAGE"), "binary #{n}: {reply}");
        still_served(&mut socket, 10_000 + n).await;
    }
    host.shutdown().await;
}

#[tokio::test]
async fn the_raw_room_form_answers_malformed_frames_in_its_own_format() {
    let host = host().await;
    let mut rng = Rng(SEED ^ 1);
    let mut socket = RawSocket::connect(host.addr(), "/rooms").await;
    for n in 0..100 {
        let template = *rng.pick(&[r#"{"device_id":"d1","identity":"mobile"}"#, r#"{"type":"message","content":"hello"}"#, r#"{"type":"query_room"}"#]);
        let (text, codes): (String, &[&str]) = match n % 4 {
            0 => (template[..1 + rng.below(template.len() - 1)].to_owned(), JSON),
            1 => (rng.pick(&["[1]", "7", "\"x\"", "null", r#"{"type":5}"#]).to_string(), MESSAGE),
            2 => {
                let mut bytes = template.as_bytes().to_vec();
                bytes.insert(rng.below(bytes.len() + 1), *rng.pick(CONTROLS));
                (String::from_utf8(bytes).unwrap(), JSON)
            }
            // Well-formed, but no plugin serves the room protocol here.
            _ => (template.to_owned(), &["UNKNOWN_TYPE"]),
        };
        socket.send(&Frame::text(text.as_bytes())).await;
        let reply: Value = serde_json::from_str(&socket.text().await).unwrap();
        assert_eq!(reply["type"], "error", "#{n} {text:?}: {reply}");
        let code = reply["code"].as_str().unwrap_or_else(|| panic!("#{n}: the raw error form has a top-level code: {reply}"));
        assert!(codes.contains(&code), "#{n} {text:?}: {code}, expected {codes:?}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn frames_that_end_the_connection_get_their_documented_close_codes() {
    let host = host().await;
    let mut rng = Rng(SEED ^ 2);
    // Text that is not UTF-8, whole or split across fragments: close 1007.
    for n in 0..40 {
        let mut socket = RawSocket::connect(host.addr(), "/ws").await;
        socket.text().await;
        let mut bytes = br#"{"type":"echo","data":"#.to_vec();
        const INVALID: &[&[u8]] = &[&[0xff], &[0xc3, 0x28], &[0xed, 0xa0, 0x80], &[0xf8, 0x88, 0x80, 0x80, 0x80], &[0xe2, 0x82], &[0x80]];
        let bad: &[u8] = rng.pick::<&[u8]>(INVALID);
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(b"\"}");
        if n % 2 == 0 {
            socket.send(&Frame::text(bytes)).await;
        } else {
            let cut = rng.below(bytes.len() - 1) + 1;
            socket.send_all(&Frame::fragments(opcode::TEXT, &[&bytes[..cut], &bytes[cut..]])).await;
        }
        assert_eq!(socket.ending().await.code(), Some(1007), "invalid UTF-8 #{n} ({bad:x?})");
    }
    // A frame over limits.max_frame_bytes: PAYLOAD_TOO_LARGE, then close 1009.
    for n in 0..5 {
        let mut socket = RawSocket::connect(host.addr(), "/ws").await;
        socket.text().await;
        socket.send(&Frame::text(vec![b'x'; MAX_FRAME + 1 + rng.below(1024)])).await;
        let reply: Value = serde_json::from_str(&socket.text().await).unwrap();
        assert_eq!(error_code(&reply), Some("PAYLOAD_TOO_LARGE"), "#{n}: {reply}");
        assert!(matches!(socket.ending().await, Ended::Closed { code: Some(1009), .. }), "#{n}");
    }
    // The host is still serving.
    let mut client = host.connect().await;
    assert_eq!(client.call("echo", json!({"message": "still here"})).await["data"], "Echo: still here");
    host.shutdown().await;
}

#[tokio::test]
async fn malformed_http_bodies_get_the_json_error_body_with_a_documented_code() {
    let host = host().await;
    let mut rng = Rng(SEED ^ 3);
    let http = reqwest::Client::new();
    let mut bodies: Vec<(Vec<u8>, &[&str])> = text_cases(&mut rng, 120).into_iter().map(|c| (c.text.into_bytes(), c.codes)).collect();
    for _ in 0..20 {
        let mut bytes = br#"{"type":"echo","data":""#.to_vec();
        let size = 1 + rng.below(16);
        bytes.extend(rng.bytes(size).into_iter().map(|b| b | 0x80));
        bytes.extend_from_slice(b"\"}");
        if std::str::from_utf8(&bytes).is_err() {
            bodies.push((bytes, JSON));
        }
    }
    // Answered in the request's own format (the action and requester
    // forms included), with the code's HTTP status.
    let check = |what: String, status: StatusCode, body: Value, codes: &[&str]| {
        let code = error_code(&body).unwrap_or_else(|| panic!("{what}: no JSON error body: {body}"));
        let documented = ErrorCode::parse(code).unwrap_or_else(|| panic!("{what}: {code} is not documented"));
        assert!(codes.contains(&code), "{what}: {code}, expected {codes:?}");
        assert_eq!(status.as_u16(), documented.http_status(), "{what}: the status is the code's");
    };
    for (n, (body, codes)) in bodies.iter().enumerate() {
        let response = http.post(host.http("/api/v1/messages")).body(body.clone()).send().await.unwrap();
        let status = response.status();
        check(format!("messages #{n} {}", preview(&String::from_utf8_lossy(body))), status, response.json().await.unwrap(), codes);
    }
    // /api/control: the body must be a JSON object; POST and PUT need an action.
    let control: &[(&str, &[&str])] = &[
        ("[1]", JSON),
        ("7", JSON),
        ("\"play\"", JSON),
        ("{", JSON),
        ("{\"action\":", JSON),
        ("{}", MESSAGE),
        (r#"{"video_path":"/a.mp4"}"#, MESSAGE),
        ("\u{0}", JSON),
        (r#"{"action":"play"} x"#, JSON),
        (r#"{"action":"\ud800"}"#, JSON),
    ];
    for n in 0..100 {
        let (body, codes) = *rng.pick(control);
        let put = rng.below(2) == 0;
        let request = if put { http.put(host.http("/api/control")) } else { http.post(host.http("/api/control")) };
        let response = request.body(body).send().await.unwrap();
        let status = response.status();
        check(format!("control #{n} {body:?}"), status, response.json().await.unwrap(), codes);
    }
    host.shutdown().await;
}

#[tokio::test]
async fn malformed_worker_frames_are_refused_at_registration_and_ignored_after() {
    let host = host().await;
    let mut rng = Rng(SEED ^ 4);
    let registers: &[(&str, &str)] = &[
        ("{", "INVALID_JSON"),
        ("[]", "INVALID_MESSAGE"),
        (r#"{"type":"response","msg_id":"x"}"#, "INVALID_MESSAGE"),
        (r#"{"type":"register"}"#, "INVALID_MESSAGE"),
        (r#"{"type":"register","data":{"types":"echo"}}"#, "INVALID_MESSAGE"),
        (r#"{"type":"register","data":{"types":[1]}}"#, "INVALID_MESSAGE"),
        (r#"{"type":"register","data":{"types":["x"],"weight":"heavy"}}"#, "INVALID_MESSAGE"),
        (r#"{"type":"register","data":{"types":["x"],"concurrency":-1}}"#, "INVALID_MESSAGE"),
        ("{\"type\":\"register\"\u{1}}", "INVALID_JSON"),
    ];
    for n in 0..40 {
        let (text, code) = *rng.pick(registers);
        let mut worker = RawSocket::connect(host.addr(), "/workers").await;
        worker.send(&Frame::text(text.as_bytes())).await;
        let reply: Value = serde_json::from_str(&worker.text().await).unwrap();
        assert_eq!(error_code(&reply), Some(code), "register #{n} {text:?}: {reply}");
        assert_eq!(worker.ending().await.code(), Some(1008), "register #{n} {text:?}");
    }
    // Registered, a worker's frames the protocol does not have are ignored:
    // no answer, and the worker stays.
    let mut worker = RawSocket::connect(host.addr(), "/workers").await;
    worker.send(&Frame::text(r#"{"type":"register","data":{"worker_id":"w1","types":["job"]}}"#)).await;
    let registered: Value = serde_json::from_str(&worker.text().await).unwrap();
    assert_eq!(registered["type"], "registered");
    let mut cases = text_cases(&mut rng, 80);
    cases.retain(|c| c.text.len() <= MAX_MESSAGE);
    for (n, case) in cases.iter().enumerate() {
        worker.send(&Frame::text(case.text.as_bytes())).await;
        worker.send(&Frame::text(r#"{"type":"ping"}"#)).await;
        let pong: Value = serde_json::from_str(&worker.text().await).unwrap();
        assert_eq!(pong["type"], "pong", "worker frame #{n} {}: {pong}", case.what);
    }
    host.shutdown().await;
}

#[tokio::test]
async fn an_id_no_json_parser_can_read_back_is_not_echoed() {
    let host = host().await;
    let mut socket = RawSocket::connect(host.addr(), "/ws").await;
    socket.text().await;
    for (text, code) in [
        (r#"{"type":"ping","id":"a\ud800"}"#, "INVALID_MESSAGE"),
        (r#"{"type":"ping","id":1e400}"#, "INVALID_MESSAGE"),
        (r#"{"type":"request","msg_id":"\udc00","data":{"action":"ping"}}"#, "INVALID_MESSAGE"),
        (r#"{"request_id":"x\ud83d","command":"ping"}"#, "INVALID_MESSAGE"),
    ] {
        socket.send(&Frame::text(text)).await;
        let reply = socket.text().await;
        // Before, the error echoed the id as sent: text a strict parser refuses.
        let reply: Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{text}: the reply is not JSON ({e}): {reply}"));
        assert_eq!(error_code(&reply), Some(code), "{text}: {reply}");
    }
    host.shutdown().await;
}
