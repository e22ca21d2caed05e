"""Artifacts from bytes, paths and binary file objects: hashed in Rust (equal to hashlib),
streamed to the coordinator, listed in the job's manifest, downloadable."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
from typing import Dict, List

import leasehold
import pytest
from conftest import running


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_artifacts_from_bytes_paths_and_files(
    url: str, client: leasehold.Client, queue: str, tmp_path: pathlib.Path
) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)  # several stream chunks
    on_disk = tmp_path / "input.bin"
    on_disk.write_bytes(big)
    small = b"hello, artifact"
    returned: Dict[str, leasehold.Artifact] = {}

    worker = leasehold.Worker(url, queues=[queue])

    @worker.task("sync-art")
    def sync_art(ctx: leasehold.Context) -> None:
        returned["bytes"] = ctx.put_artifact("out/bytes.txt", small, media_type="text/plain")
        returned["path"] = ctx.put_artifact("out/path.bin", on_disk)
        returned["str-path"] = ctx.put_artifact("out/str-path.bin", str(on_disk))
        with open(on_disk, "rb") as f:
            returned["file"] = ctx.put_artifact("out/file.bin", f)
        returned["bytesio"] = ctx.put_artifact("out/bytesio.bin", io.BytesIO(small * 3))

    @worker.task("async-art")
    async def async_art(ctx: leasehold.AsyncContext) -> None:
        returned["async-bytes"] = await ctx.put_artifact("a.txt", bytearray(small))
        returned["async-file"] = await ctx.put_artifact("b.bin", io.BytesIO(big))
        returned["async-path"] = await ctx.put_artifact("c.bin", on_disk)

    with running(worker):
        s = client.enqueue("sync-art", {}, queue=queue)
        a = client.enqueue("async-art", {}, queue=queue)
        done_s = client.wait(s.job.id, 60)
        done_a = client.wait(a.job.id, 60)
    assert done_s.state == "succeeded" and done_a.state == "succeeded"
    expect = {
        "bytes": small,
        "path": big,
        "str-path": big,
        "file": big,
        "bytesio": small * 3,
        "async-bytes": small,
        "async-file": big,
        "async-path": big,
    }
    for key, data in expect.items():
        assert returned[key].digest == sha(data), key
        assert returned[key].size == len(data), key
    assert returned["bytes"].media_type == "text/plain"
    manifest = {a.name: a for a in done_s.artifacts}
    assert set(manifest) == {"out/bytes.txt", "out/path.bin", "out/str-path.bin", "out/file.bin", "out/bytesio.bin"}
    assert manifest["out/file.bin"].digest == sha(big)
    assert {a.name for a in done_a.artifacts} == {"a.txt", "b.bin", "c.bin"}

    target = tmp_path / "download.bin"
    assert client.download_artifact(sha(big), target) == len(big)
    assert target.read_bytes() == big


def test_bad_artifacts_raise_clear_errors(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue])
    raised: List[str] = []

    @worker.task("bad-art")
    def bad_art(ctx: leasehold.Context) -> None:
        for name, data, exc in [
            ("../escape", b"x", ValueError),
            ("/abs", b"x", ValueError),
            ("ok.txt", 42, TypeError),
            ("ok.txt", io.StringIO("text"), TypeError),
            ("ok.txt", "/no/such/file", OSError),
        ]:
            with pytest.raises(exc) as info:
                ctx.put_artifact(name, data)  # type: ignore[arg-type]
            raised.append(f"{exc.__name__}: {info.value}")

    with running(worker):
        job = client.enqueue("bad-art", {}, queue=queue)
        done = client.wait(job.job.id, 30)
    assert done.state == "succeeded", done.last_error
    assert len(raised) == 5
    assert "binary file" in raised[3]


def test_a_download_with_an_unknown_digest_leaves_no_file(client: leasehold.Client, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "nothing.bin"
    with pytest.raises(leasehold.CoordinatorError) as info:
        client.download_artifact("sha256:" + "0" * 64, target)
    assert info.value.status == 404
    assert not target.exists()
    with pytest.raises(ValueError):
        client.download_artifact("md5:abc", target)


def test_put_artifact_on_a_missing_file_names_the_path(
    url: str, client: leasehold.Client, queue: str, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "no-such-file.bin"
    seen: List[BaseException] = []
    worker = leasehold.Worker(url, queues=[queue])

    @worker.task("sync-missing")
    def sync_missing(ctx: leasehold.Context) -> None:
        try:
            ctx.put_artifact("out.bin", missing)
        except OSError as e:
            seen.append(e)
            raise

    @worker.task("async-missing")
    async def async_missing(ctx: leasehold.AsyncContext) -> None:
        try:
            await ctx.put_artifact("out.bin", str(missing))
        except OSError as e:
            seen.append(e)
            raise

    with running(worker) as errors:
        a = client.enqueue("sync-missing", {}, queue=queue, max_attempts=1)
        b = client.enqueue("async-missing", {}, queue=queue, max_attempts=1)
        done = [client.wait(a.job.id, 20), client.wait(b.job.id, 20)]
    assert not errors
    assert len(seen) == 2
    for e, job in zip(seen, done):
        assert isinstance(e, FileNotFoundError) and e.filename == str(missing), repr(e)
        assert str(missing) in str(e)
        assert job.state == "dead" and job.last_error is not None
        assert job.last_error["class"] == "FileNotFoundError" and str(missing) in job.last_error["message"]
