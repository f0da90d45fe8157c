//! `inspect`: the fields the gateway needs, and errors that name the parameter.
#![allow(clippy::unwrap_used)] // tests may unwrap

use tollgate_providers::{inspect, AdapterError, ApiFormat, RequestInfo};

fn err_param(format: ApiFormat, body: &str) -> (String, Option<String>) {
    match inspect(format, body.as_bytes()) {
        Err(AdapterError::InvalidRequest { message, param }) => (message, param),
        other => panic!("expected InvalidRequest for {body}, got {other:?}"),
    }
}

#[test]
fn openai_chat_fields() {
    let body = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"user":"u-1",
      "metadata":{"team":"growth","n":3,"flag":true,"gone":null},"max_completion_tokens":512,"max_tokens":99,
      "messages":[{"role":"system","content":"Be brief."},
        {"role":"user","content":[{"type":"text","text":"Describe"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"q\":1}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"result text"}],
      "tools":[{"type":"function","function":{"name":"f"}}], "some_future_field": {"x": 1}}"#;
    let info = inspect(ApiFormat::OpenAiChat, body.as_bytes()).unwrap();
    assert_eq!(info.model.as_deref(), Some("gpt-4o"));
    assert!(info.stream);
    assert!(info.client_wants_stream_usage);
    assert_eq!(info.user.as_deref(), Some("u-1"));
    assert_eq!(
        info.metadata,
        vec![("flag".into(), "true".into()), ("n".into(), "3".into()), ("team".into(), "growth".into())]
    );
    assert_eq!(info.max_output_tokens, Some(512));
    for piece in ["Be brief.", "Describe", "result text", r#""name":"f""#, "{\"q\":1}"] {
        assert!(info.prompt_text.contains(piece), "{piece} missing from {:?}", info.prompt_text);
    }
    assert!(!info.prompt_text.contains("https://x/y.png"));
}

#[test]
fn defaults_and_missing_model() {
    let info = inspect(ApiFormat::OpenAiChat, br#"{"messages":[],"max_tokens":10,"stream_options":null}"#).unwrap();
    assert_eq!(info, RequestInfo { max_output_tokens: Some(10), ..RequestInfo::default() });
}

#[test]
fn anthropic_fields() {
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"metadata":{"user_id":"abc"},
      "system":[{"type":"text","text":"Sys prompt","cache_control":{"type":"ephemeral"}}],
      "messages":[{"role":"user","content":"Hello"},
        {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"lookup","input":{"k":"v"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"found it"}]}]}],
      "tools":[{"name":"lookup","input_schema":{"type":"object"}}]}"#;
    let info = inspect(ApiFormat::AnthropicMessages, body.as_bytes()).unwrap();
    assert_eq!(info.user.as_deref(), Some("abc"));
    assert!(info.metadata.is_empty());
    assert_eq!(info.max_output_tokens, Some(1024));
    assert!(!info.stream);
    for piece in ["Sys prompt", "Hello", r#"{"k":"v"}"#, "found it", "input_schema"] {
        assert!(info.prompt_text.contains(piece), "{piece} missing from {:?}", info.prompt_text);
    }
}

#[test]
fn embeddings_and_responses_fields() {
    let info = inspect(ApiFormat::OpenAiEmbeddings, br#"{"model":"e","input":["first","second"],"user":"u"}"#).unwrap();
    assert_eq!(info.prompt_text, "first\nsecond");
    assert_eq!(info.user.as_deref(), Some("u"));
    let info = inspect(ApiFormat::OpenAiEmbeddings, br#"{"model":"e","input":[[1,2,3]]}"#).unwrap();
    assert_eq!(info.prompt_text, "");

    let body = r#"{"model":"gpt-5","instructions":"Talk like a pirate.","max_output_tokens":200,"stream":true,
      "input":[{"role":"user","content":[{"type":"input_text","text":"Ahoy?"}]},
               {"type":"function_call","call_id":"c","name":"f","arguments":"{\"a\":1}"},
               {"type":"function_call_output","call_id":"c","output":"sunny"}]}"#;
    let info = inspect(ApiFormat::OpenAiResponses, body.as_bytes()).unwrap();
    assert_eq!(info.max_output_tokens, Some(200));
    assert!(info.stream);
    assert!(!info.client_wants_stream_usage);
    assert_eq!(info.prompt_text, "Talk like a pirate.\nAhoy?\n{\"a\":1}\nsunny");
    let info = inspect(ApiFormat::OpenAiResponses, br#"{"model":"gpt-5","input":"Just text"}"#).unwrap();
    assert_eq!(info.prompt_text, "Just text");
}

#[test]
fn bad_bodies_are_rejected_with_the_parameter() {
    let chat = ApiFormat::OpenAiChat;
    assert_eq!(
        err_param(chat, r#"{"model":5,"messages":[]}"#),
        ("`model` must be a string".into(), Some("model".into()))
    );
    assert_eq!(err_param(chat, r#"{"model":"m","messages":"hi"}"#).1.as_deref(), Some("messages"));
    assert_eq!(err_param(chat, r#"{"model":"m"}"#).1.as_deref(), Some("messages"));
    assert_eq!(err_param(chat, r#"{"model":"m","messages":[],"stream":"yes"}"#).1.as_deref(), Some("stream"));
    assert_eq!(err_param(chat, r#"{"model":"m","messages":[],"max_tokens":-1}"#).1.as_deref(), Some("max_tokens"));
    assert_eq!(err_param(chat, r#"{"model":"m","messages":[],"user":7}"#).1.as_deref(), Some("user"));
    assert_eq!(err_param(chat, r#"{"model":"m","messages":[],"metadata":[1]}"#).1.as_deref(), Some("metadata"));
    assert_eq!(err_param(chat, r#"{"model":"m","messages":[],"tools":{}}"#).1.as_deref(), Some("tools"));
    assert_eq!(err_param(chat, r#"{"model":"m","messages":[3]}"#).1.as_deref(), Some("messages[0]"));
    assert_eq!(
        err_param(chat, r#"{"model":"m","messages":[{"role":"user","content":5}]}"#).1.as_deref(),
        Some("messages[0].content")
    );
    assert_eq!(err_param(ApiFormat::OpenAiEmbeddings, r#"{"model":"m","input":5}"#).1.as_deref(), Some("input"));

    let (msg, param) = err_param(chat, "[1,2]");
    assert_eq!((msg.as_str(), param), ("request body must be a JSON object", None));
    let (msg, _) = err_param(chat, "{\"model\": ");
    assert!(msg.starts_with("request body is not valid JSON"), "{msg}");
    let (msg, _) = err_param(chat, "not json");
    assert!(msg.starts_with("request body is not valid JSON"), "{msg}");
    match inspect(chat, b"{\"model\":\"\xff\"}") {
        Err(AdapterError::InvalidRequest { message, .. }) => assert!(message.contains("UTF-8")),
        other => panic!("{other:?}"),
    }
}
