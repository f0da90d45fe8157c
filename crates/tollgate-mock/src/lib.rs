//! A fake OpenAI-, Anthropic-, Gemini-, Vertex AI- and Bedrock-shaped upstream with deterministic usage.
//!
//! The gateway's tests, `tollgate demo`, `tollgate mock-provider` and the
//! benchmarks run against it. It answers in the providers' real wire shapes
//! (the official SDKs parse them), is cheap per request (no per-request
//! logging, no lock held across an await), and can misbehave on request.
//!
//! # Endpoints
//!
//! | route | shape |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat, streamed (`stream: true`) or not |
//! | `POST /openai/deployments/{deployment}/chat/completions`, `POST /openai/v1/chat/completions` | Azure OpenAI chat (model = deployment) |
//! | `POST /v1/embeddings` (+ Azure's) | OpenAI embeddings, `float` or `base64` |
//! | `POST /v1/responses` (+ `/openai/v1/responses`) | OpenAI Responses, streamed or not |
//! | `GET /v1/models`, `GET /v1/models/{id}` | OpenAI's model list (Anthropic's when `anthropic-version` is sent) |
//! | `POST /v1/messages` | Anthropic Messages, streamed or not |
//! | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent[?alt=sse]` (also under `/v1/models/`) | Gemini |
//! | `POST /v1/images/generations` (JSON), `POST /v1/images/edits` (multipart) | OpenAI images; see *Media endpoints* |
//! | `POST /v1/audio/transcriptions`, `POST /v1/audio/translations` (multipart), `POST /v1/audio/speech` (JSON) | OpenAI audio; see *Media endpoints* |
//! | `POST /model/{modelId}/converse`, `POST /model/{modelId}/converse-stream` | Amazon Bedrock Runtime Converse, SigV4-signed; see *Bedrock* |
//! | `POST /token` | Google's OAuth 2.0 token endpoint for a service account's JWT-bearer grant; see *Vertex AI* |
//! | `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`, `:streamGenerateContent[?alt=sse]` (also under `/v1beta1/`) | Vertex AI Gemini, OAuth-bearer; see *Vertex AI* |
//! | `POST /v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict`, `:streamRawPredict` (also under `/v1beta1/`) | Claude on Vertex AI, OAuth-bearer; see *Vertex AI* |
//! | `GET /v1/organization/costs`, `GET /v1/organization/usage/completions`, `GET /v1/organization/usage/embeddings` | OpenAI's organization cost and usage reports (admin key as bearer); see *Billing reports* |
//! | `GET /v1/organizations/cost_report`, `GET /v1/organizations/usage_report/messages` | Anthropic's Admin API cost and usage reports (`x-api-key`, `anthropic-version`); see *Billing reports* |
//! | `POST /mock/billing`, `GET /mock/billing` | inject usage that bypassed the mock and price adjustments into the billing book; read the book; see *Billing reports* |
//! | `GET /mock/stats`, `POST /mock/reset` | request counters: `{"total","paths":{path:n},"models":{model:n},"last_auth":"present"\|"absent"\|null,"last_output_limit":n\|null,"last_path":p\|null,"last_model":m\|null,"last_files":[…]\|null,"refused":n,"last_refusal":name\|null,"last_aws_region":r\|null,"token_requests":n,"tokens_issued":n,"last_token_error":d\|null}` (the last request's output cap, path (as received, percent-encoding intact), model if it named one, and, for a multipart request, its file parts as `{"field","filename","content_type","bytes"}`; `refused` counts requests refused for their credential (401s, Bedrock's 403s), `last_refusal` is the provider's name for the last request's refusal (e.g. `invalid_api_key`, `InvalidSignatureException`) or null if it was not refused, `last_aws_region` the region of the last verified SigV4 credential scope; `token_requests` counts `POST /token` requests whatever their outcome, `tokens_issued` the access tokens issued, `last_token_error` the `error_description` of the last refused token request; token requests are not counted in `total`, `paths` or `last_*`) |
//!
//! The response's `model` echoes the requested model. The reply text is
//! `mock reply <8 hex digits of a prompt digest> tokens flow through …`, one
//! word per visible output token (capped at 4096 words), split into `chunks`
//! content deltas when streamed.
//!
//! # Usage formulas
//!
//! Let `T` be the number of bytes of all textual prompt content: every string
//! under a `content`, `text`, `system`, `instructions` or `input` key at any
//! depth (message contents and text parts, system prompts, Responses
//! instructions/input, Gemini parts, embeddings input; each token id of a
//! token-array input counts 4 bytes). Then, identically for streamed and
//! non-streamed answers:
//!
//! | quantity | formula |
//! |---|---|
//! | prompt (all input) | `8 + T/4` |
//! | cache read | `prompt/4` |
//! | cache write (Anthropic; Bedrock when the cache is used) | `prompt/8`: 5-minute TTL `write/2`, 1-hour TTL the rest |
//! | output (all output) | the `output_tokens` knob, else `min(smallest of max_tokens / max_completion_tokens / max_output_tokens / maxOutputTokens / inferenceConfig.maxTokens, 24)`, else 24 |
//! | reasoning | `output/2` if the model name contains `o1`, `o3`, `o4`, `gpt-5`, `reason` or `think` (case-insensitive), else 0 |
//!
//! (Integer division throughout.) Each provider reports them in its own convention:
//! - OpenAI chat: `prompt_tokens` = prompt, `prompt_tokens_details.cached_tokens`
//!   = cache read, `completion_tokens` = output,
//!   `completion_tokens_details.reasoning_tokens` = reasoning (inside output).
//! - OpenAI Responses: `input_tokens` = prompt, `input_tokens_details.cached_tokens`,
//!   `output_tokens` = output, `output_tokens_details.reasoning_tokens`.
//! - Embeddings: `prompt_tokens` = `total_tokens` = prompt.
//! - Anthropic: `input_tokens` = prompt − cache read − cache write,
//!   `cache_read_input_tokens`, `cache_creation_input_tokens` (+ `cache_creation`
//!   by TTL), `output_tokens` = output (reasoning not reported separately).
//!   Streams: `message_start` carries the input fields and `output_tokens: 1`;
//!   `message_delta` carries the final `output_tokens` and the input fields again.
//! - Bedrock Converse: see *Bedrock* below (`inputTokens` excludes cache
//!   reads and writes, which are only reported when the request uses the cache).
//! - Gemini: `promptTokenCount` = prompt (cache included),
//!   `cachedContentTokenCount` = cache read, `candidatesTokenCount` = output −
//!   reasoning, `thoughtsTokenCount` = reasoning (zero counts are omitted),
//!   `totalTokenCount` = prompt + output. Every streamed chunk carries
//!   `usageMetadata` with the output so far; the last one (with
//!   `finishReason: "STOP"`) has the final numbers. SSE events end in `\r\n\r\n`.
//!
//! [`usage_for`] and [`usage_for_request`] compute the same numbers for tests.
//!
//! # Billing reports
//!
//! Every answered call of `POST /v1/chat/completions`, `/v1/responses`,
//! `/v1/embeddings` (not Azure's routes) and `POST /v1/messages` (not Vertex
//! AI's), streamed or not, goes into a billing book with the usage its answer
//! reports, keyed by UTC day, project ([`MockConfig::billing_project`]) or
//! workspace ([`MockConfig::billing_workspace`]), `api_key_id`
//! ([`billing_api_key_id`]: `key_` + 12 hex digits of an FNV-1a hash of the
//! call's key, or `key_none`), model, service tier and endpoint, and is priced
//! with the built-in catalog of `tollgate-pricing` (integer nano-dollars). The
//! report routes answer the providers' documented shapes from it: daily
//! buckets with paging (`limit`, `page` / `next_page`, `has_more`), grouping
//! (`group_by` / `group_by[]`), filters; OpenAI costs split by `line_item`
//! (`"<model>, input"`, `"<model>, cached input"`, `"<model>, output"`,
//! `"web search tool calls"`) with `amount.value` a JSON number of USD written
//! exactly from the integer; Anthropic's `amount` a decimal string of cents.
//! With [`MockConfig::admin_api_key`] set, other keys get the provider's 401.
//! `POST /mock/billing` `{"clear", "extra": [{"family", "day", "project_id" |
//! "workspace_id", "api_key_id", "model", "input_tokens", "cached_input_tokens",
//! "output_tokens", "requests", …}], "price_adjustments": [{"family", "day",
//! "model", "percent"}]}` adds usage that bypassed the mock and bills a
//! model's day at `percent`/100 of the catalog; `GET /mock/billing` shows
//! the priced book; `POST /mock/reset` empties it. The sources checked, every
//! field and every rounding rule are written out at the top of `src/billing.rs`.
//!
//! # Media endpoints
//!
//! OpenAI's image and audio endpoints, with OpenAI's bearer auth, counted in
//! `/mock/stats` (path, model, and the file parts of multipart uploads), and
//! taking the knobs like the other endpoints: headers, or `[mock …]`
//! directives in the JSON body or in a form's text fields (never in file
//! contents). `latency_ms`, the status faults, `timeout` and `reset` work
//! everywhere; `malformed`, `truncate`, `garbage`, `reset_mid` bend the
//! JSON/text bodies; `no_usage` drops `usage`; speech answers stream (see
//! below), so `chunks`, `chunk_delay_ms` and the stream faults apply to
//! them. `output_tokens` does not affect them.
//!
//! One string's token count is `tokens(s) = 8 + bytes(s)/4`, integer division
//! (the chat prompt formula for a prompt of just that text; a `[mock …]`
//! directive in it counts like any other text). Bad requests get OpenAI's 400
//! `{"error": {"message", "type": "invalid_request_error", "param", "code"}}`
//! naming the parameter (`code` `missing_required_parameter`, `invalid_value`,
//! `invalid_type`, `integer_below_min_value` / `integer_above_max_value`).
//!
//! **Images** (`/v1/images/generations` JSON; `/v1/images/edits` multipart
//! with one or more `image` / `image[]` file parts, an optional `mask`, and
//! the same parameters as text fields). `model` defaults to `dall-e-2` (as
//! OpenAI's does); `prompt` is required; `n` is 1–10 (default 1; `dall-e-3`:
//! only 1); `size` must be one of the model's sizes (`dall-e-2`: 256x256,
//! 512x512, 1024x1024; `dall-e-3`: 1024x1024, 1792x1024, 1024x1792;
//! `gpt-image*`: 1024x1024, 1536x1024, 1024x1536, auto; other names: any),
//! default 1024x1024; `quality`: `dall-e-2` standard|auto, `dall-e-3`
//! standard|hd|auto, `gpt-image*` low|medium|high|auto (default auto), other
//! names any of those; `response_format` url|b64_json (default url;
//! `gpt-image*` always b64_json). An edit without an `image` part is a 400.
//! The answer is `{"created", "data": [n items]}`, each item
//! `{"b64_json": <a 1×1 PNG>}` or
//! `{"url": "https://mock.invalid/images/<request sequence>-<index>.png"}`,
//! plus `"revised_prompt": "A mock illustration of: <prompt>"` for
//! `dall-e-3`. Only `gpt-image*` models add `usage`:
//!
//! | field | value |
//! |---|---|
//! | `input_tokens_details.text_tokens` | `T = tokens(prompt)` |
//! | `input_tokens_details.image_tokens` | `194 × input image parts` (edits; the mask does not count; 0 for generations) |
//! | `input_tokens` | text + image tokens |
//! | `output_tokens` | `n ×` gpt-image-1's per-image table: low 272 / 408 / 400, medium 1056 / 1584 / 1568, high 4160 / 6240 / 6208 for 1024x1024 / 1024x1536 / 1536x1024; quality `auto` counts as high, size `auto` as 1024x1024 |
//! | `total_tokens` | input + output |
//!
//! **Transcriptions and translations** (multipart: `file` (required), `model`
//! (required), `prompt`, `language`, `response_format`, `temperature` 0–1).
//! The audio's duration `ms`: for a RIFF/WAVE file,
//! `ceil(data chunk bytes × 1000 / fmt byte rate)` (chunks walked, a data
//! chunk longer than the file counted as what is present); any other file,
//! `ceil(bytes × 1000 / 16,000)`; an empty file is a 400. The text is always
//! `The quick brown fox jumps over the lazy dog.` (44 bytes, `tokens` = 19).
//! `response_format` (default `json`): `json` → `{"text", "usage"}`;
//! `verbose_json` → `{"task": "transcribe"|"translate", "language": "english",
//! "duration": ms/1000 (a float), "text", "segments": [], "usage"}`; `text` →
//! the text and a newline; `srt` / `vtt` → one cue from 0 to `ms`; the
//! three text formats are `text/plain; charset=utf-8`, without usage.
//! Translations never carry `usage` (as OpenAI's). Transcription usage:
//! - models starting `gpt-4o` (`gpt-4o-transcribe`, `gpt-4o-mini-transcribe`;
//!   only `json` and `text` accepted): `{"type": "tokens", "input_tokens":
//!   A+P, "input_token_details": {"text_tokens": P, "audio_tokens": A},
//!   "output_tokens": O, "total_tokens": A+P+O}` with `A = ceil(ms/100)`
//!   (10 a second), `P = tokens(prompt)` (0 without a prompt), `O = 19`.
//! - any other model (`whisper-1`): `{"type": "duration", "seconds":
//!   ceil(ms/1000)}` (whole seconds, rounded up, as whisper is billed).
//!
//! **Speech** (JSON: `model`, `input` (at most 4096 characters) and `voice`
//! required; `response_format` mp3 (default)|opus|aac|flac|wav|pcm; `speed`
//! 0.25–4; `instructions`; `stream_format` audio (default)|sse, sse only for
//! `gpt-4o-mini-tts*`). The speech lasts `ms = 60 × characters of input`
//! (Unicode scalars; `speed` ignored) of 24 kHz 16-bit mono, i.e. `48 × ms`
//! bytes: `wav` is a 44-byte RIFF/WAVE header plus that much silence, `pcm`
//! the silence alone, the others that many deterministic (undecodable) bytes,
//! as `audio/mpeg`, `audio/opus`, `audio/aac`, `audio/flac`, `audio/wav`,
//! `audio/pcm`. The body streams in `chunks` pieces (default 4) with
//! `chunk_delay_ms` between them (5 ms unless set), without usage
//! (`stream_error` there just ends it half-way: raw audio has no error
//! event). With
//! `stream_format: "sse"` it is `text/event-stream`: one
//! `data: {"type":"speech.audio.delta","audio":<base64 of a piece>}` per
//! piece, then `data: {"type":"speech.audio.done","usage":{"input_tokens":
//! I,"output_tokens":O,"total_tokens":I+O}}` with `I = tokens(input)` and
//! `O = ceil(ms/50)` (20 audio tokens a second).
//!
//! [`text_tokens`], [`gpt_image_output_tokens`], [`audio_duration_ms`],
//! [`billed_seconds`], [`transcription_audio_tokens`] and
//! [`speech_output_tokens`] compute the same numbers for tests.
//!
//! # Bedrock
//!
//! Amazon Bedrock Runtime's Converse API, as documented in its API reference
//! (`Converse`, `ConverseStream`, `TokenUsage`, `ConverseStreamOutput`).
//! The model id is the path segment, percent-encoded on the wire
//! (`/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse`) and
//! decoded for `models` / `last_model` (`…-v1:0`); `paths` / `last_path` keep
//! the path as received. The body is a Converse request: `messages` (required,
//! an array of `{"role", "content": [blocks]}`, blocks `text`, `image`,
//! `toolUse`, `toolResult`, `cachePoint`, …), `system` (blocks `text`,
//! `cachePoint`), `inferenceConfig` (`maxTokens` ≥ 1, `temperature`, `topP`,
//! `stopSequences`), `toolConfig`, `additionalModelRequestFields`.
//!
//! **Auth.** Every request must carry an AWS Signature Version 4 for service
//! `bedrock` (any region) made with [`MockConfig::aws_access_key_id`] /
//! [`MockConfig::aws_secret_access_key`] (defaults [`DEFAULT_AWS_ACCESS_KEY_ID`]
//! / [`DEFAULT_AWS_SECRET_ACCESS_KEY`]), verified by
//! `tollgate_providers::sigv4::verify` over the method, the path and query
//! exactly as received (percent-encoding intact), the signed headers and the
//! exact body bytes, allowing 300 s of clock skew. `require_api_key` does not
//! apply. A refusal is a 403 with body `{"message": …}` and AWS's error name in
//! `x-amzn-ErrorType` (`<name>:http://internal.amazon.com/coral/com.amazon.coral.service/`;
//! clients take the part before the colon), counted in `refused` and
//! named in `last_refusal`:
//! - no `Authorization` header: `MissingAuthenticationTokenException`, "Missing Authentication Token";
//! - an access key id other than the mock's: `UnrecognizedClientException`,
//!   "The security token included in the request is invalid.";
//! - a malformed `Authorization` header, a signed header missing from the
//!   request, no valid `X-Amz-Date`: `IncompleteSignatureException`;
//! - a signature that does not verify (wrong secret, a changed body, path or
//!   signed header): `InvalidSignatureException`, "The request signature we
//!   calculated does not match the signature you provided. …"; a date more
//!   than 300 s off: `InvalidSignatureException`, "Signature expired: …" /
//!   "Signature not yet current: …"; a scope date that is not `X-Amz-Date`'s:
//!   `InvalidSignatureException`;
//! - a scope for another service: `InvalidSignatureException`,
//!   "Credential should be scoped to correct service: 'bedrock'. ".
//!
//! A verified scope's region is kept as `last_aws_region`. Other errors are
//! Bedrock-shaped too: `{"message"}` with `x-amzn-ErrorType`
//! `ValidationException` (400, also bad JSON and a missing `messages`),
//! `AccessDeniedException` (403), `ResourceNotFoundException` (404),
//! `ModelTimeoutException` (408), `ModelErrorException` (424),
//! `ThrottlingException` (429), `ServiceUnavailableException` (503), else
//! `InternalServerException`. Answers carry `x-amzn-RequestId` (a UUID).
//!
//! **Usage.** `P` = the prompt formula `8 + T/4` with `T` the bytes of the
//! text of `system` and `messages` only (`text` blocks, tool results' `text`;
//! not images, tool specs, `toolUse` input or inference settings). The request
//! *uses the cache* when any block of `system`, of a message's `content` or of
//! `toolConfig.tools` is a `cachePoint`, or with the knob `[mock bedrock_cache]`.
//!
//! | field | formula |
//! |---|---|
//! | `cacheReadInputTokens` | `P/4` (only when the cache is used) |
//! | `cacheWriteInputTokens` | `P/8` (only when the cache is used) |
//! | `inputTokens` | `P − read − write` with the cache, else `P` |
//! | `outputTokens` | the `output_tokens` knob, else `min(inferenceConfig.maxTokens, 24)`, else 24 |
//! | `totalTokens` | `inputTokens + outputTokens + cacheReadInputTokens + cacheWriteInputTokens` (= `P + outputTokens`) |
//!
//! AWS documents `totalTokens` as "the total of input tokens and tokens
//! generated by the model"; real Converse answers with prompt caching count
//! the cache reads and writes in it, and so does the mock. Converse does not
//! split reasoning out of `outputTokens` (for a model the mock treats as
//! reasoning, the reply text is `output/2` words shorter, as elsewhere).
//!
//! **Converse** answers `{"output": {"message": {"role": "assistant",
//! "content": [{"text": …}]}}, "stopReason", "usage": {…}, "metrics":
//! {"latencyMs": N}}`. `stopReason` is `max_tokens` when
//! `inferenceConfig.maxTokens` is below 24 and no `output_tokens` knob is set,
//! else `end_turn`; `latencyMs` is the `latency_ms` the mock waited.
//!
//! **ConverseStream** answers 200 `application/vnd.amazon.eventstream`: AWS
//! event-stream messages (encoded by `tollgate_providers::eventstream`), each
//! with headers `:event-type`, `:content-type: application/json`,
//! `:message-type: event` and a JSON payload, in this order: `messageStart`
//! `{"role":"assistant"}`; `contentBlockDelta`
//! `{"contentBlockIndex":0,"delta":{"text":…}}` × `chunks` (the reply text,
//! split as elsewhere); `contentBlockStop` `{"contentBlockIndex":0}`;
//! `messageStop` `{"stopReason":…}`; `metadata` `{"usage":{…},"metrics":{"latencyMs":N}}`
//! (the same usage as the non-streamed answer). The body is written in
//! chunks `chunk_delay_ms` apart (2 ms unless set): the 2nd, 5th, 8th, …
//! message is split in the middle and its second half sent with the next
//! message, so chunk boundaries fall mid-message. Faults: `stream_error` sends
//! half the deltas, then an exception message (`:exception-type` = the
//! `exception_type` knob, default `internalServerException`;
//! `:content-type: application/json`; `:message-type: exception`; payload
//! `{"message": …}`), then ends; `malformed` inserts, half-way, a well-framed
//! `contentBlockDelta` whose JSON payload does not parse; `corrupt_frame`
//! flips a byte in the payload of the second message (the first
//! `contentBlockDelta`), so its message CRC fails; `garbage` sends the HTML
//! page before the first message; `truncate`, `stall`, `reset_mid`,
//! `no_usage` (the `metadata` payload without `usage`) as elsewhere.
//!
//! [`SIGV4_SERVICE`] and [`MAX_CLOCK_SKEW_SECS`] name the verification's parameters.
//!
//! # Vertex AI
//!
//! Google Vertex AI with a service account, as a Google client library
//! drives it: trade a signed JWT for an OAuth access token at the account's
//! `token_uri`, then call the model routes with `Authorization: Bearer <token>`.
//!
//! **The service account** is a fixed TEST-ONLY RSA-2048 key pair committed
//! as `fixtures/test-service-account.json` (Google's key-file format: `type`
//! `service_account`, `project_id` [`TEST_PROJECT_ID`] (`tollgate-mock`),
//! `private_key_id`, `private_key` (PKCS#8 PEM), `client_email`
//! [`TEST_SERVICE_ACCOUNT_EMAIL`]
//! (`tollgate-test@tollgate-mock.iam.gserviceaccount.com`), `client_id`,
//! `token_uri`, …). [`TEST_SERVICE_ACCOUNT_JSON`] is the file as committed,
//! its `token_uri` a placeholder (`http://tollgate-mock.invalid/token`);
//! [`test_service_account_json`]`(token_uri)` is the same JSON with
//! `token_uri` set, e.g. to `http://127.0.0.1:PORT/token`. The mock derives
//! the public key from the private key when it starts.
//!
//! **`POST /token`** takes an `application/x-www-form-urlencoded` body
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`
//! ([`JWT_BEARER_GRANT_TYPE`]). The JWT (three unpadded base64url segments)
//! must have a header with `alg` `RS256` (`typ`, if sent, `JWT`; `kid`, if
//! sent, the key file's `private_key_id`), an RS256 (RSASSA-PKCS1-v1_5,
//! SHA-256) signature over `header.claims` by the test key, and claims:
//! `iss` = [`TEST_SERVICE_ACCOUNT_EMAIL`]; `aud` = exactly
//! `http://<Host>/token`, the token URI the client reached the mock at (the
//! request's `Host` header); `iat` and `exp` (seconds since the epoch) with
//! `iat < exp ≤ iat + 3600` ([`MAX_ASSERTION_LIFETIME_SECS`]), `exp` after now and
//! `iat` at most 300 s ahead of now ([`ASSERTION_CLOCK_SKEW_SECS`]); `scope`
//! a space-separated list containing [`CLOUD_PLATFORM_SCOPE`]
//! (`https://www.googleapis.com/auth/cloud-platform`). (`sub` is ignored.)
//! A good assertion gets 200
//! `{"access_token": "ya29.mock-<n>", "expires_in": token_ttl_secs, "token_type": "Bearer"}`
//! (`n` counts issued tokens from 1 per server; [`ACCESS_TOKEN_PREFIX`]); the
//! mock remembers each token until `token_ttl_secs` (knob
//! [`MockConfig::token_ttl_secs`], default [`DEFAULT_TOKEN_TTL_SECS`] = 3600)
//! have passed. Refusals are 400 `{"error": code, "error_description": …}`
//! with Google's codes and wording:
//! - a bad signature (wrong key, altered header or claims, unknown `kid`):
//!   `invalid_grant`, "Invalid JWT Signature.";
//! - another `iss`: `invalid_grant`, "Invalid grant: account not found";
//! - another `aud`: `invalid_grant`, "Invalid JWT: Failed audience check. The right audience is http://<Host>/token";
//! - `iat`/`exp` missing, expired, living over an hour or issued in the
//!   future: `invalid_grant`, "Invalid JWT: Token must be a short-lived token
//!   (60 minutes) and in a reasonable timeframe. Check your iat and exp values
//!   in the JWT claim.";
//! - not a JWT, an `alg` other than RS256: `invalid_grant`, "Invalid JWT: …";
//! - no cloud-platform `scope`: `invalid_scope`, "Invalid OAuth scope or ID
//!   token audience provided." (as Google answers);
//! - another `grant_type`: `unsupported_grant_type`; no `assertion`: `invalid_request`.
//!
//! With [`MockConfig::token_failures`] = N, the first N token requests answer
//! 503 `{"error": "temporarily_unavailable", "error_description": …}` with
//! `Retry-After: 1` before any check (to test a failing refresh). Token
//! requests take no knobs or faults, are counted in `token_requests` (not in
//! `total` or `paths`), and `POST /mock/reset` forgets no token.
//!
//! **Model routes**:
//! `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`
//! (and the same under `/v1beta1/`, which Google's Gen AI SDK uses), any
//! project and any location (a region such as `us-central1`, or `global`),
//! as on `{location}-aiplatform.googleapis.com` / `aiplatform.googleapis.com`.
//! Every request is counted (`paths` / `last_path` keep the path as
//! received, project and location included; `last_auth` is "present" when
//! it has an `Authorization` header) and must carry `Authorization: Bearer
//! <token>` with a token `POST /token` issued that has not expired
//! (`require_api_key` does not apply); otherwise Google's 401, counted in
//! `refused`, with `WWW-Authenticate: Bearer realm="https://accounts.google.com/"` and
//! `{"error": {"code": 401, "message": …, "status": "UNAUTHENTICATED",
//! "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
//! "reason": R, "domain": "googleapis.com", "metadata": {"service":
//! "aiplatform.googleapis.com"}}]}}` where `R` (also `last_refusal`) is
//! `CREDENTIALS_MISSING` (no `Authorization` header; message "Request is
//! missing required authentication credential. …"),
//! `ACCESS_TOKEN_EXPIRED` (an issued token past its `expires_in`) or
//! `ACCESS_TOKEN_TYPE_UNSUPPORTED` (a token this mock never issued, or not a
//! bearer credential); both last say "Request had invalid authentication
//! credentials. Expected OAuth 2 access token, …". Then, by publisher and method:
//! - `google`, `generateContent` / `streamGenerateContent` (`?alt=sse` for
//!   SSE, else one JSON array): exactly the Gemini routes above (request and
//!   answer bodies, usage formulas, streams, knobs, faults, Google-shaped
//!   errors), for the model in the URL.
//! - `anthropic`, `rawPredict` / `streamRawPredict`: an Anthropic Messages
//!   body without `model` (the URL names it, e.g. `claude-3-5-haiku@20241022`)
//!   and with `"anthropic_version": "vertex-2023-10-16"`
//!   ([`VERTEX_ANTHROPIC_VERSION`]); as Vertex, a 400 Anthropic-shaped
//!   `invalid_request_error` when `anthropic_version` is missing
//!   ("anthropic_version: Field required") or another value
//!   ("anthropic_version: Input should be 'vertex-2023-10-16'") or when the
//!   body has a `model` ("model: Extra inputs are not permitted"). Otherwise
//!   answered exactly like `POST /v1/messages` (usage formulas, `event:`
//!   streams, knobs, faults, Anthropic-shaped errors and `request-id`), the
//!   response's `model` being the URL's. As on Anthropic's API, which Vertex
//!   relays, the body's `"stream": true` decides whether it streams
//!   (clients send it to `:streamRawPredict`).
//! - another method of those publishers, or another publisher: Google's 404
//!   `NOT_FOUND`.
//!
//! # Knobs
//!
//! Per request, from headers `x-mock-latency-ms`, `x-mock-chunk-delay-ms`,
//! `x-mock-chunks`, `x-mock-output-tokens`, `x-mock-fault`, `x-mock-retry-after`,
//! `x-mock-web-searches`, `x-mock-reported-cost`, `x-mock-bedrock-cache`,
//! `x-mock-exception-type`, or from a directive anywhere in the raw body,
//! `[mock latency_ms=5 fault=429]`, with the same names (`latency_ms`,
//! `chunk_delay_ms`, `chunks`, `output_tokens`, `fault`, `retry_after`,
//! `web_searches`, `reported_cost`, `bedrock_cache`, `exception_type`); a bare
//! word in a directive is a flag (`[mock bedrock_cache]` =
//! `bedrock_cache=true`, `[mock corrupt_frame]` = `fault=corrupt_frame`).
//! Precedence: [`MockConfig`], then headers, then body. An unknown knob or
//! fault, or a bad value, answers 400 (provider-shaped) naming it.
//!
//! | knob | effect |
//! |---|---|
//! | `latency_ms` | waited before any answer |
//! | `chunk_delay_ms` | waited between stream events |
//! | `chunks` | content deltas per stream (default 4, 1–10,000) |
//! | `output_tokens` | the output count of the usage formulas |
//! | `fault`, `retry_after` | see *Faults* below |
//! | `web_searches=N` | server-side web searches (whole number, capped at 1,000): Anthropic answers add `"server_tool_use": {"web_search_requests": N}` to `usage` (the whole body's, and the stream's `message_delta` usage; `message_start` has none); OpenAI Responses answers get N `{"type": "web_search_call", "id": "ws_mock…", "status": "completed", "action": {"type": "search", "query": …}}` items before the message item in `output` (whole body and `response.completed`), and a stream has, per search, `response.output_item.added` (status `in_progress`), `response.web_search_call.in_progress` / `.searching` / `.completed` and `response.output_item.done` events ahead of the message's, whose `output_index` becomes N. Other endpoints ignore it. |
//! | `bedrock_cache` | Bedrock answers report cache reads and writes as if the request had a `cachePoint` (`true`/`false`, `1`/`0`, or the bare word). Other endpoints ignore it. |
//! | `exception_type=NAME` | the exception a Bedrock stream's `stream_error` sends: `internalServerException` (default), `modelStreamErrorException`, `serviceUnavailableException`, `throttlingException` or `validationException`. |
//! | `reported_cost=DECIMAL` | a JSON number of USD (e.g. `0.000123`, `1.5e-05`), written exactly as given as `usage.cost` in OpenAI chat completions answers (also Azure's; the whole body, and a stream's final usage chunk when `include_usage` is on), as OpenRouter reports its charge. Not a JSON number: 400. Other endpoints ignore it. |
//!
//! Faults:
//! - a status `400`–`599` (e.g. `429`, `500`, `503`, `529`): that status with the
//!   provider's error body; `429`/`503`/`529` carry `Retry-After: retry_after`
//!   (default 1).
//! - `timeout`: waits an hour, then answers (other requests are unaffected).
//! - `malformed`: a 200 whose JSON body does not parse; in a stream, one
//!   unparseable event half-way (the stream then completes normally).
//! - `truncate`: non-streamed, the body cut in half; streamed, half the deltas
//!   and then a clean end: no finish/terminal event and no usage.
//! - `no_usage`: usage left out everywhere.
//! - `stream_error`: half the deltas, then the provider's in-stream error
//!   event, then the end. `stall`: half the deltas, then an hour of silence.
//!   Both leave non-streamed answers untouched.
//! - `garbage`: a 200 whose body is an HTML error page; in a stream, that page
//!   as the first `data:` event (before any real event).
//! - `reset`: the connection is closed before any byte of the answer.
//! - `reset_mid`: half the body (half the deltas of a stream), then the
//!   connection breaks mid-body (no terminal chunk).
//! - `corrupt_frame`: in a Bedrock event stream, the second message's
//!   payload has a flipped byte (its message CRC fails); ignored elsewhere.
//!
//! # Auth
//!
//! With [`MockConfig::require_api_key`] set, a request without that key in
//! its provider's header (`authorization: Bearer` for OpenAI; `api-key` or
//! bearer for Azure; `x-api-key` for Anthropic; `x-goog-api-key` or `?key=`
//! for Gemini) gets a provider-shaped 401. Either way, `/mock/stats` records
//! whether the last request carried a credential, never its value. Bedrock
//! requests always need a valid SigV4 signature (see *Bedrock*), and Vertex
//! AI requests an access token from `POST /token` (see *Vertex AI*); their
//! credential is "present" when they carry an `Authorization` header.

