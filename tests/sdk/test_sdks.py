"""The official openai and anthropic Python SDKs against tollgate in front of the mock.

Every case checks that the ledger row's token counts equal the usage the
provider reported to the SDK.
"""

import time

import anthropic
import openai
import pytest


def oai(gw, **kw):
    return openai.OpenAI(base_url=gw.base + "/v1", api_key=gw.key, max_retries=0, **kw)


def ant(gw):
    return anthropic.Anthropic(base_url=gw.base, api_key=gw.key, max_retries=0)


MSG = [{"role": "user", "content": "Summarise the history of toll roads in two sentences."}]


def assert_openai_usage(row, usage):
    assert row["usage_source"] == "provider"
    assert row["input_tokens"] == usage.prompt_tokens
    assert row["output_tokens"] == usage.completion_tokens
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    assert row["cache_read_tokens"] == cached
    reasoning = usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
    assert row["reasoning_tokens"] == (reasoning or 0)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "o4-mini", "claude-haiku-4-5", "gemini-2.5-flash"])
def test_chat_non_streaming(gateway, model):
    raw = oai(gateway).chat.completions.with_raw_response.create(model=model, messages=MSG)
    resp = raw.parse()
    assert resp.choices[0].message.content
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert_openai_usage(row, resp.usage)
    assert row["tags"]["team"] == "sdk-team"
    assert row["streamed"] is False


@pytest.mark.parametrize("model", ["gpt-4o-mini", "o4-mini", "claude-haiku-4-5", "gemini-2.5-flash"])
def test_chat_streaming_with_usage(gateway, model):
    client = oai(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=MSG, stream=True, stream_options={"include_usage": True}
    )
    usage = None
    text = ""
    for chunk in raw.parse():
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
    assert text
    assert usage is not None, "the client asked for usage and must get it"
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert_openai_usage(row, usage)
    assert row["streamed"] is True
    # Same numbers as the non-streaming call.
    plain = client.chat.completions.with_raw_response.create(model=model, messages=MSG)
    assert gateway.row(plain.headers["x-tollgate-request-id"])["input_tokens"] == row["input_tokens"]
    assert plain.parse().usage.completion_tokens == usage.completion_tokens


def test_chat_streaming_without_usage_hides_the_usage_chunk(gateway):
    client = oai(gateway)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True)
    chunks = list(raw.parse())
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert_openai_usage(row, plain.usage)


def test_embeddings(gateway):
    raw = oai(gateway).embeddings.with_raw_response.create(model="text-embedding-3-small", input=["toll", "gate"])
    resp = raw.parse()
    assert len(resp.data) == 2 and len(resp.data[0].embedding) > 0
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert row["input_tokens"] == resp.usage.prompt_tokens
    assert row["output_tokens"] == 0


def test_responses(gateway):
    client = oai(gateway)
    raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Write one line about tolls.")
    resp = raw.parse()
    assert resp.output_text
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert row["input_tokens"] == resp.usage.input_tokens
    assert row["output_tokens"] == resp.usage.output_tokens
    assert row["cache_read_tokens"] == resp.usage.input_tokens_details.cached_tokens

    sraw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Write one line about tolls.", stream=True)
    final = None
    for event in sraw.parse():
        if event.type == "response.completed":
            final = event.response
    assert final is not None and final.usage.output_tokens == resp.usage.output_tokens
    srow = gateway.row(sraw.headers["x-tollgate-request-id"])
    assert srow["input_tokens"] == row["input_tokens"] and srow["output_tokens"] == row["output_tokens"]


def assert_anthropic_usage(row, u):
    cache_read = u.cache_read_input_tokens or 0
    cache_write = u.cache_creation_input_tokens or 0
    assert row["input_tokens"] == u.input_tokens + cache_read + cache_write
    assert row["cache_read_tokens"] == cache_read
    assert row["cache_write_tokens"] == cache_write
    assert row["output_tokens"] == u.output_tokens


def test_messages(gateway):
    client = ant(gateway)
    raw = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=64, messages=MSG)
    msg = raw.parse()
    assert msg.content[0].text
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert_anthropic_usage(row, msg.usage)
    assert row["cache_read_tokens"] > 0 and row["cache_write_tokens"] > 0

    with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-tollgate-request-id"]
    assert text
    srow = gateway.row(request_id)
    assert_anthropic_usage(srow, final.usage)
    assert srow["streamed"] is True


