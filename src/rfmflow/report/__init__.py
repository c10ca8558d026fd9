"""The self-contained HTML report of a scoring run (``rfmflow report FILE --html report.html``).

:func:`render_html` (:func:`render_prediction_html` for ``rfmflow predict FILE --html``,
:func:`render_cluster_html` for ``rfmflow cluster FILE --html``) returns one HTML page with
inline CSS and inline SVG charts drawn with matplotlib: it opens offline, on a phone too, and
loads nothing from the network.
"""

from __future__ import annotations

from rfmflow.report._clusters import render_cluster_html
from rfmflow.report._html import render_html
from rfmflow.report._predictions import render_prediction_html

__all__ = ["render_cluster_html", "render_html", "render_prediction_html"]
