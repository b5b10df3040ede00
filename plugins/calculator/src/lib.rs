//! `calculator`: `calculate` with `{a, b, op}` for `+ - * / % ^`.
//!
//! Bad arithmetic is a plugin failure with its own code, never a trap.

use serde::Deserialize;
use switchyard_sdk::{export_plugin, json, Failure, Manifest, Message, Plugin, Value};

#[derive(Deserialize)]
struct Calculation {
    a: f64,
    b: f64,
    op: String,
}

struct Calculator;

impl Plugin for Calculator {
    fn manifest() -> Manifest {
        Manifest::new("calculator", env!("CARGO_PKG_VERSION"))
            .description("Arithmetic on two numbers")
            .claim("calculate")
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        let Calculation { a, b, op } = msg.data()?;
        let result = match op.as_str() {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            "/" | "%" if b == 0.0 => {
                return Err(Failure::new("DIVISION_BY_ZERO", format!("{a} {op} 0 is undefined")))
            }
            "/" => a / b,
            "%" => a % b,
            "^" => a.powf(b),
            other => {
                return Err(Failure::new(
                    "UNKNOWN_OPERATOR",
                    format!("unknown op {other:?}; expected one of + - * / % ^"),
                ))
            }
        };
        if !result.is_finite() {
            return Err(Failure::new("NOT_A_NUMBER", format!("{a} {op} {b} has no finite result")));
        }
        Ok(json!({ "a": a, "b": b, "op": op, "result": result }))
    }
}

export_plugin!(Calculator);