def test_errors_parse_in_each_sdk(gateway, mock):
    before = gateway.mock_total(mock)
    rows_before = gateway.settled_row_count()
    bad = openai.OpenAI(base_url=gateway.base + "/v1", api_key="tg_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert e.value.code == "invalid_api_key"
    bad_a = anthropic.Anthropic(base_url=gateway.base, api_key="tg_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad_a.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MSG)
    assert gateway.mock_total(mock) == before, "a refused key reaches no provider"
    assert gateway.settled_row_count() == rows_before, "a refused key leaves no ledger row"

    with pytest.raises(openai.NotFoundError) as e:
        oai(gateway).chat.completions.create(model="no-such-model", messages=MSG)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        oai(gateway).chat.completions.create(model="gpt-4o-mini", messages="not a list")
    assert e.value.code == "invalid_request"
    assert gateway.settled_row_count(expect=rows_before + 2) == rows_before + 2


# ---------------------------------------------------------------- web search, priced per call
#
# Rates, USD per million tokens (crates/tollgate-pricing/catalog/prices.toml):
# gpt-4o 2.50 in, 1.25 cached, 10.00 out; claude-haiku-4-5 1.00 in, 0.10
# cache read, 1.25 cache write (5 min), 5.00 out. Web search: $10 per 1,000
# searches at both, so one search is 10,000,000 nano-dollars.

def nanos(usd):
    whole, _, frac = usd.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def test_responses_web_search_is_priced_per_search(gateway):
    client = oai(gateway)
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input="[mock web_searches=2] What changed at the toll plaza today?", tools=[{"type": "web_search"}]
    )
    resp = raw.parse()
    searches = [item for item in resp.output if item.type == "web_search_call"]
    assert len(searches) == 2, "the SDK reads the provider's two search calls"
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert row["usage"]["web_search_requests"] == 2
    assert row["tool_cost_usd"] == "0.020000000"
    u = row["usage"]
    tokens = u["input"] * 2500 + u["cache_read"] * 1250 + u["output"] * 10_000 + u["reasoning"] * 10_000
    assert nanos(row["cost_usd"]) == tokens + 20_000_000


def test_anthropic_web_search_is_priced_per_search(gateway):
    client = ant(gateway)
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "[mock web_searches=3] Find today's toll rates."}],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    )
    msg = raw.parse()
    assert msg.usage.server_tool_use.web_search_requests == 3
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert row["usage"]["web_search_requests"] == 3
    assert row["tool_cost_usd"] == "0.030000000"
    u = row["usage"]
    tokens = (
        u["input"] * 1000 + u["cache_read"] * 100 + u["cache_write_5m"] * 1250 + u["cache_write_1h"] * 2000
        + u["output"] * 5000
    )
    assert nanos(row["cost_usd"]) == tokens + 30_000_000


def test_a_budget_that_cannot_afford_the_searches_refuses_before_the_provider(gateway, mock):
    # A key of its own team, under a $0.05 day budget: ten searches ($0.10) do not fit.
    import json
    import urllib.request

    def admin(path, body):
        req = urllib.request.Request(
            gateway.base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    key = admin("/admin/v1/keys", {"name": "searcher", "team": "web-search-budget"})["key"]
    admin("/admin/v1/budgets", {"scope": {"team": "web-search-budget"}, "limit_usd": "0.05", "period": "day"})
    client = openai.OpenAI(base_url=gateway.base + "/v1", api_key=key, max_retries=0)
    before = gateway.mock_total(mock)
    with pytest.raises(openai.APIStatusError) as e:
        client.responses.create(
            model="gpt-4o", input="[mock web_searches=10] Search everything.", tools=[{"type": "web_search"}]
        )
    assert e.value.status_code == 402
    assert e.value.code == "budget_exceeded"
    assert gateway.mock_total(mock) == before, "refused before the provider was called"
    # max_uses bounds what an Anthropic request reserves: 3 searches ($0.03) fit.
    aclient = anthropic.Anthropic(base_url=gateway.base, api_key=key, max_retries=0)
    msg = aclient.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "[mock web_searches=3] Find today's toll rates."}],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
    )
    assert msg.usage.server_tool_use.web_search_requests == 3


# Media endpoints. Prices (OpenAI's published, in the catalog's prices.toml):
# dall-e-3 hd 1024x1792 $0.12 an image; gpt-image-1 text in $5/M, image out
# $40/M; whisper-1 $0.0001 a second; tts-1 $15 per million characters. The
# mock: tokens(s) = 8 + bytes(s)/4; gpt-image-1 high 1024x1536 = 6,240 output
# tokens an image; whisper bills ceil(seconds); speech is 60 ms a character.


