"""What a handler sees of its job: :class:`Context` for ``def`` handlers, :class:`AsyncContext`
for ``async def`` handlers."""

from __future__ import annotations

import io
import json
import os
from typing import IO, Any, Awaitable, Iterator, Optional, Union

from . import _native
from .errors import JobCancelled, LeaseLost
from .models import Artifact, _dumps

__all__ = ["ArtifactSource", "AsyncContext", "Context"]

#: What ``put_artifact`` takes: bytes in memory, a path, or a binary file object.
ArtifactSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes]]

_CHUNK = 1 << 20
_DEFAULT_MEDIA_TYPE = "application/octet-stream"
_UNSET: Any = object()


def _artifact(t: tuple[str, str, int, str]) -> Artifact:
    return Artifact(*t)


def _check_name(name: object, media_type: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"artifact name must be a string, got {type(name).__name__}")
    if not isinstance(media_type, str):
        raise TypeError(f"media_type must be a string, got {type(media_type).__name__}")


def _is_binary_file(data: object) -> bool:
    if isinstance(data, io.TextIOBase):
        raise TypeError("put_artifact needs a binary file object (open it with 'rb'), not a text file")
    return hasattr(data, "read")


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    """The contents of a binary file object, in chunks of up to 1 MiB."""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"the file object returned {type(chunk).__name__}, not bytes")
        yield bytes(chunk)


def _unsupported(data: object) -> TypeError:
    return TypeError(f"put_artifact takes bytes, a path or a binary file object, not {type(data).__name__}")


class _BaseContext:
    __slots__ = ("_job", "_payload")

    def __init__(self, job: _native.Job) -> None:
        self._job = job
        self._payload: Any = _UNSET

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self._job.id

    @property
    def kind(self) -> str:
        """The job's kind."""
        return self._job.kind

    @property
    def queue(self) -> str:
        """The job's queue."""
        return self._job.queue

    @property
    def tenant(self) -> str:
        """The tenant whose job it is (one of a shared pool's tenants)."""
        return self._job.tenant

    @property
    def payload(self) -> Any:
        """The job's payload (decoded JSON)."""
        if self._payload is _UNSET:
            self._payload = json.loads(self._job.payload_json)
        return self._payload

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self._job.attempt

    @property
    def max_attempts(self) -> int:
        """Attempts allowed in all."""
        return self._job.max_attempts

    @property
    def idempotency_key(self) -> str:
        """A key stable across attempts, for making side effects exactly-once downstream (the
        job's idempotency key, else its id)."""
        return self._job.idempotency_key

    @property
    def correlation_id(self) -> Optional[str]:
        """The job's correlation id, if any."""
        return self._job.correlation_id

    @property
    def fencing_token(self) -> int:
        """The lease's fencing token (strictly increasing per job); pass it to downstream systems
        that can reject writes from stale holders."""
        return self._job.fencing_token

    @property
    def last_checkpoint(self) -> Any:
        """The latest checkpoint: this attempt's last, else the one the previous attempt left
        (``None`` if neither)."""
        text = self._job.last_checkpoint_json()
        return None if text is None else json.loads(text)

    @property
    def cancel_reason(self) -> Optional[str]:
        """Why the job is being cancelled — ``"cancel_requested"``, ``"lease_lost"``,
        ``"lease_expired"``, ``"timed_out"`` (its run time is running out: the SDK reports a
        ``timeout`` failure whatever the handler returns) or ``"shutdown"`` — or ``None``."""
        return self._job.cancel_reason()

    def checkpoint(self, value: Any) -> None:
        """Records a checkpoint (JSON-serializable, latest wins). It travels with the next
        heartbeat; the next attempt reads it as :attr:`last_checkpoint`."""
        self._job.checkpoint(_dumps("checkpoint", value))

    def progress(self, value: Any) -> None:
        """Records progress (JSON-serializable, latest wins), shown to operators."""
        self._job.progress(_dumps("progress", value))

    def heartbeat(self, progress: Any = _UNSET) -> None:
        """A cancellation point for long loops, optionally recording ``progress``.

        Heartbeats themselves are sent by the SDK in the background (one coalesced request for
        all of a worker's jobs), whatever the handler does. This call raises
        :class:`~leasehold.LeaseLost` when the lease is gone and
        :class:`~leasehold.JobCancelled` when an operator cancelled the job, so a loop that
        calls it stops at the right time.
        """
        if progress is not _UNSET:
            self.progress(progress)
        reason = self._job.cancel_reason()
        if reason is None:
            return
        if reason == "cancel_requested":
            raise JobCancelled(f"job {self.job_id} was cancelled")
        if reason == "timed_out":
            raise LeaseLost(f"job {self.job_id} ran out of run time (timed_out)", job_id=self.job_id)
        raise LeaseLost(f"the lease on job {self.job_id} is gone ({reason})", job_id=self.job_id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} job_id={self.job_id} kind={self.kind!r} attempt={self.attempt}>"


