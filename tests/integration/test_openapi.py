"""schemathesis against a live worker: no 5xx, every answer as /openapi.json says."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from leadstream.domain.auth import ApiKey, AuthConfig, hash_api_key, with_key
from leadstream.web.keys import save_auth
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

KEY = "lsk_schemathesis_" + "k" * 40


def test_schemathesis_finds_no_server_error_and_no_schema_break(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    auth = tmp_path / "auth.json"
    save_auth(auth, with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(KEY), "t")))
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=tmp_path, auth_file=auth
    )
    try:
        worker = stack.worker()
        document = httpx.get(f"{worker.url}/openapi.json", timeout=10).json()
        assert "/api/v1/webhooks/lead-events" in document["paths"]
        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
        assert cli is not None, "schemathesis is a test dependency"
        result = subprocess.run(
            [
                cli,
                "run",
                f"{worker.url}/openapi.json",
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
                "--max-examples",
                "60",
                "--generation-deterministic",
                "--header",
                f"Authorization: Bearer {KEY}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "passed" in result.stdout
    finally:
        stack.close()
