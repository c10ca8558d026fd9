"""Predictions on the dashboard: the overview's churn counts and expected revenue by segment
equal ``GET /v1/predictions``, each count drills down to exactly those customers, the customer
page shows the customer's own, on SQLite and PostgreSQL through real HTTP."""

from __future__ import annotations

from urllib.parse import unquote

from dashboard_helpers import Clients, elements, one, seed
from service_helpers import Server

from rfmflow.service.predictions import fit_predictions


def test_predictions_on_the_overview_and_the_customer_page(server: Server, clients: Clients) -> None:
    seed(server)
    admin = clients.sign_in("admin")
    before = admin.get("/")
    assert before.status_code == 200 and "Not fitted yet" in before.text
    assert fit_predictions(server.engine, server.settings).status == "done"

    fit = clients.api("analyst").get("/v1/predictions").json()
    page = admin.get("/")
    html = page.text
    for level, n in fit["summary"]["churn_counts"].items():
        assert int(one(html, "a", data_churn=level, data_customers=None)["data-customers"]) == n
    rows = {r["data-risk-segment"]: r for r in elements(html, "tr", data_risk_segment=None)}
    assert list(rows) == [s["segment"] for s in fit["summary"]["by_segment"]]
    scale = 10**server.settings.money_decimals
    for seg in fit["summary"]["by_segment"]:
        row_html = html.split(f'data-risk-segment="{seg["segment"]}"'.replace("'", "&#39;"), 1)[1].split(
            "</tr>", 1
        )[0]
        assert f"{seg['expected_revenue_minor'] / scale:,.2f}" in row_html
        assert f"{seg['clv_minor'] / scale:,.2f}" in row_html
    # the busiest high-risk count lists exactly those customers
    busiest = max(fit["summary"]["by_segment"], key=lambda s: s["churn"]["high"])
    assert busiest["churn"]["high"] > 0
    row_html = html.split(f'data-risk-segment="{busiest["segment"]}"'.replace("'", "&#39;"), 1)[1].split(
        "</tr>", 1
    )[0]
    link = one(row_html, "a", data_churn="high")
    listed = admin.get(unquote(link["href"]).replace("&amp;", "&"))
    assert int(one(listed.text, id="result-count")["data-total"]) == busiest["churn"]["high"]
    customer = (
        clients.api("agent")
        .get("/v1/customers", params={"segment": busiest["segment"], "churn_risk": "high", "limit": 1})
        .json()["items"][0]["customer_id"]
    )
    detail = clients.api("agent").get(f"/v1/customers/{customer}").json()["predictions"]
    page = admin.get(f"/customers/{customer}")
    facts = one(page.text, "dl", id="prediction-facts")["text"]
    assert detail["churn_risk"] == "high" and "high" in facts
    assert f"{detail['p_alive'] * 100:.0f}%" in facts