def wav_file(path, seconds):
    """A real WAV file made here: 16 kHz, 16-bit, mono silence."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"\0\0" * int(16_000 * seconds))
    return path


def test_images_generate_is_priced_per_image(gateway):
    client = oai(gateway)
    raw = client.images.with_raw_response.generate(
        model="dall-e-3", prompt="a toll booth at dawn", size="1024x1792", quality="hd"
    )
    resp = raw.parse()
    assert len(resp.data) == 1
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert row["endpoint"] == "images.generations"
    assert row["usage"]["images"] == 1
    assert row["cost_usd"] == "0.120000000"


def test_images_generate_by_tokens(gateway):
    client = oai(gateway)
    raw = client.images.with_raw_response.generate(
        model="gpt-image-1", prompt="a red fox in the snow", size="1024x1536", quality="high", n=2
    )
    resp = raw.parse()
    assert len(resp.data) == 2
    assert resp.usage.output_tokens == 12_480
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    # 13 text tokens × $5/M + 12,480 image tokens × $40/M = 65,000 + 499,200,000 nanos.
    assert row["usage"]["output_image"] == 12_480
    assert nanos(row["cost_usd"]) == 499_265_000


def test_audio_transcriptions_create_with_a_real_wav(gateway, tmp_path):
    client = oai(gateway)
    path = wav_file(tmp_path / "speech.wav", 2.5)
    with open(path, "rb") as f:
        raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=f)
    text = raw.parse()
    assert text.text == "The quick brown fox jumps over the lazy dog."
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert row["endpoint"] == "audio.transcriptions"
    assert row["usage_source"] == "provider"
    # The provider billed ceil(2.5) = 3 seconds × $0.0001.
    assert row["usage"]["audio_ms"] == 3_000
    assert row["cost_usd"] == "0.000300000"


def test_audio_speech_create(gateway):
    client = oai(gateway)
    raw = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="Hello there", response_format="wav"
    )
    audio = raw.content
    assert audio[:4] == b"RIFF" and len(audio) == 44 + 48 * 660
    row = gateway.row(raw.headers["x-tollgate-request-id"])
    assert row["endpoint"] == "audio.speech"
    # 11 characters × $15 per million.
    assert row["usage"]["characters"] == 11
    assert row["cost_usd"] == "0.000165000"


def test_a_budget_blocks_each_media_call_before_the_provider(gateway, mock, tmp_path):
    import json
    import urllib.request

    def admin(path, body):
        req = urllib.request.Request(
            gateway.base + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    key = admin("/admin/v1/keys", {"name": "media", "team": "media-budget"})["key"]
    # $0.0001 a day: less than an image ($0.12), 2.5 s of whisper ($0.00025), 11 characters of tts-1 ($0.000165).
    admin("/admin/v1/budgets", {"scope": {"team": "media-budget"}, "limit_usd": "0.0001", "period": "day"})
    client = openai.OpenAI(base_url=gateway.base + "/v1", api_key=key, max_retries=0)
    before = gateway.mock_total(mock)
    path = wav_file(tmp_path / "speech.wav", 2.5)
    calls = [
        lambda: client.images.generate(model="dall-e-3", prompt="x", size="1024x1792", quality="hd"),
        lambda: client.audio.transcriptions.create(model="whisper-1", file=open(path, "rb")),
        lambda: client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there").read(),
    ]
    for call in calls:
        with pytest.raises(openai.APIStatusError) as e:
            call()
        assert e.value.status_code == 402
        assert e.value.code == "budget_exceeded"
    assert gateway.mock_total(mock) == before, "refused before the provider was called"


# Amazon Bedrock (the mock verifies every request's SigV4 signature). Catalog
# price of anthropic.claude-3-5-haiku-20241022-v1:0 on Bedrock: input $0.80/M,
# cache read $0.08/M, cache write $1/M, output $4/M. Mock: P = 8 + T/4 for T
# bytes of system and message text; with the cache, reads P/4, writes P/8,
# input the rest; output min(max_tokens, 24).
BEDROCK_MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_to_bedrock_with_cache_tokens(gateway, stream):
    client = oai(gateway)
    # T = 21 ("[mock bedrock_cache] ") + 379 = 400 → P = 108: read 27, write 13, input 68; output 24.
    msgs = [{"role": "user", "content": "[mock bedrock_cache] " + "t" * 379}]
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model=BEDROCK_MODEL, messages=msgs, stream=True, stream_options={"include_usage": True}
        ) as raw:
            request_id = raw.headers["x-tollgate-request-id"]
            chunks = list(raw.parse())
        usage = chunks[-1].usage
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text
    else:
        raw = client.chat.completions.with_raw_response.create(model=BEDROCK_MODEL, messages=msgs)
        request_id = raw.headers["x-tollgate-request-id"]
        usage = raw.parse().usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (108, 24, 27)
    row = gateway.row(request_id)
    assert row["provider"] == "bedrock"
    assert row["usage"]["input"] == 68 and row["usage"]["cache_read"] == 27 and row["usage"]["cache_write_5m"] == 13
    # 68 × 800 + 27 × 80 + 13 × 1,000 + 24 × 4,000 nanos.
    assert nanos(row["cost_usd"]) == 165_560


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_to_bedrock(gateway, stream):
    client = ant(gateway)
    system = [{"type": "text", "text": "s" * 399, "cache_control": {"type": "ephemeral"}}]
    msgs = [{"role": "user", "content": "q"}]
    if stream:
        with client.messages.with_streaming_response.create(
            model=BEDROCK_MODEL, max_tokens=64, system=system, messages=msgs, stream=True
        ) as raw:
            request_id = raw.headers["x-tollgate-request-id"]
            events = list(raw.parse())
        usage = [e for e in events if e.type == "message_delta"][-1].usage
        assert events[-1].type == "message_stop"
        assert (usage.output_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (24, 27, 13)
    else:
        raw = client.messages.with_raw_response.create(model=BEDROCK_MODEL, max_tokens=64, system=system, messages=msgs)
        request_id = raw.headers["x-tollgate-request-id"]
        msg = raw.parse()
        usage = msg.usage
        assert (usage.input_tokens, usage.output_tokens) == (68, 24)
        assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (27, 13)
    row = gateway.row(request_id)
    assert row["provider"] == "bedrock"
    assert nanos(row["cost_usd"]) == 165_560


# Google Vertex AI (the mock issues tokens for its test service account and
# refuses Vertex calls without one). Catalog prices on Vertex, in nanos a
# token: gemini-2.5-flash input 300, cache read 30, output 2,500;
# claude-sonnet-4-5@20250929 input 3,000, cache read 300, 1-hour write 6,000,
# output 15,000. "Summarise toll roads." is 21 bytes: P = 8 + 21/4 = 13.


@pytest.mark.parametrize("stream", [False, True])
def test_google_genai_sdk_to_the_native_route_to_vertex_gemini(gateway, stream):
    from google import genai

    client = genai.Client(api_key=gateway.key, http_options={"base_url": gateway.base})
    if stream:
        chunks = list(client.models.generate_content_stream(model="vertex-gemini", contents="Summarise toll roads."))
        usage = chunks[-1].usage_metadata
        text = "".join(c.text or "" for c in chunks)
    else:
        resp = client.models.generate_content(model="vertex-gemini", contents="Summarise toll roads.")
        usage = resp.usage_metadata
        text = resp.text
    assert text
    assert (usage.prompt_token_count, usage.cached_content_token_count, usage.candidates_token_count) == (13, 3, 24)
    row = None
    for _ in range(100):
        rows = gateway.get("/api/v1/requests?limit=1000")["rows"]
        found = [r for r in rows if r["endpoint"] == "generate_content" and r["streamed"] == stream]
        if found:
            row = found[0]
            break
        time.sleep(0.02)
    assert row is not None, "the native call's ledger row"
    assert row["provider"] == "vertex"
    assert (row["usage"]["input"], row["usage"]["cache_read"], row["usage"]["output"]) == (10, 3, 24)
    # 10 × 300 + 3 × 30 + 24 × 2,500 nanos.
    assert nanos(row["cost_usd"]) == 63_090


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_to_vertex_claude(gateway, stream):
    client = ant(gateway)
    msgs = [{"role": "user", "content": "Summarise toll roads."}]
    if stream:
        with client.messages.with_streaming_response.create(
            model="vertex-claude", max_tokens=64, messages=msgs, stream=True
        ) as raw:
            request_id = raw.headers["x-tollgate-request-id"]
            events = list(raw.parse())
        assert events[-1].type == "message_stop"
    else:
        raw = client.messages.with_raw_response.create(model="vertex-claude", max_tokens=64, messages=msgs)
        request_id = raw.headers["x-tollgate-request-id"]
        u = raw.parse().usage
        assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (9, 3, 1, 24)
    row = gateway.row(request_id)
    assert row["provider"] == "vertex"
    # 9 × 3,000 + 3 × 300 + 1 × 6,000 (1-hour write) + 24 × 15,000 nanos.
    assert nanos(row["cost_usd"]) == 393_900
