"""Run parameters: the pydantic model a DAG's run parameters form, and coercion. Pure.

Every parameter of a node function that is not named after a node is a run parameter. All
nodes that take one parameter share it: one type, one default. A DAG's parameters form one
pydantic model with ``extra="forbid"``, built at validation; values are validated and coerced
against it at submit, and re-validated against each node's own annotation when it runs, so a
``date`` parameter arrives as a ``date`` after its JSON trip.

Examples:
    >>> import inspect
    >>> def fetch(day: str, limit: int = 3): ...
    >>> uses = {p.name: [("fetch", p)] for p in inspect.signature(fetch).parameters.values()}
    >>> model = params_model("orders", uses)
    >>> validate(model, {"day": "mon", "limit": "5"}, dag="orders", takers={}, from_strings=True)
    {'day': 'mon', 'limit': 5}
    >>> type_names(model)
    {'day': 'str', 'limit': 'int'}
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ..errors import NodeDefinitionError, ParameterError
from .codec import is_untyped, type_adapter

#: ``(node name, its inspect.Parameter)`` for each node that takes one run parameter
Uses = Sequence[tuple[str, inspect.Parameter]]


def type_name(annotation: Any) -> str:
    """A short, readable name for an annotation (``any`` when there is none).

    Examples:
        >>> type_name(int), type_name(list[int]), type_name(None)
        ('int', 'list[int]', 'any')
    """
    if is_untyped(annotation):
        return "any"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def type_names(model: type[BaseModel]) -> dict[str, str]:
    """``{run parameter: type name}`` of a parameters model."""
    return {k: type_name(f.annotation) for k, f in model.model_fields.items()}


def params_model(dag: str, uses: Mapping[str, Uses]) -> type[BaseModel]:
    """The pydantic model of a DAG's run parameters (``extra="forbid"``).

    A parameter is required unless every node that takes it gives it a default.

    Raises:
        NodeDefinitionError: one parameter annotated with two different types.
    """
    fields: dict[str, Any] = {}
    for pname, takers in sorted(uses.items()):
        annotations = {
            p.annotation for _, p in takers if p.annotation is not inspect.Parameter.empty
        }
        if len(annotations) > 1:
            where = ", ".join(f"{node}: {type_name(p.annotation)}" for node, p in takers)
            raise NodeDefinitionError(
                f"run parameter {pname!r} has different types ({where}); "
                "annotate it the same in every node"
            )
        annotation = annotations.pop() if annotations else Any
        defaults = [p.default for _, p in takers if p.default is not inspect.Parameter.empty]
        required = len(defaults) < len(takers)
        fields[pname] = (annotation, ... if required else defaults[0])
    model: type[BaseModel] = create_model(
        f"{dag}_params", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def validate(
    model: type[BaseModel],
    values: Mapping[str, Any],
    *,
    dag: str,
    takers: Mapping[str, Sequence[str]],
    from_strings: bool = False,
) -> dict[str, Any]:
    """Validate and coerce run parameters; return them JSON-ready, defaults filled in.

    Args:
        model: the DAG's parameters model (:func:`params_model`).
        values: the parameters given.
        dag: the DAG's name, for messages.
        takers: ``{parameter: [nodes taking it]}``, for messages.
        from_strings: the CLI's ``-p key=value``: a value that does not validate as the
            string it is is tried as JSON, so ``-p ids=[1,2]`` gives a list.

    Raises:
        ParameterError: naming the parameter, the node(s) taking it and the expected type.
    """
    fields = model.model_fields
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise ParameterError(
            f"parameter {unknown[0]!r} is not taken by any node of DAG {dag!r} "
            f"(parameters: {known}); check its spelling"
        )
    given = dict(values)
    if from_strings:
        given = {k: from_string(fields[k].annotation, v) for k, v in given.items()}
    try:
        return model.model_validate(given).model_dump(mode="json")
    except ValidationError as exc:
        err = exc.errors()[0]
        pname = str(err["loc"][0]) if err["loc"] else "?"
        field = fields.get(pname)
        expected = type_name(field.annotation) if field else "?"
        nodes = ", ".join(takers.get(pname, ()))
        if err["type"] == "missing":
            raise ParameterError(
                f"parameter {pname!r} (node {nodes}) is required, of type {expected}; "
                f"pass {pname}=... (CLI: -p {pname}=...)"
            ) from None
        raise ParameterError(
            f"parameter {pname!r} (node {nodes}) expects {expected}, got "
            f"{err.get('input')!r}: {err['msg']}"
        ) from None


def coerce(annotation: Any, value: Any) -> Any:
    """``value`` validated into ``annotation`` (a stored JSON value back to its type);
    unchanged when there is no annotation or pydantic cannot build a schema for it.

    Examples:
        >>> from datetime import date
        >>> coerce(date, "2026-11-27")
        datetime.date(2026, 11, 27)
    """
    if is_untyped(annotation):
        return value
    try:
        return type_adapter(annotation).validate_python(value)
    except TypeError:
        return value


def from_string(annotation: Any, value: Any) -> Any:
    """A CLI string as ``annotation`` wants it: as it is when that validates, else parsed as
    JSON; unchanged when neither works (the model then reports the original input).

    Examples:
        >>> from_string(list[int], "[1, 2]")
        [1, 2]
    """
    if not isinstance(value, str) or annotation in (str, Any, None):
        return value
    try:
        adapter = type_adapter(annotation)
        try:
            return adapter.validate_python(value)
        except ValidationError:
            return adapter.validate_json(value)
    except (ValidationError, TypeError):
        return value
