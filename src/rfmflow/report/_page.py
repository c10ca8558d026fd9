"""What every report page shares: the Jinja2 environment and the header facts."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


@dataclass(frozen=True)
class Fact:
    """One label/value pair of the report header."""

    label: str
    value: str
    note: str = ""


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment (autoescaping on), loading templates shipped with the package."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("rfmflow.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
