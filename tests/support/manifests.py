"""What any rendering of the worker's Kubernetes manifests must satisfy, whatever renders
it (Kustomize, the Helm chart): every variable it sets is a setting and its value one the
settings accept; the probes ask routes the worker serves, on the port it listens on; the
container runs what the Dockerfile runs and keeps its state in a claimed volume at the data
dir; credentials come from Secrets; and every object is valid against the Kubernetes API
schemas.

:class:`ManifestContract` holds those checks as tests: a test module subclasses it and
provides a ``rendered`` fixture (a :class:`Rendered` per variant it renders), so that one
set of checks runs against every renderer.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from leadstream.settings import Settings
from leadstream.streams.router import RouterProcess
from leadstream.web.routes import ROUTES

__all__ = [
    "CORE_KINDS",
    "CREDENTIALS",
    "IMAGE",
    "KUBERNETES_VERSIONS",
    "SETTING_NAMES",
    "UNKNOWN_TO_THE_VALIDATOR",
    "Image",
    "ManifestContract",
    "Rendered",
    "differences",
    "image_reference",
    "is_pinned",
    "parse_dockerfile",
    "schema_errors",
]

ROOT = Path(__file__).resolve().parents[2]

PREFIX = "LEADSTREAM_"
SETTING_NAMES = frozenset(PREFIX + name.upper() for name in Settings.model_fields)
# Credentials: from a Secret only, never a ConfigMap or a literal in the manifests.
CREDENTIALS = frozenset({"LEADSTREAM_KAFKA_SASL_USERNAME", "LEADSTREAM_KAFKA_SASL_PASSWORD"})
SASL_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
# The oldest Kubernetes the manifests are checked against, and the newest schema the
# validator bundles.
KUBERNETES_VERSIONS = ("1.29", latest_version())
# What every rendering holds: the worker, its settings, its two Services, its budget.
CORE_KINDS = ("ConfigMap", "PodDisruptionBudget", "Service", "Service", "StatefulSet")
# Custom resources the validator has no schema for; a renderer's own tests check them.
UNKNOWN_TO_THE_VALIDATOR = frozenset({("monitoring.coreos.com/v1", "ServiceMonitor")})


# --- the Dockerfile ------------------------------------------------------------------


@dataclass
class Image:
    """What the Dockerfile's final stage tells about the container it builds."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    expose: set[int] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)
    user: str = ""
    base: str = ""


def _exec_form(rest: str) -> list[str]:
    if rest.startswith("["):
        return [str(part) for part in json.loads(rest)]
    return ["/bin/sh", "-c", rest]


def parse_dockerfile(text: str) -> Image:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if not pending and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    image = Image()
    for line in filter(None, (ln.strip() for ln in lines)):
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            image = Image(base=rest.split()[0])
        elif instruction == "ENTRYPOINT":
            image.entrypoint = _exec_form(rest)
        elif instruction == "CMD":
            image.cmd = _exec_form(rest)
        elif instruction == "ENV":
            words = shlex.split(rest)
            if "=" not in words[0]:
                image.env[words[0]] = " ".join(words[1:])
            else:
                image.env |= dict(word.split("=", 1) for word in words)
        elif instruction == "USER":
            image.user = rest
        elif instruction == "EXPOSE":
            image.expose |= {int(word.split("/")[0]) for word in rest.split()}
        elif instruction == "VOLUME":
            image.volumes |= set(_exec_form(rest) if rest.startswith("[") else rest.split())
    return image


IMAGE = parse_dockerfile((ROOT / "Dockerfile").read_text())


