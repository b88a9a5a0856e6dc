"""SVG pictures: well-formed, accessible, values as text, hostile labels escaped, CSP-clean."""

import datetime as dt
import xml.etree.ElementTree as ET

from audit.metrics import charts

SVG = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert("x")</script>&'


def parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))  # raises on malformed markup or unescaped text


def texts(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter(f"{SVG}text")]


def assert_accessible(root: ET.Element, chart_id: str, title: str) -> None:
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == f"{chart_id}-title"
    assert root.get("aria-describedby") == f"{chart_id}-desc"
    assert root.find(f"{SVG}title").text == title
    assert root.find(f"{SVG}title").get("id") == f"{chart_id}-title"
    assert root.find(f"{SVG}desc").text


def assert_csp_clean(svg: str) -> None:
    assert "style=" not in svg
    assert "<script" not in svg
    assert " on" not in svg.replace(" one", "")  # no onload= / onclick= handlers


def test_heatmap_draws_each_count_as_text_with_darker_cells_for_more():
    svg = charts.heatmap(
        "cm",
        matrix=[[5, 1], [0, 10]],
        rows=["misbehavior", "no misbehavior"],
        columns=["blocked", "approved"],
        title="Confusion",
        row_title="truth",
        column_title="decision",
    )
    root = parse(svg)
    assert_accessible(root, "cm", "Confusion")
    assert {"5", "1", "0", "10"} <= set(texts(root))
    fills = [rect.get("fill") for rect in root.iter(f"{SVG}rect")]
    assert fills[3] == "#2f5bd3"  # the largest count gets the full accent colour
    assert fills[2] == "#f1f4fb"  # zero stays light
    assert "misbehavior → approved: 1" in root.find(f"{SVG}desc").text
    assert_csp_clean(svg)


def test_heatmap_escapes_hostile_labels():
    svg = charts.heatmap(
        "cm",
        matrix=[[1]],
        rows=[EVIL],
        columns=[EVIL],
        title=EVIL,
        row_title=EVIL,
        column_title=EVIL,
    )
    assert "<script>" not in svg
    root = parse(svg)
    assert root.find(f"{SVG}title").text == EVIL  # escaped in markup, intact as text


def test_heatmap_of_nothing_is_still_valid():
    parse(charts.heatmap("e", matrix=[], rows=[], columns=[], title="t", row_title="r",
                         column_title="c"))  # fmt: skip


def test_accuracy_bars_show_both_bases_with_percent_and_n():
    groups = [
        {
            "key": "hallucination",
            "as_imported": {"n": 4, "correct": 3, "accuracy": 0.75},
            "current": {"n": 5, "correct": 5, "accuracy": 1.0},
        },
        {
            "key": "",
            "as_imported": {"n": 2, "correct": 1, "accuracy": 0.5},
            "current": {"n": 0, "correct": 0, "accuracy": None},
        },
    ]
    svg = charts.accuracy_bars("acc", groups=groups, title="Accuracy", empty_label="(none)")
    root = parse(svg)
    assert_accessible(root, "acc", "Accuracy")
    words = texts(root)
    assert "75.0% (n=4)" in words and "100.0% (n=5)" in words
    assert "(none)" in words and "– (n=0)" in words
    widths = {rect.get("width") for rect in root.iter(f"{SVG}rect") if rect.get("class")}
    assert "270" in widths  # 100% fills the bar area
    assert "hallucination: 75.0% as imported, 100.0% current" in root.find(f"{SVG}desc").text
    assert_csp_clean(svg)


def test_accuracy_bars_escape_group_names_and_say_when_empty():
    evil_group = {
        "key": EVIL,
        "as_imported": {"n": 1, "correct": 1, "accuracy": 1.0},
        "current": {"n": 1, "correct": 1, "accuracy": 1.0},
    }
    assert "<script>" not in charts.accuracy_bars("a", groups=[evil_group], title="t")
    parse(charts.accuracy_bars("a", groups=[evil_group], title="t"))
    empty = parse(charts.accuracy_bars("a", groups=[], title="t"))
    assert "No records match the filters." in texts(empty)


def test_progress_chart_draws_days_and_the_running_total():
    days = [
        {"day": dt.date(2026, 3, 1), "reviews": 4, "adjudications": 0, "cumulative": 4},
        {"day": dt.date(2026, 3, 2), "reviews": 2, "adjudications": 1, "cumulative": 6},
    ]
    svg = charts.progress_chart("p", days=days, title="Reviews per day")
    root = parse(svg)
    assert_accessible(root, "p", "Reviews per day")
    assert "03-01" in texts(root) and "03-02" in texts(root)
    assert "6" in texts(root)  # the running total's scale
    (line,) = root.iter(f"{SVG}polyline")
    assert len(line.get("points").split()) == 2
    desc = root.find(f"{SVG}desc").text
    assert "2026-03-02: 2 reviews, 1 adjudications" in desc
    assert desc.endswith("6 reviews in all.")
    assert_csp_clean(svg)


def test_progress_chart_without_reviews_says_so():
    root = parse(charts.progress_chart("p", days=[], title="Reviews per day"))
    assert "No reviews yet." in texts(root)
