"""Numbers quoted in the markdown, checked against the result files they come from.

Stdlib only, so that the check runs anywhere (no jax, no numpy).

A quoted number is followed, with nothing but spaces between, by an HTML comment (which
GitHub does not render) naming its source:

    0.981<!-- q: h100_gdn_shapes.json results[t=4096].pallas.fwd %.3f --> ms

    <!-- q: FILE EXPR FORMAT -->

- FILE: a file in benchmarks/results/.
- FORMAT (the last word): printf style (`%.3f`, `%d`) or a `str.format` spec in braces
  (`{:,.0f}` for 42,415). The formatted value must be the text right before the comment.
- EXPR (the words between): references, numbers and the operators `+ - * / ( )`, each a
  word of its own: `results[t=4096].fla.fwd / results[t=4096].pallas.fwd`. A reference
  written `OTHER_FILE:REF` reads another result file (a ratio across two files).
  - In a JSON file a reference is a path of keys joined by dots. `[N]` indexes a list;
    `[k=v,k2=v2]` picks the one element of a list whose fields have those values (as
    text: `[window=4096]`, `[segment_ids_passed=False]`); zero or several matches are an
    error. A path that starts with `[` selects in a top-level list.
  - In a text file, `/REGEX/` is the number in the first group of the first match (the
    whole match without a group) and `#/REGEX/` counts the matches. No spaces in the
    regex: write `\\s`.
- The comment must not hold `--` (ends an HTML comment) or `|` (splits a table cell).

Result files named in the markdown must exist in benchmarks/results/, unless written as
`<commit>:benchmarks/results/<name>` (the argument of `git show`): those name a removed
file as it was in that commit.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import fnmatch
import json
import operator
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
MANIFEST = RESULTS / "MANIFEST"
MANIFEST_COLUMNS = ("file", "date", "device", "commit", "command", "quoted_for")

MARKER = re.compile(r"<!--\s*q:(?P<spec>.*?)-->", re.S)
_PATH_PART = re.compile(r"\[(?P<sel>[^\]]*)\]|(?P<key>[^.\[\]]+)|(?P<dot>\.)")
_OPS = {"+", "-", "*", "/", "(", ")"}
_OTHER_FILE = re.compile(r"^([A-Za-z0-9_.-]+\.(?:json|jsonl|txt)):(.+)$")
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$")
# A result file's name: a device prefix, then the name, then .json / .jsonl / .txt;
# optionally `<commit>:` and a `benchmarks/results/` folder before it.
RESULT_NAME = re.compile(
    r"(?:(?P<commit>\b[0-9a-f]{7,40}):)?(?:benchmarks/)?(?:results/)?"
    r"(?P<name>\b(?:h100|h200|a100|tpu|cpu|offline)_[A-Za-z0-9_.*-]*?\.(?:jsonl|json|txt))\b")


class QuoteError(ValueError):
    """A marker that cannot be evaluated (bad syntax, missing file or path)."""


@dataclasses.dataclass(frozen=True)
class Quote:
    """One marker: where it is, what it says, and the text it follows."""

    where: str  # "README.md:12"
    spec: str
    before: str  # the text on its line before the marker


def find_quotes(text: str, source: str) -> list[Quote]:
    """Every `<!-- q: ... -->` marker of `text`, with the text before it on its line."""
    quotes = []
    for m in MARKER.finditer(text):
        line_start = text.rfind("\n", 0, m.start()) + 1
        line = text.count("\n", 0, m.start()) + 1
        quotes.append(Quote(f"{source}:{line}", m.group("spec"),
                            text[line_start:m.start()]))
    return quotes


def _select(items: list, sel: str, where: str):
    sel = sel.strip()
    if re.fullmatch(r"-?[0-9]+", sel):
        try:
            return items[int(sel)]
        except IndexError:
            raise QuoteError(f"{where}: index [{sel}] out of range ({len(items)} items)") from None
    wanted = {}
    for cond in sel.split(","):
        key, eq, value = cond.partition("=")
        if not eq or not key.strip():
            raise QuoteError(f"{where}: selector [{sel}] is not [N] or [key=value,...]")
        wanted[key.strip()] = value.strip()
    hits = [it for it in items if isinstance(it, dict)
            and all(k in it and str(it[k]) == v for k, v in wanted.items())]
    if len(hits) != 1:
        raise QuoteError(f"{where}: [{sel}] matches {len(hits)} items, not one")
    return hits[0]


def json_value(data, path: str, where: str) -> float:
    """The number at `path` (see the module docstring) in parsed JSON `data`."""
    node = data
    pos = 0
    for m in _PATH_PART.finditer(path):
        if m.start() != pos:
            raise QuoteError(f"{where}: cannot parse path {path!r} at {path[pos:]!r}")
        pos = m.end()
        if m.group("dot"):
            continue
        if m.group("key") is not None:
            key = m.group("key")
            if not isinstance(node, dict) or key not in node:
                raise QuoteError(f"{where}: no key {key!r} in path {path!r}")
            node = node[key]
        else:
            if not isinstance(node, list):
                raise QuoteError(f"{where}: [{m.group('sel')}] in {path!r} is not on a list")
            node = _select(node, m.group("sel"), f"{where} ({path})")
    if pos != len(path):
        raise QuoteError(f"{where}: cannot parse path {path!r}")
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise QuoteError(f"{where}: {path!r} is {node!r}, not a number")
    return float(node)


def text_value(text: str, ref: str, where: str) -> float:
    """`/REGEX/` (the first group's number) or `#/REGEX/` (the count of matches)."""
    count = ref.startswith("#")
    body = ref[1:] if count else ref
    if len(body) < 2 or body[0] != "/" or body[-1] != "/":
        raise QuoteError(f"{where}: {ref!r} is not /REGEX/ or #/REGEX/ (a text file)")
    pattern = re.compile(body[1:-1])
    if count:
        return float(len(pattern.findall(text)))
    m = pattern.search(text)
    if m is None:
        raise QuoteError(f"{where}: {ref!r} matches nothing")
    return float(m.group(1) if pattern.groups else m.group(0))


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}


