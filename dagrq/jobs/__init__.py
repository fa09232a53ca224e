"""Job bodies: what a worker does with a dagrq job (an attempt, a map's items), what becomes
of a lost one, and the reconciler that re-drives what is stuck.

The wire names stored in RQ job hashes, ``dagrq.runtime.execute_node`` and
``dagrq.lease.on_failure``, are thin modules at those paths over :mod:`dagrq.jobs.entry` and
:mod:`dagrq.jobs.lost`.
"""
