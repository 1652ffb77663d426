"""The README's "Using it" lines run as written, in order, in one shell, against a fresh
worker: what they print and write is what the README says, checked against what the
lines themselves put in (the purchaser is not sent to, the other member is)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def using_it_lines() -> str:
    """The first ``sh`` block of the README's "Using it" section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Using it\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README's Using it section has no sh block"
    return match.group(1)


def test_the_readme_lines_run_as_written_on_a_fresh_worker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    lines = using_it_lines()
    run = uuid.uuid4().hex[:10]
    # The send is materialized as its trigger arrives (the default waits until a minute
    # before its moment): the only setting the lines do not have.
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path / "worker",
        materialize_lead_seconds=3600,
    )
    try:
        worker = stack.worker()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")}
        env.update(stack.env())
        env["LEADSTREAM_WEB_PORT"] = str(worker.port)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        here = tmp_path / "user"
        here.mkdir()
        script = here / "using-it.sh"
        # Each line as written; -x shows which one failed.
        script.write_text("set -euxo pipefail\n" + lines)
        done = subprocess.run(
            ["bash", str(script)], cwd=here, env=env, capture_output=True, text=True, timeout=400
        )
        assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-2000:]
    finally:
        stack.close()

    purchaser, other = "+15551234567", "+15557654321"
    members = (here / "members.csv").read_text().split()
    assert members == ["phoneE164,externalId", f"{purchaser},a1", f"{other},a2"]
    [event] = [json.loads(line) for line in (here / "events.jsonl").read_text().splitlines()]
    assert (event["phoneE164"], event["eventType"]) == (purchaser, "mastery_purchase")
    # The send excluded mastery purchasers: the other member only.
    sent = (here / "day2.csv").read_text().splitlines()
    assert len(sent) == 2 and other in sent[1] and purchaser not in "".join(sent)
    out = done.stdout
    assert "mastery_purchase" in out  # the lead's stored event
    assert '"recipientCount": 1' in out or '"recipientCount":1' in out  # the preview
    assert '"step": "eventFilter"' in out or '"step":"eventFilter"' in out  # explain
    assert '"erased": true' in out or '"erased":true' in out
