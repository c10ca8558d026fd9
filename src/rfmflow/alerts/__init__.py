"""Alerts and scheduled reports: rules evaluated on the service's data, each occurrence sent once
to an operator (Telegram, e-mail or a signed webhook), and a weekly summary page.

Modules: :mod:`~rfmflow.alerts.rules` (kinds, parameters, when a rule fires; pure),
:mod:`~rfmflow.alerts.store` (rules and occurrences in the database),
:mod:`~rfmflow.alerts.evaluation`, :mod:`~rfmflow.alerts.delivery`,
:mod:`~rfmflow.alerts.report_data`, :mod:`~rfmflow.alerts.report_html`,
:mod:`~rfmflow.alerts.reports`, :mod:`~rfmflow.alerts.loop` (``tick``, ``run_forever``),
:mod:`~rfmflow.alerts.routes` (HTTP) and :mod:`~rfmflow.alerts.cli`. See ``docs/alerts.md``.
"""
