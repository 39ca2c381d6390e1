"""promql_parser's AST -> the engine's plan (plan.py). Everything the engine cannot answer exactly is refused
here, by name, as BadData: a refusal is better than a wrong number."""
from datetime import timedelta

import promql_parser as pp

from promql.engine import limits, plan, semantics
from promql.engine.functions import SUPPORTED_FUNCTIONS
from promql.engine.values import BadData, Matcher

_MATCH_OPS = ((pp.MatchOp.Equal, "="), (pp.MatchOp.NotEqual, "!="), (pp.MatchOp.Re, "=~"), (pp.MatchOp.NotRe, "!~"))
_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
                           "quantile", "count_values"})
# Prometheus 2.x's holt_winters (3.x renamed it double_exponential_smoothing); the parser knows only the 3.x name.
pp.register_extra_functions([pp.Function("holt_winters", [pp.ValueType.Matrix, pp.ValueType.Scalar,
                                                          pp.ValueType.Scalar], pp.ValueType.Vector)])


def parse(text: str):
    limits.check_text(text)
    try:
        tree = pp.parse(text)
    except ValueError as error:
        raise BadData(f"parse error: {error}") from None
    limits.check_tree(tree, _children)
    return compile_node(tree)


def _children(node) -> tuple:
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return (node.expr,)
    if isinstance(node, pp.BinaryExpr):
        return (node.lhs, node.rhs)
    if isinstance(node, pp.AggregateExpr):
        return (node.expr, node.param)
    if isinstance(node, pp.Call):
        return tuple(node.args)
    if isinstance(node, pp.MatrixSelector):
        return (node.vector_selector,)
    return ()


def _ms(delta: timedelta | None) -> int:
    return 0 if delta is None else delta // timedelta(milliseconds=1)


def _duration_ms(node, name: str) -> int:
    """A duration of the AST in ms, bounded as Prometheus bounds it (an int64 of nanoseconds, ~292 years)."""
    try:
        delta = getattr(node, name)  # the binding raises ValueError for a duration no timedelta can hold
    except ValueError:
        delta = None
        ms = limits.MAX_DURATION_MS + 1
    else:
        ms = _ms(delta)
    if abs(ms) > limits.MAX_DURATION_MS:
        raise BadData(f"parse error: duration out of range in {node}")
    return ms


def compile_node(node):
    if isinstance(node, pp.ParenExpr):
        return compile_node(node.expr)
    if isinstance(node, pp.NumberLiteral):
        return plan.Num(float(node.val))
    if isinstance(node, pp.StringLiteral):
        return plan.Str(node.val)
    if isinstance(node, pp.VectorSelector):
        return _selector(node, None)
    if isinstance(node, pp.MatrixSelector):
        return _selector(node.vector_selector, _duration_ms(node, "range"))
    if isinstance(node, pp.UnaryExpr):
        inner = compile_node(node.expr)
        return plan.Negate(inner, kind=inner.kind)
    if isinstance(node, pp.Call):
        return _call(node)
    if isinstance(node, pp.AggregateExpr):
        return _aggregate(node)
    if isinstance(node, pp.BinaryExpr):
        return _binary(node)
    if isinstance(node, pp.SubqueryExpr):
        return _subquery(node)
    raise BadData(f"{type(node).__name__} is not supported")


def _subquery(node):
    if node.at is not None:
        raise BadData(f"@ on a subquery is not supported: {node}")
    step_ms = _duration_ms(node, "step") or semantics.DEFAULT_EVALUATION_INTERVAL_MS
    return plan.Subquery(compile_node(node.expr), _duration_ms(node, "range"), step_ms,
                         offset_ms=_duration_ms(node, "offset"),
                         text=str(node))


def _selector(node, range_ms):
    text = str(node) if range_ms is None else f"{node}[{pp.display_duration(timedelta(milliseconds=range_ms))}]"
    if node.matchers.or_matchers:
        raise BadData(f"'or' inside a selector's braces is not supported: {text}")
    matchers = [Matcher(m.name, _match_op(m.op), m.value) for m in node.matchers.matchers]
    for matcher in matchers:
        if matcher.op in ("=~", "!~"):
            try:
                matcher.matches("")  # compiles it once, as RE2 (the parser's Rust regex accepts a little more)
            except Exception as error:
                reason = error.args[0] if error.args else error
                reason = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
                raise BadData(f"parse error: invalid regular expression {matcher.value!r} in {text}: "
                              f"{reason}") from None
    if node.name is not None:
        matchers.insert(0, Matcher("__name__", "=", node.name))
    return plan.Select(tuple(matchers), offset_ms=_duration_ms(node, "offset"), at=_at(node.at), range_ms=range_ms,
                       text=text)


