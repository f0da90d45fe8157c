//! Every upstream answer translator (OpenAI, Anthropic native and to chat,
//! Gemini to chat), whole and streamed: the fuzzer's bytes are the
//! provider's answer. Never a panic; a streamed answer's usage is the same
//! whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_providers::{inspect, prepare, ApiFormat, ProviderKind, Target};

const CHAT: &[u8] = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES: &[u8] = br#"{"model":"m","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
const RESPONSES: &[u8] = br#"{"model":"m","stream":true,"input":"hi"}"#;
const EMBEDDINGS: &[u8] = br#"{"model":"m","input":"hi"}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, answer)) = data.split_first() else { return };
    let routes = [
        (ApiFormat::OpenAiChat, ProviderKind::OpenAi, CHAT),
        (ApiFormat::OpenAiChat, ProviderKind::Anthropic, CHAT),
        (ApiFormat::OpenAiChat, ProviderKind::Gemini, CHAT),
        (ApiFormat::AnthropicMessages, ProviderKind::Anthropic, MESSAGES),
        (ApiFormat::OpenAiResponses, ProviderKind::OpenAi, RESPONSES),
        (ApiFormat::OpenAiEmbeddings, ProviderKind::OpenAi, EMBEDDINGS),
    ];
    let (format, kind, body) = routes[usize::from(pick) % routes.len()];
    let info = inspect(format, body).expect("a valid request");
    let target = Target { kind, base_url: "http://upstream", api_key: Some("k"), model: "m", api_version: None };
    let (_, translator) = prepare(format, &target, body, &info).expect("a supported route");
    let _ = translator.translate_body(answer);
    let _ = translator.error_message(answer);

    let run = |step: usize| {
        let mut s = translator.stream();
        let mut out = Vec::new();
        for chunk in answer.chunks(step) {
            if s.push(chunk, &mut out).is_err() {
                return None;
            }
        }
        let end = s.finish(&mut out);
        Some(format!("{:?}", end.usage))
    };
    let whole = run(answer.len().max(1));
    let split = run(usize::from(pick % 7) + 1);
    assert_eq!(whole, split, "chunking changed the metered usage");
});
