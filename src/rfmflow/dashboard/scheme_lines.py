"""Where in a scheme's YAML text a validation error points: its line, for the editor."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

_LINE = re.compile(r"line (\d+)(?:, column (\d+))?")


@dataclass(frozen=True)
class Problem:
    """A validation message with the field path and the line (1-based) it is about."""

    field: str
    message: str
    line: int | None


def _path_text(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the scheme)"


def locate(text: str, path: Sequence[str | int]) -> int | None:
    """The line of the deepest node of ``path`` (mapping keys and list indexes) found in
    ``text``; None when the YAML cannot be composed or the path starts nowhere."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = None
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    found = (key, value)
                    break
            if found is None:
                break
            line = found[0].start_mark.line + 1
            node = found[1]
            if isinstance(node, yaml.ScalarNode):
                line = node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def problems(text: str, details: Sequence[dict[str, Any]]) -> list[Problem]:
    """The API's field errors (``loc`` = ``["body", "yaml", ...path]``) with their lines."""
    out = []
    for detail in details:
        loc = list(detail.get("loc") or [])
        path = loc[2:] if loc[:2] == ["body", "yaml"] else loc
        message = str(detail.get("msg", ""))
        line = locate(text, path) if path else None
        if line is None:
            match = _LINE.search(message)
            line = int(match.group(1)) if match else None
        out.append(Problem(_path_text(path), message, line))
    return out
