"""``/docs``: the OpenAPI description as one self-contained HTML page.

Swagger UI and ReDoc load their scripts from a CDN, and nothing the service serves may
fetch from the internet; this page is plain HTML built from the schema (endpoints,
parameters, request bodies, responses, and the fields of every model), with no scripts.
"""

from __future__ import annotations

from html import escape
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:0}code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:0 .2em}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.m{display:inline-block;min-width:4.5em;font-weight:700;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.put,.patch{color:#a60}.delete{color:#c00}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;
vertical-align:top}
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f'<a href="#model-{escape(name)}">{escape(name)}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    extra = schema.get("format") or schema.get("pattern")
    return escape(f"{kind} ({extra})" if extra else str(kind))


def _params(op: dict[str, Any]) -> str:
    params = op.get("parameters") or []
    if not params:
        return ""
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
        f"<td>{_type(p.get('schema', {}))}</td><td>{'yes' if p.get('required') else 'no'}</td>"
        f"<td>{escape(p.get('description') or p.get('schema', {}).get('description', ''))}</td></tr>"
        for p in params
    )
    return (
        f"<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th></th></tr>{rows}</table>"
    )


def _body(op: dict[str, Any]) -> str:
    content = (op.get("requestBody") or {}).get("content", {})
    if not content:
        return ""
    media, spec = next(iter(content.items()))
    return f"<p>Request body (<code>{escape(media)}</code>): {_type(spec.get('schema', {}))}</p>"


def _responses(op: dict[str, Any]) -> str:
    items = []
    for code, spec in (op.get("responses") or {}).items():
        schema = (spec.get("content") or {}).get("application/json", {}).get("schema")
        shown = f" — {_type(schema)}" if schema else ""
        items.append(
            f"<li><code>{escape(str(code))}</code> {escape(spec.get('description', ''))}{shown}</li>"
        )
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _model(name: str, schema: dict[str, Any]) -> str:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    rows = "".join(
        f"<tr><td><code>{escape(field)}</code></td><td>{_type(spec)}</td>"
        f"<td>{'yes' if field in required else 'no'}</td><td>{escape(spec.get('description', ''))}</td></tr>"
        for field, spec in props.items()
    )
    doc = f"<p>{escape(schema.get('description', ''))}</p>" if schema.get("description") else ""
    table = (
        f"<table><tr><th>field</th><th>type</th><th>required</th><th></th></tr>{rows}</table>" if rows else ""
    )
    return f'<h3 id="model-{escape(name)}">{escape(name)}</h3>{doc}{table}'


def render_docs(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    title = escape(str(info.get("title", "API")))
    ops = []
    for path, item in (schema.get("paths") or {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            ops.append(
                f'<div class="op"><span class="m {method}">{method}</span> <code>{escape(path)}</code>'
                f" — {escape(op.get('summary', ''))}"
                f"{'<p>' + escape(op['description']) + '</p>' if op.get('description') else ''}"
                f"{_params(op)}{_body(op)}{_responses(op)}</div>"
            )
    models = "".join(
        _model(name, spec)
        for name, spec in sorted((schema.get("components") or {}).get("schemas", {}).items())
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} API</title>'
        f"<style>{STYLE}</style></head><body><h1>{title} API</h1>"
        f"<p>version {escape(str(info.get('version', '')))} · machine-readable: "
        f'<a href="openapi.json">openapi.json</a></p><p>{escape(str(info.get("description", "")))}</p>'
        f"<h2>Endpoints</h2>{''.join(ops)}<h2>Models</h2>{models}</body></html>"
    )