def _arith(node):
    """Evaluates numbers and + - * / only (no names, calls or attributes)."""
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_arith(node.left), _arith(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arith(node.operand)
    raise QuoteError(f"not arithmetic: {ast.dump(node)}")


def format_value(value: float, fmt: str, where: str) -> str:
    try:
        if fmt.startswith("%"):
            return fmt % (round(value) if fmt.endswith("d") else value)
        if fmt.startswith("{") and fmt.endswith("}"):
            return fmt.format(value)
    except (ValueError, TypeError) as e:
        raise QuoteError(f"{where}: format {fmt!r}: {e}") from None
    raise QuoteError(f"{where}: format {fmt!r} is neither %... nor {{...}}")


class Sources:
    """Result files, each read once."""

    def __init__(self, results: pathlib.Path = RESULTS):
        self.results = results
        self._cache: dict[str, object] = {}

    def load(self, name: str, where: str):
        if name not in self._cache:
            path = self.results / name
            if "/" in name or not path.is_file():
                raise QuoteError(f"{where}: no result file {name!r} in {self.results}")
            text = path.read_text()
            self._cache[name] = json.loads(text) if name.endswith(".json") else text
        return self._cache[name]

    def evaluate(self, spec: str, where: str) -> str:
        """The formatted value a marker's spec asks for."""
        if "--" in spec or "|" in spec or "\n" in spec:
            raise QuoteError(f"{where}: a marker may not hold '--', '|' or a line break")
        words = spec.split()
        if len(words) < 3:
            raise QuoteError(f"{where}: marker {spec.strip()!r} is not 'FILE EXPR FORMAT'")
        name, *expr, fmt = words
        parts = []
        for word in expr:
            if word in _OPS or _NUMBER.match(word):
                parts.append(word)
                continue
            other = _OTHER_FILE.match(word)
            file, ref = (other.group(1), other.group(2)) if other else (name, word)
            data = self.load(file, where)
            if isinstance(data, str):
                parts.append(repr(text_value(data, ref, where)))
            else:
                parts.append(repr(json_value(data, ref, where)))
        try:
            value = _arith(ast.parse(" ".join(parts), mode="eval"))
        except (SyntaxError, ZeroDivisionError) as e:
            raise QuoteError(f"{where}: expression {' '.join(expr)!r}: {e}") from None
        return format_value(value, fmt, where)


def check_quotes(text: str, source: str, sources: Sources | None = None) -> list[str]:
    """One line per quoted number of `text` that differs from its file or cannot be
    evaluated; empty when every number matches."""
    sources = sources or Sources()
    problems = []
    for q in find_quotes(text, source):
        try:
            want = sources.evaluate(q.spec, q.where)
        except QuoteError as e:
            problems.append(str(e))
            continue
        before = q.before.rstrip()
        ok = before.endswith(want) and (
            len(before) == len(want) or not re.match(r"[0-9.,]", before[-len(want) - 1]))
        if not ok:
            shown = before[-max(len(want) + 8, 16):]
            problems.append(f"{q.where}: the file says {want}, the text before the marker "
                            f"is ...{shown!r} (marker: {q.spec.strip()})")
    return problems


@dataclasses.dataclass(frozen=True)
class Mention:
    where: str
    name: str
    commit: str | None


def result_mentions(text: str, source: str) -> list[Mention]:
    """Every result file named in `text` (markers included)."""
    out = []
    for m in RESULT_NAME.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append(Mention(f"{source}:{line}", m.group("name"), m.group("commit")))
    return out


def missing_mentions(mentions: list[Mention], results: pathlib.Path = RESULTS) -> list[str]:
    """Current-file mentions (no commit) that match no file in `results`."""
    names = [p.name for p in results.iterdir()]
    return [f"{m.where}: {m.name} is not in {results.relative_to(ROOT)}"
            for m in mentions if m.commit is None
            and not fnmatch.filter(names, m.name)]


def git(*args: str) -> str | None:
    """stdout of a git command in the checkout, or None where git cannot answer."""
    try:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def read_manifest(path: pathlib.Path = MANIFEST) -> list[dict[str, str]]:
    """MANIFEST's rows; its header must be MANIFEST_COLUMNS."""
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)
    if not rows or tuple(rows[0]) != MANIFEST_COLUMNS:
        raise ValueError(f"{path}: header must be {' / '.join(MANIFEST_COLUMNS)}")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(MANIFEST_COLUMNS):
            raise ValueError(f"{path}:{i}: {len(row)} fields, not {len(MANIFEST_COLUMNS)}")
        out.append(dict(zip(MANIFEST_COLUMNS, row)))
    return out