def image_reference(image: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference such as ``host:5000/name:tag@sha256:...``."""
    name, _, digest = image.partition("@")
    # A tag follows the last ':' of the last path part (a registry host may have a port).
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else None
    if tag is not None:
        name = name[: -len(tag) - 1]
    return name, tag, digest or None


def is_pinned(image: str) -> bool:
    """By digest, or by a tag other than ``latest``."""
    _, tag, digest = image_reference(image)
    if digest is not None:
        return re.fullmatch(r"sha256:[0-9a-f]{64}", digest) is not None
    return tag not in (None, "latest")


# --- a rendering ---------------------------------------------------------------------


@dataclass
class Rendered:
    """One rendering of the manifests, what it is meant to be, and the worker as the pods
    will run it.

    ``managed``: for a managed Kafka (SASL over TLS, credentials from a Secret);
    ``private_ca``: with the brokers' CA mounted; ``optional_kinds``: the kinds it renders
    beyond :data:`CORE_KINDS` (options turned on).
    """

    target: str
    objects: list[dict[str, Any]]
    managed: bool = False
    private_ca: bool = False
    optional_kinds: tuple[str, ...] = ()

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"{self.target}: {len(found)} {kind} objects"
        return found[0]

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.one("StatefulSet")

    @property
    def pod(self) -> dict[str, Any]:
        return self.statefulset["spec"]["template"]

    @property
    def containers(self) -> list[dict[str, Any]]:
        spec = self.pod["spec"]
        return [*spec.get("initContainers", []), *spec["containers"]]

    @property
    def worker(self) -> dict[str, Any]:
        (worker,) = (c for c in self.pod["spec"]["containers"] if c["name"] == "worker")
        return worker

    def config_maps(self) -> dict[str, dict[str, str]]:
        return {cm["metadata"]["name"]: cm.get("data", {}) for cm in self.of_kind("ConfigMap")}

    def env_from(self, container: dict[str, Any]) -> dict[str, str]:
        """The variables ``container`` takes whole from ConfigMaps (envFrom)."""
        maps = self.config_maps()
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            # A Secret's keys cannot be known here; every setting from one is a secretKeyRef.
            assert set(source) <= {"configMapRef", "prefix"}, source
            name = source["configMapRef"]["name"]
            assert name in maps, f"envFrom names {name}, which is not rendered"
            values |= {source.get("prefix", "") + k: v for k, v in maps[name].items()}
        return values

    def environment(self, container: dict[str, Any]) -> dict[str, Any]:
        """What the process sees: the image's ENV, then envFrom, then env (each wins over
        the one before); a value from elsewhere (fieldRef, secretKeyRef) as its source."""
        values: dict[str, Any] = {**IMAGE.env, **self.env_from(container)}
        for var in container.get("env", []):
            values[var["name"]] = var["value"] if "value" in var else var["valueFrom"]
        return values

    @property
    def web_port(self) -> int:
        given = self.environment(self.worker).get("LEADSTREAM_WEB_PORT")
        return int(given) if given is not None else Settings.model_fields["web_port"].default

    def container_port(self, port: int | str) -> int:
        """A port of the worker container, by number or by name."""
        if isinstance(port, int):
            return port
        (number,) = (p["containerPort"] for p in self.worker["ports"] if p.get("name") == port)
        return int(number)


class _GivenSettings(Settings):
    """The settings from the given values alone, not from this process's environment."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **_: Any) -> Any:
        return (init_settings,)


# --- the checks ----------------------------------------------------------------------


