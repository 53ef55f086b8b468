"""“Did you mean `expression`?” for unknown request fields.

Request models forbid extra fields; pydantic's ``extra_forbidden`` error names the field that is
not allowed. :func:`suggest_fields` adds the closest allowed names at the same place (found by
walking the request model along the error's ``loc``), in the wording of
:func:`labcrunch_service.errors.did_you_mean`. Every route gets it: FastAPI-validated bodies and
query models through :func:`route_models`, bodies read by ``bodies.json_or_binary`` by naming
their model.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from labcrunch_service.errors import did_you_mean

#: What the names at a ``loc`` root come from: a model (walked along the loc) or plain names.
Fields = type[BaseModel] | Iterable[str]


def suggest_fields(errors: list[dict[str, Any]], roots: Mapping[str, Fields]) -> list[dict[str, Any]]:
    """``errors`` with “did you mean …?” added to the ``msg`` of each unknown field, whose
    ``loc`` starts with a key of ``roots`` (``"body"``, ``"query"``)."""
    out = []
    for error in errors:
        loc = list(error.get("loc") or ())
        if error.get("type") == "extra_forbidden" and len(loc) >= 2 and loc[0] in roots \
                and "did you mean" not in str(error.get("msg")):
            hint = did_you_mean(str(loc[-1]), _names_at(roots[loc[0]], loc[1:-1]))
            if hint:
                error = {**error, "msg": f"{error.get('msg')}; {hint}"}
        out.append(error)
    return out


def route_models(request: Request) -> dict[str, Fields]:
    """The request models of the route that ``request`` matched: its JSON body's model, and
    the names its query string may carry."""
    route = request.scope.get("route")
    roots: dict[str, Fields] = {}
    body = getattr(route, "body_field", None)
    if body is not None:
        roots["body"] = body.field_info.annotation
    dependant = getattr(route, "dependant", None)
    if dependant is not None and dependant.query_params:
        names: list[str] = []
        for param in dependant.query_params:
            annotation = param.field_info.annotation
            names += (_names_at(annotation, []) if _models(annotation) else []) or [param.alias]
        roots["query"] = names
    return roots


def _names_at(fields: Any, path: list[Any]) -> list[str]:
    """The field names (and aliases) of the model found by walking ``path`` from ``fields``."""
    if not _models(fields) and not isinstance(fields, type):
        return [str(name) for name in fields]  # plain names
    options = [fields]
    for part in path:
        options = [child for option in options for child in _children(option, part)]
    return sorted({name for option in options for model in _models(option)
                   for key, field in model.model_fields.items()
                   for name in (key, field.alias) if name})


def _options(annotation: Any) -> list[Any]:
    """The members of a union (``Optional``, ``A | B``) or ``Annotated``, flattened."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _options(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [member for arg in typing.get_args(annotation) for member in _options(arg)]
    return [annotation]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [o for o in _options(annotation) if isinstance(o, type) and issubclass(o, BaseModel)]


def _children(annotation: Any, part: Any) -> list[Any]:
    """What a ``loc`` part leads to inside ``annotation``: a model's field, a dict's value, a
    list's item, or (a union member's name, as pydantic writes it) the member itself."""
    found = []
    for option in _options(annotation):
        origin, args = typing.get_origin(option), typing.get_args(option)
        if isinstance(option, type) and issubclass(option, BaseModel):
            if part == option.__name__:
                found.append(option)
            for key, field in option.model_fields.items():
                if part in (key, field.alias):
                    found.append(field.annotation)
        elif origin in (dict, Mapping) and len(args) == 2 and isinstance(part, str):
            found.append(args[1])
        elif origin in (list, tuple, set, frozenset) and args and isinstance(part, int):
            found.append(args[0])
    return found
