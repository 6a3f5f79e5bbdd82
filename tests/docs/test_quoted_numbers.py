"""Every number quoted in README.md and docs/ matches its committed result file, every
result file they name exists, and benchmarks/results/MANIFEST lists exactly the
folder. The marker syntax is in tests/docs/quoted.py. Stdlib only; runs in about a
second."""

from __future__ import annotations

import json
import re

import pytest

from tests.docs import quoted

DOCS = sorted([quoted.ROOT / "README.md", *(quoted.ROOT / "docs").rglob("*.md")])
NAMING = [*DOCS, quoted.ROOT / "benchmarks" / "README.md"]


def _rel(path) -> str:
    return str(path.relative_to(quoted.ROOT))


def test_quoted_numbers_match_their_files():
    sources = quoted.Sources()
    problems, count = [], 0
    for path in DOCS:
        text = path.read_text()
        count += len(quoted.find_quotes(text, _rel(path)))
        problems += quoted.check_quotes(text, _rel(path), sources)
    assert not problems, "\n".join(problems)
    # The performance page and the README's headline table are quoted through markers.
    perf = (quoted.ROOT / "docs" / "performance.md").read_text()
    assert len(quoted.find_quotes(perf, "docs/performance.md")) >= 40
    assert quoted.find_quotes((quoted.ROOT / "README.md").read_text(), "README.md")
    assert count >= 40


def test_a_changed_number_fails():
    """Each of the first markers of docs/performance.md, with its number altered by one
    in the last digit, is reported; unaltered, it is not."""
    perf = (quoted.ROOT / "docs" / "performance.md").read_text()
    sources = quoted.Sources()
    quotes = quoted.find_quotes(perf, "docs/performance.md")[:25]
    assert quotes
    for q in quotes:
        want = sources.evaluate(q.spec, q.where)
        last = max(i for i, c in enumerate(want) if c.isdigit())
        bumped = want[:last] + str((int(want[last]) + 1) % 10) + want[last + 1:]
        good = f"x {want}<!-- q:{q.spec}-->\n"
        bad = f"x {bumped}<!-- q:{q.spec}-->\n"
        assert quoted.check_quotes(good, "good.md", sources) == []
        problems = quoted.check_quotes(bad, "bad.md", sources)
        assert len(problems) == 1 and f"the file says {want}" in problems[0], problems


@pytest.fixture
def results(tmp_path):
    (tmp_path / "h100_x.json").write_text(json.dumps({
        "rows": [{"arch": "transformer", "tokens_per_s": 687734.44, "ms": 0.98111},
                 {"arch": "hybrid", "tokens_per_s": 583938.78, "ms": 1.07745},
                 {"arch": "hybrid", "tokens_per_s": 1.0, "ms": 2.0, "remat": True}],
        "name": "not a number"}))
    (tmp_path / "h100_y.txt").write_text("12 passed, 3 failed in 9.5s\n..F..\n")
    return quoted.Sources(tmp_path)


@pytest.mark.parametrize("text, problem", [
    # right numbers
    ("687.7<!-- q: h100_x.json rows[arch=transformer].tokens_per_s / 1000 %.1f -->k", None),
    ("687.7k<!-- q: h100_x.json rows[arch=transformer].tokens_per_s / 1000 %.1f -->",
     "the file says 687.7"),  # the unit goes after the marker
    ("**687,734**<!-- q: h100_x.json rows[0].tokens_per_s {:,.0f} -->", "the file says"),
    ("687,734<!-- q: h100_x.json rows[0].tokens_per_s {:,.0f} --> tokens/s", None),
    ("| 1.10<!-- q: h100_x.json rows[1].ms / rows[0].ms %.2f -->x |", None),
    ("ratio 1.10 <!-- q: h100_x.json ( rows[1].ms ) / ( rows[0].ms ) %.2f -->x", None),
    ("12<!-- q: h100_y.txt /(\\d+)\\spassed/ %d --> passed", None),
    ("one F<!-- q: h100_y.txt #/F/ %d -->", "the file says 1"),
    ("1<!-- q: h100_y.txt #/F/ %d --> F", None),
    # wrong numbers
    ("687.8<!-- q: h100_x.json rows[arch=transformer].tokens_per_s / 1000 %.1f -->k",
     "the file says 687.7"),
    ("10.981<!-- q: h100_x.json rows[0].ms %.3f -->", "the file says 0.981"),
    ("13<!-- q: h100_y.txt /(\\d+)\\spassed/ %d -->", "the file says 12"),
    # markers that cannot be evaluated
    ("1<!-- q: h100_x.json rows[arch=hybrid].ms %.1f -->", "matches 2 items"),
    ("1<!-- q: h100_x.json rows[arch=mamba].ms %.1f -->", "matches 0 items"),
    ("1<!-- q: h100_x.json rows[9].ms %.1f -->", "out of range"),
    ("1<!-- q: h100_x.json name %.1f -->", "not a number"),
    ("1<!-- q: h100_x.json nope.ms %.1f -->", "no key 'nope'"),
    ("1<!-- q: h100_z.json rows[0].ms %.1f -->", "no result file"),
    ("1<!-- q: h100_x.json rows[0].ms -->", "not 'FILE EXPR FORMAT'"),
    ("1<!-- q: h100_x.json rows[0].ms %q -->", "format"),
    ("1<!-- q: h100_x.json rows[0].ms --1 %.1f -->", "may not hold '--'"),
    ("1<!-- q: h100_y.txt rows[0] %d -->", "not /REGEX/"),
    ("1<!-- q: h100_x.json __import__('os') %d -->", "no key"),
])
def test_checker_on_known_text(results, text, problem):
    problems = quoted.check_quotes(text + "\n", "t.md", results)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_named_result_files_exist():
    problems = []
    for path in NAMING:
        mentions = quoted.result_mentions(path.read_text(), _rel(path))
        problems += quoted.missing_mentions(mentions)
    assert not problems, "\n".join(problems)


