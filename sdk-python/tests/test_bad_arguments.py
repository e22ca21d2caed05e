"""Bad arguments raise TypeError/ValueError with messages that say what is wrong, before anything
is sent."""

from __future__ import annotations

import re
from typing import Any, Callable, Type

import leasehold
import pytest

URL = "http://127.0.0.1:9"


CASES = [
    (lambda: leasehold.Worker(42), TypeError, "url must be a string"),  # type: ignore[arg-type]
    (lambda: leasehold.Worker("localhost:7070"), ValueError, "http:// or https://"),
    (lambda: leasehold.Worker(URL, queues="default"), TypeError, "not a single string"),
    (lambda: leasehold.Worker(URL, queues=[]), ValueError, "at least one queue"),
    (lambda: leasehold.Worker(URL, queues=["bad queue"]), ValueError, "queue name 'bad queue'"),
    (lambda: leasehold.Worker(URL, queues=[3]), TypeError, "queue names must be strings"),  # type: ignore[list-item]
    (lambda: leasehold.Worker(URL, concurrency=0), ValueError, "between 1 and 10000"),
    (lambda: leasehold.Worker(URL, concurrency=2.5), TypeError, "concurrency must be an int"),  # type: ignore[arg-type]
    (lambda: leasehold.Worker(URL, lease_ttl=0.1), ValueError, "lease_ttl must be between"),
    (lambda: leasehold.Worker(URL, lease_ttl=float("nan")), ValueError, "finite"),
    (lambda: leasehold.Worker(URL, lease_ttl="30"), TypeError, "lease_ttl must be seconds"),  # type: ignore[arg-type]
    (lambda: leasehold.Worker(URL, transport="carrier-pigeon"), ValueError, "transport must be one of"),
    (lambda: leasehold.Worker(URL).task(""), ValueError, "kind ''"),
    (lambda: leasehold.Worker(URL).task(7), TypeError, "kind must be a string"),  # type: ignore[arg-type]
    (lambda: leasehold.Worker(URL).task("k")(42), TypeError, "must decorate a function"),  # type: ignore[type-var]
    (lambda: leasehold.Worker(URL).run(), ValueError, "register at least one handler"),
    (lambda: leasehold.Retry(after=-1), ValueError, "non-negative"),
    (lambda: leasehold.Retry(after="soon"), TypeError, "after must be seconds"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(None), TypeError, "url must be a string"),  # type: ignore[arg-type]
    (lambda: leasehold.Client("ftp://x"), ValueError, "must be http://host"),
    (lambda: leasehold.Client(URL).enqueue("k", {1, 2}), TypeError, "payload must be JSON-serializable"),
    (lambda: leasehold.Client(URL).enqueue("k", float("nan")), ValueError, "payload must be JSON-serializable"),
    (lambda: leasehold.Client(URL).enqueue("k", queue=5), TypeError, "queue must be a string"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(URL).enqueue("bad kind"), ValueError, 'kind "bad kind"'),
    (lambda: leasehold.Client(URL).enqueue("k", max_attempts="3"), TypeError, "max_attempts must be an int"),  # type: ignore[arg-type]
    (
        lambda: leasehold.Client(URL).enqueue("k", run_at=__import__("datetime").datetime(2030, 1, 1)),
        ValueError,
        "timezone-aware",
    ),
    (lambda: leasehold.Client(URL).enqueue_many("abc"), TypeError, "iterable of leasehold.JobSpec"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(URL).enqueue_many([{"kind": "k"}]), TypeError, "JobSpec values"),  # type: ignore[list-item]
    # A misspelt field is refused by name, never silently dropped (as the coordinator refuses it).
    (lambda: leasehold.Client(URL).enqueue("k", max_atempts=5), TypeError, "max_atempts"),  # type: ignore[call-arg]
    (lambda: leasehold.AsyncClient(URL).enqueue("k", prioirty=1), TypeError, "prioirty"),  # type: ignore[call-arg]
    (lambda: leasehold.JobSpec("k", max_atempts=5), TypeError, "max_atempts"),  # type: ignore[call-arg]
    (lambda: leasehold.Worker(URL, qeues=["q"]), TypeError, "qeues"),  # type: ignore[call-arg]
    (lambda: leasehold.Client(URL).submit_run([], run_tokn="t"), TypeError, "run_tokn"),  # type: ignore[call-arg]
    (lambda: leasehold.Client(URL).get(123), TypeError, "job id must be a string"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(URL).get("not-a-uuid"), ValueError, "is not a UUID"),
    (lambda: leasehold.Client(URL).wait("00000000-0000-0000-0000-000000000000", -1), ValueError, "non-negative"),
    (lambda: leasehold.Client(URL).list(state="sleeping"), ValueError, "unknown job state"),
    (lambda: leasehold.Client(URL).list(run_id="run-1"), ValueError, 'run_id "run-1" is not a UUID'),
    (lambda: leasehold.Client(URL).list(since=3600), TypeError, "since must be a string"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(URL).list_runs(status="done"), ValueError, "unknown run status"),
    (lambda: leasehold.Client(URL).workers(since=__import__("datetime").timedelta(-1)), ValueError, "non-negative"),
    (lambda: leasehold.Client(URL).replay_jobs(reason="", ticket="T-1"), ValueError, "reason is required"),
    (lambda: leasehold.Client(URL).cancel_jobs(reason="r", ticket=" "), ValueError, "ticket is required"),
    (lambda: leasehold.Client(URL).replay_jobs(reason=7, ticket="T-1"), TypeError, "reason must be a string"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(URL).cancel_jobs(reason="r", ticket="t", limit="9"), TypeError, "limit must be an int"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(URL).slo(window=60), TypeError, "window must be a string or timedelta"),  # type: ignore[arg-type]
    (lambda: leasehold.Client(URL).stats(queue="bad queue"), ValueError, 'queue name "bad queue"'),
    (lambda: leasehold.Client(URL).pause_queue("no spaces"), ValueError, "queue name"),
    (lambda: leasehold.Client(URL).submit_run([leasehold.RunJob("a", "k", depends_on="b")]), TypeError, "depends_on"),
    (lambda: leasehold.digest("text"), TypeError, "digest takes bytes"),  # type: ignore[arg-type]
    (lambda: leasehold.Backoff(initial=-1)._to_json(), ValueError, "Backoff.initial"),
]


@pytest.mark.parametrize(("call", "exc", "message"), CASES)
def test_bad_argument(call: Callable[[], Any], exc: Type[BaseException], message: str) -> None:
    with pytest.raises(exc, match=re.escape(message)):
        call()


def test_duplicate_kinds_are_refused() -> None:
    worker = leasehold.Worker(URL)

    @worker.task("k")
    def first(ctx: leasehold.Context) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):

        @worker.task("k")
        def second(ctx: leasehold.Context) -> None:
            return None


def test_context_values_must_be_json() -> None:
    # A Context is only made by the worker; the JSON check runs before the native call.
    from leasehold.models import _dumps

    with pytest.raises(TypeError, match="checkpoint must be JSON-serializable"):
        _dumps("checkpoint", object())
