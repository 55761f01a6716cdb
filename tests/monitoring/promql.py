"""Metric names in PromQL expressions, and in a scrape: for the deploy/ tests.

Good enough for the expressions in deploy/, not a PromQL parser: label values,
matchers, ranges and grouping clauses are removed first, so label names never
pass for metric names, and a name followed by ``(`` is a function or an
aggregation.
"""

import re

# Keywords left once the clauses are gone: binary operators and modifiers.
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS_AND_RANGES = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.M)
_TYPE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$", re.M)
# The series a family of each type has, by suffix: only these reach Prometheus
# (``foo`` alone does not exist for a histogram ``foo``).
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads, as written (``foo_bucket`` stays)."""
    expr = _STRINGS.sub("", expr)
    expr = _MATCHERS_AND_RANGES.sub("", expr)
    expr = _GROUPING.sub("", expr)
    return {
        name
        for name, call in _NAME.findall(expr)
        if not call and name not in PROMQL_WORDS
    }


def scraped_names(text: str) -> set[str]:
    """Every series name a scrape offers.

    Sample lines, and the ``# TYPE`` lines: a labelled counter nobody has
    incremented yet (rate_limit_exceeded_total before the first 429) has no
    sample line, yet the name is defined and its series comes with the first
    increment. prometheus_client
    writes ``# TYPE x_total counter`` for a counter; either spelling is read.
    """
    present = set(_SAMPLE.findall(text))
    for family, kind in _TYPE.findall(text):
        suffixes = _SUFFIXES.get(kind, ("",))
        if kind == "counter":
            family = family.removesuffix("_total")
        present.update(family + suffix for suffix in suffixes)
    return present
