"""MkDocs hook: the HTTP API page's reference, rendered from the code's OpenAPI document.

``docs/http-api.md`` holds the marker ``<!-- openapi-reference -->``; at build time it is
replaced by the paths, their answers and the schemas of
``failjob_reaper.http_api._openapi.document_bytes()``, the very document ``GET
/openapi.json`` serves. The page cannot drift from the code: a field added to a request
model or an outcome TypedDict appears here on the next build. A page without the marker,
or a document this hook cannot render, fails the build.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "<!-- openapi-reference -->"
PAGE = "http-api.md"
_METHODS = ("get", "post", "put", "patch", "delete")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: fill the marker of the HTTP API page (other pages pass unchanged)."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/{PAGE}: the marker {MARKER} is missing")
    from failjob_reaper.http_api._openapi import document_bytes

    document = json.loads(document_bytes())
    return markdown.replace(MARKER, render(document))


def render(document: dict[str, Any]) -> str:
    """The document as Markdown: one section per operation, then one per schema."""
    info = document["info"]
    lines = [
        f"Generated from the OpenAPI {document['openapi']} document the code builds "
        f"(*{_cell(info['title'])}*, version {info['version']}), served at "
        "`GET /openapi.json`.",
        "",
    ]
    for path, item in document["paths"].items():
        for method in _METHODS:
            if method in item:
                lines += _operation(method, path, item[method], document)
    lines += ["## Schemas", ""]
    for name, schema in document["components"]["schemas"].items():
        lines += _schema(name, schema)
    return "\n".join(lines)


def _operation(method: str, path: str, op: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    secured = op.get("security", doc.get("security", [])) != []
    lines = [f"### `{method.upper()} {path}`", "", f"**{_cell(op.get('summary', ''))}**", ""]
    if op.get("description"):
        lines += [op["description"], ""]
    lines += ["Authentication: " + ("`Authorization: Bearer $RETRY_API_TOKEN`." if secured
                                    else "none."), ""]
    parameters = op.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | required | meaning |", "|---|---|---|---|"]
        lines += [f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                  f"{_cell(p.get('description', ''))} |" for p in parameters]
        lines.append("")
    body = op.get("requestBody")
    if body:
        kinds = ", ".join(f"`{media}`: {_type(spec.get('schema', {}))}"
                          for media, spec in body["content"].items())
        lines += [f"Body ({'required' if body.get('required') else 'optional'}): {kinds}.", ""]
    lines += ["| status | meaning | body |", "|---|---|---|"]
    for status, answer in sorted(op["responses"].items()):
        content = answer.get("content", {})
        shape = ", ".join(_type(spec.get("schema", {})) for spec in content.values()) or "-"
        lines.append(f"| {status} | {_cell(answer.get('description', ''))} | {shape} |")
    return [*lines, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [_cell(schema["description"]), ""]
    properties = schema.get("properties")
    if not properties:
        return [*lines, f"Type: {_type(schema)}.", ""]
    required = set(schema.get("required", ()))
    lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
    for field, spec in properties.items():
        lines.append(f"| `{field}` | {_type(spec)} | {'yes' if field in required else 'no'} | "
                     f"{_cell(spec.get('description', ''))} |")
    if schema.get("additionalProperties") is False:
        lines += ["", "Other fields are refused."]
    return [*lines, ""]


def _type(spec: dict[str, Any]) -> str:
    """A schema's type in a few words: references link to their section."""
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in spec:
            return " or ".join(_type(part) for part in spec[key])
    if "enum" in spec:
        return " / ".join(f"`{json.dumps(value)}`" for value in spec["enum"])
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    kind = spec.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(map(str, kind))
    if kind == "array":
        return f"array of {_type(spec.get('items', {}))}"
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"object of {_type(spec['additionalProperties'])}"
    return str(kind)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no column breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")
