"""Exceptions of the Leasehold SDK.

Handlers raise :class:`Retry` or :class:`Fatal` to say how a job failed; the SDK raises the
others. Every exception the SDK raises derives from :class:`LeaseholdError`, except bad
arguments, which raise the built-in :class:`TypeError` / :class:`ValueError`.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Optional, Union

__all__ = [
    "CoordinatorError",
    "Fatal",
    "JobCancelled",
    "LeaseLost",
    "LeaseholdError",
    "Retry",
    "WaitTimeout",
    "WorkerClosed",
]


class LeaseholdError(Exception):
    """Base class of every Leasehold exception."""


class CoordinatorError(LeaseholdError):
    """The coordinator refused a request, or could not be reached.

    The SDK has already retried transport faults (connection refused, timeouts, 429/502/503/504)
    with exponential backoff and jitter before raising this.

    Attributes:
        status: HTTP status, or ``None`` when no answer came.
        code: the coordinator's stable error code (``"not_found"``, ``"conflict"``, ...), or
            ``"unreachable"`` / ``"timeout"`` / ``"protocol"`` / ``"unsupported"`` for faults
            on the way.
        detail: the coordinator's human message.
        request_id: the request id to look up in the coordinator's logs.
        retryable: whether the same call may succeed later.
        retry_after: seconds the coordinator asked to wait, if it did.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: str = "internal",
        detail: Optional[str] = None,
        details_json: Optional[str] = None,
        request_id: Optional[str] = None,
        retryable: bool = False,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail if detail is not None else message
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after
        self._details_json = details_json

    @property
    def details(self) -> Any:
        """Structured details from the coordinator's error envelope (``None`` if none)."""
        return json.loads(self._details_json) if self._details_json else None


class WaitTimeout(LeaseholdError, TimeoutError):
    """``Client.wait`` gave up: the coordinator answered, but the job was not terminal by the
    deadline. A :class:`TimeoutError`, whose message names the job's state then, e.g.
    ``job 0192… still queued after 60s (attempt 0 of 25)`` (a job still ``queued`` usually has
    no worker on its queue).

    Attributes:
        job_id: the job waited for.
        state: its state at the deadline (``"queued"``, ``"leased"`` or ``"blocked"``).
        attempt: claims made so far (0: no worker has taken it yet).
        max_attempts: attempts allowed.
        waited: seconds waited.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str = "",
        state: str = "",
        attempt: int = 0,
        max_attempts: int = 0,
        waited: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.waited = waited


class LeaseLost(LeaseholdError):
    """This worker no longer holds the job's lease (stale fencing token, expired, or released
    at shutdown). Stop: whatever the handler produces is dropped and the job runs elsewhere."""

    def __init__(self, message: str, *, job_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobCancelled(LeaseholdError):
    """An operator cancelled the job. Raised by ``ctx.heartbeat()``; a handler that lets it
    escape ends the job as ``cancelled``."""


class WorkerClosed(LeaseholdError):
    """The worker session is draining or closed: no more jobs will come."""


Seconds = Union[float, int, datetime.timedelta]


def _seconds(name: str, value: Seconds) -> float:
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds (a number or a timedelta), got {type(value).__name__}")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, got {value}")
    return float(value)


class Retry(LeaseholdError):
    """Raised by a handler: try the job again.

    Args:
        message: why (recorded as the job's last error).
        after: wait this long before the next attempt (seconds or a ``timedelta``); by default
            the job's backoff policy decides (exponential with full jitter).
    """

    #: The error class recorded with the failure.
    error_class: str = "Retry"

    def __init__(self, message: str = "retry requested", *, after: Optional[Seconds] = None) -> None:
        super().__init__(message)
        self.after: Optional[float] = None if after is None else _seconds("after", after)


class Throttled(Retry):
    """Raised by a handler: the upstream it calls throttled it (HTTP 429, a quota).

    A retryable failure of class ``throttled``, run again after ``retry_after``. The tenant's
    adaptive rate limits the job falls under slow down when they see it (AIMD).

    Args:
        retry_after: wait this long before the next attempt (seconds or a ``timedelta``).
        message: why (recorded as the job's last error).
    """

    error_class = "throttled"

    def __init__(self, retry_after: Seconds, message: str = "throttled by the upstream") -> None:
        super().__init__(message, after=retry_after)


class Fatal(LeaseholdError):
    """Raised by a handler: the job cannot succeed; it ends ``dead`` without further attempts.

    Args:
        message: why (recorded as the job's last error).
        error_class: a short class for the error (default ``"Fatal"``).
    """

    def __init__(self, message: str = "fatal error", *, error_class: str = "Fatal") -> None:
        super().__init__(message)
        self.error_class = error_class
