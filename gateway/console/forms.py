"""The console's HTML forms turned into what the service takes: a server's fields, a pipeline's
inputs typed by its schema. A field the console cannot use is a BadInput whose message the page shows."""

from __future__ import annotations

import json
import math
from typing import Any


class BadInput(Exception):
    """A form field the console cannot use; its message is shown in the page."""


def _json_object(text: str, field: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{field}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                       f'give a JSON object such as {{"key": "value"}}') from None
    if not isinstance(value, dict):
        raise BadInput(f"{field}: give a JSON object such as {{\"key\": \"value\"}}, not {type(value).__name__}")
    return value


def server_fields(form: dict[str, str]) -> dict[str, Any]:
    """register_server's fields from the add-server form; only what was filled in."""
    name = form.get("name", "").strip()
    if not name:
        raise BadInput("give the new server a name (letters, digits, _ and -)")
    fields: dict[str, Any] = {"name": name}
    template, url = form.get("template", "").strip(), form.get("url", "").strip()
    if not template and not url:
        raise BadInput("give a catalog template (with its params and env), or the url of a remote server")
    if template:
        fields["template"] = template
    if url:
        fields["url"] = url
    for key in ("params", "env"):
        value = _json_object(form.get(key, ""), key)
        if value is not None:
            fields[key] = value
    description = form.get("description", "").strip()
    if description:
        fields["description"] = description
    timeout = form.get("timeout", "").strip()
    if timeout:
        try:
            seconds = float(timeout)
        except ValueError:
            raise BadInput(f"timeout: give a number of seconds, not {timeout!r}") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise BadInput(f"timeout: give a positive number of seconds, not {timeout!r}")
        fields["timeout"] = seconds
    return fields


def _input_kind(schema: Any) -> str:
    """How the run form asks for one pipeline input: text, number, integer, boolean, enum or json."""
    if not isinstance(schema, dict):
        return "json"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return "enum"
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return {"string": "text", "number": "number", "integer": "integer", "boolean": "boolean"}.get(kind, "json")


def form_fields(schema: Any) -> list[dict[str, Any]] | None:
    """The run form's fields for an `inputs` JSON schema, or None: ask for the whole object as JSON."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties", {}), dict):
        return None
    if schema.get("type", "object") != "object":
        return None
    required = set(schema.get("required") or [])
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, dict) else {}
        default = prop.get("default")
        fields.append({
            "name": name, "kind": _input_kind(prop), "type": prop.get("type"),
            "description": prop.get("description") or "", "required": name in required,
            "enum": prop.get("enum") or [],
            "default": "" if default is None else (default if isinstance(default, str) else json.dumps(default)),
        })
    return fields


def _convert(name: str, text: str, schema: dict[str, Any]) -> Any:
    kind = _input_kind(schema)
    if kind == "enum":
        for option in schema["enum"]:
            if text == (option if isinstance(option, str) else json.dumps(option)):
                return option
        raise BadInput(f"input '{name}': {text!r} is not one of {schema['enum']}")
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise BadInput(f"input '{name}' must be an integer, not {text!r}") from None
    if kind == "number":
        try:
            value = float(text)
        except ValueError:
            raise BadInput(f"input '{name}' must be a number, not {text!r}") from None
        if not math.isfinite(value):
            raise BadInput(f"input '{name}' must be a finite number, not {text!r}")
        return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise BadInput(f"input '{name}' must be true or false, not {text!r}")
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"input '{name}': not valid JSON ({exc.msg} at column {exc.colno})") from None
    return text


def pipeline_inputs(form: dict[str, str], schema: Any) -> dict[str, Any]:
    fields = form_fields(schema)
    if fields is None:
        return _json_object(form.get("__json__", ""), "inputs") or {}
    properties = schema.get("properties") or {}
    inputs: dict[str, Any] = {}
    for field in fields:
        text = form.get(f"in.{field['name']}", "")
        if text == "" or (field["kind"] != "text" and not text.strip()):
            continue  # left empty: the pipeline's default applies (or it says what is missing)
        inputs[field["name"]] = _convert(field["name"], text, properties.get(field["name"]) or {})
    return inputs
