"""The graph model, pure: no redis, no rq (an import-linter contract keeps it so).

Vocabulary (node options, trigger rules, codecs, queue names), the plan a run is pinned to,
nodes and the one way a node body is called, run parameters, run status and ``why``, the
in-process executor, pictures, the cost report, validation and the ``DAG`` itself.
"""