mod anthropic;
mod audio;
mod batches;
mod bedrock;
mod billing;
mod errors;
mod exchange;
mod form;
mod gemini;
mod images;
mod knobs;
mod openai;
mod params;
mod service_account;
mod stats;
mod stream;
mod usage;
mod vertex;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::errors::{error_response, Family};
use crate::exchange::App;

pub use crate::audio::MOCK_TRANSCRIPT;
pub use crate::bedrock::{MAX_CLOCK_SKEW_SECS, SIGV4_SERVICE};
pub use crate::billing::api_key_id as billing_api_key_id;
pub use crate::images::MOCK_PNG_BASE64;
pub use crate::openai::embed;
pub use crate::service_account::{
    test_service_account_json, ACCESS_TOKEN_PREFIX, ASSERTION_CLOCK_SKEW_SECS, CLOUD_PLATFORM_SCOPE,
    JWT_BEARER_GRANT_TYPE, MAX_ASSERTION_LIFETIME_SECS, TEST_PROJECT_ID, TEST_SERVICE_ACCOUNT_EMAIL,
    TEST_SERVICE_ACCOUNT_JSON, VERTEX_ANTHROPIC_VERSION,
};
pub use crate::usage::{
    audio_duration_ms, billed_seconds, gpt_image_output_tokens, is_reasoning_model, speech_output_tokens, text_tokens,
    transcription_audio_tokens, usage_for, usage_for_request, MockUsage, DEFAULT_OUTPUT_TOKENS,
    GPT_IMAGE_INPUT_IMAGE_TOKENS, NON_WAV_BYTES_PER_SECOND, REASONING_MARKERS, SPEECH_BYTES_PER_MS, SPEECH_MS_PER_CHAR,
};

