//! Request inspection: any client body, on every API family, is either
//! understood or refused with an error — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_providers::{inspect, ApiFormat};

fuzz_target!(|data: &[u8]| {
    for f in [ApiFormat::OpenAiChat, ApiFormat::OpenAiEmbeddings, ApiFormat::OpenAiResponses, ApiFormat::AnthropicMessages] {
        let _ = inspect(f, data);
    }
});