class Context(_BaseContext):
    """The context of a ``def`` handler (run on a worker thread)."""

    __slots__ = ()

    @property
    def cancelled(self) -> bool:
        """Whether the job should stop: cancelled by an operator, lease lost, run time
        exceeded, or worker shutting down (:attr:`cancel_reason` says which)."""
        return self._job.is_cancelled()

    def wait_cancelled(self, timeout: Optional[float] = None) -> bool:
        """Sleeps until the job is cancelled or ``timeout`` seconds pass; returns whether it was
        cancelled. Use it instead of ``time.sleep`` to stop promptly."""
        return self._job.wait_cancelled(timeout)

    def put_artifact(self, name: str, data: ArtifactSource, *, media_type: str = _DEFAULT_MEDIA_TYPE) -> Artifact:
        """Uploads an artifact and adds it to the job's manifest.

        ``data`` is bytes, a path (``str`` or ``os.PathLike``), or a binary file object; files and
        streams are hashed (SHA-256, in Rust, GIL released) and streamed, never loaded whole. A
        path that cannot be read raises the matching :class:`OSError` (``FileNotFoundError``, …)
        with its ``filename``.
        """
        _check_name(name, media_type)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return _artifact(self._job.put_artifact_bytes(name, bytes(data), media_type))
        if isinstance(data, (str, os.PathLike)):
            return _artifact(self._job.put_artifact_file(name, os.fspath(data), media_type))
        if _is_binary_file(data):
            writer = self._job.artifact_writer(name, media_type)
            try:
                for chunk in _chunks(data):
                    writer.write(chunk)
            except BaseException:
                writer.abort()
                raise
            return _artifact(writer.finish())
        raise _unsupported(data)


class AsyncContext(_BaseContext):
    """The context of an ``async def`` handler (run on the worker's asyncio loop)."""

    __slots__ = ()

    @property
    def cancelled(self) -> Awaitable[None]:
        """An awaitable that resolves when the job should stop. (The worker also cancels the
        handler's task then; this is for code that wants to wait for it explicitly.) Use
        :meth:`is_cancelled` for a plain check."""
        fut: Awaitable[None] = self._job.cancelled_async()
        return fut

    def is_cancelled(self) -> bool:
        """Whether the job should stop (see :attr:`cancel_reason`)."""
        return self._job.is_cancelled()

    async def put_artifact(self, name: str, data: ArtifactSource, *, media_type: str = _DEFAULT_MEDIA_TYPE) -> Artifact:
        """The awaitable form of :meth:`Context.put_artifact`."""
        _check_name(name, media_type)
        if isinstance(data, (bytes, bytearray, memoryview)):
            t = await self._job.put_artifact_bytes_async(name, bytes(data), media_type)
            return _artifact(t)
        if isinstance(data, (str, os.PathLike)):
            t = await self._job.put_artifact_file_async(name, os.fspath(data), media_type)
            return _artifact(t)
        if _is_binary_file(data):
            writer = self._job.artifact_writer(name, media_type)
            try:
                for chunk in _chunks(data):
                    await writer.write_async(chunk)
            except BaseException:
                writer.abort()
                raise
            return _artifact(await writer.finish_async())
        raise _unsupported(data)