/// The AWS access key id Bedrock requests must be signed with, by default.
pub const DEFAULT_AWS_ACCESS_KEY_ID: &str = "AKIDTOLLGATEMOCK";

/// The AWS secret access key Bedrock requests must be signed with, by default.
pub const DEFAULT_AWS_SECRET_ACCESS_KEY: &str = "tollgate-mock-secret-key";

/// Server-wide defaults; per-request knobs override the timing ones.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Wait before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Wait between stream events, in milliseconds.
    pub chunk_delay_ms: u64,
    /// When set, requests must carry this key in their provider's auth header
    /// (not Bedrock's, which are always SigV4-verified, nor Vertex AI's,
    /// which need an access token from `POST /token`).
    pub require_api_key: Option<String>,
    /// The access key id of the only AWS credential Bedrock requests may be
    /// signed with (default [`DEFAULT_AWS_ACCESS_KEY_ID`]).
    pub aws_access_key_id: String,
    /// Its secret access key (default [`DEFAULT_AWS_SECRET_ACCESS_KEY`]).
    pub aws_secret_access_key: String,
    /// How long the access tokens `POST /token` issues stay valid, in seconds
    /// (its `expires_in`; default [`DEFAULT_TOKEN_TTL_SECS`]).
    pub token_ttl_secs: u64,
    /// The first this many `POST /token` requests answer 503 (to test a
    /// failing token refresh); default 0.
    pub token_failures: u64,
    /// When set, the organization cost and usage report routes (see *Billing
    /// reports*) take only this admin key (OpenAI: `Authorization: Bearer`;
    /// Anthropic: `x-api-key`) and answer others 401; `None` (the default)
    /// accepts any key.
    pub admin_api_key: Option<String>,
    /// The OpenAI project served calls are billed to (default [`DEFAULT_BILLING_PROJECT`]).
    pub billing_project: String,
    /// The Anthropic workspace served calls are billed to (default [`DEFAULT_BILLING_WORKSPACE`]).
    pub billing_workspace: String,
}