def _match_op(op) -> str:
    return next(text for parsed, text in _MATCH_OPS if op == parsed)


def _at(modifier):
    if modifier is None:
        return None
    if modifier.type == pp.AtModifierType.Start:
        return plan.At("start")
    if modifier.type == pp.AtModifierType.End:
        return plan.At("end")
    # Read from its text ("@ 12.346"): the binding's datetime cannot hold years past 9999 (Prometheus answers
    # `up @ 9e15`), and it saturates past u64 seconds (so 1e20 shows as 1.8e16, still out of bounds).
    seconds = str(modifier).removeprefix("@").strip()
    whole, _, fraction = seconds.partition(".")
    time_ms = int(whole) * 1000 + int(fraction[:3].ljust(3, "0"))
    if time_ms > limits.MAX_TIME_MS:
        raise BadData(f"timestamp out of bounds for @ modifier: {seconds}")
    return plan.At("time", time_ms)


def _call(node):
    name = node.func.name
    if name not in SUPPORTED_FUNCTIONS:
        raise BadData(f"function {name}() is not supported")
    args = tuple(compile_node(arg) for arg in node.args)
    _check_argument_types(node.func, args)
    kind = "scalar" if name in ("time", "scalar", "pi") else "vector"
    return plan.Call(name, args, kind=kind)


_KINDS = {"ValueType.Vector": "vector", "ValueType.Matrix": "matrix", "ValueType.Scalar": "scalar",
          "ValueType.String": "string"}
_TYPE_NAMES = {"matrix": "range vector", "string": "string", "vector": "instant vector", "scalar": "scalar"}


def _check_argument_types(func, args) -> None:
    """The parser's own check lets a negative number literal through (ln(-1) parses, ln(1) does not), so every
    argument is checked again against the signature (a variadic function's last type repeats)."""
    expected = [_KINDS[str(kind)] for kind in func.arg_types]
    for position, arg in enumerate(args):
        want = expected[min(position, len(expected) - 1)]
        if arg.kind != want:
            raise BadData(f"parse error: expected type {_TYPE_NAMES[want]} in call to function \"{func.name}\", "
                          f"got {_TYPE_NAMES[arg.kind]}")


def _aggregate(node):
    op = str(node.op)
    if op not in _AGGREGATIONS:
        raise BadData(f"aggregation {op}() is not supported")
    modifier = node.modifier
    by = modifier is None or modifier.type == pp.AggModifierType.By
    labels = tuple(modifier.labels) if modifier is not None else ()
    param = compile_node(node.param) if node.param is not None else None
    return plan.Aggregate(op, compile_node(node.expr), param, by=by, labels=labels)


def _binary(node):
    op = str(node.op)
    lhs, rhs = compile_node(node.lhs), compile_node(node.rhs)
    modifier = node.modifier
    kind = "scalar" if lhs.kind == rhs.kind == "scalar" else "vector"
    if modifier is None:
        return plan.Binary(op, lhs, rhs, kind=kind)
    fill = modifier.fill_values
    if fill is not None and (fill.lhs is not None or fill.rhs is not None):
        raise BadData(f"fill modifiers are not supported: {node}")
    on, labels = None, ()
    if modifier.matching is not None:
        on = modifier.matching.type == pp.LabelModifierType.Include
        labels = tuple(modifier.matching.labels)
    group = ("left" if modifier.card == pp.VectorMatchCardinality.ManyToOne
             else "right" if modifier.card == pp.VectorMatchCardinality.OneToMany else None)
    if group is not None and op in plan.SET_OPERATORS:
        raise BadData(f"group_{group} cannot be used with {op}")
    return plan.Binary(op, lhs, rhs, return_bool=bool(modifier.return_bool), on=on, labels=labels, group=group,
                       include=tuple(modifier.group_labels or ()), kind=kind)
