"""Redis, Lua and RQ: every key, every atomic step, the RQ adapter, and the run store.

A run is read and written through :mod:`dagrq.store.runs` (reads and an attempt's steps),
:mod:`dagrq.store.lifecycle` (create, cancel, resume, re-pin) and :mod:`dagrq.store.repairs`
(the reconciler's queries); a run's keys are spelled in :mod:`dagrq.store.runkeys` alone.
"""
