"""The Helm chart in deploy/helm/leadstream, rendered and linted with a real, pinned helm
(tests/support/helm.py): every values combination the docs give passes ``helm lint
--strict`` and every check of :class:`tests.support.manifests.ManifestContract`, the same
as the Kustomize manifests; the chart's defaults and its managed-Kafka values render what
the Kustomize base and overlays render, object by object; and the chart's own options (the
ServiceMonitor, the NetworkPolicy, the image, the settings) do what values.yaml says."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadstream.web.routes import ROUTES
from tests.support import helm as helm_support
from tests.support.kustomize import kustomize_command
from tests.support.kustomize import render as kustomize_render
from tests.support.manifests import (
    KUBERNETES_VERSIONS,
    ManifestContract,
    Rendered,
    differences,
    schema_errors,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "leadstream"
EXAMPLES = ROOT / "deploy" / "helm" / "examples"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
RELEASE = "leadstream"

# The build of the pinned helm (minutes on a clean machine) starts as soon as this module
# is collected and runs while the rest of the suite does; the `helm` fixture waits for it.
# Under pytest-xdist's `--dist loadgroup` these tests share one worker, so that a wait for
# the build holds up one worker, not each.
helm_support.start_build()
pytestmark = pytest.mark.xdist_group("helm")


@dataclass(frozen=True)
class Variant:
    """A values combination the docs give, what it is meant to render, and the Kustomize
    target it must equal (None: an option the Kustomize manifests do not have)."""

    values: tuple[str, ...]
    managed: bool = False
    private_ca: bool = False
    optional_kinds: tuple[str, ...] = ()
    kustomize: str | None = None


MONITORING = ("NetworkPolicy", "ServiceMonitor")
VARIANTS = {
    "defaults": Variant((), kustomize="base"),
    "managed-kafka": Variant(
        ("managed-kafka.yaml",), managed=True, kustomize="overlays/managed-kafka"
    ),
    "managed-kafka-private-ca": Variant(
        ("managed-kafka.yaml", "kafka-private-ca.yaml"),
        managed=True,
        private_ca=True,
        kustomize="overlays/managed-kafka-private-ca",
    ),
    "monitoring": Variant(("monitoring.yaml",), optional_kinds=MONITORING),
    "managed-kafka-private-ca-monitoring": Variant(
        ("managed-kafka.yaml", "kafka-private-ca.yaml", "monitoring.yaml"),
        managed=True,
        private_ca=True,
        optional_kinds=MONITORING,
    ),
}
EQUIVALENT = [name for name, variant in VARIANTS.items() if variant.kustomize is not None]


@pytest.fixture(scope="session")
def helm() -> str:
    """The pinned helm, found or built once: a failure here fails every test that renders."""
    return helm_support.helm_command()


def _files(variant: Variant) -> tuple[Path, ...]:
    return tuple(EXAMPLES / name for name in variant.values)


@pytest.fixture(scope="session")
def renders(helm: str) -> Callable[[str], Rendered]:
    """Each variant rendered once for the session, when a test first asks for it."""
    done: dict[str, Rendered] = {}

    def rendered(name: str) -> Rendered:
        if name not in done:
            variant = VARIANTS[name]
            objects = helm_support.template(helm, CHART, release=RELEASE, values=_files(variant))
            done[name] = Rendered(
                f"chart, {name}",
                objects,
                managed=variant.managed,
                private_ca=variant.private_ca,
                optional_kinds=variant.optional_kinds,
            )
        return done[name]

    return rendered


def template(helm: str, *values: Path, **set_values: str) -> list[dict[str, Any]]:
    return helm_support.template(
        helm, CHART, release=RELEASE, values=values, set_values=_dotted(set_values)
    )


def _dotted(set_values: dict[str, str]) -> dict[str, str]:
    # Keyword arguments cannot hold dots: `image__tag` stands for `image.tag`.
    return {key.replace("__", "."): value for key, value in set_values.items()}


def _kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = (o for o in objects if o["kind"] == kind)
    return found


def _worker(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (worker,) = _kind(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return worker


def test_the_helm_that_renders_is_the_pinned_one(helm: str) -> None:
    done = subprocess.run(
        [helm, "version", "--template", "{{.Version}}"], capture_output=True, text=True, check=True
    )
    assert done.stdout == helm_support.HELM_VERSION


# --- every documented values combination ----------------------------------------------


class TestChart(ManifestContract):
    """Every values combination the docs give, through the checks every rendering passes."""

    @pytest.fixture(params=list(VARIANTS))
    def rendered(
        self, request: pytest.FixtureRequest, renders: Callable[[str], Rendered]
    ) -> Rendered:
        return renders(request.param)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_lint_passes_strictly(helm: str, name: str) -> None:
    done = helm_support.lint(helm, CHART, values=_files(VARIANTS[name]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout
    # --strict fails on warnings; errors and warnings are named in the output anyway.
    assert not re.search(r"\[(ERROR|WARNING)\]", done.stdout), done.stdout


def test_every_example_values_file_is_tested() -> None:
    used = {name for variant in VARIANTS.values() for name in variant.values}
    assert used == {p.name for p in EXAMPLES.glob("*.yaml")}


# --- the same deployment as Kustomize ----------------------------------------------------


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    return kustomize_command()


@pytest.mark.parametrize("name", EQUIVALENT)
def test_renders_what_kustomize_renders(
    name: str, renders: Callable[[str], Rendered], kustomize: list[str]
) -> None:
    """Every field of every object equal, except: labels, annotations and selectors may
    hold more (helm's standard labels; the release in the selectors, so that two releases
    in a namespace stay apart; the settings' checksum on the pod template), and the
    settings ConfigMap is named without Kustomize's content hash (the checksum annotation
    rolls the pods instead). The order of named lists (env, volumes) is not compared."""
    target = VARIANTS[name].kustomize
    assert target is not None
    expected = Rendered(target, kustomize_render(KUSTOMIZE / target, kustomize))
    chart = renders(name)
    (settings,) = expected.of_kind("ConfigMap")
    hashed = settings["metadata"]["name"]
    assert re.fullmatch(r"leadstream-settings-[a-z0-9]{10}", hashed), hashed
    assert differences(expected, chart, {hashed: "leadstream-settings"}) == []


def test_the_comparison_sees_a_difference(helm: str, kustomize: list[str]) -> None:
    # The latitudes above hide nothing else: a probe, a resource, a label value or a
    # variable changed by values shows.
    expected = Rendered("base", kustomize_render(KUSTOMIZE / "base", kustomize))
    hashed = expected.one("ConfigMap")["metadata"]["name"]
    changed = helm_support.template(
        helm,
        CHART,
        release=RELEASE,
        set_values={
            "probes.readiness.failureThreshold": "4",
            "resources.limits.memory": "5Gi",
            "nameOverride": "other",
            "fullnameOverride": "leadstream",
            "settings.LEADSTREAM_LOG_LEVEL": "debug",
        },
    )
    found = "\n".join(
        differences(expected, Rendered("changed", changed), {hashed: "leadstream-settings"})
    )
    assert "readinessProbe.failureThreshold: 4, expected 3" in found
    assert "limits.memory: '5Gi', expected '4Gi'" in found
    assert "app.kubernetes.io/name: 'other', expected 'leadstream'" in found
    assert "LEADSTREAM_LOG_LEVEL: 'debug', expected 'info'" in found


# --- the image ---------------------------------------------------------------------------


def test_the_defaults_run_the_release_the_repository_builds(
    renders: Callable[[str], Rendered],
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    assert renders("defaults").worker["image"] == f"leadstream:{version}"


def test_an_image_pinned_by_digest(helm: str) -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    objects = template(
        helm, image__repository="registry.example.com/leadstream", image__digest=digest
    )
    assert _worker(objects)["image"] == f"registry.example.com/leadstream@{digest}"


# --- values the chart refuses ------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        ({"image.tag": "latest"}, "/image/tag"),
        ({"image.digest": "sha256:short"}, "/image/digest"),
        ({"replicas": "3"}, "'replicas' not allowed"),
        ({"settings.KAFKA_BOOTSTRAP": "x:1"}, "KAFKA_BOOTSTRAP"),
        ({"settings.LEADSTREAM_KAFKA_SASL_PASSWORD": "hunter2"}, "a credential"),
        ({"settings.LEADSTREAM_CLUSTER_SECRET": "0123456789abcdef"}, "a credential"),
        ({"settings.LEADSTREAM_DATA_DIR": "/elsewhere"}, "set by the chart itself"),
        ({"settings.LEADSTREAM_AUTH_FILE": "/a.json"}, "set by the chart itself"),
        ({"kafka.sasl.enabled": "true"}, "kafka.sasl.enabled needs"),
        (
            {
                "kafka.sasl.enabled": "true",
                "settings.LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            },
            "LEADSTREAM_KAFKA_SASL_MECHANISM",
        ),
        ({"kafka.privateCA.enabled": "true"}, "kafka.privateCA.enabled needs"),
        (
            {"networkPolicy.enabled": "true", "settings.LEADSTREAM_KAFKA_BOOTSTRAP": "kafka"},
            "networkPolicy.kafka.ports",
        ),
    ],
)
def test_refused_values_say_what_is_wrong(
    helm: str, set_values: dict[str, str], message: str
) -> None:
    with pytest.raises(RuntimeError, match=re.escape(message)):
        helm_support.template(helm, CHART, release=RELEASE, set_values=set_values)


def test_the_kubernetes_versions_it_is_checked_against(helm: str) -> None:
    # 1.29 is the oldest the Kustomize manifests and the chart are validated for.
    assert template(helm) == helm_support.template(
        helm, CHART, release=RELEASE, args=("--kube-version", "v1.29.0")
    )
    with pytest.raises(RuntimeError, match="incompatible with Kubernetes v1.28.0"):
        helm_support.template(helm, CHART, release=RELEASE, args=("--kube-version", "v1.28.0"))


# --- settings ------------------------------------------------------------------------


def test_settings_reach_the_config_map_as_the_worker_reads_them(helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "settings": {
                    # A whole number read from YAML is a float to helm: not 1.34217728e+08.
                    "LEADSTREAM_MAX_BODY_BYTES": 134217728,
                    "LEADSTREAM_HTTP_TIMEOUT_SECONDS": 2.5,
                    "LEADSTREAM_LOG_LEVEL": None,  # a default taken out
                }
            }
        )
    )
    data = _kind(template(helm, values), "ConfigMap")["data"]
    assert data["LEADSTREAM_MAX_BODY_BYTES"] == "134217728"
    assert data["LEADSTREAM_HTTP_TIMEOUT_SECONDS"] == "2.5"
    assert "LEADSTREAM_LOG_LEVEL" not in data
    assert data["LEADSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"  # the others kept


def test_a_change_of_settings_rolls_the_pods(helm: str) -> None:
    def checksum(**set_values: str) -> str:
        pod = _kind(template(helm, **set_values), "StatefulSet")["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/settings"])

    assert checksum() == checksum()
    assert checksum() != checksum(settings__LEADSTREAM_LOG_LEVEL="debug")
    # Values that are not settings leave the pods alone.
    assert checksum() == checksum(replicaCount="3")


def test_another_web_port_moves_the_container_port_probes_and_services(helm: str) -> None:
    objects = template(helm, settings__LEADSTREAM_WEB_PORT="8080", networkPolicy__enabled="true")
    worker = _worker(objects)
    assert worker["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert all(worker[p]["httpGet"]["port"] == "http" for p in ("livenessProbe", "readinessProbe"))
    env = {v["name"]: v.get("value") for v in worker["env"]}
    assert env["LEADSTREAM_ADVERTISED_URL"].endswith("-headless:8080")
    for service in (o for o in objects if o["kind"] == "Service"):
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    policy = NetworkPolicy(_kind(objects, "NetworkPolicy"))
    labels = _kind(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert policy.admits(Peer(labels), 8080)
    assert not policy.admits(Peer(labels), 6066)


def test_two_releases_select_only_their_own_pods(helm: str) -> None:
    one = _kind(template(helm), "StatefulSet")["spec"]["selector"]["matchLabels"]
    other = helm_support.template(helm, CHART, release="staging")
    assert _kind(other, "StatefulSet")["metadata"]["name"] == "staging-leadstream"
    assert _kind(other, "StatefulSet")["spec"]["selector"]["matchLabels"] != one


# --- the options the Kustomize manifests do not have -------------------------------------


@pytest.mark.parametrize(
    ("set_values", "kinds"),
    [
        ({}, set()),
        ({"serviceMonitor.enabled": "true"}, {"ServiceMonitor"}),
        ({"networkPolicy.enabled": "true"}, {"NetworkPolicy"}),
        ({"serviceMonitor.enabled": "true", "networkPolicy.enabled": "true"}, set(MONITORING)),
    ],
)
def test_options_render_only_when_turned_on(
    helm: str, set_values: dict[str, str], kinds: set[str]
) -> None:
    rendered = helm_support.template(helm, CHART, release=RELEASE, set_values=set_values)
    assert {o["kind"] for o in rendered} & set(MONITORING) == kinds


def test_the_service_monitor_scrapes_every_worker_once(renders: Callable[[str], Rendered]) -> None:
    """ServiceMonitor is a custom resource the schema validator does not know: checked
    here for what the Prometheus Operator does with it."""
    rendered = renders("monitoring")
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, spec
    # The labels a Prometheus picks ServiceMonitors by (values: serviceMonitor.labels).
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    wanted = spec["selector"]["matchLabels"]
    services = [
        s for s in rendered.of_kind("Service") if wanted.items() <= s["metadata"]["labels"].items()
    ]
    # One Service: both select every worker, so two would scrape each worker twice.
    assert [s["metadata"]["name"] for s in services] == [
        rendered.statefulset["spec"]["serviceName"]
    ]
    (service,) = services
    pods = rendered.pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pods.items()
    assert spec["namespaceSelector"] == {"matchNames": ["default"]}  # the release's
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}, endpoint
    assert endpoint["path"] == "/metrics" and endpoint["path"] in ROUTES
    assert endpoint["scheme"] == "http"
    assert re.fullmatch(r"(\d+(ms|s|m|h))+", endpoint["interval"])
    (port,) = (p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    assert rendered.container_port(port["targetPort"]) == rendered.web_port


# --- the NetworkPolicy -------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Who is on the other end: a pod (its labels, its namespace's labels) or an address."""

    labels: dict[str, str] | None = None
    namespace: str = "default"
    address: str | None = None

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"not modelled here: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