/// The OpenAI `project_id` of served calls unless configured.
pub const DEFAULT_BILLING_PROJECT: &str = "proj_tollgate";

/// The Anthropic `workspace_id` of served calls unless configured.
pub const DEFAULT_BILLING_WORKSPACE: &str = "wrkspc_tollgate";

/// The lifetime of the mock's OAuth access tokens unless configured (Google's is an hour).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            chunk_delay_ms: 0,
            require_api_key: None,
            aws_access_key_id: DEFAULT_AWS_ACCESS_KEY_ID.to_owned(),
            aws_secret_access_key: DEFAULT_AWS_SECRET_ACCESS_KEY.to_owned(),
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            token_failures: 0,
            admin_api_key: None,
            billing_project: DEFAULT_BILLING_PROJECT.to_owned(),
            billing_workspace: DEFAULT_BILLING_WORKSPACE.to_owned(),
        }
    }
}

/// Bodies up to this size are read; the gateway's own limit is smaller.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Vertex AI's model routes; `model_action` is `{model}:{method}`.
const VERTEX_V1_ROUTE: &str =
    "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model_action}";
const VERTEX_V1BETA1_ROUTE: &str =
    "/v1beta1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model_action}";

/// The mock's routes, with fresh counters.
pub fn router(config: MockConfig) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/openai/v1/chat/completions", post(chat))
        .route("/openai/deployments/{deployment}/chat/completions", post(azure_chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/openai/v1/embeddings", post(embeddings))
        .route("/openai/deployments/{deployment}/embeddings", post(azure_embeddings))
        .route("/v1/responses", post(responses))
        .route("/openai/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/v1/models/{*rest}", get(model).post(gemini))
        .route("/v1/images/generations", post(image_generations))
        .route("/v1/images/edits", post(image_edits))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/translations", post(translations))
        .route("/v1/audio/speech", post(speech))
        .route("/v1/messages", post(messages))
        .route("/v1beta/models/{*rest}", post(gemini))
        .route("/model/{model_id}/converse", post(bedrock_converse))
        .route("/model/{model_id}/converse-stream", post(bedrock_converse_stream))
        .route("/token", post(vertex_token))
        .route(VERTEX_V1_ROUTE, post(vertex_model))
        .route(VERTEX_V1BETA1_ROUTE, post(vertex_model))
        .route("/mock/stats", get(stats))
        .route("/mock/reset", post(reset))
        .route("/mock/fault", post(set_fault))
        .route("/v1/files", post(batches::upload))
        .route("/v1/files/{id}/content", get(batches::file_content))
        .route("/v1/batches", post(batches::create_openai))
        .route("/v1/batches/{id}", get(batches::get_openai))
        .route("/v1/messages/batches", post(batches::create_anthropic))
        .route("/v1/messages/batches/{id}", get(batches::get_anthropic))
        .route("/v1/messages/batches/{id}/results", get(batches::anthropic_results))
        .route("/v1/organization/costs", get(billing::openai_costs))
        .route("/v1/organization/usage/completions", get(billing::openai_usage_completions))
        .route("/v1/organization/usage/embeddings", get(billing::openai_usage_embeddings))
        .route("/v1/organizations/cost_report", get(billing::anthropic_cost_report))
        .route("/v1/organizations/usage_report/messages", get(billing::anthropic_usage_messages))
        .route("/mock/billing", get(billing::show).post(billing::inject))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(App::new(config))
}

/// Serves the mock on `listener` until the process ends, with `TCP_NODELAY`
/// on every accepted socket (small answers must not wait for delayed ACKs).
pub async fn serve(listener: tokio::net::TcpListener, config: MockConfig) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(config)).await
}