def test_named_result_files_checker():
    text = ("`h100_attention.json`, benchmarks/results/h100_gdn_*.json, "
            "`results/h100_gone.json`, bd5ac4d:benchmarks/results/h100_gone_too.json\n")
    mentions = quoted.result_mentions(text, "t.md")
    assert [(m.name, m.commit) for m in mentions] == [
        ("h100_attention.json", None), ("h100_gdn_*.json", None),
        ("h100_gone.json", None), ("h100_gone_too.json", "bd5ac4d")]
    assert quoted.missing_mentions(mentions) == [
        "t.md:1: h100_gone.json is not in benchmarks/results"]


def _git_history() -> bool:
    shallow = quoted.git("rev-parse", "--is-shallow-repository")
    return shallow is not None and shallow.strip() == "false"


@pytest.mark.skipif(not _git_history(), reason="needs git and the full history")
def test_removed_files_named_by_commit_exist_there():
    problems, seen = [], 0
    for path in NAMING:
        for m in quoted.result_mentions(path.read_text(), _rel(path)):
            if m.commit is None:
                continue
            seen += 1
            if quoted.git("cat-file", "-e", f"{m.commit}:benchmarks/results/{m.name}") is None:
                problems.append(f"{m.where}: no benchmarks/results/{m.name} in {m.commit}")
    assert not problems, "\n".join(problems)
    assert seen >= 10  # docs/performance.md's history cites its removed files this way


def test_manifest_lists_exactly_the_folder():
    rows = quoted.read_manifest()
    assert quoted.manifest_problems(rows) == []


def test_manifest_checker(tmp_path):
    rows = quoted.read_manifest()
    assert quoted.manifest_problems(rows[1:])[0].endswith("in the folder but not in the manifest")
    extra = dict(rows[0], file="h100_nothing.json", date="24 Nov", commit="HEAD")
    problems = quoted.manifest_problems(rows + [extra])
    assert problems == ["h100_nothing.json is in the manifest but not in the folder",
                        "h100_nothing.json: date '24 Nov' is not YYYY-MM-DD[..YYYY-MM-DD]",
                        "h100_nothing.json: commit 'HEAD' is not a hex hash"]
    bad = tmp_path / "MANIFEST"
    bad.write_text("file\tdate\n")
    with pytest.raises(ValueError, match="header"):
        quoted.read_manifest(bad)


@pytest.mark.skipif(not _git_history(), reason="needs git and the full history")
def test_manifest_commit_is_where_the_content_came_in():
    """The MANIFEST's commit of each file is the first commit that held its bytes (under
    any name), so a rerun committed without a new MANIFEST line fails here."""
    problems = []
    for row in quoted.read_manifest():
        blob = quoted.git("hash-object", str(quoted.RESULTS / row["file"]))
        log = quoted.git("log", "--format=%H", f"--find-object={blob.strip()}", "--",
                         "benchmarks/results") if blob else None
        first = log.split()[-1] if log and log.split() else None
        if first is None:
            problems.append(f"{row['file']}: not committed")
        elif not first.startswith(row["commit"]):
            problems.append(f"{row['file']}: MANIFEST says {row['commit']}, the content "
                            f"came in with {first[:7]}")
    assert not problems, "\n".join(problems)


def test_markers_stay_invisible():
    """A marker is one HTML comment on one line (GitHub hides it) and holds neither '|'
    (which would split a table cell) nor '--'."""
    for path in DOCS:
        text = path.read_text()
        for line_no, line in enumerate(text.splitlines(), start=1):
            for m in re.finditer(r"<!--\s*q:", line):
                assert "-->" in line[m.end():], f"{_rel(path)}:{line_no}: marker not closed"
