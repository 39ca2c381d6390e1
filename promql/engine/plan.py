"""The engine's own query tree: what compile.py makes of the parser's AST, and all evaluate.py reads. Durations
are integer milliseconds; a selector's metric name is one of its matchers."""
from dataclasses import dataclass
from typing import Literal

from promql.engine.values import Matcher

Kind = Literal["vector", "scalar", "matrix", "string"]


@dataclass(frozen=True)
class Num:
    value: float
    kind: Kind = "scalar"


@dataclass(frozen=True)
class Str:
    value: str
    kind: Kind = "string"


@dataclass(frozen=True)
class At:
    """`@ start()`, `@ end()` or `@ <time>`: the selector is evaluated at that one time at every step."""
    which: Literal["start", "end", "time"]
    time_ms: int = 0


@dataclass(frozen=True)
class Select:
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at: At | None = None
    range_ms: int | None = None  # set for a range selector x[r]
    text: str = ""  # the selector as written, for messages

    @property
    def kind(self) -> Kind:
        return "vector" if self.range_ms is None else "matrix"


@dataclass(frozen=True)
class Subquery:
    """expr[range:step] offset d: expr evaluated every step_ms on the absolute step grid, read as a range vector."""
    expr: object
    range_ms: int
    step_ms: int
    offset_ms: int = 0
    text: str = ""
    kind: Kind = "matrix"


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple
    kind: Kind = "vector"


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: object
    param: object | None = None
    by: bool = True  # False: without
    labels: tuple[str, ...] = ()
    kind: Kind = "vector"


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: object
    rhs: object
    return_bool: bool = False
    on: bool | None = None  # True: on(labels), False: ignoring(labels), None: neither
    labels: tuple[str, ...] = ()
    group: Literal["left", "right"] | None = None  # group_left / group_right
    include: tuple[str, ...] = ()  # the labels group_x copies from the "one" side
    kind: Kind = "vector"


@dataclass(frozen=True)
class Negate:
    expr: object
    kind: Kind = "vector"


ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})
COMPARISON = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
