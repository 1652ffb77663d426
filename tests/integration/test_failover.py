"""Two workers: kill-and-trigger cycles with input in flight (the killed worker's
partitions fail over to the other's standby copies, then it comes back), and a planned
rolling restart (SIGTERM one worker at a time). Every send comes out exactly once and equal to the
reference computed here from the input."""

from __future__ import annotations

import re
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import NewPartitions

from leadstream.streams.router import router_group
from tests.support.kafka import client_config, producer
from tests.support.reference import iso, seed
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG = "fo"
PARTITIONS = 8
# The broker's lowest allowed session timeout (group.min.session.timeout.ms): the time a
# worker that stopped heartbeating keeps its partitions.
SESSION_SECONDS = 6
EXCLUDE_PURCHASE = {"eventFilter": {"mode": "exclude", "eventType": "purchase"}}
# Kill-and-trigger cycles. Unfixed, the losses this guards against came in 5 and 7 of 12
# cycles: at one cycle in two, 8 cycles miss them with probability (1/2)^8 = 0.4 %.
CYCLES = 8
# send-triggers gets more partitions than the other topics: each cycle publishes two
# triggers on partitions of the killed worker that no trigger used before (see the test);
# every other trigger goes to the first PARTITIONS.
TRIGGER_PARTITIONS = 64


def make_stack(bootstrap: str, root: Path, **overrides: Any) -> Stack:
    run = uuid.uuid4().hex[:10]
    return Stack(
        bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=root,
        partitions=PARTITIONS,
        session_timeout_seconds=SESSION_SECONDS,
        **overrides,
    )


def served(worker: WorkerProcess) -> list[int]:
    """The partitions a worker answers sends for (its /readyz; none while not ready)."""
    try:
        answer = httpx.get(worker.url + "/readyz", timeout=2)
    except httpx.HTTPError:
        return []
    return list(answer.json().get("partitions", [])) if answer.status_code == 200 else []


def wait_split(a: WorkerProcess, b: WorkerProcess, timeout: float = 120) -> None:
    """Until the two workers serve every partition between them, each some."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pa, pb = served(a), served(b)
        if pa and pb and sorted(pa + pb) == list(range(PARTITIONS)):
            return
        time.sleep(0.2)
    raise TimeoutError(f"partitions never split: a {served(a)}, b {served(b)}")


def table_copies(data_dir: Path) -> set[int]:
    """Partitions of the lead table that have a RocksDB directory under ``data_dir``."""
    return {
        int(p.name.removesuffix(".db").rsplit("-", 1)[1])
        for p in data_dir.rglob("*leads-*.db")
        if p.is_dir()
    }


def expected_phones(facts: dict[str, set[str]]) -> set[str]:
    return facts["all"] - facts["opted_out"] - facts["purchase"]


def check_exactly_once(
    stack: Stack, sends: list[str], facts: dict[str, set[str]]
) -> list[dict[str, Any]]:
    """Each send's list equals the reference, no recipient twice, one summary each."""
    summaries = [check_list(stack, send, facts) for send in sends]
    # Everything committed on the output, read once.
    values = stack.send_values()
    for send in sends:
        kinds = [v["type"] for k, v in values if k == f"{ORG}:{send}"]
        assert kinds.count("summary") == 1, f"{send}: {kinds.count('summary')} summaries"
    return summaries


def check_list(stack: Stack, send: str, facts: dict[str, set[str]]) -> dict[str, Any]:
    result = stack.send_list(send, ORG, timeout=240)
    assert result.summary is not None, f"{send}: no summary"
    phones = [r["phoneE164"] for r in result.recipients]
    assert len(phones) == len(set(phones)), f"{send}: a recipient was delivered twice"
    assert set(phones) == expected_phones(facts), send
    assert result.summary["recipientCount"] == len(phones)
    assert result.summary["partitions"] == PARTITIONS
    return dict(result.summary)