/// `POST /mock/fault` with `{"fault":"503"}` makes every request fail that
/// way until `{"fault":null}`; per-request knobs still win.
async fn set_fault(State(app): State<App>, body: Bytes) -> Response {
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (http::StatusCode::BAD_REQUEST, format!("mock: {e}")).into_response(),
    };
    let fault = v.get("fault").and_then(|f| f.as_str()).map(String::from);
    app.set_fault(fault.clone());
    axum::Json(serde_json::json!({ "fault": fault })).into_response()
}

async fn chat(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    openai::chat(app, uri, headers, body, None).await
}

async fn azure_chat(
    State(app): State<App>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai::chat(app, uri, headers, body, Some(deployment)).await
}

async fn embeddings(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    openai::embeddings(app, uri, headers, body, None).await
}

async fn azure_embeddings(
    State(app): State<App>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai::embeddings(app, uri, headers, body, Some(deployment)).await
}

async fn responses(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    openai::responses(app, uri, headers, body).await
}

async fn image_generations(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    images::generations(app, uri, headers, body).await
}

// Multipart handlers take the whole request (the form is read inside, so a
// bad form still counts and gets an OpenAI-shaped 400).
async fn image_edits(State(app): State<App>, request: Request) -> Response {
    images::edits(app, request).await
}

