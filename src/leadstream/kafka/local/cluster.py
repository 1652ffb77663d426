"""A real Apache Kafka (KRaft) on this machine, for development and tests: one node, or
three that replicate each other; plaintext, or secured as a production cluster is.

The broker jars come from Maven Central through ``mvn`` (distribution.py) and are cached per
version, so the only host requirements are Java 17+ and Maven. No Docker.

Typical use::

    kafka = LocalKafka(Path(".kafka"), bootstrap="localhost:9092")
    kafka.start()      # idempotent; returns once clients can produce
    ...
    kafka.stop()       # idempotent

Ports: node ``i`` (from 0) takes ``port + 3i`` for its clients, ``port + 3i + 1`` for the
controller quorum and, when secured, ``port + 3i + 2`` for mutual TLS. A secured cluster's
client listener speaks SASL_SSL (SCRAM-SHA-256/512 and PLAIN) and is also the one brokers
replicate over; the certificates, users and client properties files are in
``home/secure`` (secure.py).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from pathlib import Path

from leadstream.kafka.local.distribution import (
    KAFKA_VERSION,
    LocalKafkaError,
    default_cache_dir,
    ensure_distribution,
    file_lock,
    find_java,
)
from leadstream.kafka.local.node import BrokerNode, KafkaStatus, format_host
from leadstream.kafka.local.secure import BROKER_USER, SecureMaterial

__all__ = ["LocalKafka", "server_properties"]

logger = logging.getLogger(__name__)

_PORTS_PER_NODE = 3


def _parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[addr]:port``) and validate the port range."""
    host, sep, port_text = bootstrap.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"bootstrap must look like 'host:port', got {bootstrap!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    # The controller listener takes port + 1, so that must be valid too.
    if not 0 < port < 65535:
        raise ValueError(f"bootstrap port must be in 1..65534, got {port}")
    return host, port


def _new_cluster_id() -> str:
    """Return a random cluster id in Kafka's ``Uuid`` text form (22 url-safe base64 chars)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Kafka's own generator rejects ids starting with '-' because CLI parsers would
        # take them for options.
        if not text.startswith("-"):
            return text


def _read_layout(home: Path) -> tuple[int, bool]:
    """(brokers, secured) of the cluster of ``home``; a home from before layouts were
    recorded is one plaintext broker."""
    try:
        found = json.loads((home / "layout.json").read_text())
    except FileNotFoundError:
        return 1, False
    return int(found["brokers"]), bool(found["secure"])


def server_properties(
    node: BrokerNode,
    nodes: list[BrokerNode],
    secure: SecureMaterial | None = None,
    *,
    acls: bool = False,
) -> dict[str, str]:
    """Broker settings of ``node`` in the cluster ``nodes`` (each a broker and a voter);
    with ``acls`` (secured only), every client request is checked against Kafka ACLs."""
    host = format_host(node.host)
    replicas = min(3, len(nodes))
    # With three copies, a write is acknowledged once two have it: one node can go.
    min_isr = "2" if replicas >= 3 else "1"
    voters = ",".join(f"{n.node_id}@{format_host(n.host)}:{n.ports['controller']}" for n in nodes)
    controller = f"CONTROLLER://{host}:{node.ports['controller']}"
    if secure is None:
        client = f"PLAINTEXT://{host}:{node.ports['client']}"
        listeners = {
            "listeners": f"{client},{controller}",
            "advertised.listeners": client,
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        }
    else:
        sasl = f"SASL_SSL://{host}:{node.ports['client']}"
        mtls = f"MTLS://{host}:{node.ports['mtls']}"
        listeners = {
            "listeners": f"{sasl},{mtls},{controller}",
            "advertised.listeners": f"{sasl},{mtls}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL",
            **secure.server_properties(node.node_id),
        }
        if acls:
            listeners |= _authorizer()
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        # A static voter set rather than the dynamic quorum (--standalone): valid for 3.9
        # and 4.x alike, and it keeps working if the port of an existing home changes,
        # since voters are read from this file.
        "controller.quorum.voters": voters,
        "controller.listener.names": "CONTROLLER",
        **listeners,
        "log.dirs": str(node.data_dir),
        "num.partitions": "8",
        "default.replication.factor": str(replicas),
        "auto.create.topics.enable": "true",
        "min.insync.replicas": min_isr,
        # Internal topics default to RF 3; a single node needs 1 or group coordination and
        # transactions never become available.
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
        # Fewer internal partitions than the defaults (50) make the first consumer group /
        # transactional producer come up noticeably faster.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        # Tests join groups constantly; the default 3 s delay is pure waiting.
        "group.initial.rebalance.delay.ms": "0",
    }


def _authorizer() -> dict[str, str]:
    """Kafka's ACL authorizer, with the users that act for the cluster itself."""
    return {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # The brokers' own user, and the principal of the plaintext controller listener on
        # loopback (brokers and controllers talk there). Every client needs ACLs.
        "super.users": f"User:{BROKER_USER};User:ANONYMOUS",
    }


