"""The mock's Bedrock SigV4 verification agrees with botocore's signer.

A Converse request signed by botocore (the signer every boto3 Bedrock client
uses) must verify; the same request with one body byte changed after signing,
or signed with another secret, must not.
"""

import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("botocore")

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

# The mock's default AWS credential (tollgate_mock::DEFAULT_AWS_*).
AKID = "AKIDTOLLGATEMOCK"
SECRET = "tollgate-mock-secret-key"
REGION = "us-east-1"
# The model id percent-encoded in the path, as boto3 sends it.
MODEL_PATH = "us.anthropic.claude-3-5-haiku-20241022-v1%3A0"
MODEL = "us.anthropic.claude-3-5-haiku-20241022-v1:0"

SYSTEM = "You are terse."
USER = "Summarise the history of toll roads in two sentences."
BODY = {
    "system": [{"text": SYSTEM}],
    "messages": [{"role": "user", "content": [{"text": USER}]}],
    "inferenceConfig": {"maxTokens": 512, "temperature": 0.2},
}


def signed(mock, body, secret=SECRET):
    """The request botocore signs: (url, headers, body bytes)."""
    url = f"{mock}/model/{MODEL_PATH}/converse"
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(AKID, secret), "bedrock", REGION).add_auth(req)
    assert req.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    return url, dict(req.headers.items()), body


def send(url, headers, body):
    """Sends exactly these headers and bytes; (status, headers, body bytes)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def stats(mock):
    with urllib.request.urlopen(mock + "/mock/stats") as r:
        return json.loads(r.read())


def expected_usage():
    """The documented Bedrock usage: P = 8 + T/4 over system + message text, no cache."""
    p = 8 + len((SYSTEM + USER).encode()) // 4
    return {"inputTokens": p, "outputTokens": 24, "totalTokens": p + 24}


def test_botocore_signature_verifies(mock):
    before = stats(mock)
    body = json.dumps(BODY).encode()
    status, headers, raw = send(*signed(mock, body))
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["usage"] == expected_usage()
    assert answer["stopReason"] == "end_turn"
    message = answer["output"]["message"]
    assert message["role"] == "assistant"
    assert len(message["content"][0]["text"].split(" ")) == 24
    assert headers["x-amzn-RequestId"]
    after = stats(mock)
    assert after["refused"] == before["refused"]
    assert after["last_aws_region"] == REGION
    assert after["last_model"] == MODEL
    assert after["last_path"] == f"/model/{MODEL_PATH}/converse"


def test_body_changed_after_signing_is_refused(mock):
    before = stats(mock)
    body = json.dumps(BODY).encode()
    url, headers, body = signed(mock, body)
    at = body.index(b"toll")
    tampered = body[:at] + b"T" + body[at + 1 :]
    assert len(tampered) == len(body) and tampered != body
    status, resp_headers, raw = send(url, headers, tampered)
    assert status == 403, raw
    assert resp_headers["x-amzn-ErrorType"].split(":")[0] == "InvalidSignatureException"
    assert "signature" in json.loads(raw)["message"]
    after = stats(mock)
    assert after["refused"] == before["refused"] + 1
    assert after["last_refusal"] == "InvalidSignatureException"


def test_signature_with_another_secret_is_refused(mock):
    before = stats(mock)
    body = json.dumps(BODY).encode()
    status, resp_headers, raw = send(*signed(mock, body, secret="not-the-mock-secret"))
    assert status == 403, raw
    assert resp_headers["x-amzn-ErrorType"].split(":")[0] == "InvalidSignatureException"
    after = stats(mock)
    assert after["refused"] == before["refused"] + 1
    assert after["last_refusal"] == "InvalidSignatureException"
