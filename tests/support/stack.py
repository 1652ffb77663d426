"""A test's own leadstream deployment: settings, topics, worker processes, checks."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, TopicPartition

from leadstream.client.recipients import SendList, read_send
from leadstream.domain.auth import ApiKey, hash_api_key, new_api_key, new_key, with_key
from leadstream.domain.normalize import normalize_organization_id
from leadstream.kafka.admin import ensure_topics
from leadstream.kafka.config import KafkaConnection
from leadstream.settings import Settings
from leadstream.streams.router import routed_topics, router_group
from leadstream.web.keys import load_auth, save_auth
from tests.support.kafka import client_config, end_offsets, produce, read_topic
from tests.support.worker import WorkerProcess


class Stack:
    def __init__(
        self,
        bootstrap: str,
        *,
        app_id: str,
        topic_prefix: str,
        root: Path,
        partitions: int = 4,
        **overrides: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # Every worker of the stack reads one auth file (a worker's own data dir would
        # otherwise hold its own): the test's, or one made here.
        overrides.setdefault("auth_file", root / "auth.json")
        # Workers of one stack ask each other for preview shares, signed with the
        # cluster's secret; cluster_secret=None runs them without one.
        overrides.setdefault("cluster_secret", secrets.token_hex(16))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        self.overrides = overrides
        self._keys: dict[str, str] = {}
        self._signing: dict[str, tuple[str, str]] = {}
        self.settings = Settings(
            kafka_bootstrap=bootstrap,
            app_id=app_id,
            topic_prefix=topic_prefix,
            partitions=partitions,
            data_dir=root / "data",
            **overrides,
        )
        self.topics = self.settings.topics
        # How the test's own clients connect: as the workers do.
        self.kafka = KafkaConnection.of(self.settings)
        self.workers: list[WorkerProcess] = []
        ensure_topics(self.settings)

    def env(self, data_dir: Path | None = None) -> dict[str, str]:
        s = self.settings
        return {
            "LEADSTREAM_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "LEADSTREAM_APP_ID": s.app_id,
            "LEADSTREAM_TOPIC_PREFIX": s.topic_prefix,
            "LEADSTREAM_PARTITIONS": str(s.partitions),
            "LEADSTREAM_DATA_DIR": str(data_dir or s.data_dir),
            **{f"LEADSTREAM_{k.upper()}": str(v) for k, v in self.overrides.items()},
        }

    def api_key(self, org: Any) -> str:
        """An API key of ``org`` in the stack's auth file (made on first use); workers
        pick up the file's changes by themselves."""
        canonical = normalize_organization_id(org)
        if canonical not in self._keys:
            key = new_api_key()
            path = self.settings.auth_path
            record = ApiKey(f"ak_test_{canonical}", hash_api_key(key), "test")
            save_auth(path, with_key(load_auth(path), canonical, record))
            self._keys[canonical] = key
        return self._keys[canonical]

    def signing_key(self, org: Any) -> tuple[str, str]:
        """``(key id, secret)`` of a signing key of ``org`` in the stack's auth file (made
        on first use)."""
        canonical = normalize_organization_id(org)
        if canonical not in self._signing:
            path = self.settings.auth_path
            record, secret = new_key("signing", "test")
            save_auth(path, with_key(load_auth(path), canonical, record))
            self._signing[canonical] = (record.id, secret)
        return self._signing[canonical]

    def worker(
        self,
        *,
        name: str = "w",
        data_dir: Path | None = None,
        wait: bool = True,
        port: int | None = None,
        log_through_pipe: bool = False,
        env: dict[str, str | None] | None = None,
    ) -> WorkerProcess:
        """A worker process; ``port`` to start one again where an earlier one served (as a
        restarted deployment does: the same address keeps its static group membership);
        ``env``: variables of this worker only (None: unset)."""
        own = self.env(data_dir)
        for key, value in (env or {}).items():
            if value is None:
                own.pop(key, None)
            else:
                own[key] = value
        w = WorkerProcess(
            own, self.root / f"{name}.log", api_key=self.api_key, log_through_pipe=log_through_pipe
        )
        if port is not None:
            w.port = port
        self.workers.append(w)
        return w.start(wait=wait)

    def close(self) -> None:
        for w in self.workers:
            w.stop()

    # -- input ---------------------------------------------------------------------------
    def send_events(self, values: list[Any]) -> None:
        produce(
            self.kafka,
            self.topics.lead_events,
            [v if isinstance(v, bytes) else msgspec.json.encode(v) for v in values],
        )

    def send(self, topic: str, values: list[Any]) -> None:
        produce(
            self.kafka,
            topic,
            [v if isinstance(v, bytes) else msgspec.json.encode(v) for v in values],
        )

    def members(self, org: Any, campaign: Any, members: list[dict[str, Any]]) -> None:
        """Publish audience members as batch messages of up to 50,000."""
        self.send(
            self.topics.audience_members,
            [
                {"organizationId": org, "campaignId": campaign, "members": members[i : i + 50_000]}
                for i in range(0, len(members), 50_000)
            ],
        )

    def trigger(self, **trigger: Any) -> None:
        self.send(self.topics.send_triggers, [trigger])

    def send_list(self, send_id: str, org: Any, timeout: float = 120.0) -> SendList:
        return read_send(
            self.kafka,
            self.topics.send_recipients,
            str(send_id),
            organization_id=str(org),
            timeout=timeout,
        )

    def send_values(self, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
        """Every committed (key, value) on send-recipients so far."""
        msgs = read_topic(self.kafka, self.topics.send_recipients, timeout=timeout)
        return [(m.key().decode(), msgspec.json.decode(m.value())) for m in msgs]

    # -- observation ---------------------------------------------------------------------
    def rejects(self, expect: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        msgs = read_topic(self.kafka, self.topics.rejects, expect=expect, timeout=timeout)
        return [msgspec.json.decode(m.value()) for m in msgs]

    def committed_lag(self) -> int:
        """Messages of the input and lead-keyed topics not yet committed by the worker group."""
        return sum(self.lagging().values())

    def lagging(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> messages not yet committed, for the partitions that lag."""
        behind: dict[tuple[str, int], int] = {}
        # The input topics have a consumer group of their own (streams/router.py).
        t = self.topics
        for group, topic in (
            *((router_group(self.settings), topic) for topic in routed_topics(self.settings)),
            (self.settings.app_id, t.by_lead),
        ):
            ends = end_offsets(self.kafka, topic)
            if not ends:
                continue
            c = Consumer({**client_config(self.kafka), "group.id": group})
            try:
                committed = c.committed([TopicPartition(topic, p) for p in ends], timeout=10)
            finally:
                c.close()
            for tp in committed:
                lag = ends[tp.partition] - (tp.offset if tp.offset >= 0 else 0)
                if lag:
                    behind[(topic, tp.partition)] = lag
        return behind

    def wait_caught_up(self, timeout: float = 180.0) -> None:
        """Until the worker group has committed everything produced so far (twice in a row,
        since applying the lead-keyed topic produces more of it)."""
        deadline = time.monotonic() + timeout
        zero_seen = 0
        while time.monotonic() < deadline:
            if self.committed_lag() == 0:
                zero_seen += 1
                if zero_seen >= 2:
                    return
            else:
                zero_seen = 0
            time.sleep(1.0)
        raise TimeoutError(f"the worker still lags (topic, partition: messages): {self.lagging()}")