async fn transcriptions(State(app): State<App>, request: Request) -> Response {
    audio::transcriptions(app, request).await
}

async fn translations(State(app): State<App>, request: Request) -> Response {
    audio::translations(app, request).await
}

async fn speech(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    audio::speech(app, uri, headers, body).await
}

async fn models(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    openai::models(app, uri, headers).await
}

async fn model(State(app): State<App>, Path(id): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    openai::model(app, uri, headers, id).await
}

async fn messages(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    anthropic::messages(app, uri, headers, body).await
}

async fn gemini(
    State(app): State<App>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gemini::generate(app, uri, headers, body, rest).await
}

async fn bedrock_converse(
    State(app): State<App>,
    Path(model_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bedrock::converse(app, uri, headers, body, model_id, false).await
}

async fn bedrock_converse_stream(
    State(app): State<App>,
    Path(model_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bedrock::converse(app, uri, headers, body, model_id, true).await
}

async fn vertex_token(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    vertex::token(app, uri, headers, body).await
}

async fn vertex_model(
    State(app): State<App>,
    Path(path): Path<vertex::ModelPath>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    vertex::model(app, uri, headers, body, path).await
}

async fn stats(State(app): State<App>) -> Response {
    axum::Json(app.stats().snapshot()).into_response()
}

async fn reset(State(app): State<App>) -> Response {
    app.stats().reset();
    app.billing().clear();
    axum::Json(serde_json::json!({"reset": true})).into_response()
}

async fn not_found(State(app): State<App>, method: Method, uri: Uri) -> Response {
    app.stats().record_request(uri.path(), false);
    let family = match uri.path() {
        p if p.starts_with("/v1beta/") || p.starts_with("/v1beta1/") || p.starts_with("/v1/projects/") => {
            Family::Gemini
        }
        p if p.starts_with("/model/") => Family::Bedrock,
        _ => Family::OpenAi,
    };
    error_response(family, 404, &format!("Unknown request URL: {method} {}", uri.path()), None)
}