class NetworkPolicy:
    """What a NetworkPolicy admits, as Kubernetes defines it (for the forms this chart
    writes: label selectors by matchLabels, address blocks, numbered ports)."""

    def __init__(self, policy: dict[str, Any], namespace: str = "default") -> None:
        self.spec = policy["spec"]
        self.namespace = namespace

    def _peer_matches(self, rule_peer: dict[str, Any], peer: Peer) -> bool:
        if "ipBlock" in rule_peer:
            block = rule_peer["ipBlock"]
            if peer.address is None:
                return False
            address = ipaddress.ip_address(peer.address)
            inside = address in ipaddress.ip_network(block["cidr"])
            return inside and not any(
                address in ipaddress.ip_network(c) for c in block.get("except", [])
            )
        if peer.labels is None:  # an address outside the cluster's pods
            return False
        if "namespaceSelector" in rule_peer:
            if not _selects(rule_peer["namespaceSelector"], peer.namespace_labels):
                return False
        elif peer.namespace != self.namespace:
            return False
        return _selects(rule_peer.get("podSelector", {}), peer.labels)

    def _admits(
        self, rules: list[dict[str, Any]], side: str, peer: Peer, port: int, protocol: str
    ) -> bool:
        for rule in rules:
            peers = rule.get(side)
            if peers is not None and not any(self._peer_matches(p, peer) for p in peers):
                continue
            ports = rule.get("ports")
            if ports is None or any(
                p.get("protocol", "TCP") == protocol and p["port"] == port for p in ports
            ):
                return True
        return False

    def admits(self, peer: Peer, port: int, protocol: str = "TCP") -> bool:
        """Ingress from ``peer`` to a worker's ``port``."""
        assert "Ingress" in self.spec["policyTypes"]
        return self._admits(self.spec.get("ingress", []), "from", peer, port, protocol)

    def lets_out(self, peer: Peer, port: int, protocol: str = "TCP") -> bool:
        """Egress from a worker to ``peer``'s ``port``."""
        assert "Egress" in self.spec["policyTypes"]
        return self._admits(self.spec.get("egress", []), "to", peer, port, protocol)


