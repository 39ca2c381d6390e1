"""Bounds on a query's shape, checked before the work that a bigger one would make dangerous. Prometheus has
none (Go's stacks grow), but promql_parser's Rust recursion kills the worker with SIGSEGV past a few thousand
levels (measured in an 8 MB thread: 5,000 chained `up+`, 6,000 nested `abs(`, 10,000 parentheses) and its memory
grows faster than linearly (3,000 chained terms: 1.4 GB, 65,536 balanced terms: 0.9 GB), while compile.py and
evaluate.py recurse in Python (up to 3 frames a level, under a recursion limit of 1,000)."""
import math
import re

from promql.engine.values import BadData

# The deepest query tree answered: 3 frames a level x 256 leaves room for Django's own frames under 1,000.
MAX_DEPTH = 256
# The most operators (binary or unary, counted in the text) handed to the parser: 512 chained terms parse in
# ~0.05 s and ~50 MB; the depth check then refuses a chain that long.
MAX_OPERATORS = 512

# Prometheus' durations are int64 nanoseconds: past ~292 years a duration is "out of range".
MAX_DURATION_MS = (2**63 - 1) // 1_000_000
# The latest and earliest times evaluated (Go's time.Time bounds as Prometheus' API prints them, ~292 million
# years): ~2,000 years short of int64 ms, so a time plus or minus any duration stays an int64.
MAX_TIME_MS = 9223309901257974 * 1000 + 999
MIN_TIME_MS = -9223309901257974 * 1000

# String literals (their brackets and operators are text) and comments, removed before counting.
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"' r"|'[^'\\]*(?:\\.[^'\\]*)*'" r"|`[^`]*`|#[^\n]*")
# A selector's braces hold matchers (=, !=, =~, !~), not operators.
_BRACES = re.compile(r"\{[^{}]*\}")
_OPERATORS = re.compile(r"==|!=|<=|>=|[-+*/%^<>]|\b(?:and|or|unless|atan2)\b")
_NEGATIVE_AT = re.compile(r"@\s*-")
_NUMBERS = re.compile(r"(?<![\w.])(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_OPENING, _CLOSING = frozenset("([{"), frozenset(")]}")


def check_text(text: str) -> None:
    """Refuses, before parsing, a query nesting brackets deeper than MAX_DEPTH or with more than MAX_OPERATORS
    operators. Cheap (a few regex passes): it runs on whatever the client sent."""
    code = _STRINGS.sub(" ", text)
    depth = deepest = 0
    for char in code:
        if char in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSING:
            depth -= 1
    if deepest > MAX_DEPTH:
        raise too_deep(deepest)
    if _NEGATIVE_AT.search(code):
        # The parser's binding panics (a BaseException) when asked for a time before 1970.
        raise BadData("@ times before 1970 are not supported")
    for number in _NUMBERS.findall(code):
        if math.isinf(float(number)):
            shown = number if len(number) <= 40 else number[:40] + "…"
            raise BadData(f'parse error: error parsing number: strconv.ParseFloat: parsing "{shown}": value out of '
                          "range")
    operators = len(_OPERATORS.findall(_BRACES.sub(" ", code)))
    if operators > MAX_OPERATORS:
        raise BadData(f"query has {operators} operators: the limit is {MAX_OPERATORS}")


def too_deep(depth: int) -> BadData:
    return BadData(f"query nests {depth} deep: the limit is {MAX_DEPTH}")


def check_tree(tree, children) -> None:
    """Refuses a parsed tree deeper than MAX_DEPTH (a chain of N binary terms is N deep), walking it without
    recursion. `children(node)` lists a node's sub-expressions."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise too_deep_at_least(depth)
        stack.extend((child, depth + 1) for child in children(node) if child is not None)


def too_deep_at_least(depth: int) -> BadData:
    return BadData(f"query nests over {depth - 1} deep: the limit is {MAX_DEPTH}")
