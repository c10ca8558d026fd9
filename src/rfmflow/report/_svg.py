"""Turn a matplotlib figure into an SVG fragment that can be inlined into an HTML page."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Settings every chart is drawn with, whatever the user's matplotlibrc says.
RC: dict[str, Any] = {
    "svg.fonttype": "path",  # glyphs as paths: the page does not depend on installed fonts
    "svg.hashsalt": "rfmflow-report",  # deterministic clip-path ids, so the same run gives the same page
    "svg.image_inline": True,
    "text.usetex": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # shipped with matplotlib
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100.0,
}

_NO_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PROLOG = re.compile(r"^\s*<\?xml[^>]*\?>\s*", re.S)
_DOCTYPE = re.compile(r"<!DOCTYPE[^>]*>\s*", re.S)
_COMMENT = re.compile(r"<!--.*?-->\s*", re.S)
_GLOBAL_STYLE = re.compile(r"<style[^>]*>.*?</style>\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'\bhref="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")
_SVG_TAG = re.compile(r"<svg\b")


@contextmanager
def chart_context() -> Iterator[None]:
    """Fixed matplotlib settings; missing-glyph warnings (non-Latin segment names) silenced."""
    import matplotlib

    with matplotlib.rc_context(cast(Any, RC)), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure (inches) drawn on the SVG canvas, without pyplot and its global state."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasSVG(fig)
    return fig


def figure_to_svg(fig: Figure, *, prefix: str, label: str) -> str:
    """Render ``fig`` as an inline ``<svg>`` element.

    The XML prolog, DOCTYPE, comments and matplotlib's global ``*{...}`` stylesheet are removed,
    every ``id`` (and each reference to one) gets ``prefix`` so several charts can share a page,
    and the element gets ``role="img"`` with ``label`` as its accessible name.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    return clean_svg(buf.getvalue(), prefix=prefix, label=label)


def clean_svg(text: str, *, prefix: str, label: str) -> str:
    """Make matplotlib's SVG document safe to inline (see :func:`figure_to_svg`)."""
    text = _PROLOG.sub("", text)
    text = _DOCTYPE.sub("", text)
    text = _COMMENT.sub("", text)
    text = _GLOBAL_STYLE.sub("", text, count=1)
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _HREF.sub(lambda m: f'href="#{prefix}-{m.group(1)}"', text)
    text = _URL.sub(lambda m: f"url(#{prefix}-{m.group(1)})", text)
    aria = _attr(label)
    return _SVG_TAG.sub(f'<svg role="img" aria-label="{aria}"', text, count=1).strip()


def _attr(value: str) -> str:
    """Escape ``value`` for use inside a double-quoted XML attribute."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def plain(text: str) -> str:
    """Escape ``$`` so matplotlib never reads a label (a segment name, a currency) as mathtext."""
    return text.replace("$", r"\$")
