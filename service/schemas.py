"""Pydantic types shared by every domain's schemas (one definition each).

Numbers are strict. In a JSON body a number field takes a JSON number, never ``true`` or the
string ``"0.5"``; the one exception is :data:`Number`, which also reads the documented
:data:`NonFinite` strings. An integer field takes a JSON integer, or a number with a zero
fraction (``2.0``, ``2e3``: JSON Schema counts them as integers, so the OpenAPI document's
``"type": "integer"`` admits them, and ``json.dumps(2.0)`` writes one), never ``1.5``, ``true``
or ``"2"``. A boolean field takes ``true`` or ``false`` only.

Query parameters are text: a query model derives from :class:`QueryParameters`, which reads a
parameter as its field's JSON type first (a decimal numeral as a number, ``true``/``false`` as a
boolean) and then validates it with the same strict types, so ``?width=2.5`` or ``?smooth=yes``
are refused just as in a body.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema

#: How labcrunch writes a non-finite number in JSON, which has no NaN or infinity.
NonFinite = Literal["NaN", "Infinity", "-Infinity"]
#: A JSON number (an integer is taken as a float), never a boolean or a string.
Float = Annotated[float, Strict()]
#: A finite JSON number (NaN and infinities refused).
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]


def _integral(value: Any) -> Any:
    """2.0 → 2 (a number with a zero fraction is an integer); anything else as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def integer(**bounds: int) -> Any:
    """:data:`Integer` with bounds (``ge``, ``gt``, ``le``, ``lt``) that the JSON schema shows as
    ``minimum``/``maximum`` inside a union or a tuple too (``integer(ge=2) | None``); a plain
    field may give them in its ``Field`` instead."""
    return Annotated[int, Strict(), Field(**bounds), BeforeValidator(_integral)]


#: A JSON integer, or a number with a zero fraction (2.0); never 1.5, a boolean or a string.
Integer = integer()
#: true or false.
Boolean = Annotated[bool, Strict()]


class UnionError:
    """``Annotated`` metadata for a union: when no choice fits, one error with this message at
    the field, instead of one per choice with pydantic's internal names in its ``loc``."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        self.message = message

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        if schema["type"] == "union":
            schema["custom_error_type"] = self.error_type
            schema["custom_error_message"] = self.message
        return schema


#: A number as labcrunch reads and writes it: a JSON number, or one of the :data:`NonFinite`
#: strings (read as the float they name).
Number = Annotated[Float | Annotated[NonFinite, AfterValidator(float)], UnionError(
    "number_type", "Input should be a number, or one of 'NaN', 'Infinity', '-Infinity'")]


# --- query parameters ------------------------------------------------------------------------
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_MAX_NUMBER_TEXT = 100  # characters: longer text is never read as a number


def _json_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a (sub)schema admits: ``type``, and those of its ``anyOf``/``oneOf``."""
    kinds = schema.get("type", ())
    found = {kinds} if isinstance(kinds, str) else set(kinds)
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, ()):
            found |= _json_types(option)
    return found


def _from_text(text: str, kinds: set[str]) -> Any:
    """Query text as the JSON value it spells for a field of these JSON types, else the text."""
    if "integer" in kinds or "number" in kinds:
        if len(text) <= _MAX_NUMBER_TEXT and _INTEGER_TEXT.fullmatch(text):
            return int(text)
        if len(text) <= _MAX_NUMBER_TEXT and _DECIMAL_TEXT.fullmatch(text):
            return float(text)
    if "boolean" in kinds and text in ("true", "false"):
        return text == "true"
    return text


class QueryParameters(BaseModel):
    """The base of models whose fields come as query parameters (text): each parameter is read
    as the JSON value it spells, then validated by the field's strict type. Unknown parameters
    are refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _read_text(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        properties = _field_types(cls)
        return {name: _from_text(value, properties.get(name, set())) if isinstance(value, str)
                else value for name, value in data.items()}


@functools.cache
def _field_types(model: type[BaseModel]) -> dict[str, set[str]]:
    """Field name (and alias) → the JSON types it admits, from the model's JSON schema."""
    properties = model.model_json_schema().get("properties", {})
    types = {name: _json_types(schema) for name, schema in properties.items()}
    for name, field in model.model_fields.items():  # validation aliases read the same way
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias]) if alias is not None else []
        for choice in choices:
            if isinstance(choice, str):
                types.setdefault(choice, types.get(field.alias or name, set()))
    return types


#: The mark (in a query parameter's schema) of an option that goes with a binary body only.
ONLY_WITH_MEDIA_TYPE = "x-only-with-media-type"


def binary_body_options(name: str, fields: dict[str, tuple[Any, FieldInfo]], media_type: str,
                        doc: str) -> type[QueryParameters]:
    """A query model of ``fields`` (name → (annotation, FieldInfo)) for the options that travel
    as query parameters beside a ``media_type`` body; with a JSON body they are in the body and
    the query must be empty. OpenAPI cannot tie a parameter to one request media type, so each
    says so in its description and carries the mark :data:`ONLY_WITH_MEDIA_TYPE`."""
    marked = {name: (annotation, FieldInfo.merge_field_infos(
        field, description=f"Only with an {media_type} body. {field.description or ''}".strip(),
        json_schema_extra={ONLY_WITH_MEDIA_TYPE: media_type}))
        for name, (annotation, field) in fields.items()}
    return create_model(name, __base__=QueryParameters, __doc__=doc, **marked)
