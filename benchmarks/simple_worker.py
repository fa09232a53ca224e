"""One unsupervised dagrq worker on RQ's ``SimpleWorker``, the reference column of the
benchmarks (what ``dagrq worker --worker-class simple`` was):

    python -m benchmarks.simple_worker path/to/dags.py:attr redis://...
"""

from __future__ import annotations

import sys

import redis

from dagrq import loader
from dagrq.workers.serving import serve_forever


def main(argv: list[str]) -> int:
    target, url = argv
    serve_forever([loader.load(target)], redis.Redis.from_url(url), where=url, fork=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
