"""A bounded property-based run of the API against its own OpenAPI document: valid and
invalid requests generated for every operation (schemathesis over Hypothesis), as an
office user with a token, over the real pack. No request may get a 5xx, and every answer
must be one the document describes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agency import service_engine
from agency.bootstrap import sync_departments
from engine import accounts
from engine.config import Config
from engine.runtime.clock import MovableClock
from engine.store import schema as db_schema
from engine.store.db import Database
from tests.conftest import ROOT, START
from tests.service import KEY_PROJECT, OFFICE
from webapp import create_app
from webapp.openapi import document

# Per operation: this many valid and as many invalid requests (a few hundred in all);
# the whole run takes well under a minute on a quiet machine.
EXAMPLES = int(os.environ.get("ZERORUN_API_EXAMPLES", "100"))


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("api-properties")
    url = f"sqlite:///{folder / 'api.db'}"
    config = Config.from_env(database_url=url, processes_dir=ROOT / "processes",
                             data_dir=ROOT / "data", instance_dir=folder)
    engine = service_engine(config, database=Database(url), clock_source=MovableClock(START))
    db_schema.upgrade(engine.db)
    sync_departments(engine)
    engine.load_processes()
    with engine.db.transaction() as s:
        accounts.create_user(s, "office", "office-pass-1", "office",
                             department="leading_group_office", now=engine.clock())
        token = accounts.issue_token(s, "office")
    engine.start_case("case_flow", {"project": KEY_PROJECT}, OFFICE)
    app = create_app({"TESTING": True, "ENGINE_INSTANCE": engine,
                      "ENGINE": {"database_url": url, "instance_dir": folder}})
    app.config["API_TOKEN"] = token
    yield app
    engine.db.dispose()


@pytest.fixture(scope="module")
def api_schema(api_app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app)


OPERATIONS = [(path, method) for path, operations in document()["paths"].items()
              for method in operations]


# (path, method, mode): invalid requests only where there is something to get wrong
RUNS = [(path, method, mode) for path, method in OPERATIONS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode == GenerationMode.POSITIVE or path != "/openapi.json"]


@pytest.mark.parametrize(("path", "method", "mode"), RUNS,
                         ids=[f"{m.upper()} {p} {mode.value}" for p, m, mode in RUNS])
def test_no_generated_request_gets_a_server_error(api_app, api_schema, path, method, mode):
    operation = api_schema[path][method]
    token = api_app.config["API_TOKEN"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call(app=api_app)
        assert response.status_code < 500, (case.method, case.formatted_path, case.body,
                                            response.text[:500])
        case.validate_response(response, checks=(status_code_conformance,
                                                 content_type_conformance,
                                                 response_schema_conformance))

    check()
