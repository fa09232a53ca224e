"""The wire name of every dagrq job's failure callback, ``dagrq.lease.on_failure``.

It is stored in every RQ job hash, so it keeps resolving here; the code is
:mod:`dagrq.jobs.lost`'s.
"""

from .jobs.lost import on_failure

__all__ = ["on_failure"]
