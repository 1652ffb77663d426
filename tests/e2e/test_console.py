"""The send console in a real headless Chromium (the distribution's, never a downloaded
one), against a real worker on a real broker: sign-in refused with a wrong key and with
another organization's; a real send's funnel in the page equal to its summary record; a
preview built in the page equal to the API's answer to the same body; explain in the page
equal to the API's answer. Each page is photographed (``LEADSTREAM_SCREENSHOTS``: the
directory to write them to, e.g. docs/images; by default the test's temporary directory)."""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest
from playwright.sync_api import sync_playwright

from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ORG, OTHER = "42", "7"
LAUNCH, WARMUP = "launch", "warmup"
STEPS = (
    "optedOut",
    "droppedByAudienceFilter",
    "droppedByEventFilter",
    "droppedByFrequencyCap",
    "droppedByQuietHours",
    "heldOut",
)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_york(i: int) -> str:
    return f"+1212555{i:04d}"


def los_angeles(i: int) -> str:
    return f"+1310555{i:04d}"


@dataclass
class World:
    """What the test wrote, and the two real sends: ``warmup`` (no filters) and then
    ``launch``, which caps at one send a day, keeps out of quiet hours around New York's
    time, excludes purchasers, holds 20% out and splits the rest. The holdout's buckets are
    keyed by each partition's own random key: enough leads reach it (about 35) that some are
    held out whatever the keys."""

    stack: Stack
    worker: WorkerProcess
    t: datetime
    launch: list[str] = field(default_factory=list)
    warmup: list[str] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)
    purchasers: set[str] = field(default_factory=set)
    launch_body: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def key(self, org: str = ORG) -> str:
        return self.stack.api_key(org)

    def bearer(self, org: str = ORG) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(org)}"}


def quiet_window(t: datetime) -> dict[str, str]:
    """An hour on each side of New York's local time at ``t``: New York's leads are in
    quiet hours then, Los Angeles' (three hours behind) are not."""
    local = t.astimezone(ZoneInfo("America/New_York"))
    return {
        "start": (local - timedelta(hours=1)).strftime("%H:%M"),
        "end": (local + timedelta(hours=1)).strftime("%H:%M"),
    }


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path_factory.mktemp("console"),
        # Any send scheduled within two days materializes as its trigger arrives.
        materialize_lead_seconds=2 * 86_400,
    )
    try:
        worker = stack.worker()
        now = datetime.now(UTC).replace(microsecond=0)
        w = World(stack, worker, now + timedelta(minutes=30))
        rng = random.Random(5)
        w.launch = [new_york(i) for i in range(30)] + [los_angeles(i) for i in range(60)]
        w.warmup = rng.sample(w.launch, 20)
        events = []
        for phone in w.launch:
            if rng.random() < 0.12:
                w.opted_out.add(phone)
                events.append(("opted_out", phone, now - timedelta(days=2)))
            if rng.random() < 0.25:
                w.purchasers.add(phone)
                events.append(("purchase", phone, now - timedelta(days=3)))
        for campaign, phones in ((LAUNCH, w.launch), (WARMUP, w.warmup)):
            stack.members(
                ORG, campaign, [{"phoneE164": p, "externalId": f"crm-{p[-6:]}"} for p in phones]
            )
        stack.members(OTHER, LAUNCH, [{"phoneE164": los_angeles(900)}])
        stack.send_events(
            [
                {"organizationId": ORG, "eventType": typ, "phoneE164": p, "occurredAt": iso(at)}
                for typ, p, at in events
            ]
        )
        stack.wait_caught_up()
        warmup = {
            "organizationId": ORG,
            "campaignId": WARMUP,
            "sendId": "warmup-1",
            "scheduledFor": iso(w.t - timedelta(minutes=20)),
        }
        stack.trigger(**warmup)
        w.summaries["warmup-1"] = _summary(stack, "warmup-1")
        w.launch_body = {
            "organizationId": ORG,
            "campaignId": LAUNCH,
            "scheduledFor": iso(w.t),
            "eventFilters": [{"mode": "exclude", "eventType": "purchase"}],
            "frequencyCap": {"maxSends": 1, "withinHours": 24},
            "quietHours": quiet_window(w.t),
            "holdout": {"percent": 20},
            "splits": [{"name": "copy-a", "percent": 50}, {"name": "copy-b", "percent": 50}],
        }
        stack.trigger(**w.launch_body, sendId="launch-1")
        w.summaries["launch-1"] = _summary(stack, "launch-1")
        yield w
    finally:
        stack.close()