class ManifestContract:
    """The checks every rendering passes. Subclass it in a test module (as ``Test...``)
    and give it a ``rendered`` fixture."""

    def test_renders_a_worker_and_no_credentials(self, rendered: Rendered) -> None:
        kinds = sorted(o["kind"] for o in rendered.objects)
        assert kinds == sorted([*CORE_KINDS, *rendered.optional_kinds])
        # Credentials are Secrets made out of band (deploy/kubernetes/README.md): a rendered
        # Secret would be a placeholder that an apply writes over the real one.
        assert not rendered.of_kind("Secret")

    # --- settings --------------------------------------------------------------------

    def test_every_variable_is_a_setting(self, rendered: Rendered) -> None:
        for container in rendered.containers:
            names = {var["name"] for var in container.get("env", [])}
            names |= set(rendered.env_from(container))
            # Besides the settings: OpenTelemetry's own variables (leadstream.tracing).
            unknown = {n for n in names - SETTING_NAMES if not n.startswith("OTEL_")}
            assert not unknown, f"{rendered.target}, {container['name']}: no such setting {unknown}"

    def test_the_settings_accept_every_value(self, rendered: Rendered) -> None:
        replicas = rendered.statefulset["spec"]["replicas"]
        last_pod = f"{rendered.statefulset['metadata']['name']}-{replicas - 1}"
        values: dict[str, Any] = {}
        for name, value in rendered.environment(rendered.worker).items():
            if isinstance(value, dict):  # valueFrom
                if value.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                    value = last_pod
                else:
                    assert set(value) == {"secretKeyRef"}, f"{name}: {value}"
                    value = "a-value-from-a-secret"  # as long as any secret setting needs
            if name.startswith(PREFIX):
                values[name.removeprefix(PREFIX).lower()] = value
        settings = _GivenSettings(**values)
        # The pod name is a valid instance id (static membership), stable across restarts.
        assert settings.instance_id == last_pod

    def test_variable_references_name_variables_set_before(self, rendered: Rendered) -> None:
        # Kubernetes expands $(NAME) only from variables listed earlier (or from envFrom);
        # otherwise the text stays as it is, and the worker would advertise "$(...)".
        for container in rendered.containers:
            known = set(rendered.env_from(container))
            for var in container.get("env", []):
                for name in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value", "")):
                    assert name in known, f"{var['name']} refers to {name}, not set before it"
                known.add(var["name"])

    def test_instance_id_is_the_pod_name(self, rendered: Rendered) -> None:
        (var,) = (v for v in rendered.worker["env"] if v["name"] == "LEADSTREAM_INSTANCE_ID")
        assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    def test_other_workers_reach_this_one_by_its_stable_name(self, rendered: Rendered) -> None:
        env = rendered.environment(rendered.worker)
        headless = rendered.statefulset["spec"]["serviceName"]
        assert env["LEADSTREAM_ADVERTISED_URL"] == (
            f"http://$(LEADSTREAM_INSTANCE_ID).{headless}:{rendered.web_port}"
        )

    def test_no_more_workers_than_partitions(self, rendered: Rendered) -> None:
        given = rendered.environment(rendered.worker).get("LEADSTREAM_PARTITIONS")
        partitions = int(given) if given else Settings.model_fields["partitions"].default
        assert 1 <= rendered.statefulset["spec"]["replicas"] <= partitions

    # --- the container ---------------------------------------------------------------

    def test_no_image_is_latest_or_untagged(self, rendered: Rendered) -> None:
        for container in rendered.containers:
            assert is_pinned(container["image"]), f"{rendered.target}: {container['image']}"

    def test_runs_what_the_dockerfile_runs(self, rendered: Rendered) -> None:
        worker = rendered.worker
        # Kubernetes: `command` replaces ENTRYPOINT and drops CMD; `args` replaces CMD.
        command = worker.get("command", IMAGE.entrypoint)
        args = worker.get("args", [] if "command" in worker else IMAGE.cmd)
        assert [*command, *args] == [*IMAGE.entrypoint, *IMAGE.cmd]

    def test_state_lives_in_a_claimed_volume_at_the_data_dir(self, rendered: Rendered) -> None:
        data_dir = rendered.environment(rendered.worker)["LEADSTREAM_DATA_DIR"]
        assert data_dir == IMAGE.env["LEADSTREAM_DATA_DIR"]
        assert data_dir in IMAGE.volumes
        claims = {
            c["metadata"]["name"]: c for c in rendered.statefulset["spec"]["volumeClaimTemplates"]
        }
        (mount,) = (m for m in rendered.worker["volumeMounts"] if m["mountPath"] == data_dir)
        assert not mount.get("readOnly", False)
        assert mount["name"] in claims, "the data dir is not on a volumeClaimTemplate"
        # A pod volume of the same name would shadow the claim.
        assert mount["name"] not in {v["name"] for v in rendered.pod["spec"].get("volumes", [])}
        claim = claims[mount["name"]]["spec"]
        assert claim["accessModes"] == ["ReadWriteOnce"]
        assert claim["resources"]["requests"]["storage"]

    def test_files_named_by_settings_come_from_secrets(self, rendered: Rendered) -> None:
        """Every *_FILE setting names a file that a Secret mounted read-only provides: they
        hold signing secrets, keys, credentials (a properties file) or trust anchors."""
        volumes = {v["name"]: v for v in rendered.pod["spec"].get("volumes", [])}
        mounts = {m["mountPath"]: m for m in rendered.worker["volumeMounts"]}
        files = {
            name: value
            for name, value in rendered.environment(rendered.worker).items()
            if name.endswith("_FILE")
        }
        assert "LEADSTREAM_AUTH_FILE" in files
        for name, value in files.items():
            path = Path(value)
            mount = mounts.get(str(path.parent))
            assert mount is not None, f"{name}={value}: nothing is mounted at {path.parent}"
            assert mount.get("readOnly"), f"{name}: {path.parent} is writable"
            secret = volumes[mount["name"]].get("secret")
            assert secret is not None, f"{name}: {mount['name']} is not a Secret"
            assert not secret.get("optional", False), f"{name}: the pod would start without it"
            # Listed by name, so that a Secret without that key keeps the pod from starting.
            assert path.name in {item["path"] for item in secret["items"]}, name

    def test_probes_ask_served_routes_on_the_web_port(self, rendered: Rendered) -> None:
        worker, port = rendered.worker, rendered.web_port
        assert port in IMAGE.expose
        assert [p["containerPort"] for p in worker["ports"]] == [port]
        assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            if kind in worker:
                probe = worker[kind]["httpGet"]
                assert probe["path"] in ROUTES, f"{kind}: the worker does not serve {probe['path']}"
                assert rendered.container_port(probe["port"]) == port, kind
        # The probes come from the node: the API must listen beyond the loopback interface.
        assert rendered.environment(worker)["LEADSTREAM_WEB_HOST"] in {"0.0.0.0", "::"}

    def test_services_reach_the_web_port_of_the_workers(self, rendered: Rendered) -> None:
        labels = rendered.pod["metadata"]["labels"]
        services = {s["metadata"]["name"]: s["spec"] for s in rendered.of_kind("Service")}
        for name, spec in services.items():
            assert spec["selector"], name
            assert spec["selector"].items() <= labels.items(), f"{name} selects no worker"
            for port in spec["ports"]:
                target = port.get("targetPort", port["port"])
                assert rendered.container_port(target) == rendered.web_port, name
        headless = services[rendered.statefulset["spec"]["serviceName"]]
        assert headless["clusterIP"] == "None"
        api = [s for s in services.values() if s.get("clusterIP") != "None"]
        assert len(api) == 1 and api[0].get("type", "ClusterIP") == "ClusterIP"

    def test_the_disruption_budget_covers_the_workers(self, rendered: Rendered) -> None:
        labels = rendered.pod["metadata"]["labels"]
        selector = rendered.statefulset["spec"]["selector"]
        assert selector["matchLabels"].items() <= labels.items()
        budget = rendered.one("PodDisruptionBudget")["spec"]
        assert budget["maxUnavailable"] == 1
        assert set(budget["selector"]) == {"matchLabels"}
        assert budget["selector"]["matchLabels"], "an empty selector selects every pod"
        assert budget["selector"]["matchLabels"].items() <= labels.items()

    def test_shutdown_has_time_to_finish(self, rendered: Rendered) -> None:
        # SIGTERM first stops the router child, waiting up to this long for it; then faust
        # commits and closes its stores. The grace period must leave room for both.
        router_stop = inspect.signature(RouterProcess.stop).parameters["timeout"].default
        assert rendered.pod["spec"]["terminationGracePeriodSeconds"] >= router_stop + 20

    def test_runs_unprivileged_on_a_read_only_root(self, rendered: Rendered) -> None:
        pod = rendered.pod["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        # The image runs as that same user on its own (docker run, docker compose).
        assert IMAGE.user == str(pod["securityContext"]["runAsUser"])
        for container in rendered.containers:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        (tmp,) = (m for m in rendered.worker["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in volumes[tmp["name"]]
        resources = rendered.worker["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]

    # --- credentials and managed Kafka -------------------------------------------------

    def test_no_credential_in_a_config_map_or_a_literal(self, rendered: Rendered) -> None:
        secret_like = {n for n in SETTING_NAMES if "PASSWORD" in n or "SECRET" in n} | CREDENTIALS
        for name, data in rendered.config_maps().items():
            assert not secret_like & set(data), f"ConfigMap {name} holds {secret_like & set(data)}"
        for container in rendered.containers:
            for var in container.get("env", []):
                if var["name"] in secret_like:
                    assert "value" not in var, f"{var['name']} is written in the manifest"
                    assert set(var["valueFrom"]) == {"secretKeyRef"}, var["name"]

    def test_the_workers_share_a_cluster_secret_from_a_secret(self, rendered: Rendered) -> None:
        """Several pods ask each other for preview shares: each signs with the same secret,
        which a pod cannot start without."""
        env = rendered.environment(rendered.worker)
        reference = env["LEADSTREAM_CLUSTER_SECRET"]["secretKeyRef"]
        assert reference["name"] and reference["key"]
        assert not reference.get("optional", False)

    def test_the_kafka_connection_is_the_variant_s(self, rendered: Rendered) -> None:
        """A managed Kafka: SASL over TLS, credentials from a Secret the pod needs to start,
        replicated topics, JSON logs. Otherwise: the plaintext broker, no credentials."""
        env = rendered.environment(rendered.worker)
        if not rendered.managed:
            assert env.get("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") == "PLAINTEXT"
            assert not CREDENTIALS & set(env)
            return
        assert env["LEADSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["LEADSTREAM_KAFKA_SASL_MECHANISM"] in SASL_MECHANISMS
        assert int(env["LEADSTREAM_REPLICATION_FACTOR"]) == 3
        assert env["LEADSTREAM_LOG_FORMAT"] == "json"
        assert env["LEADSTREAM_KAFKA_BOOTSTRAP"] != Settings.model_fields["kafka_bootstrap"].default
        for name in CREDENTIALS:
            reference = env[name]["secretKeyRef"]
            assert reference["name"] and reference["key"], name
            assert not reference.get("optional", False), f"{name} must not start without it"

    def test_only_the_private_ca_variant_names_a_ca_file(self, rendered: Rendered) -> None:
        env = rendered.environment(rendered.worker)
        assert ("LEADSTREAM_KAFKA_SSL_CA_FILE" in env) == rendered.private_ca

    # --- the Kubernetes API schemas ----------------------------------------------------

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_valid_against_the_kubernetes_schemas(self, rendered: Rendered, version: str) -> None:
        assert schema_errors(rendered.objects, version) == []


def schema_errors(objects: list[dict[str, Any]], version: str) -> list[str]:
    """Where ``objects`` break the Kubernetes API schemas of ``version`` (strict: no field
    the API does not know), as readable lines; custom resources the validator has no schema
    for are left to their renderer's own tests."""

    def errors() -> Iterator[str]:
        for obj in objects:
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                yield f"{where} at {'/'.join(map(str, e.path))}: {e.message}"
            except SchemaNotFoundError:
                if (obj["apiVersion"], obj["kind"]) not in UNKNOWN_TO_THE_VALIDATOR:
                    yield f"{where}: no schema for {obj['apiVersion']} {obj['kind']}"

    return list(errors())


# --- two renderings, compared ----------------------------------------------------------

# Where a renderer may add labels or annotations of its own (the chart adds helm's standard
# labels, the release to its selectors, a checksum of the settings to the pod template):
# there the expected mapping must be contained in the other, not equal to it.
_OPEN_MAPPINGS = frozenset({"labels", "annotations", "matchLabels", "selector"})


def differences(
    expected: Rendered, actual: Rendered, renamed: dict[str, str] | None = None
) -> list[str]:
    """Where ``actual`` departs from ``expected``, object by object, as readable lines.

    Objects are paired by kind and name (``renamed`` maps an expected name to the actual
    one: Kustomize's hashed ConfigMap name). Every field must be equal, with two latitudes:
    at a ``labels``, ``annotations``, ``matchLabels`` or Service ``selector`` mapping the
    expected entries must be there and others may be added; and lists whose items all have
    a ``name`` (env, volumes, volume mounts, ports) are compared as sets by name, since
    patches change their order (the order that matters, of variables referring to others,
    is checked on its own). A reference to a renamed object is renamed before comparing.
    """
    renamed = renamed or {}

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return renamed.get(value, value) if isinstance(value, str) else value

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    found: list[str] = []
    theirs = {key(o): o for o in actual.objects}
    ours = {key(o): o for o in map(rename, expected.objects)}
    for missing in sorted(ours.keys() - theirs.keys()):
        found.append(f"{missing}: not rendered")
    for extra in sorted(theirs.keys() - ours.keys()):
        found.append(f"{extra}: rendered, but not expected")
    for name in sorted(ours.keys() & theirs.keys()):
        _compare(ours[name], theirs[name], f"{name[0]}/{name[1]}", found)
    return found


def _named(items: list[Any]) -> dict[str, Any] | None:
    if items and all(isinstance(i, dict) and "name" in i for i in items):
        return {i["name"]: i for i in items}
    return None


def _compare(expected: Any, actual: Any, path: str, found: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        leaf = path.rsplit(".", 1)[-1]
        if leaf in _OPEN_MAPPINGS and all(not isinstance(v, dict) for v in expected.values()):
            for k, v in expected.items():
                if actual.get(k) != v:
                    found.append(f"{path}.{k}: {actual.get(k)!r}, expected {v!r}")
            return
        for k in sorted(expected.keys() | actual.keys()):
            if k not in actual:
                found.append(f"{path}.{k}: missing, expected {expected[k]!r}")
            elif k not in expected:
                if k not in {"labels", "annotations"}:  # added where there were none
                    found.append(f"{path}.{k}: {actual[k]!r}, not expected")
            else:
                _compare(expected[k], actual[k], f"{path}.{k}", found)
        return
    if isinstance(expected, list) and isinstance(actual, list):
        ours, theirs = _named(expected), _named(actual)
        if ours is not None and theirs is not None:
            _compare(ours, theirs, path + "[by name]", found)
            return
        if len(expected) != len(actual):
            found.append(f"{path}: {actual!r}, expected {expected!r}")
            return
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _compare(e, a, f"{path}[{i}]", found)
        return
    if expected != actual:
        found.append(f"{path}: {actual!r}, expected {expected!r}")
