"""The cluster report (``rfmflow cluster FILE --html``): content checked against the run it shows,
the silhouette curve only when k was chosen, the cluster x segment counts, the unclustered
customers, escaping and self-containment."""

from __future__ import annotations

import dataclasses
import html
import os
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import markupsafe
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from test_report import EXTERNAL_REF

import rfmflow
from rfmflow.cli.main import main
from rfmflow.clustering import UNCLUSTERED, UNCLUSTERED_LABEL, cluster_customers
from rfmflow.report import render_cluster_html
from rfmflow.report._clusters import naming_z
from rfmflow.result import ClusterRun

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RFMFLOW_SHARED", ROOT.parent / "shared"))
CDNOW_SAMPLE = SHARED / "data" / "CDNOW_sample.txt"
CDNOW_READ: dict[str, Any] = {
    "delimiter": "whitespace",
    "header": False,
    "column_names": ["customer_id", "idx", "date", "cds", "amount"],
}
AS_OF = date(2025, 1, 1)
GROUP_SIZE = 100
CELL = re.compile(
    r'<td class="num[^"]*" data-cluster="(-?\d+)" data-segment="([^"]*)"[^>]*>'
    r'<span class="count">([\d,]+)</span>'
)


def _write_groups(path: Path) -> Path:
    """300 customers in three clear groups: recent frequent big spenders, customers cooling off
    with a few mid-sized orders, and lapsed one-time small buyers."""
    rng = np.random.default_rng(7)
    rows = ["customer_id,order_date,amount"]
    groups = (
        ("vip", (1, 10), (10, 14), 200.0),
        ("mid", (100, 140), (3, 5), 50.0),
        ("old", (300, 360), (1, 1), 10.0),
    )
    for prefix, (near, far), (fewest, most), spend in groups:
        for i in range(GROUP_SIZE):
            last = int(rng.integers(near, far + 1))
            orders = int(rng.integers(fewest, most + 1))
            for n in range(orders):
                day = AS_OF - timedelta(days=last + 20 * n)
                amount = spend * float(rng.uniform(0.8, 1.2))
                rows.append(f"{prefix}{i:03d},{day.isoformat()},{amount:.2f}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def groups_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_groups(tmp_path_factory.mktemp("clusters") / "groups.csv")


@pytest.fixture(scope="module")
def groups_run(groups_csv: Path) -> ClusterRun:
    return rfmflow.cluster(groups_csv, k=None, k_range=(2, 5), as_of=AS_OF)


@pytest.fixture(scope="module")
def cdnow_run() -> ClusterRun:
    if not CDNOW_SAMPLE.exists():
        pytest.fail(f"the CDNOW sample is missing at {CDNOW_SAMPLE}")
    return rfmflow.cluster(CDNOW_SAMPLE, predict=True, k=4, **CDNOW_READ)


@pytest.fixture(scope="module")
def unclustered_run(groups_csv: Path) -> ClusterRun:
    """The groups with seven customers' recency missing, built the way ``rfmflow.cluster`` builds
    its run (the readers never leave recency empty for a customer with a purchase)."""
    scored = rfmflow.score(groups_csv, as_of=AS_OF)
    table = scored.customers
    names = ["recency_days", "frequency", "monetary"]
    features = {
        name: np.array(table.column(name).cast(pa.float64()).to_numpy(), dtype=np.float64) for name in names
    }
    features["recency_days"][[0, 1, 2, 150, 151, 298, 299]] = np.nan
    result = cluster_customers(features, k=3)
    labels = result.to_arrow_labels()
    customers = table.select(["customer_id", *names, "segment"])
    customers = customers.append_column("cluster", labels.column("cluster"))
    customers = customers.append_column("cluster_name", labels.column("cluster_name").cast(pa.string()))
    return ClusterRun(customers=customers, clusters=result, score=scored)


@pytest.fixture(scope="module")
def groups_page(groups_run: ClusterRun) -> str:
    return render_cluster_html(groups_run)


@pytest.fixture(scope="module")
def cdnow_page(cdnow_run: ClusterRun) -> str:
    return render_cluster_html(cdnow_run)


def _row(page: str, label: int) -> str:
    """The profile table row of cluster ``label``."""
    match = re.search(rf'<tr id="cluster-{label}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no profile row for cluster {label}"
    return match.group(1)


def _crosstab_cells(page: str) -> dict[tuple[int, str], int]:
    """(cluster, segment) -> the count printed in the cross-tab ('' is the row total)."""
    section = page[page.index('id="crosstab-table"') :]
    section = section[: section.index("</table>")]
    return {
        (int(cluster), html.unescape(segment)): int(count.replace(",", ""))
        for cluster, segment, count in CELL.findall(section)
    }


def _expected_crosstab(run: ClusterRun) -> Counter[tuple[int, str]]:
    frame = run.customers.select(["cluster", "segment"]).to_pandas()
    return Counter(zip(frame["cluster"].astype(int), frame["segment"].astype(str), strict=True))


# --- content -------------------------------------------------------------------------------------


def test_groups_are_found_and_the_header_tells_how(groups_run: ClusterRun, groups_page: str) -> None:
    c = groups_run.clusters
    assert c.chosen_automatically and [k for k, _ in c.silhouette_curve] == [2, 3, 4, 5]
    assert c.k == 3 and sorted(p.size for p in c.profiles) == [GROUP_SIZE] * 3
    page = groups_page
    assert page.startswith("<!DOCTYPE html>")
    assert "<h1>3 customer clusters &middot; " in page and AS_OF.isoformat() in page
    for heading in (
        "Choosing k",
        "Clusters",
        "Size and revenue",
        "Cluster centres",
        "Clusters &times; segments",
    ):
        assert f"<h2>{heading}</h2>" in page
    facts = dict(re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", page, re.S))
    assert str(markupsafe.escape(str(groups_run.score.input.source))) in facts["Source"]
    assert facts["Customers"] == "300"
    assert facts["Clustered"].startswith("300 (100.0%)")
    assert facts["Features"].startswith("recency_days, frequency, monetary")
    assert (
        facts["Clusters (k)"].startswith("3 ")
        and "chosen by the silhouette among k = 2\u20135" in facts["Clusters (k)"]
    )
    assert facts["Silhouette"].startswith(f"{c.silhouette:.3f} ")
    assert f"on a sample of {c.silhouette_sample_size:,} customers" in facts["Silhouette"]
    assert facts["As of"].startswith(AS_OF.isoformat())


def test_every_cluster_is_in_the_profile_table(
    groups_run: ClusterRun, groups_page: str, cdnow_run: ClusterRun, cdnow_page: str
) -> None:
    for run, page in ((groups_run, groups_page), (cdnow_run, cdnow_page)):
        assert len(re.findall(r'<tr id="cluster-', page)) == len(run.clusters.profiles)
        features = list(run.clusters.profiles[0].mean)
        header = page[page.index('<table class="profiles') : page.index("</thead>")]
        for feature in features:
            assert f">{feature}" in header
        for profile in run.clusters.profiles:
            row = _row(page, profile.cluster)
            assert f'<span class="cluster-name">{markupsafe.escape(profile.name)}</span>' in row
            cells = re.findall(r'<td class="num">([^<]*)</td>', row)
            assert cells[:3] == [str(profile.cluster), f"{profile.size:,}", f"{profile.share * 100:.1f}%"]
            assert cells[-1] == f"{profile.revenue_share * 100:.1f}%"
            means = re.findall(r'<span class="mean">([^<]*)</span>', row)
            assert len(means) == len(features)
            assert means[0] == f"{profile.mean['recency_days']:,.1f}"


def test_predictions_are_profiled_too(cdnow_run: ClusterRun, cdnow_page: str) -> None:
    c = cdnow_run.clusters
    assert c.k == 4 and not c.chosen_automatically
    page = cdnow_page
    facts = dict(re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", page, re.S))
    assert facts["Clusters (k)"].startswith("4 ") and "given" in facts["Clusters (k)"]
    assert "p_alive" in facts["Features"] and "clv" in facts["Features"]
    assert "as is: p_alive" in facts["Features"]
    row = _row(page, 0)
    means = re.findall(r'<span class="mean">([^<]*)</span>', row)
    assert means[3] == f"{c.profiles[0].mean['p_alive']:.3f}"  # probabilities get three decimals


def test_silhouette_curve_only_when_several_k_were_tried(
    groups_page: str, cdnow_run: ClusterRun, cdnow_page: str
) -> None:
    chosen = groups_page
    assert 'id="chart-silhouette"' in chosen and 'href="#silhouette"' in chosen
    assert chosen.count("<svg") == 3  # silhouette, sizes, centres
    given = cdnow_page
    assert len(cdnow_run.clusters.silhouette_curve) == 1
    assert 'id="chart-silhouette"' not in given and "Choosing k" not in given
    assert given.count("<svg") == 2
    for page in (chosen, given):
        assert 'id="chart-cluster-sizes"' in page and 'id="chart-centroids"' in page
        assert 'aria-label="Cluster centres in standard deviations per feature"' in page


def test_crosstab_counts_equal_the_data(
    groups_run: ClusterRun, groups_page: str, cdnow_run: ClusterRun, cdnow_page: str
) -> None:
    for run, page in ((groups_run, groups_page), (cdnow_run, cdnow_page)):
        cells = _crosstab_cells(page)
        expected = _expected_crosstab(run)
        segments = {segment for _, segment in expected}
        labels = {p.cluster for p in run.clusters.profiles}
        assert {(label, s) for label, s in cells if s} == {(label, s) for label in labels for s in segments}
        for (label, segment), count in cells.items():
            if segment:
                assert count == expected.get((label, segment), 0), (label, segment)
            else:
                assert count == sum(n for (cl, _), n in expected.items() if cl == label)
        header = page[page.index('id="crosstab-table"') :]
        header = header[: header.index("</thead>")]
        order = [html.unescape(s) for s in re.findall(r'<th scope="col" class="num">([^<]*)</th>', header)]
        rules = [rule.name for rule in run.score.scheme.segments]
        assert order[-1] == "Total" and sorted(order[:-1], key=rules.index) == order[:-1]
        totals = page[page.index('id="crosstab-table"') :]
        totals = totals[totals.index("<tfoot>") : totals.index("</tfoot>")]
        printed = [int(v.replace(",", "")) for v in re.findall(r'<td class="num">([\d,]+)</td>', totals)]
        assert printed == [sum(n for (_, s), n in expected.items() if s == seg) for seg in order[:-1]] + [
            run.n_customers
        ]


def test_the_groups_line_up_with_the_segments(groups_run: ClusterRun, groups_page: str) -> None:
    """Clear groups put all their customers in few segments: the cross-tab shows where."""
    cells = _crosstab_cells(groups_page)
    top = groups_run.customers.column("cluster_name").to_pylist()
    assert top.count(groups_run.clusters.names[0]) == GROUP_SIZE
    vip = {s: n for (label, s), n in cells.items() if label == 0 and s and n}
    assert sum(vip.values()) == GROUP_SIZE and "Champions" in vip


def test_centres_are_what_the_names_are_read_from(cdnow_run: ClusterRun, groups_run: ClusterRun) -> None:
    for run in (cdnow_run, groups_run):
        c = run.clusters
        z = naming_z(run)
        assert z.shape == (c.k, len(c.feature_names))
        recency = c.feature_names.index("recency_days")
        others = [i for i in range(len(c.feature_names)) if i != recency]
        np.testing.assert_allclose(z[:, others], np.asarray(c.scaled_centroids)[:, others])
        for label, name in enumerate(c.names):
            word = name.split()[0]
            level = z[label, recency]
            assert word == ("Recent" if level <= -0.5 else "Lapsed" if level >= 0.5 else "Cooling"), (
                name,
                level,
            )


# --- unclustered customers, notes, escaping ------------------------------------------------------


def test_unclustered_customers_are_a_row_and_in_the_crosstab(unclustered_run: ClusterRun) -> None:
    c = unclustered_run.clusters
    assert c.n_clustered == 293 and c.profiles[-1].cluster == UNCLUSTERED_LABEL
    page = render_cluster_html(unclustered_run)
    row = _row(page, UNCLUSTERED_LABEL)
    assert f'<span class="cluster-name">{UNCLUSTERED}</span>' in row
    assert re.findall(r'<td class="num">([^<]*)</td>', row)[:2] == ["\u2014", "7"]
    cells = _crosstab_cells(page)
    assert cells[(UNCLUSTERED_LABEL, "")] == 7
    assert sum(n for (label, s), n in cells.items() if label == UNCLUSTERED_LABEL and s) == 7
    expected = _expected_crosstab(unclustered_run)
    for (label, segment), count in cells.items():
        if segment:
            assert count == expected.get((label, segment), 0)
    facts = dict(re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", page, re.S))
    assert facts["Clustered"].startswith("293 (97.7%)") and "7 not clustered" in facts["Clustered"]
    assert c.notes and all(str(markupsafe.escape(note)) in page for note in c.notes)
    assert '<section id="notes">' in page and 'href="#notes"' in page


def test_notes_and_names_are_escaped(groups_run: ClusterRun) -> None:
    hostile = '<img src=x onerror="alert(1)"> & <b>bold</b>'
    clusters = dataclasses.replace(
        groups_run.clusters,
        notes=[hostile],
        names=[f"{name} <i>" for name in groups_run.clusters.names],
        profiles=[dataclasses.replace(p, name=f"{p.name} <i>") for p in groups_run.clusters.profiles],
    )
    page = render_cluster_html(dataclasses.replace(groups_run, clusters=clusters))
    assert hostile not in page and "<img" not in page and "<i>" not in page
    assert str(markupsafe.escape(hostile)) in page
    assert page.count(" &lt;i&gt;</span>") >= 2 * clusters.k  # profile table and cross-tab


def test_the_page_is_self_contained_and_deterministic(
    groups_run: ClusterRun, groups_page: str, cdnow_run: ClusterRun, cdnow_page: str
) -> None:
    for run, page in ((groups_run, groups_page), (cdnow_run, cdnow_page)):
        assert not EXTERNAL_REF.search(page)
        assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
        assert "<?xml" not in page and "<!DOCTYPE svg" not in page
        ids = re.findall(r'\bid="([^"]+)"', page)
        assert len(ids) == len(set(ids)), "element ids must be unique on the page"
        assert page == render_cluster_html(run)


def test_cli_writes_the_report(groups_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "clusters.html"
    result = CliRunner().invoke(
        main,
        ["cluster", str(groups_csv), "--k-range", "2-4", "--as-of", AS_OF.isoformat(), "--html", str(out)],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "<h2>Choosing k</h2>" in page and 'id="crosstab-table"' in page