def _summary(stack: Stack, send: str) -> dict[str, Any]:
    result = stack.send_list(send, ORG)
    assert result.summary is not None, f"no summary for {send}"
    return dict(result.summary)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert shutil.which(CHROMIUM), "Chromium from the distribution's packages (apt: chromium)"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page of a fresh browser context (its own sessionStorage), failing the test on any
    script error or Content-Security-Policy violation the console causes."""
    context = browser.new_context(viewport={"width": 1180, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda err: errors.append(str(err)))
    opened.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("LEADSTREAM_SCREENSHOTS")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def open_console(page: Any, world: World) -> Any:
    response = page.goto(f"{world.worker.url}/console")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    page.wait_for_selector("body[data-console='ready']", state="attached")
    return response


def sign_in(page: Any, org: str, key: str) -> None:
    page.fill("#signin-org", org)
    page.fill("#signin-key", key)
    page.click("#signin-submit")


def signed_in(page: Any, world: World) -> None:
    open_console(page, world)
    sign_in(page, ORG, world.key())
    page.wait_for_selector("#app", state="visible")


def funnel_counts(page: Any, figure: str) -> dict[str, int]:
    """The counts a funnel draws, read from its bars' and caption's data attributes."""
    drawn = page.eval_on_selector_all(
        f"{figure} [data-count]",
        "nodes => nodes.map(n => [n.getAttribute('data-step'), n.getAttribute('data-count')])",
    )
    return {step: int(count) for step, count in drawn}


def as_funnel(counts: dict[str, int], recipients: int) -> dict[str, int]:
    return {**counts, "recipients": recipients}


# -- sign-in -------------------------------------------------------------------------------


@pytest.mark.parametrize("whose", ["wrong", "other organization's"])
def test_sign_in_is_refused_and_shows_no_data(world: World, page: Any, whose: str) -> None:
    key = "lsk_" + "x" * 43 if whose == "wrong" else world.key(OTHER)
    open_console(page, world)
    sign_in(page, ORG, key)
    refusal = page.wait_for_selector("#signin-error", state="visible")
    text = refusal.inner_text()
    assert text.startswith("Refused")
    assert ("another organization" in text) == (whose != "wrong"), text
    assert page.is_hidden("#app")
    assert page.eval_on_selector_all("#sends-list > *", "nodes => nodes.length") == 0
    body = page.inner_text("body")
    assert "launch-1" not in body and "warmup-1" not in body
    assert page.evaluate("() => sessionStorage.length") == 0
    # The page asked the API with that key and was refused: the same answer as an HTTP
    # client gets.
    answer = httpx.get(
        f"{world.worker.url}/api/v1/organizations/{ORG}/sends",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == (401 if whose == "wrong" else 403)


def test_a_key_is_kept_for_the_tab_only_and_sign_out_forgets_it(world: World, page: Any) -> None:
    signed_in(page, world)
    kept = json.loads(page.evaluate("() => sessionStorage.getItem('leadstream.console')"))
    assert kept == {"org": ORG, "key": world.key()}
    assert page.evaluate("() => localStorage.length") == 0
    page.reload()
    page.wait_for_selector("article[data-send-id='launch-1']")  # signed in again from the tab
    page.click("#sign-out")
    assert page.is_visible("#signin") and page.is_hidden("#app")
    assert page.evaluate("() => sessionStorage.length") == 0
    assert page.eval_on_selector_all("#sends-list > *", "nodes => nodes.length") == 0


# -- sends ---------------------------------------------------------------------------------


def test_the_sends_list_has_each_sends_summary_counts(world: World) -> None:
    """The route the page reads: every send with its summary's counts, latest first."""
    answer = httpx.get(
        f"{world.worker.url}/api/v1/organizations/{ORG}/sends",
        headers=world.bearer(),
        params={"limit": 5},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    sends = answer.json()["sends"]
    assert [s["sendId"] for s in sends] == ["launch-1", "warmup-1"]
    for listed in sends:
        summary = world.summaries[listed["sendId"]]
        assert listed["counts"] == summary["counts"]
        assert listed["recipientCount"] == summary["recipientCount"]
        assert listed.get("variants") == summary.get("variants")
        assert (listed["scheduledFor"], listed["campaignId"]) == (
            summary["scheduledFor"],
            summary["campaignId"],
        )
        assert listed["materializedAt"] == summary["materializedAt"]
        assert listed["complete"] and listed["partitionsDone"] == listed["partitions"] == 4
    one = httpx.get(
        f"{world.worker.url}/api/v1/organizations/{ORG}/sends?limit=1",
        headers=world.bearer(),
        timeout=10,
    )
    assert [s["sendId"] for s in one.json()["sends"]] == ["launch-1"]
    bad = httpx.get(
        f"{world.worker.url}/api/v1/organizations/{ORG}/sends?limit=101",
        headers=world.bearer(),
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_limit"
    other = httpx.get(
        f"{world.worker.url}/api/v1/organizations/{OTHER}/sends",
        headers=world.bearer(OTHER),
        timeout=10,
    )
    assert other.status_code == 200 and other.json()["sends"] == []


def test_the_launch_summary_is_what_the_test_computes(world: World) -> None:
    """The send whose funnel the page draws, against the test's own reckoning of every
    step but the holdout (a keyed hash): the funnel compared below is a real one."""
    counts = world.summaries["launch-1"]["counts"]
    members = world.launch
    kept = [p for p in members if p not in world.opted_out]
    buyers = [p for p in kept if p in world.purchasers]
    kept = [p for p in kept if p not in world.purchasers]
    warmed = set(world.warmup) - world.opted_out  # warmup-1 messaged them: capped now
    capped = [p for p in kept if p in warmed]
    kept = [p for p in kept if p not in warmed]
    quiet = [p for p in kept if p.startswith("+1212")]
    kept = [p for p in kept if not p.startswith("+1212")]
    assert counts["audience"] == len(members)
    assert counts["optedOut"] == len(world.opted_out)
    assert counts["droppedByEventFilter"] == len(buyers)
    assert counts["droppedByFrequencyCap"] == len(capped)
    assert counts["droppedByQuietHours"] == len(quiet)
    assert counts["heldOut"] + world.summaries["launch-1"]["recipientCount"] == len(kept)
    assert all(counts[step] > 0 for step in ("optedOut", "droppedByEventFilter")), counts
    assert counts["droppedByFrequencyCap"] > 0 and counts["droppedByQuietHours"] > 0, counts


def test_a_real_sends_funnel_in_the_page_is_its_summary(
    world: World, page: Any, shots: Path
) -> None:
    signed_in(page, world)
    card = "article[data-send-id='launch-1']"
    page.wait_for_selector(card)
    assert page.eval_on_selector_all(
        "article.send", "nodes => nodes.map(n => n.getAttribute('data-send-id'))"
    ) == ["launch-1", "warmup-1"]
    for send, summary in world.summaries.items():
        drawn = funnel_counts(page, f"article[data-send-id='{send}'] figure.funnel")
        assert drawn == as_funnel(summary["counts"], summary["recipientCount"]), send
        numbers = page.eval_on_selector_all(
            f"article[data-send-id='{send}'] text.count",
            "nodes => nodes.map(n => n.textContent.replace(/[^0-9]/g, ''))",
        )
        assert [int(n) for n in numbers] == [
            summary["counts"]["audience"],
            *(summary["counts"][step] for step in STEPS),
            summary["recipientCount"],
        ]
    page.screenshot(path=str(shots / "console-sends.png"), full_page=True)


# -- preview -------------------------------------------------------------------------------


def test_a_preview_built_in_the_page_is_the_apis_answer(
    world: World, page: Any, shots: Path
) -> None:
    signed_in(page, world)
    page.click("#tab-preview")
    window = quiet_window(world.t)
    filters = [{"mode": "exclude", "eventType": "purchase"}]
    splits = [{"name": "copy-a", "percent": 60}, {"name": "copy-b", "percent": 40}]
    page.fill("#pv-campaign", LAUNCH)
    page.fill("#pv-scheduled", iso(world.t))
    page.select_option("#pv-filter-kind", "eventFilters")
    page.fill("#pv-filters", json.dumps(filters))
    page.fill("#pv-cap-sends", "1")
    page.fill("#pv-cap-hours", "24")
    page.select_option("#pv-quiet", "window")
    page.fill("#pv-quiet-start", window["start"])
    page.fill("#pv-quiet-end", window["end"])
    page.fill("#pv-holdout", "10")
    page.fill("#pv-splits", json.dumps(splits))
    page.fill("#pv-sample", "12")
    page.click("#pv-submit")
    page.wait_for_selector("#preview-result", state="visible")

    # The same preview, asked of the API by the test, with the body written here.
    body = {
        "organizationId": ORG,
        "campaignId": LAUNCH,
        "scheduledFor": iso(world.t),
        "eventFilters": filters,
        "frequencyCap": {"maxSends": 1, "withinHours": 24},
        "quietHours": window,
        "holdout": {"percent": 10},
        "splits": splits,
        "sample": 12,
    }
    assert json.loads(page.text_content("#preview-request")) == body
    answer = httpx.post(
        f"{world.worker.url}/api/v1/sends/preview",
        content=msgspec.json.encode(body),
        headers={**world.bearer(), "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    expected = answer.json()
    assert funnel_counts(page, "#preview-funnel figure.funnel") == as_funnel(
        expected["counts"], expected["recipientCount"]
    )
    assert (
        int(page.get_attribute("#preview-recipients", "data-count")) == expected["recipientCount"]
    )
    sample = page.eval_on_selector_all(
        "#preview-sample tbody tr",
        """rows => rows.map(r => ({phoneE164: r.getAttribute('data-phone'),
            externalId: r.getAttribute('data-external-id'),
            variant: r.getAttribute('data-variant')}))""",
    )
    assert sample == [
        {
            "phoneE164": s["phoneE164"],
            "externalId": s.get("externalId"),
            "variant": s.get("variant"),
        }
        for s in expected["sample"]
    ]
    assert len(sample) == min(12, expected["recipientCount"]) and len(sample) > 0
    shown = page.text_content("#preview-variants")
    for name, count in expected["variants"].items():
        assert f"{name}: {count}" in shown
    page.screenshot(path=str(shots / "console-preview.png"), full_page=True)


def test_a_preview_the_api_refuses_shows_its_reason(world: World, page: Any) -> None:
    signed_in(page, world)
    page.click("#tab-preview")
    page.fill("#pv-campaign", LAUNCH)
    page.select_option("#pv-filter-kind", "conditions")
    page.fill("#pv-filters", json.dumps({"segment": "vip"}))
    page.click("#pv-submit")
    error = page.wait_for_selector("#preview-error", state="visible").inner_text()
    assert "invalid_conditions" in error and page.is_hidden("#preview-result")


# -- explain -------------------------------------------------------------------------------


def explain_api(world: World, phone: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{world.worker.url}/api/v1/sends/{ORG}/launch-1/leads/{phone}",
        headers=world.bearer(),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_explain_in_the_page_is_the_apis_answer(world: World, page: Any, shots: Path) -> None:
    answers = {phone: explain_api(world, phone) for phone in [*world.launch, los_angeles(999)]}
    by_step: dict[str, str] = {}
    for phone, answer in answers.items():
        by_step.setdefault(answer["step"], phone)
    # Every step the send has, and a phone it never saw.
    assert set(by_step) == {
        "notInAudience",
        "optedOut",
        "eventFilter",
        "frequencyCap",
        "quietHours",
        "heldOut",
        "recipient",
    }, set(by_step)
    signed_in(page, world)
    page.click("#tab-explain")
    for step, phone in by_step.items():
        page.fill("#ex-send", "launch-1")
        page.fill("#ex-phone", phone)
        page.click("#ex-submit")
        page.wait_for_selector(f"#explain-result[data-step='{step}']", state="visible")
        page.wait_for_function(
            "phone => document.getElementById('explain-raw').textContent.includes(phone)",
            arg=phone,
        )
        assert json.loads(page.text_content("#explain-raw")) == answers[phone], step
        assert (
            page.get_attribute("#explain-result", "data-sent") == str(step == "recipient").lower()
        )
        marked = page.eval_on_selector_all(
            "#explain-steps li.current", "nodes => nodes.map(n => n.getAttribute('data-step'))"
        )
        assert marked == ["audience" if step == "notInAudience" else step]
        shown = page.eval_on_selector_all(
            "#explain-detail tr", "rows => rows.map(r => r.getAttribute('data-key'))"
        )
        assert shown == [k for k in answers[phone]["detail"] if k != "message"]
    page.fill("#ex-phone", by_step["eventFilter"])
    page.click("#ex-submit")
    page.wait_for_selector("#explain-result[data-step='eventFilter']", state="visible")
    page.screenshot(path=str(shots / "console-explain.png"), full_page=True)
    page.fill("#ex-send", "no-such-send")
    page.click("#ex-submit")
    error = page.wait_for_selector("#explain-error", state="visible").inner_text()
    assert "unknown_send" in error and page.is_hidden("#explain-result")


def test_api_strings_are_shown_as_text_never_as_markup(world: World, page: Any) -> None:
    """An externalId is the tenant's own string: one that is markup is shown as written."""
    hostile = '<img src=x onerror="document.body.dataset.owned=1">'
    world.stack.members(ORG, "hostile", [{"phoneE164": los_angeles(500), "externalId": hostile}])
    world.stack.wait_caught_up()
    signed_in(page, world)
    page.click("#tab-preview")
    page.fill("#pv-campaign", "hostile")
    page.select_option("#pv-filter-kind", "none")
    page.fill("#pv-sample", "5")
    page.click("#pv-submit")
    page.wait_for_selector("#preview-sample tbody tr")
    assert page.text_content("#preview-sample tbody tr td:nth-child(2)") == hostile
    assert page.eval_on_selector_all("#preview-result img", "nodes => nodes.length") == 0
    assert page.get_attribute("body", "data-owned") is None
