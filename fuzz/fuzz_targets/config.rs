//! The config parser: any text is a config or an error with a message,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env: HashMap<String, String> = HashMap::new();
    if let Err(e) = tollgate::config::Config::from_toml(text, "fuzz.toml", &env) {
        assert!(!e.to_string().is_empty());
    }
});
