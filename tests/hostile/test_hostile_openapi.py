"""Property-based requests, generated from the worker's own OpenAPI document, against a real worker
process (schemathesis + Hypothesis, bounded): no 5xx, every status and body as documented, no
traceback in the worker's log. POST /v1/shutdown is left out: it would end the worker."""
import copy
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chromastyle.server import OPENAPI
from hostile import healthy, start_worker, stop, tracebacks

schema = schemathesis.openapi.from_dict(copy.deepcopy(OPENAPI)).exclude(path="/v1/shutdown")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    base = tmp_path_factory.mktemp("openapi")
    env = {**os.environ, "CHROMASTYLE_HOME": str(base / "home"), "CHROMASTYLE_OFFLINE": "1"}
    state_file = base / "worker.json"
    proc, state = start_worker(state_file, "--max-pixels", "1000000", "--request-timeout", "5", env=env)
    yield {"url": f"http://{state['host']}:{state['port']}", "state": state, "log": base / "worker.log",
           "auth": {"Authorization": f"Bearer {state['token']}"}}
    stop(proc)


# Whether a request is acceptable depends on more than its schema here, so "a schema-valid request
# must be accepted" cannot hold: a job body's bytes must follow its header (the framing is in the
# operation's description, not expressible as a schema; so must a style picture's), and a model
# name must be one the worker serves (GET /v1/models, at run time). Every other check runs on these
# operations too.
RUN_TIME_VALIDITY = {"POST /v1/jobs", "POST /v1/style-images", "GET /v1/styles"}
CALLS = {}   # operation -> generated requests that were checked


@schema.parametrize()
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_worker_answers_as_documented(case, api):
    excluded = [positive_data_acceptance] if case.operation.label in RUN_TIME_VALIDITY else []
    case.call_and_validate(base_url=api["url"], headers=api["auth"], timeout=30, excluded_checks=excluded)
    CALLS[case.operation.label] = CALLS.get(case.operation.label, 0) + 1


def test_no_traceback_after_the_generated_requests(api):
    print(f"generated requests: {sum(CALLS.values())} ({', '.join(f'{k}: {v}' for k, v in sorted(CALLS.items()))})")
    assert len(CALLS) == 10 and min(CALLS.values()) >= 5   # every operation was exercised
    assert healthy(api["state"])
    assert tracebacks(api["log"]) == 0, api["log"].read_text()[-3000:]
