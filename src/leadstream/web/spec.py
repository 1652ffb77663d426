"""How a route declares itself: its operations, each with its parameters, its request
body's type, its answers' types per status and its security. A view class carries its
own (``operations``); /openapi.json is generated from them (web/openapi.py), the route
guard serves only what they declare (web/http.py), and the views decode bodies and encode
answers through the same types (:func:`validated`, :func:`answer`).

The types are pydantic models: the schema in the document is their
``model_json_schema`` (validation mode for request bodies, serialization mode for
answers), so the document cannot say one thing while the code checks another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from faust.web import Response, View
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "GUARDED",
    "KEY",
    "PUBLIC",
    "WEBHOOK",
    "Answer",
    "Body",
    "ErrorBody",
    "ErrorDetail",
    "Invalid",
    "Link",
    "Media",
    "Operation",
    "Param",
    "answer",
    "error_answer",
    "validated",
]

M = TypeVar("M", bound=BaseModel)

# Either credential: a Bearer API key or a v1 signature (its three headers together); the
# webhooks also take a body-only signature. An empty list: open to anyone.
PUBLIC: tuple[Mapping[str, list[str]], ...] = ()
KEY: tuple[Mapping[str, list[str]], ...] = (
    {"bearer": []},
    {"keyId": [], "timestamp": [], "signature": []},
)
WEBHOOK = (*KEY, {"bodySignature": []})
# What every route that needs a credential may answer besides its own errors: the
# credential (401, 403 from the headers, before the body) and the limits (429, 503).
GUARDED = (401, 403, 429, 503)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    field: str | None = Field(
        None,
        description="The JSON path of the body's value at fault (eventFilters[0].within), "
        "when the error names one: a field the contract does not define (invalid_conditions).",
    )


class ErrorBody(BaseModel):
    """Every error answer: a code a client can branch on and a message a person can read."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail
    owner: str | None = Field(
        None, description="Worker that holds the lead's partition (421 and 503 not_here only)."
    )


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter; a string unless ``schema`` says otherwise."""

    name: str
    where: Literal["path", "query"]
    example: Any
    description: str | None = None
    pattern: str | None = None
    # In place of a string's: what the view reads the text as (an integer's bounds).
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Media:
    """One media type of a request body: ``model`` validates it (None: a text body, read
    as a stream and checked row by row, ``streamed_by`` names what checks its shape)."""

    model: type[BaseModel] | None
    example: Any = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """How a body its type refuses is answered."""

    status: int = 422
    code: str = "invalid_body"


@dataclass(frozen=True, slots=True)
class Body:
    """A request body by media type; the first is the one examples and tests send."""

    content: Mapping[str, Media]
    invalid: Invalid = Invalid()


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: a later request made from this answer (stateful tests follow them).
    ``parameters`` maps the target's parameters to runtime expressions."""

    operation_id: str
    parameters: Mapping[str, str]
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One status's answer: JSON of ``model``, or text of ``media`` when ``model`` is None."""

    description: str
    model: type[BaseModel] | None = None
    media: str = "application/json"
    links: Mapping[str, Link] = field(default_factory=dict)
    retry_after: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of a route. ``errors`` are answered with :class:`ErrorBody`; a secured
    operation also answers :data:`GUARDED`, and one with a body 408 (web/openapi.py adds
    them, as the route guard and the body reader give them)."""

    operation_id: str
    summary: str
    answers: Mapping[int, Answer]
    security: tuple[Mapping[str, list[str]], ...] = KEY
    params: tuple[Param, ...] = ()
    body: Body | None = None
    errors: tuple[int, ...] = ()


def validated(model: type[M], doc: Any, invalid: Invalid) -> M:
    """``doc`` (a decoded body) as ``model``, or :class:`~leadstream.web.http.BodyError`
    with ``invalid``'s status and code, and the JSON path of the first value at fault."""
    from leadstream.web.http import BodyError  # noqa: PLC0415 - http.py imports this module

    try:
        return model.model_validate(doc)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        path = _json_path(first["loc"])
        message = f"{path}: {first['msg']}" if path else first["msg"]
        raise BodyError(invalid.status, invalid.code, message[:300], field=path or None) from None


_TYPE_TAGS = frozenset({"int", "str", "float", "bool", "list", "dict", "none"})


def _json_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part[:1].isupper() or "-" in part or "[" in part or part in _TYPE_TAGS):
            # pydantic names union members and validators in the location; a body has none
            out += f".{part}" if out else part
    return out


def answer(view: View, value: BaseModel, *, status: int = 200, **headers: str) -> Response:
    """``value`` encoded as its type documents it: the fields that were set (an absent
    optional key stays absent, a null one is written), by their JSON names."""
    body = value.model_dump_json(by_alias=True, exclude_unset=True).encode()
    response = view.bytes(body, content_type="application/json", status=status)
    for name, header in headers.items():
        response.headers[name.replace("_", "-")] = header
    return response


def error_answer(code: str, message: str, field: str | None = None) -> ErrorBody:
    """An :class:`ErrorBody`, ``field`` only when given."""
    if field is None:
        return ErrorBody(error=ErrorDetail(code=code, message=message))
    return ErrorBody(error=ErrorDetail(code=code, message=message, field=field))
