"""`dagrq validate`, `dot` and `plan`: a DAG looked at before any run (no Redis needed)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    emit_json,
    errors,
    json_option,
    load,
    run_handle,
    url_option,
)


@click.command()
@click.argument("pipeline")
@json_option
@errors
def validate(pipeline: str, as_json: bool) -> None:
    """Validate PIPELINE (module:attr or file.py:attr) and print a summary."""
    from ..model.preflight import abridged

    dag = load(pipeline)
    graph = dag.graph
    if as_json:
        fields = dag.params_model.model_fields
        emit_json(
            {
                "dag": dag.name,
                "ok": True,
                "version": dag.plan_hash,
                "nodes": list(dag.specs),
                "edges": [list(e) for e in graph.edges],
                "joins": {j: list(dag.specs[j].parents) for j in dag.joins},
                "queues": list(dag.queues),
                "params": {
                    k: {
                        "required": f.is_required(),
                        "default": None if f.is_required() else f.default,
                    }
                    for k, f in fields.items()
                },
            }
        )
        return
    click.echo(f"DAG {dag.name}: OK")
    click.echo(f"  nodes  {graph.number_of_nodes()}: {abridged(list(dag.specs), ', ')}")
    click.echo(f"  edges  {graph.number_of_edges()}")
    joins = abridged([f"{j} ({len(dag.specs[j].parents)} in)" for j in dag.joins], ", ") or "none"
    click.echo(f"  joins  {len(dag.joins)}: {joins}")
    click.echo(f"  queues {', '.join(dag.queues)}")
    params = dag.params_model.model_fields
    shown = ", ".join(
        f"{k}{'' if f.is_required() else '=' + repr(f.default)}" for k, f in params.items()
    )
    click.echo(f"  params {shown or 'none'}")


@click.command(name="dot")
@click.argument("pipeline")
@click.option("--run", "run_id", default=None, help="Colour the nodes by this run's states.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "mermaid"]),
    default=None,
    help="Text format (default: from -o's extension, else dot).",
)
@click.option(
    "-o",
    "--output",
    default=None,
    help="Write here: .dot/.gv, .mmd, or .svg/.png/.pdf (rendered with Graphviz).",
)
@url_option
@errors
def dot_command(
    pipeline: str, run_id: str | None, fmt: str | None, output: str | None, url: str | None
) -> None:
    """Draw PIPELINE as DOT or Mermaid; joins, maps and order-only edges marked."""
    from .render import format_for, write_picture

    dag = load(pipeline)
    fmt = format_for(Path(output), fmt) if output else (fmt or "dot")
    status_ = run_handle(run_id, url).status() if run_id else None
    if status_ is not None and status_.dag != dag.name:
        raise click.UsageError(
            f"--run {run_id} is a run of DAG {status_.dag!r}, not of {dag.name!r}; give that "
            "run's pipeline"
        )
    text = dag.to_mermaid(status_) if fmt == "mermaid" else dag.to_dot(status_)
    if output is None:
        click.echo(text, nl=False)
        return
    write_picture(text, Path(output), fmt)
    click.echo(f"wrote {output}")


@click.command(name="plan")
@click.argument("pipeline")
@json_option
@errors
def plan_command(pipeline: str, as_json: bool) -> None:
    """Pre-flight report for PIPELINE, no Redis needed: joins and fan-in widths, queues,
    critical path, max parallelism, Redis commands and memory per run."""
    from ..model.preflight import preflight

    dag = load(pipeline)
    report = preflight(dag.plan, dag.param_types)
    if as_json:
        emit_json(report.to_dict())
        return
    for line in report.lines():
        click.echo(line)


COMMANDS = (validate, dot_command, plan_command)
