"""Airflow's own trigger-rule test cases, replayed on dagrq's rules.

Transcribed from apache/airflow, ``airflow-core/tests/unit/ti_deps/deps/test_trigger_rule_dep.py``
at commit 00a1c46df0a9a3159f6ab8d8f94f4201b5f16289 (the cases of ``TestTriggerRuleDep`` for the
rules dagrq has), whose expectations follow ``TriggerRuleDep._evaluate_direct_relatives`` in
``airflow-core/src/airflow/ti_deps/deps/trigger_rule_dep.py`` at commit
0642ae17dbbab3fe96626b84d7a1d231ed2838ad. Airflow's outcome maps to dagrq's decision so:
the dep passes -> ``fire``; it fails and (with ``flag_upstream_failed``) sets SKIPPED ->
``skip``, UPSTREAM_FAILED -> ``upstream_failed``; it fails and sets nothing -> ``wait``.

Transcription notes (no departure in meaning): Airflow's tests feed the rule made-up counts,
some of which do not add up (``done=2`` with 8 finished upstreams, or no upstream tasks at
all); here ``total`` is the number of upstream tasks and every count is an upstream that
ended, so the counts are the ones a real run can produce. dagrq has no ``removed`` state (a
removed mapped instance), so those are left out; the mapped-task and setup/teardown cases do
not apply. The deliberate departures (a rule on a root node is refused, an empty map gives
``[]``, a run fails if any node failed) are in docs/failures.md, "Coming from Airflow".
"""

from __future__ import annotations

import pytest

from dagrq.model.rules import decide

F, K, U, W = "fire", "skip", "upstream_failed", "wait"
NFS = "none_failed_min_one_success"

# (Airflow test, rule, total, success, failed, skipped, upstream_failed, Airflow's outcome)
CASES = [
    ("test_always_tr", "always", 1, 0, 0, 0, 0, F),
    ("test_one_success_tr_success", "one_success", 8, 1, 3, 2, 2, F),
    ("test_one_success_tr_failure", "one_success", 3, 0, 1, 1, 1, U),
    ("test_one_success_tr_failure_all_skipped", "one_success", 2, 0, 0, 2, 0, K),
    ("test_one_failure_tr_failure", "one_failed", 2, 2, 0, 0, 0, K),
    ("test_one_failure_tr_success", "one_failed", 4, 0, 2, 2, 0, F),
    ("test_one_failure_tr_success_no_failed", "one_failed", 4, 0, 0, 2, 2, F),
    ("test_one_done_tr_success", "one_done", 2, 2, 0, 0, 0, F),
    ("test_one_done_tr_success_with_failed", "one_done", 2, 0, 2, 0, 0, F),
    ("test_one_done_tr_skip", "one_done", 2, 0, 0, 2, 0, K),
    ("test_one_done_tr_upstream_failed", "one_done", 2, 0, 0, 0, 2, K),
    ("test_all_success_tr_success", "all_success", 1, 1, 0, 0, 0, F),
    ("test_all_success_tr_failure", "all_success", 2, 1, 1, 0, 0, U),
    ("test_all_success_tr_skip", "all_success", 2, 1, 0, 1, 0, K),
    ("test_none_failed_tr_success", "none_failed", 2, 1, 0, 1, 0, F),
    ("test_none_failed_tr_failure", "none_failed", 3, 1, 1, 1, 0, U),
    ("test_none_failed_tr_failure_with_upstream_failure", "none_failed", 3, 1, 0, 1, 1, U),
    ("test_none_failed_min_one_success_tr_success", NFS, 2, 1, 0, 1, 0, F),
    ("test_none_failed_min_one_success_tr_skipped", NFS, 2, 0, 0, 2, 0, K),
    ("test_none_failed_min_one_success_tr_failure", NFS, 3, 1, 1, 1, 0, U),
    ("test_none_failed_min_one_success_tr_upstream_failure", NFS, 3, 1, 0, 1, 1, U),
    ("test_all_failed_tr_success", "all_failed", 2, 0, 2, 0, 0, F),
    ("test_all_failed_tr_failure", "all_failed", 2, 2, 0, 0, 0, K),
    ("test_all_done_tr_success", "all_done", 2, 2, 0, 0, 0, F),
    ("test_all_done_tr_failure", "all_done", 2, 1, 0, 0, 0, W),  # one upstream not finished
    ("test_all_skipped_tr_failure", "all_skipped", 1, 1, 0, 0, 0, K),
    ("test_all_skipped_tr_failure_upstream_failed", "all_skipped", 1, 0, 0, 0, 1, K),
    ("test_all_skipped_tr_success", "all_skipped", 3, 0, 0, 3, 0, F),
    ("test_none_skipped_tr_success", "none_skipped", 3, 2, 1, 0, 0, F),
    ("test_none_skipped_tr_failure", "none_skipped", 2, 1, 0, 1, 0, K),
    ("test_none_skipped_tr_failure_empty", "none_skipped", 1, 0, 0, 0, 0, W),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "total", "s", "f", "k", "u", "airflow"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_dagrq_decides_as_airflow(
    rule: str, total: int, s: int, f: int, k: int, u: int, airflow: str
) -> None:
    got = decide(rule, total=total, succeeded=s, failed=f, skipped=k, upstream_failed=u)
    assert got == airflow


def test_the_chain_of_the_issue_gives_airflows_states() -> None:
    # extract fails -> transform -> load -> alert (one_failed), publish (none_failed),
    # rollback (all_failed): Airflow runs alert and rollback and marks publish upstream_failed
    transform = decide("all_success", total=1, failed=1)
    load = decide("all_success", total=1, upstream_failed=1)
    assert (transform, load) == (U, U)
    assert decide("one_failed", total=1, upstream_failed=1) == F
    assert decide("none_failed", total=1, upstream_failed=1) == U
    assert decide("all_failed", total=1, upstream_failed=1) == F
