"""Each dashboard page shows the numbers the API answers (SQLite and PostgreSQL, real HTTP)."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest
from dashboard_helpers import Clients, elements, form_value, one, seed
from markupsafe import escape
from service_helpers import Server

from rfmflow.service.customer_search import CustomerFilter, search


@pytest.fixture
def seeded(server: Server) -> Server:
    seed(server)
    return server


def _segment_members(clients: Clients, name: str) -> set[str]:
    api = clients.api("admin")
    found: set[str] = set()
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/v1/segments/{name}/customers", params=params).json()
        found |= {item["customer_id"] for item in page["items"]}
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def _list_ids(clients: Clients, client_url: str, client: object) -> list[str]:
    """Every customer id of a dashboard list, following its 'Next page' links."""
    ids: list[str] = []
    url: str | None = client_url
    while url is not None:
        page = client.get(url)  # type: ignore[attr-defined]
        assert page.status_code == 200, page.text
        table = page.text.split('id="customers"', 1)[1]
        ids += re.findall(r'<td><a href="/customers/[^"]+">([^<]+)</a></td>', table)
        found = re.search(r'<a href="([^"]+)" rel="next" id="next-page">', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    return ids


def test_overview_shows_the_api_numbers(seeded: Server, clients: Clients) -> None:
    admin = clients.sign_in("admin")
    api = clients.api("analyst")
    segments = api.get("/v1/segments").json()
    page = admin.get("/")
    assert page.status_code == 200, page.text
    html = page.text
    assert int(one(html, id="total-customers")["data-customers"]) == segments["customers"]
    shown = {row["data-segment"]: row for row in elements(html, "tr", data_segment=None)}
    assert list(shown) == [s["name"] for s in segments["segments"]]
    for seg in segments["segments"]:
        row_html = html.split(f'data-segment="{escape(seg["name"])}"', 1)[1].split("</tr>", 1)[0]
        count = one(row_html, "a", class_="count")
        assert int(count["data-customers"]) == seg["customers"]
        assert count["href"] == "/customers?segment=" + seg["name"].replace(" ", "+").replace("'", "%27")
        assert f"{seg['share'] * 100:.1f}%" in row_html
        assert f"{seg['revenue_share'] * 100:.1f}%" in row_html
        assert f"{float(seg['revenue']):,.2f}" in row_html
    assert all(s["customers"] > 0 for s in segments["segments"])  # the demo fills every segment

    # the heat map: every customer in one cell; each cell links to the list of exactly them
    cells = elements(html, "a", class_="cell")
    assert sum(int(c["data-customers"]) for c in cells) == segments["customers"]
    busiest = max(cells, key=lambda c: int(c["data-customers"]))
    listed = admin.get(busiest["href"])
    assert int(one(listed.text, id="result-count")["data-total"]) == int(busiest["data-customers"])
    revenue = admin.get("/?measure=revenue")
    assert "(colour: revenue)" in revenue.text

    # moves: the matrix is the API's, and each cell lists the moves behind it
    start, end = one(html, "input", id="from")["value"], one(html, "input", id="to")["value"]
    matrix = api.get("/v1/transitions/flows", params={"from": start, "to": end}).json()["matrix"]
    moves = elements(html, "a", class_="move")
    assert {(m["data-from"], m["data-to"]): int(m["data-customers"]) for m in moves} == {
        (a, b): n for a, row in matrix.items() for b, n in row.items()
    }
    move = moves[0]
    listed = admin.get(move["href"])
    assert listed.status_code == 200
    assert int(one(listed.text, id="moves-total")["data-customers"]) == int(move["data-customers"])
    ids = re.findall(r'<li><a href="/customers/[^"]+">([^<]+)</a></li>', listed.text)
    assert len(ids) == min(int(move["data-customers"]), 100)
    if move["data-from"] == "(none)":
        assert set(ids) <= _segment_members(clients, move["data-to"]) | set(ids)

    # a shorter range between two runs: moves between segments, counted as the API does
    runs = api.get("/v1/runs").json()["runs"]
    days = sorted({r["as_of"] for r in runs})
    narrow = admin.get("/", params={"from": days[0], "to": days[-1]})
    flows = api.get("/v1/transitions/flows", params={"from": days[0], "to": days[-1]}).json()
    shown = rf"<strong>{flows['changed']:,}</strong> moves between segments and {flows['first_scored']:,}"
    assert re.search(shown, narrow.text)
    # the trend has one point per day with a run in the range
    assert f"({len(days)} days with a run)" in narrow.text

    # a bad date is shown in place
    bad = admin.get("/", params={"from": "2024-13-01"})
    assert bad.status_code == 422
    assert "&#39;2024-13-01&#39; is not a date (YYYY-MM-DD)" in bad.text
    upside = admin.get("/", params={"from": "2024-05-02", "to": "2024-05-01"})
    assert upside.status_code == 422 and "must not be after &#39;to&#39;" in upside.text
    # predictions are not stored by the service: a placeholder says so
    assert "Not fitted" in one(html, id="predictions")["text"]


def test_health_warns_when_a_top_segment_is_too_large(seeded: Server, clients: Clients) -> None:
    admin = clients.sign_in("admin")
    page = admin.get("/scheme")
    text = form_value(page.text, "csrf_token")
    scheme = (
        "name: generous\nscores:\n  recency: {quantiles: 5}\n  frequency: {quantiles: 5}\n"
        "  monetary: {quantiles: 5}\n"
        "segments:\n  - {name: Champions, top: true, when: r_score >= 3}\n  - {name: Rest, when: true}\n"
    )
    answer = admin.post("/scheme", data={"csrf_token": text, "yaml": scheme, "action": "apply"})
    assert answer.status_code == 303
    html = admin.get("/").text
    warnings = one(html, "ul", id="warnings")["text"]
    assert "top segment Champions holds" in warnings and "(over 20%)" in warnings


def test_customer_list_filters_sorts_pages_and_exports(seeded: Server, clients: Clients) -> None:
    analyst = clients.sign_in("analyst")
    champions = _segment_members(clients, "Champions")
    ids = _list_ids(clients, "/customers?segment=Champions&limit=25&sort=monetary&order=desc", analyst)
    assert sorted(ids) == sorted(champions) and len(ids) == len(set(ids))
    with seeded.engine.connect() as conn:
        expected = search(
            conn,
            seeded.settings,
            CustomerFilter(segments=("Champions",)),
            sort="monetary",
            order="desc",
            limit=1000,
        )
    assert ids == [item["customer_id"] for item in expected.items]
    page = analyst.get("/customers?segment=Champions")
    assert int(one(page.text, id="result-count")["data-total"]) == len(champions)

    # score ranges and search
    page = analyst.get("/customers?r_score_min=4&f_score_max=2&recency_max=400")
    with seeded.engine.connect() as conn:
        from rfmflow.service.customer_search import Bounds

        f = CustomerFilter(r_score=Bounds(4, None), f_score=Bounds(None, 2), recency=Bounds(None, 400))
        total = search(conn, seeded.settings, f, limit=1).total
    assert int(one(page.text, id="result-count")["data-total"]) == total
    assert int(one(analyst.get("/customers?q=c0000").text, id="result-count")["data-total"]) == 9

    # bad filters: each message next to its field, nothing listed
    bad = analyst.get("/customers?r_score_min=abc&f_score_min=4&f_score_max=2&segment=Nope")
    assert bad.status_code == 422
    assert 'id="r_score_min-error"' in bad.text and "&#39;abc&#39; is not a whole number" in bad.text
    assert 'id="f_score_min-error"' in bad.text and "must not be greater than f_score_max" in bad.text
    assert 'id="customers"' not in bad.text
    bad = analyst.get("/customers?segment=Nope")
    assert bad.status_code == 422 and "no segment &#39;Nope&#39;" in bad.text
    assert analyst.get("/customers?sort=nope").status_code == 422
    assert analyst.get("/customers?cursor=garbage").status_code == 422

    # exports: the same customers as the list, as CSV and as Parquet
    page = analyst.get("/customers?segment=Champions&sort=recency")
    csv_url = one(page.text, "a", id="export-csv")["href"].replace("&amp;", "&")
    assert parse_qs(urlsplit(csv_url).query) == {
        "segment": ["Champions"],
        "sort": ["recency"],
        "order": ["asc"],
    }
    answer = analyst.get(csv_url)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert {r["customer_id"] for r in rows} == champions
    assert all(r["segment"] == "Champions" for r in rows)
    answer = analyst.get(one(page.text, "a", id="export-parquet")["href"].replace("&amp;", "&"))
    assert answer.status_code == 200
    table = pq.read_table(io.BytesIO(answer.content))
    assert sorted(table.column("customer_id").to_pylist()) == sorted(champions)
    assert analyst.get("/customers/export.csv?r_score_min=x").status_code == 422


def test_customer_page_profile_events_and_history(seeded: Server, clients: Clients) -> None:
    agent = clients.sign_in("agent")
    api = clients.api("agent")
    customer = "c00007"
    page = agent.get(f"/customers/{customer}")
    assert page.status_code == 200, page.text
    profile = api.get(f"/v1/customers/{customer}/profile").json()
    scores = api.get(f"/v1/customers/{customer}/scores").json()
    aggregates = api.get(f"/v1/customers/{customer}").json()
    assert f"<h1>{profile['name']}</h1>" in page.text
    assert one(page.text, id="segment")["text"] == scores["scores"]["segment"]
    assert one(page.text, id="purchases")["text"] == str(aggregates["purchases"])
    assert one(page.text, id="revenue")["text"] == f"{float(aggregates['monetary']):,.2f} USD"
    history = one(page.text, "table", id="history")["text"]
    assert all(move["to"] in history for move in scores["history"])

    # events: newest first, 25 a page, every event once
    seen: list[str] = []
    url: str | None = f"/customers/{customer}"
    stamps: list[str] = []
    while url is not None:
        html = agent.get(url).text
        table = html.split('id="events"', 1)[1].split("</table>", 1)[0]
        seen += re.findall(r'<td class="small" title="[^"]*">([^<]+)</td>', table)
        stamps += re.findall(r"<tr><td>(\d{4}-\d\d-\d\d \d\d:\d\d)</td>", table)
        found = re.search(r'<a href="([^"]+)#events-h" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert len(seen) == len(set(seen)) == aggregates["events"]
    assert stamps == sorted(stamps, reverse=True)

    assert agent.get("/customers/nobody").status_code == 404
    assert agent.get(f"/customers/{customer}?events=garbage").status_code == 422
    assert "No prediction: the customer has no purchase yet, or no model has been fitted" in page.text


def test_manual_tags_are_added_and_removed_from_the_page(seeded: Server, clients: Clients) -> None:
    admin_api = clients.api("admin")
    assert admin_api.post("/v1/tags", json={"name": "VIP"}).status_code == 201
    agent = clients.sign_in("agent")
    customer = "c00011"
    page = agent.get(f"/customers/{customer}")
    assert one(page.text, "select", id="add-tag")["text"].strip() == "VIP"
    token = form_value(page.text, "csrf_token")
    answer = agent.post(
        f"/customers/{customer}/tags", data={"csrf_token": token, "action": "add", "tag": "VIP"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/customers/{customer}#tags"
    tags = admin_api.get(f"/v1/customers/{customer}/tags").json()["tags"]
    assert [(t["tag"], t["kind"]) for t in tags] == [("VIP", "manual")]
    assert '<span class="tag manual">VIP</span>' in agent.get(f"/customers/{customer}").text
    listed = agent.get("/customers?tag=VIP")
    assert int(one(listed.text, id="result-count")["data-total"]) == 1

    answer = agent.post(
        f"/customers/{customer}/tags", data={"csrf_token": token, "action": "add", "tag": "Nope"}
    )
    assert answer.status_code == 422
    assert "no tag &#39;Nope&#39;" in one(answer.text, id="tag-error")["text"].replace("'", "&#39;") or (
        "no tag 'Nope'" in one(answer.text, id="tag-error")["text"]
    )
    answer = agent.post(
        f"/customers/{customer}/tags", data={"csrf_token": token, "action": "remove", "tag": "VIP"}
    )
    assert answer.status_code == 303
    assert admin_api.get(f"/v1/customers/{customer}/tags").json()["tags"] == []

    analyst = clients.sign_in("analyst")
    page = analyst.get(f"/customers/{customer}")
    assert 'id="add-tag"' not in page.text
    token = form_value(page.text, "csrf_token")
    answer = analyst.post(
        f"/customers/{customer}/tags", data={"csrf_token": token, "action": "add", "tag": "VIP"}
    )
    assert answer.status_code == 403


def test_scheme_editor_validates_in_place_previews_and_applies(seeded: Server, clients: Clients) -> None:
    admin = clients.sign_in("admin")
    api = clients.api("admin")
    page = admin.get("/scheme")
    token = form_value(page.text, "csrf_token")
    original = api.get("/v1/scheme").json()["yaml"]
    bad = original.replace("r_score == 5 and f_score >= 4", "r_score == 5 and fscore >= 4")
    answer = admin.post("/scheme", data={"csrf_token": token, "yaml": bad, "action": "preview"})
    assert answer.status_code == 422
    problem = one(answer.text, "li", data_line=None)
    line = next(i for i, text in enumerate(bad.splitlines(), start=1) if "fscore" in text)
    assert int(problem["data-line"]) == line
    assert "segments[0].when" in problem["text"] and "unknown name &#39;fscore&#39;" not in problem["text"]
    assert "unknown name 'fscore'" in problem["text"]
    assert "fscore &gt;= 4" in answer.text  # the text is kept in the editor

    broken = "name: x\nsegments: [\n"
    answer = admin.post("/scheme", data={"csrf_token": token, "yaml": broken, "action": "preview"})
    assert answer.status_code == 422 and one(answer.text, "li", data_line=None)["data-line"] == "3"
    answer = admin.post("/scheme", data={"csrf_token": token, "yaml": " ", "action": "apply"})
    assert answer.status_code == 422 and "the scheme is empty" in answer.text
    assert api.get("/v1/scheme").json()["version"] == 1  # nothing stored

    changed = original.replace("r_score == 5 and f_score >= 4", "r_score >= 4 and f_score >= 4")
    answer = admin.post("/scheme", data={"csrf_token": token, "yaml": changed, "action": "preview"})
    assert answer.status_code == 200, answer.text
    dry = api.put("/v1/scheme", params={"dry_run": "true"}, content=changed).json()
    for name, count in dry["proposed"]["segment_counts"].items():
        row = answer.text.split(f'<tr data-segment="{escape(name)}">', 1)[1].split("</tr>", 1)[0]
        assert re.search(rf'class="num proposed">{count:,}<', row), name
        assert f">{dry['current']['segment_counts'].get(name, 0):,}<" in row
    assert api.get("/v1/scheme").json()["version"] == 1

    answer = admin.post("/scheme", data={"csrf_token": token, "yaml": changed, "action": "apply"})
    assert answer.status_code == 303 and answer.headers["location"] == "/scheme?applied=2"
    now = api.get("/v1/scheme").json()
    assert now["version"] == 2 and now["yaml"] == changed
    page = admin.get("/scheme?applied=2")
    assert "version 2 applied" in page.text and one(page.text, id="active-version")["text"] == "2"
    old = admin.get("/scheme?version=1")
    assert "r_score == 5 and f_score &gt;= 4" in old.text
    assert admin.get("/scheme?version=99").status_code == 404
    segments = api.get("/v1/segments").json()
    assert {s["name"]: s["customers"] for s in segments["segments"] if s["customers"]} == {
        k: v for k, v in dry["proposed"]["segment_counts"].items() if v
    }
    assert date.fromisoformat(dry["as_of"])
