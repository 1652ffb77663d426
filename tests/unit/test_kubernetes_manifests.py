"""The Kubernetes manifests in deploy/kubernetes, rendered with Kustomize, agree with the
product: every check of :class:`tests.support.manifests.ManifestContract` (settings,
probes, the Dockerfile's command and data dir, credentials from Secrets, the Kubernetes API
schemas) on the base and on each overlay; plus what only Kustomize has (the image pinned by
an overlay) and the checks of the Dockerfile the others rely on."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.kustomize import kustomize_command, render
from tests.support.manifests import (
    IMAGE,
    SETTING_NAMES,
    ManifestContract,
    Rendered,
    image_reference,
    is_pinned,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
MANAGED = ("overlays/managed-kafka", "overlays/managed-kafka-private-ca")
TARGETS = ("base", *MANAGED)


# --- the Dockerfile ------------------------------------------------------------------


def test_the_dockerfile_tells_what_the_checks_need() -> None:
    # Found, so that the checks against it cannot pass on empty values.
    assert IMAGE.entrypoint and IMAGE.cmd and IMAGE.expose
    assert "LEADSTREAM_DATA_DIR" in IMAGE.env
    assert set(IMAGE.env) <= SETTING_NAMES, set(IMAGE.env) - SETTING_NAMES


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("leadstream:0.1.0", True),
        ("registry:5000/team/leadstream@sha256:" + "a" * 64, True),
        ("leadstream:latest", False),
        ("leadstream", False),
        ("registry:5000/leadstream", False),
        ("leadstream:latest@sha256:short", False),
    ],
)
def test_what_counts_as_a_pinned_image(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


def test_the_base_image_is_pinned_by_tag_and_digest() -> None:
    # A rebuild gets the same base, byte for byte, or fails; the tag says what it is.
    _, tag, digest = image_reference(IMAGE.base)
    assert tag is not None and re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), IMAGE.base
    assert digest is not None and re.fullmatch(r"sha256:[0-9a-f]{64}", digest), IMAGE.base


# --- the rendered manifests ----------------------------------------------------------


@pytest.fixture(scope="session")
def kustomize() -> list[str]:
    """How to render, found (or built) once: a failure here fails every test that renders."""
    return kustomize_command()


@pytest.fixture(scope="session")
def renders(kustomize: list[str]) -> Callable[[str], Rendered]:
    """Each target rendered once for the session, when a test first asks for it."""
    done: dict[str, Rendered] = {}

    def rendered(target: str) -> Rendered:
        if target not in done:
            done[target] = Rendered(
                target,
                render(DEPLOY / target, kustomize),
                managed=target in MANAGED,
                private_ca=target.endswith("private-ca"),
            )
        return done[target]

    return rendered


class TestKustomize(ManifestContract):
    """The base and each overlay, through the checks every rendering passes."""

    @pytest.fixture(params=TARGETS)
    def rendered(
        self, request: pytest.FixtureRequest, renders: Callable[[str], Rendered]
    ) -> Rendered:
        return renders(request.param)


def test_the_base_runs_the_release_the_repository_builds(
    renders: Callable[[str], Rendered],
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert renders("base").worker["image"] == f"leadstream:{version}"


def test_an_overlay_pins_the_image_by_digest_as_the_readme_says(
    kustomize: list[str], tmp_path: Path
) -> None:
    # What deploy/kubernetes/README.md tells an operator to write, rendered.
    digest = "sha256:" + "0123456789abcdef" * 4
    overlay = tmp_path / "prod"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY / "base", overlay)],
                "images": [
                    {
                        "name": "leadstream",
                        "newName": "registry.example.com/leadstream",
                        "digest": digest,
                    }
                ],
            }
        )
    )
    (worker,) = (
        c
        for o in render(overlay, kustomize)
        if o["kind"] == "StatefulSet"
        for c in o["spec"]["template"]["spec"]["containers"]
    )
    assert worker["image"] == f"registry.example.com/leadstream@{digest}"
    readme = (DEPLOY / "README.md").read_text()
    assert "newName: registry.example.com/leadstream" in readme and 'digest: "sha256:' in readme