def _bootstrap_ports(rendered: Rendered) -> set[int]:
    bootstrap = rendered.environment(rendered.worker)["LEADSTREAM_KAFKA_BOOTSTRAP"]
    return {int(server.rsplit(":", 1)[1]) for server in bootstrap.split(",")}


@pytest.fixture(params=["monitoring", "managed-kafka-private-ca-monitoring"])
def guarded(request: pytest.FixtureRequest, renders: Callable[[str], Rendered]) -> Rendered:
    return renders(request.param)


def test_the_network_policy_guards_the_workers(guarded: Rendered) -> None:
    policy = NetworkPolicy(guarded.one("NetworkPolicy"))
    workers = guarded.pod["metadata"]["labels"]
    assert policy.spec["podSelector"]["matchLabels"]
    assert _selects(policy.spec["podSelector"], workers)
    assert set(policy.spec["policyTypes"]) == {"Ingress", "Egress"}


def test_the_workers_reach_each_other_for_previews(guarded: Rendered) -> None:
    policy, port = NetworkPolicy(guarded.one("NetworkPolicy")), guarded.web_port
    labels = guarded.pod["metadata"]["labels"]
    assert policy.admits(Peer(labels), port)
    assert policy.lets_out(Peer(labels), port)
    # Pods of another release, or in another namespace, are not workers of this one.
    assert not policy.admits(Peer({**labels, "app.kubernetes.io/instance": "other"}), port)
    assert not policy.admits(Peer(labels, namespace="elsewhere"), port)


