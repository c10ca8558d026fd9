"""The dashboard: server-rendered pages on the service's app (same port, under ``/``).

Sign-in takes an API key and gives a signed session cookie (:mod:`.session`); the pages are
Jinja2 templates with hand-built inline SVG charts (:mod:`.charts`), and the only JavaScript
is a small static file shipped in this package. Nothing is fetched from the internet.
"""
