"""JSON Schema files of the topic values, rendered from :mod:`leadstream.wire.models`.

``schemas/*.schema.json`` are checked in: they are the contract's machine-readable form, and
a unit test fails when they drift from the models (regenerate with ``leadstream schemas``).
Rendering is deterministic (sorted ``$defs`` and keywords, fixed top-level order), so a
diff of the files shows a change of the contract and nothing else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from leadstream.wire.models import TOPIC_SCHEMAS

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "SCHEMA_ID_PREFIX",
    "check_schemas",
    "render_schema",
    "render_schemas",
    "schema_filename",
    "write_schemas",
]

logger = logging.getLogger(__name__)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# A URN rather than an https URL: no server publishes these files, and a URL that does not
# resolve invites tools to try. "$ref"s inside a file are fragment-only, so no base is needed.
SCHEMA_ID_PREFIX = "urn:leadstream:schema:"
_SUFFIX = ".schema.json"
_TOP_LEVEL_ORDER = ("$schema", "$id", "title", "description")


class _ContractJsonSchema(GenerateJsonSchema):
    """Pydantic's generator, minus what would misdescribe the wire format.

    - No per-field ``title``: pydantic derives "Phonee164" from "phoneE164"; the property
      name already says it.
    - No ``"default": null``: an optional key that may be left out is not thereby nullable,
      and a null default next to a schema that rejects null contradicts it.
    """

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if "default" in json_schema and json_schema["default"] is None:
            del json_schema["default"]
        return json_schema

    def generate(self, schema: CoreSchema, mode: Any = "validation") -> JsonSchemaValue:
        json_schema = super().generate(schema, mode=mode)
        if "$defs" in json_schema:
            json_schema["$defs"] = dict(sorted(json_schema["$defs"].items()))
        return json_schema


def schema_filename(topic: str) -> str:
    """``lead-events`` -> ``lead-events.schema.json``."""
    return f"{topic}{_SUFFIX}"


def render_schema(topic: str, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema document of one topic's values, top-level keys in a fixed order."""
    generated = model.model_json_schema(schema_generator=_ContractJsonSchema, mode="validation")
    header: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_PREFIX}{topic}",
        "title": f"{topic} value",
    }
    if "description" in generated:
        header["description"] = generated["description"]
    # The model's own name moves aside for the topic name; $defs go last, after what
    # the document says about the value itself.
    rest = {k: v for k, v in generated.items() if k not in _TOP_LEVEL_ORDER and k != "$defs"}
    document = {**header, **rest}
    if "$defs" in generated:
        document["$defs"] = generated["$defs"]
    return document


def render_schemas() -> dict[str, str]:
    """Every topic's schema file: file name -> pretty JSON text ending in a newline."""
    return {
        schema_filename(topic): json.dumps(
            render_schema(topic, model), indent=2, ensure_ascii=False
        )
        + "\n"
        for topic, model in sorted(TOPIC_SCHEMAS.items())
    }


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into ``directory`` (created if missing); return the paths.

    Files are rewritten only when their text changed, so timestamps stay meaningful.
    Stale ``*.schema.json`` files of topics that no longer exist are removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    paths: list[Path] = []
    for name, text in rendered.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            logger.info("wrote %s", path)
        paths.append(path)
    for stale in sorted(directory.glob(f"*{_SUFFIX}")):
        if stale.name not in rendered:
            stale.unlink()
            logger.info("removed stale %s", stale)
    return paths


def check_schemas(directory: Path) -> list[str]:
    """Names of the schema files in ``directory`` that are missing, different or extra.

    An empty list means the checked-in files are exactly what :func:`render_schemas` gives.
    """
    rendered = render_schemas()
    problems: list[str] = []
    for name, text in rendered.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            problems.append(name)
    if directory.is_dir():
        problems.extend(
            stale.name
            for stale in sorted(directory.glob(f"*{_SUFFIX}"))
            if stale.name not in rendered
        )
    return problems
