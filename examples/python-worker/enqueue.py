"""The enqueue side: submits a few jobs for worker.py and waits for their results.

python enqueue.py --url http://127.0.0.1:7070 --queue examples
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import leasehold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7070")
    parser.add_argument("--queue", default="examples")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    client = leasehold.Client(args.url)
    texts = ["lease", "hold", "worker"]
    digests = [client.enqueue("digest", {"text": t}, queue=args.queue) for t in texts]
    greets = [client.enqueue("greet", {"name": n}, queue=args.queue) for n in ("Ada", "Grace")]
    # The same job twice with a deterministic key is one job.
    once = client.enqueue("greet", {"name": "Once"}, queue=args.queue, deterministic_key=True)
    twice = client.enqueue("greet", {"name": "Once"}, queue=args.queue, deterministic_key=True)
    assert twice.replayed and twice.job.id == once.job.id

    ok = True
    for text, e in zip(texts, digests):
        done = client.wait(e.job.id, args.timeout)
        expected = hashlib.sha256(text.encode() * 5).hexdigest()
        good = done.state == "succeeded" and done.result["sha256"] == expected and len(done.artifacts) == 1
        ok &= good
        print(f"digest {text!r}: {done.state} {done.result} artifacts={[a.name for a in done.artifacts]}")
    for e in [*greets, once]:
        done = client.wait(e.job.id, args.timeout)
        ok &= done.state == "succeeded"
        print(f"greet: {done.state} {done.result}")
    print("all jobs succeeded" if ok else "SOME JOBS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