def test_the_named_clients_and_scrapers_reach_the_api_and_no_one_else(guarded: Rendered) -> None:
    policy, port = NetworkPolicy(guarded.one("NetworkPolicy")), guarded.web_port
    # As examples/monitoring.yaml names them.
    prometheus = Peer({"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
    ingress = Peer({"app.kubernetes.io/name": "controller"}, namespace="ingress-nginx")
    scheduler = Peer({"app.kubernetes.io/name": "scheduler"})
    for peer in (prometheus, ingress, scheduler):
        assert policy.admits(peer, port), peer
        assert not policy.admits(peer, port + 1), peer
    assert not policy.admits(
        Peer({"app.kubernetes.io/name": "grafana"}, namespace="monitoring"), port
    )
    assert not policy.admits(Peer({"app": "anything"}), port)
    assert not policy.admits(Peer(address="203.0.113.7"), port)


def test_the_workers_reach_kafka_and_dns_and_nothing_else(guarded: Rendered) -> None:
    policy = NetworkPolicy(guarded.one("NetworkPolicy"))
    broker = Peer(address="203.0.113.7")
    ports = _bootstrap_ports(guarded)
    assert ports == ({9096} if guarded.managed else {9092})
    for port in ports:
        assert policy.lets_out(broker, port)
        assert policy.lets_out(Peer({"app": "kafka"}), port)  # a broker in the cluster
    assert policy.lets_out(broker, 53, "UDP") and policy.lets_out(broker, 53, "TCP")
    for port in (80, 443, 5432, 6066):
        assert not policy.lets_out(broker, port), port


def test_the_network_policy_is_valid_where_the_values_say_more(helm: str, tmp_path: Path) -> None:
    """Broker addresses, broker ports, a DNS service and extra rules given as values land
    where they belong, and the result is still a valid NetworkPolicy."""
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "networkPolicy": {
                    "enabled": True,
                    "kafka": {"ports": [9093, 9094], "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
                    "dns": {
                        "to": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                                },
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ]
                    },
                    "extraEgress": [
                        {"to": [{"ipBlock": {"cidr": "10.30.0.5/32"}}], "ports": [{"port": 4318}]}
                    ],
                }
            }
        )
    )
    objects = template(helm, values)
    policy = NetworkPolicy(_kind(objects, "NetworkPolicy"))
    assert policy.lets_out(Peer(address="10.20.3.4"), 9093)
    assert policy.lets_out(Peer(address="10.20.3.4"), 9094)
    assert not policy.lets_out(Peer(address="10.20.3.4"), 9092)  # the bootstrap's port: replaced
    assert not policy.lets_out(Peer(address="10.21.3.4"), 9093)
    dns = Peer({"k8s-app": "kube-dns"}, namespace="kube-system")
    assert policy.lets_out(dns, 53, "UDP")
    assert not policy.lets_out(Peer(address="8.8.8.8"), 53, "UDP")
    assert policy.lets_out(Peer(address="10.30.0.5"), 4318)
    for version in KUBERNETES_VERSIONS:
        assert schema_errors(objects, version) == []


