"""The official openai and anthropic Python SDKs against tollgate in front of the mock.

Every case checks that the ledger row's token counts equal the usage the
provider reported to the SDK.
"""

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