def two_workers(
    stack: Stack, root: Path, leads: int, seed_: int
) -> tuple[WorkerProcess, WorkerProcess, dict[str, set[str]]]:
    """Workers a and b, each on its own data dir, holding ``leads`` seeded leads between
    them; the facts of the seed (tests/support/reference.py)."""
    a = stack.worker(name="a", data_dir=root / "a")
    b = stack.worker(name="b", data_dir=root / "b")
    facts = seed(stack, leads, seed=seed_, org=ORG)
    stack.wait_caught_up(timeout=300)
    wait_split(a, b)
    return a, b, facts


def test_rolling_restart_of_two_workers_leaves_no_send_late_and_none_doubled(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    lead = 30
    stack = make_stack(kafka_bootstrap, tmp_path, materialize_lead_seconds=lead)
    try:
        a, b, facts = two_workers(stack, tmp_path, 10_000, 19)
        # Sends whose materialization (scheduledFor - lead) falls every 3 s across the
        # restarts; each must come out before its moment, once.
        start = datetime.now(UTC) + timedelta(seconds=lead + 2)
        sends = [f"roll-{i}" for i in range(12)]
        for i, send in enumerate(sends):
            stack.trigger(
                organizationId=ORG,
                campaignId="camp",
                sendId=send,
                scheduledFor=iso(start + timedelta(seconds=3 * i)),
                **EXCLUDE_PURCHASE,
            )
        for name in ("a", "b"):
            worker = a if name == "a" else b
            stopped = time.monotonic()
            worker.stop()  # SIGTERM, as a rollout does
            restarted = stack.worker(
                name=f"{name}-again", data_dir=tmp_path / name, port=worker.port
            )
            if name == "a":
                a = restarted
            else:
                b = restarted
            wait_split(a, b)
            print(f"rolling restart: {name} stopped and back in {time.monotonic() - stopped:.1f} s")
        for send, summary in zip(sends, check_exactly_once(stack, sends, facts), strict=True):
            assert summary["late"] is False, f"{send} was late: {summary}"
    finally:
        stack.close()


def test_kill_and_trigger_cycles_lose_no_send_and_no_event(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Eight cycles (CYCLES) of: a trigger; SIGKILL of worker b; a trigger on each of two
    send-triggers partitions of b that never held a record; the survivor a taking every
    partition; a second trigger on each of those two partitions, now a's (which would
    commit past a first one it lost); b restarted on its data dir, the same static member,
    rejoining. All along, a lead's click event every quarter second and a trigger every
    second. Every send is compared with the reference; a last send, excluding the clicked
    leads, shows whether a click event was lost.

    Sends used to be lost here (streams/rebalance.py): faust dropped what a rebalance
    fetched for partitions it had paused, then sought them back to their committed
    offsets, which left a partition without one past the dropped records; and it threw
    away what it fetched right after that seek. Unfixed, two runs lost 12 and 16 sends,
    in 5 and 7 of their 12 cycles. The cycle is kept short (about 12 s): 2,000 leads, the
    broker's lowest session timeout, b back on its own state."""
    stack = make_stack(kafka_bootstrap, tmp_path, materialize_lead_seconds=60)
    try:
        admin = stack.kafka.admin()
        grown = admin.create_partitions(
            [NewPartitions(stack.topics.send_triggers, TRIGGER_PARTITIONS)]
        )
        grown[stack.topics.send_triggers].result(30)
        a, b, facts = two_workers(stack, tmp_path, 2_000, 23)
        everyone = expected_phones(facts)
        # The standby copies: the survivor holds b's partitions of the table already.
        deadline = time.monotonic() + 60
        while not set(served(b)) <= table_copies(tmp_path / "a"):
            assert time.monotonic() < deadline, f"no standby copy of {served(b)} on a"
            time.sleep(0.5)
        failovers: list[float] = []
        sends: list[str] = []
        clicked: list[str] = []
        used: set[int] = set()
        started = time.monotonic()
        before_cycles = len(a.log_path.read_text())
        for cycle in range(CYCLES):
            # b's input router rejoins its group on its own time: wait for its share.
            deadline = time.monotonic() + 60
            while True:
                unused = trigger_partitions(stack, tmp_path / "b") - used - set(range(PARTITIONS))
                fresh = sorted(unused)[:2]
                if len(fresh) == 2:
                    break
                assert time.monotonic() < deadline, f"cycle {cycle}: b owns no unused partitions"
                time.sleep(0.3)
            used.update(fresh)
            with Traffic(stack, f"c{cycle}", sorted(everyone)[len(clicked) :]) as traffic:
                traffic.trigger()  # its owner may be killed while routing it
                b.kill()
                killed = time.monotonic()
                for partition in fresh:
                    traffic.trigger(partition)
                while sorted(served(a)) != list(range(PARTITIONS)):
                    assert time.monotonic() < killed + 120, f"a serves only {served(a)}"
                    time.sleep(0.1)
                failovers.append(time.monotonic() - killed)
                for partition in fresh:
                    traffic.trigger(partition)
                b = stack.worker(name=f"b{cycle}", data_dir=tmp_path / "b", port=b.port)
                wait_split(a, b)
            sends += traffic.sends
            clicked += traffic.clicked
        print(
            f"{CYCLES} kill-and-trigger cycles in {time.monotonic() - started:.0f} s; every"
            f" partition served by the survivor {statistics.median(failovers):.1f} s after the"
            f" SIGKILL (median; longest {max(failovers):.1f} s)"
        )
        # The survivor took b's partitions over from its standby copies: their indexes
        # came with them (read back), built from the keys only where b died between a
        # write's keys and its index records reaching the changelog.
        takeovers = a.log_path.read_text()[before_cycles:]
        read_back = re.findall(r"partition \d+ index read back in ([\d.]+) s", takeovers)
        built = re.findall(r"partition \d+ index built from its keys in ([\d.]+) s", takeovers)
        print(f"takeovers: {len(read_back)} indexes read back, {len(built)} built")
        assert len(read_back) >= CYCLES and len(read_back) > 4 * len(built), a.tail()

        wait_events_applied(stack, timeout=180)
        final = "after-the-cycles"
        stack.trigger(
            organizationId=ORG,
            campaignId="camp",
            sendId=final,
            scheduledFor=iso(datetime.now(UTC) + timedelta(seconds=2)),
            eventFilters=[
                {"mode": "exclude", "eventType": "purchase"},
                {"mode": "exclude", "eventType": "clicked"},
            ],
        )
        outputs = read_outputs(stack, [*sends, final], timeout=180)
        lost = [send for send in sends if not outputs[send].summaries]
        unclicked = set(outputs[final].phones) & set(clicked)
        print(
            f"{len(sends)} sends, {len(lost)} never came out {lost};"
            f" {len(clicked)} clicks, {len(unclicked)} clicked leads still sent to"
        )
        assert not lost, f"{len(lost)} of {len(sends)} sends never came out: {lost}"
        for send in sends:
            outputs[send].check(send, everyone)
        outputs[final].check(final, everyone - set(clicked))
    finally:
        stack.close()


def wait_events_applied(stack: Stack, timeout: float) -> None:
    """Until the group has committed all input but the triggers (what became of those is
    read on send-recipients; a lost one would lag here for ever), twice in a row."""
    deadline = time.monotonic() + timeout
    caught_up = 0
    while caught_up < 2:
        behind = {tp: n for tp, n in stack.lagging().items() if tp[0] != stack.topics.send_triggers}
        caught_up = 0 if behind else caught_up + 1
        assert time.monotonic() < deadline, f"still behind (topic, partition: messages): {behind}"
        time.sleep(1.0)


def trigger_partitions(stack: Stack, data_dir: Path) -> set[int]:
    """The send-triggers partitions assigned to the worker of ``data_dir``, in the input
    router's group (its static member id starts with the instance id kept there)."""
    instance = (data_dir / "instance-id").read_text().strip()
    admin = stack.kafka.admin()
    name = router_group(stack.settings)
    group = admin.describe_consumer_groups([name])[name]
    members = group.result(30).members
    return {
        tp.partition
        for member in members
        if (member.group_instance_id or "").startswith(instance)
        for tp in member.assignment.topic_partitions
        if tp.topic == stack.topics.send_triggers
    }


class Traffic:
    """Input published while a failover happens, from a thread: a click event of the next
    of ``leads`` every quarter second, and a trigger every second; each trigger is a send
    of its own (``sends``), excluding purchasers."""

    def __init__(self, stack: Stack, prefix: str, leads: list[str]) -> None:
        self._stack, self._prefix, self._leads = stack, prefix, leads
        self.sends: list[str] = []
        self.clicked: list[str] = []
        self._producer = producer(stack.kafka)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def trigger(self, partition: int | None = None) -> None:
        """Publish a trigger to ``partition``, else to one of the first PARTITIONS."""
        with self._lock:
            send = f"{self._prefix}-{len(self.sends)}"
            self.sends.append(send)
            value = {
                "organizationId": ORG,
                "campaignId": "camp",
                "sendId": send,
                "scheduledFor": iso(datetime.now(UTC) + timedelta(seconds=2)),
                **EXCLUDE_PURCHASE,
            }
            if partition is None:
                partition = len(self.sends) % PARTITIONS
            self._producer.produce(
                self._stack.topics.send_triggers, msgspec.json.encode(value), partition=partition
            )
            assert self._producer.flush(30) == 0

    def _click(self) -> None:
        with self._lock:
            if len(self.clicked) == len(self._leads):
                return
            phone = self._leads[len(self.clicked)]
            self.clicked.append(phone)
            event = {
                "phoneE164": phone,
                "eventType": "clicked",
                "occurredAt": iso(datetime.now(UTC) - timedelta(minutes=1)),
            }
            value = msgspec.json.encode({"organizationId": ORG, "events": [event]})
            self._producer.produce(self._stack.topics.lead_events, value)
            assert self._producer.flush(30) == 0

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.25):
            self._click()
            ticks += 1
            if ticks % 4 == 0:
                self.trigger()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


