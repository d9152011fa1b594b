"""The OpenAPI document states the bounds the server enforces (issue 28, row 10): every
`maximum` and `minimum` of a message or external-task request body is refused one past it
with a 400 naming the member, and the document's description names the request-wide
bounds."""

from __future__ import annotations

import pytest

from engine.accounts import MAX_BAD_TOKENS
from tests.test_api_lifecycle import caller as caller  # noqa: PLC0414 - the fixture
from webapp.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH
from webapp.openapi import document

BODIES = {
    "FetchRequest": ("/external-tasks/fetch-and-lock",
                            {"topic": "t", "worker_id": "w", "lock_seconds": 60}),
    "JobFailureRequest": ("/external-tasks/no-such-job/failure",
                          {"worker_id": "w", "error": "x", "retries": 1}),
    "JobRetryRequest": ("/external-tasks/no-such-job/retry", {}),
}


def _bounded_members():
    schemas = document()["components"]["schemas"]
    for name, (path, base) in BODIES.items():
        for member, schema in schemas[name]["properties"].items():
            if "maximum" in schema:
                yield name, path, base, member, schema["maximum"] + 1
            if "minimum" in schema:
                yield name, path, base, member, schema["minimum"] - 1


CASES = list(_bounded_members())


def test_the_bounded_members_are_all_declared():
    assert {(n, m) for n, _, _, m, _ in CASES} >= {
        ("FetchRequest", "lock_seconds"), ("FetchRequest", "max_jobs"),
        ("JobFailureRequest", "retries"), ("JobFailureRequest", "retry_seconds"),
        ("JobRetryRequest", "retries")}


@pytest.mark.parametrize("name, path, base, member, value", CASES,
                         ids=[f"{c[0]}.{c[3]}={c[4]}" for c in CASES])
def test_one_past_a_declared_bound_is_a_400_naming_the_member(caller, name, path, base,
                                                               member, value):
    api = caller
    api.account("admin", "admin", None)
    answer = api.call("admin", "POST", path, {**base, member: value}, status=400,
                      check_body=False)
    assert [f["field"] for f in answer["error"]["fields"]] == [member]


def test_a_case_id_past_the_declared_maximum_is_a_400(caller):
    schema = document()["components"]["schemas"]["MessageRequest"]["properties"][
        "correlation"]["properties"]["case_id"]
    answer = caller.call("office", "POST", "/messages", {
        "message": "item_approval_result", "correlation": {"case_id": schema["maximum"] + 1}},
        status=400, check_body=False)
    assert answer["error"]["fields"][0]["field"] == "correlation.case_id"


def test_the_request_wide_bounds_are_stated():
    text = document()["info"]["description"]
    assert f"{MAX_BODY_BYTES // (1024 * 1024)} MiB" in text
    assert f"{MAX_JSON_DEPTH} levels" in text and f"{MAX_BAD_TOKENS} unknown tokens" in text
    every = [op for ops in document()["paths"].values() for op in ops.values()]
    assert all("429" in op["responses"] for op in every if "401" in op["responses"])
