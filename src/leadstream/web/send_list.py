"""``GET /api/v1/organizations/{organizationId}/sends?limit=N``: the organization's recent
sends, each with the counts its summary carries (or will carry).

A partition that commits its share of a send writes, in the same transaction, a done report
to the progress topic: its counts, recipients and moment. The summary on send-recipients is
the sum of every partition's report (:func:`leadstream.wire.records.summary_record`). Every
worker reads the whole progress topic (the materializer's view of it, read_committed), so any
worker answers for every partition by itself, from the very records the summary is made of:
a send listed ``complete`` has the summary's counts, exactly. A send some partitions have not
committed yet is listed with the shares committed so far (``partitionsDone`` of
``partitions``). Sends are listed as long as the progress topic keeps their reports (its
retention, the broker's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import msgspec
from faust.web import Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from leadstream.web.http import (
    RETRY_AFTER_SECONDS,
    BodyError,
    ServedView,
    admission_of,
    error_response,
)
from leadstream.web.ingress import SendReports
from leadstream.web.spec import Answer, Link, Operation, Param, answer
from leadstream.wire.models import SendCounts as SendCountsModel
from leadstream.wire.models import SplitName, UtcMillisTimestamp
from leadstream.wire.records import SendCounts, summary_record

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ListedSend",
    "OrganizationSends",
    "SendListing",
    "OrganizationSendList",
    "listed_send",
    "recent_sends",
]

PATH = "/api/v1/organizations/{organizationId}/sends"
DEFAULT_LIMIT = 20
# An answer lists at most this many sends (each a few hundred bytes: ids of at most 64
# characters, counts, and at most a few split names).
MAX_LIMIT = 100


class ListedSend(msgspec.Struct, rename="camel", omit_defaults=True):
    """One send of the list: its summary's fields, summed over the partitions reported."""

    send_id: str
    campaign_id: str
    scheduled_for: str
    materialized_at: str
    late: bool
    complete: bool
    summarized: bool
    partitions_done: int
    partitions: int
    recipient_count: int
    counts: SendCounts
    variants: dict[str, int] | None = None


def listed_send(reports: SendReports, partitions: int) -> ListedSend:
    """A send from its partitions' done reports: the sum the summary makes of them (the same
    function), and how far it is (``complete`` once every one of ``partitions`` reported)."""
    summary = summary_record(reports.dones)
    return ListedSend(
        summary.send_id,
        summary.campaign_id,
        summary.scheduled_for,
        summary.materialized_at,
        summary.late,
        len(reports.dones) == partitions,
        reports.summarized,
        len(reports.dones),
        partitions,
        summary.recipient_count,
        summary.counts,
        summary.variants,
    )


def recent_sends(reports: Sequence[SendReports], partitions: int, limit: int) -> list[ListedSend]:
    """The ``limit`` latest sends, by scheduledFor, then the last materialization, then
    sendId (all descending): the same order whichever worker answers."""

    def latest_first(report: SendReports) -> tuple[int, int, str]:
        first = report.dones[0]
        return (first.scheduled_for, max(d.materialized_at for d in report.dones), first.send_id)

    reported = sorted((r for r in reports if r.dones), key=latest_first, reverse=True)
    return [listed_send(r, partitions) for r in reported[:limit]]


def _limit(raw: str | None) -> int:
    """The ``limit`` query parameter: 1 to :data:`MAX_LIMIT`, default
    :data:`DEFAULT_LIMIT`; :class:`BodyError` 400 otherwise."""
    if raw is None:
        return DEFAULT_LIMIT
    if raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_LIMIT:
        return int(raw)
    raise BodyError(
        400, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r:.20}"
    )


# -- the answer, as /openapi.json describes it ---------------------------------------------


class SendListing(BaseModel):
    """One send: the counts its summary carries (once complete: exactly the summary's)."""

    model_config = ConfigDict(extra="forbid")
    sendId: str
    campaignId: str
    scheduledFor: UtcMillisTimestamp
    materializedAt: UtcMillisTimestamp = Field(
        description="The latest materialization of a partition reported so far."
    )
    late: bool = Field(description="As the summary's: a partition materialized it late.")
    complete: bool = Field(description="Every partition's share is committed.")
    summarized: bool = Field(description="The summary is committed on send-recipients.")
    partitionsDone: int = Field(ge=1, description="Partitions whose share is committed.")
    partitions: int = Field(ge=1, description="LEADSTREAM_PARTITIONS.")
    recipientCount: int = Field(ge=0)
    counts: SendCountsModel = Field(
        description="Summed over the partitions reported, as the summary sums them."
    )
    variants: dict[SplitName, int] | SkipJsonSchema[None] = Field(
        None, description="Recipients per split name, as in a summary; only with splits."
    )


class OrganizationSendList(BaseModel):
    """The organization's recent sends, latest scheduledFor first."""

    model_config = ConfigDict(extra="forbid")
    organizationId: str
    sends: list[SendListing] = Field(max_length=MAX_LIMIT)


class OrganizationSends(ServedView):
    """``GET /api/v1/organizations/{organizationId}/sends``: 401 without a key, 403 with
    another organization's (both from the headers: web/http.py), 400 for a bad limit, 503
    while the worker is not ready."""

    operations: ClassVar = {
        "get": Operation(
            "getOrganizationSends",
            "The organization's recent sends, latest scheduledFor first, each with its"
            " summary's counts summed over the partitions that committed their share so far"
            " (complete: every partition, the summary's counts exactly), for a key of that"
            " organization (a signature is of the empty body). Answered by any worker alone,"
            " from the progress topic: listed as long as it keeps them.",
            {
                200: Answer(
                    "The sends",
                    OrganizationSendList,
                    links={
                        "ExplainListed": Link(
                            "getSendLead",
                            {
                                "organizationId": "$response.body#/organizationId",
                                "sendId": "$response.body#/sends/0/sendId",
                            },
                            "A lead (any phone) in the latest send listed: why it was or was"
                            " not messaged.",
                        )
                    },
                )
            },
            params=(
                Param("organizationId", "path", "42"),
                Param(
                    "limit",
                    "query",
                    10,
                    f"How many sends, at most (400 invalid_limit beyond {MAX_LIMIT}).",
                    schema={
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    },
                ),
            ),
            errors=(400,),
        )
    }

    async def get(self, request: Request, **path: str) -> Response:
        context = self.context
        org = admission_of(request).acting_org(None)
        try:
            limit = _limit(request.query.get("limit"))
        except BodyError as err:
            return err.answer(self)
        if context.readiness.partitions() is None:
            return error_response(
                self,
                503,
                "not_ready",
                "this worker is not ready; retry",
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        sends = recent_sends(
            context.ingress.sends_reported(org), context.settings.partitions, limit
        )
        listed = {"organizationId": org, "sends": msgspec.to_builtins(sends)}
        return answer(self, OrganizationSendList.model_validate(listed))
