//! JSON pointer extraction over raw JSON text on arbitrary input: the first
//! line is the pointer, the rest the document. It must never panic, and
//! wherever the pointer is valid it must find exactly what serde_json's
//! `Value::pointer` finds, text kept as written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pointer, document) = text.split_once('\n').unwrap_or((text, "null"));
    let Ok(tokens) = apisync::fetch::tokens(pointer) else {
        return;
    };
    let Ok(raw) = serde_json::from_str::<&RawValue>(document) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<Value>(document) else {
        return;
    };
    let ours = apisync::fetch::raw_at(raw, &tokens).map(|found| {
        serde_json::from_str::<Value>(found.get()).expect("a raw value is valid JSON")
    });
    assert_eq!(ours.as_ref(), value.pointer(pointer), "pointer {pointer:?}");
});
