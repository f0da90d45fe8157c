//! Usage extraction from whole answers, every provider format, and the
//! error-message reader: any bytes give a result or an error, never a panic,
//! and usage read is never negative.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_providers::{error_message, usage_of, ApiFormat};

fuzz_target!(|data: &[u8]| {
    for f in [ApiFormat::OpenAiChat, ApiFormat::OpenAiEmbeddings, ApiFormat::OpenAiResponses, ApiFormat::AnthropicMessages] {
        if let Ok(t) = usage_of(f, data) {
            if let Some(u) = t.usage {
                let _ = u.total_tokens();
            }
        }
    }
    let _ = error_message(data);
});