class LocalKafka:
    """A local KRaft cluster living under ``home``: one node (its files directly in
    ``home``) or several (``home/node-1``...), each a combined broker and controller."""

    def __init__(
        self,
        home: Path,
        bootstrap: str = "localhost:9092",
        cache_dir: Path | None = None,
        *,
        brokers: int = 1,
        secure: bool = False,
        acls: bool = False,
    ) -> None:
        """Describe a cluster; nothing is started or downloaded here.

        Args:
            home: Directory holding the nodes' data, logs, config and pid files.
            bootstrap: ``host:port`` of the first node's client listener; the other ports
                follow from it (module docstring).
            cache_dir: Where the Kafka jars are cached, shared between homes;
                defaults to ``~/.cache/leadstream/kafka-<version>``.
            brokers: How many nodes (1 to 9).
            secure: Clients connect with SASL_SSL, or with mutual TLS on the node's
                third port; no plaintext listener for clients.
            acls: With ``secure``: Kafka's ACL authorizer (StandardAuthorizer) checks
                every client request; only the brokers' own user is a super user.
        """
        if not 1 <= brokers <= 9:
            raise ValueError(f"brokers must be 1 to 9, got {brokers}")
        if acls and not secure:
            raise ValueError("acls need secure: on plaintext every client is User:ANONYMOUS")
        self.acls = acls
        self.home = Path(home).expanduser().absolute()
        self.host, port = _parse_bootstrap(bootstrap)
        if port + _PORTS_PER_NODE * brokers > 65536:
            raise ValueError(f"not enough ports above {port} for {brokers} brokers")
        self.cache_dir = (
            Path(cache_dir).expanduser().absolute()
            if cache_dir is not None
            else default_cache_dir()
        )
        self.secure = SecureMaterial(self.home / "secure") if secure else None
        self.nodes = [
            BrokerNode(
                self.home if brokers == 1 else self.home / f"node-{i + 1}",
                i + 1,
                self.host,
                self._ports(port + _PORTS_PER_NODE * i),
            )
            for i in range(brokers)
        ]
        self.bootstrap = ",".join(n.bootstrap for n in self.nodes)
        self._lock_path = self.home / ".localkafka.lock"

    @classmethod
    def existing(cls, home: Path, bootstrap: str, cache_dir: Path | None = None) -> LocalKafka:
        """The cluster of ``home`` as it was started (one plaintext node if never)."""
        brokers, secure = _read_layout(Path(home).expanduser().absolute())
        return cls(home, bootstrap, cache_dir, brokers=brokers, secure=secure)

    def _ports(self, base: int) -> dict[str, int]:
        ports = {"client": base, "controller": base + 1}
        if self.secure is not None:
            ports["mtls"] = base + 2
        return ports

    @property
    def mtls_bootstrap(self) -> str:
        """Where clients with a certificate connect (a secured cluster only)."""
        return ",".join(f"{format_host(n.host)}:{n.ports['mtls']}" for n in self.nodes)

    @property
    def log_path(self) -> Path:
        return self.nodes[0].log_path

    def __repr__(self) -> str:
        return f"LocalKafka(home={str(self.home)!r}, bootstrap={self.bootstrap!r})"

    def status(self) -> KafkaStatus:
        """Whether every node's process is alive and serving clients."""
        nodes = tuple(n.status() for n in self.nodes)
        return KafkaStatus(
            running=all(s.running for s in nodes),
            pid=nodes[0].pid,
            bootstrap=self.bootstrap,
            log_path=self.log_path,
            version=KAFKA_VERSION,
            nodes=nodes if len(nodes) > 1 else (),
        )

    def start(self, timeout: float = 120.0) -> KafkaStatus:
        """Start the nodes that do not run, and wait until clients can produce.

        Idempotent. On first use this fetches the jars (not counted in ``timeout``) and
        formats the nodes' storage (with the SCRAM users when secured); later starts
        reuse the existing data. All nodes are launched before any is waited for: a
        node becomes ready only once a majority of the quorum runs.

        Raises:
            LocalKafkaError: if a port is taken by something else, a node exits, or it is
                not ready within ``timeout`` seconds. The message carries the last lines
                of the node's log.
        """
        with file_lock(self._lock_path):
            self._keep_layout()
            libs = ensure_distribution(self.cache_dir)
            deadline = time.monotonic() + timeout
            waiting: list[tuple[BrokerNode, int, int | None]] = []
            for node in self.nodes:
                current = node.status()
                if current.running:
                    continue
                if current.pid is not None:
                    # Alive but not yet answering (a start by a process that died before
                    # readiness): wait for it instead of spawning a second one.
                    waiting.append((node, current.pid, None))
                    continue
                node.refuse_busy_ports()
                self._prepare(node, libs)
                spawned, log_at = node.spawn(find_java(), libs)
                waiting.append((node, spawned, log_at))
            try:
                for node, pid, offset in waiting:
                    node.wait_ready(pid, log_offset=offset, deadline=deadline)
            except BaseException:
                # Never leave a half-started node behind holding its data dir.
                for node, started, offset in waiting:
                    if offset is not None:
                        node.terminate(started, timeout=15.0)
                        node.pid_path.unlink(missing_ok=True)
                raise
            if waiting:
                logger.info("Kafka ready on %s", self.bootstrap)
            return self.status()

    def _prepare(self, node: BrokerNode, libs: Path) -> None:
        """Write the node's config; make its TLS material and format it on first use."""
        if self.secure is not None:
            self.secure.ensure(self.host, [n.node_id for n in self.nodes])
            self.secure.write_client_properties(self.bootstrap, self.mtls_bootstrap)
        node.home.mkdir(parents=True, exist_ok=True)
        node.write_config(server_properties(node, self.nodes, self.secure, acls=self.acls))
        if not node.formatted():
            scram = self.secure.scram_arguments() if self.secure is not None else []
            node.format(find_java(), libs, self._cluster_id(), scram)

    def _keep_layout(self) -> None:
        """Record the layout on first start; refuse another one on an existing home."""
        layout = (len(self.nodes), self.secure is not None)
        path = self.home / "layout.json"
        found = _read_layout(self.home)
        if found != layout and (path.is_file() or any(n.formatted() for n in self.nodes)):
            raise LocalKafkaError(
                f"{self.home} holds a cluster of {found[0]} broker(s), "
                f"{'secured' if found[1] else 'plaintext'}; stop it and use another "
                "directory for another layout"
            )
        if not path.is_file():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"brokers": layout[0], "secure": layout[1]}) + "\n")

    def _cluster_id(self) -> str:
        """The id every node of this home is formatted with (made once)."""
        path = self.home / "cluster-id"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_new_cluster_id() + "\n")
        return path.read_text().strip()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node: SIGTERM (clean shutdown), SIGKILL after ``timeout``. Idempotent."""
        with file_lock(self._lock_path):
            # All at once: a node stopped alone waits for a quorum the others no longer make.
            running = [(node, node.signal_stop()) for node in self.nodes]
            for node, stopping in running:
                if stopping is not None:
                    node.terminate(stopping, timeout=timeout)
                node.pid_path.unlink(missing_ok=True)

    def node(self, node_id: int) -> BrokerNode:
        """One node, by its id (from 1), e.g. to kill it in a fault test."""
        return self.nodes[node_id - 1]