class Output:
    """What send-recipients holds for one send: its recipients and its summaries."""

    def __init__(self) -> None:
        self.phones: list[str] = []
        self.summaries: list[dict[str, Any]] = []

    def check(self, send: str, expected: set[str]) -> None:
        assert len(self.summaries) == 1, f"{send}: {len(self.summaries)} summaries"
        assert len(self.phones) == len(set(self.phones)), f"{send}: a recipient twice"
        assert set(self.phones) == expected, (
            f"{send}: {len(set(self.phones) - expected)} recipients too many,"
            f" {len(expected - set(self.phones))} missing"
        )
        [summary] = self.summaries
        assert summary["recipientCount"] == len(self.phones)
        assert summary["partitions"] == PARTITIONS


def read_outputs(stack: Stack, sends: list[str], timeout: float) -> dict[str, Output]:
    """Every committed record of ``sends`` on send-recipients: read until each has its
    summary (a liveness bound of ``timeout`` s), then to the end of the topic."""
    outputs = {send: Output() for send in sends}
    consumer = Consumer(
        {
            **client_config(stack.kafka),
            "group.id": f"leadstream-tests-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    topic = stack.topics.send_recipients
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    complete = False
    try:
        while time.monotonic() < deadline:
            if not complete and all(o.summaries for o in outputs.values()):
                # Then on to the end: a record doubled by a rebalance would be there.
                complete, deadline = True, time.monotonic() + 3
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            if complete:
                deadline = time.monotonic() + 3
            _org, _, send = (msg.key() or b"").decode().partition(":")
            if send not in outputs:
                continue
            value = msgspec.json.decode(msg.value())
            if value["type"] == "summary":
                outputs[send].summaries.append(value)
            else:
                outputs[send].phones.extend(r["phoneE164"] for r in value["recipients"])
    finally:
        consumer.close()
    return outputs
