"""The wire name of every dagrq job's entry point, ``dagrq.runtime.execute_node``.

It is stored in every RQ job hash (jobs saved ``deferred`` at submit live up to the run's TTL),
so it keeps resolving here; the code is :mod:`dagrq.jobs.entry`'s.
"""

from .jobs.entry import execute_node

__all__ = ["execute_node"]