# --- NOTES.txt and values.yaml -------------------------------------------------------------


def test_the_notes_name_the_secrets_to_create(helm: str) -> None:
    notes = helm_support.notes(
        helm, CHART, values=(EXAMPLES / "managed-kafka.yaml", EXAMPLES / "kafka-private-ca.yaml")
    )
    for secret in (
        "leadstream-auth",
        "leadstream-cluster-secret",
        "leadstream-kafka-credentials",
        "leadstream-kafka-ca",
        "leadstream-suppression-key",
    ):
        assert secret in notes, secret
    assert "rollout status statefulset/leadstream" in notes


def _leaves(values: dict[str, Any], path: str = "") -> Iterator[str]:
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "settings":
            yield from _leaves(value, f"{path}{key}.")
        else:
            yield path + key


def test_every_value_is_documented_with_its_default() -> None:
    """values.yaml says, above each value or above the block holding it, what it does and
    its default; the README's table and the schema name every top-level value."""
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):", line)
        if not match:
            continue
        indent, key = len(match[1]), match[2]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), key])
        stack.append((indent, key))
        above = []
        for previous in reversed(lines[:i]):
            if not previous.strip().startswith("#"):
                break
            above.append(previous)
        comments[path] = "\n".join(reversed(above))

    def documented(path: str) -> bool:
        # The nearest comment, the value's own or its block's, gives the default.
        parts = path.split(".")
        chain = (comments.get(".".join(parts[:n]), "") for n in range(len(parts), 0, -1))
        return "Default" in next((c for c in chain if c), "")

    leaves = list(_leaves(yaml.safe_load(text)))
    assert len(leaves) > 40
    undocumented = [leaf for leaf in leaves if not documented(leaf)]
    assert not undocumented
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    top = set(yaml.safe_load(text))
    assert top <= set(schema["properties"]), top - set(schema["properties"])
    readme = (ROOT / "deploy" / "helm" / "README.md").read_text()
    assert not [key for key in top if f"`{key}" not in readme]


def test_tracing_values_become_otel_variables_and_nothing_else(helm: str) -> None:
    monitoring = template(helm, EXAMPLES / "monitoring.yaml")
    data = _kind(monitoring, "ConfigMap")["data"]
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    egress = _kind(monitoring, "NetworkPolicy")["spec"]["egress"]
    assert {"protocol": "TCP", "port": 4318} in [p for r in egress for p in r.get("ports", [])]
    assert not [k for k in _kind(template(helm), "ConfigMap")["data"] if k.startswith("OTEL_")]
    # A LEADSTREAM_ name is a setting: the schema keeps tracing to OTEL_ ones.
    with pytest.raises(RuntimeError, match="OTEL_"):
        template(helm, tracing__LEADSTREAM_APP_ID="x")