def manifest_problems(rows: list[dict[str, str]], results: pathlib.Path = RESULTS) -> list[str]:
    """Rows vs the folder: every file listed once, no row without a file, each field
    filled in, dates as YYYY-MM-DD (or two joined by '..'), commits as hex."""
    problems = []
    listed = [r["file"] for r in rows]
    present = sorted(p.name for p in results.iterdir() if p.name != MANIFEST.name)
    for name in sorted(set(present) - set(listed)):
        problems.append(f"{name} is in the folder but not in the manifest")
    for name in sorted(set(listed) - set(present)):
        problems.append(f"{name} is in the manifest but not in the folder")
    for name in sorted({n for n in listed if listed.count(n) > 1}):
        problems.append(f"{name} is listed {listed.count(name)} times")
    for r in rows:
        for col in MANIFEST_COLUMNS:
            if not r[col].strip():
                problems.append(f"{r['file']}: empty {col}")
        if not re.fullmatch(r"\d{4}-\d\d-\d\d(\.\.\d{4}-\d\d-\d\d)?", r["date"]):
            problems.append(f"{r['file']}: date {r['date']!r} is not YYYY-MM-DD[..YYYY-MM-DD]")
        if not re.fullmatch(r"[0-9a-f]{7,40}", r["commit"]):
            problems.append(f"{r['file']}: commit {r['commit']!r} is not a hex hash")
    return problems
