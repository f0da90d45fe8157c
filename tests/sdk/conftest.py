"""Starts a mock provider and a tollgate gateway (real processes, loopback, port 0)."""

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TOLLGATE_BIN") or os.path.expanduser("~/.cache/tollgate-target/debug/tollgate")


def _start(args, pattern, env=None):
    proc = subprocess.Popen(
        [BIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "TOLLGATE_LOG": "warn"},
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {proc.returncode}")
            continue
        m = re.search(pattern, line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError(f"{args[0]} did not start in time")


class Gateway:
    def __init__(self, base, key, key_id):
        self.base = base
        self.key = key
        self.key_id = key_id

    def get(self, path):
        with urllib.request.urlopen(self.base + path) as r:
            return json.loads(r.read())

    def row(self, request_id):
        """The ledger row of one request, via the request-log API."""
        for _ in range(100):
            rows = self.get("/api/v1/requests?limit=1000")["rows"]
            for row in rows:
                if row["request_id"] == request_id:
                    return row
            time.sleep(0.02)
        raise AssertionError(f"no ledger row for {request_id}")

    def row_count(self):
        return len(self.get("/api/v1/requests?limit=1000")["rows"])

    def settled_row_count(self, expect=None):
        """The row count once rows have left the spool (a few ms after their
        acknowledgement): polls until it equals `expect`, or stops changing."""
        last, stable = -1, 0
        for _ in range(200):
            n = self.row_count()
            if expect is not None and n == expect:
                return n
            stable = stable + 1 if n == last else 0
            if expect is None and stable >= 3:
                return n
            last = n
            time.sleep(0.02)
        return last

    def mock_total(self, mock):
        with urllib.request.urlopen(mock + "/mock/stats") as r:
            return json.loads(r.read())["total"]


@pytest.fixture(scope="session")
def mock():
    proc, addr = _start(["mock-provider", "--listen", "127.0.0.1:0"], r"listening on (http://\S+)")
    yield addr
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gateway(mock):
    d = tempfile.mkdtemp()
    db = f"sqlite://{d}/sdk.db"
    cfg = os.path.join(d, "tollgate.toml")
    with open(cfg, "w") as f:
        f.write(
            f"""
[[providers]]
name = "openai"
kind = "openai"
base_url = "{mock}/v1"

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "{mock}"

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "{mock}"

[[providers]]
name = "bedrock"
kind = "bedrock"
region = "us-east-1"
base_url = "{mock}"

[[providers]]
name = "vertex"
kind = "vertex"
project = "tollgate-mock"
location = "us-central1"
base_url = "{mock}"

[[models]]
name = "vertex-gemini"
targets = [{{ provider = "vertex", model = "gemini-2.5-flash" }}]

[[models]]
name = "vertex-claude"
targets = [{{ provider = "vertex", model = "claude-sonnet-4-5@20250929" }}]
"""
        )
    # The mock's test service account, its token endpoint set to the mock.
    with open(os.path.join(ROOT, "crates/tollgate-mock/fixtures/test-service-account.json")) as f:
        account = json.load(f)
    account["token_uri"] = mock + "/token"
    sa_path = os.path.join(d, "service-account.json")
    with open(sa_path, "w") as f:
        json.dump(account, f)
    # The mock's AWS credential: Bedrock requests are signed with it (SigV4) and verified.
    aws = {
        "AWS_ACCESS_KEY_ID": "AKIDTOLLGATEMOCK",
        "AWS_SECRET_ACCESS_KEY": "tollgate-mock-secret-key",
        "GOOGLE_APPLICATION_CREDENTIALS": sa_path,
    }
    out = subprocess.run(
        [BIN, "--config", cfg, "--db", db, "keys", "create", "--name", "sdk", "--team", "sdk-team", "--json"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **aws},
    )
    created = json.loads(out.stdout)
    assert created["key"].startswith("tg_")
    proc, base = _start(
        ["--config", cfg, "--db", db, "serve", "--listen", "127.0.0.1:0"], r"listening on (http://\S+)", env=aws
    )
    yield Gateway(base, created["key"], created["id"])
    proc.terminate()
    proc.wait(timeout=20)
