"""Binary operators: scalar/scalar, vector/scalar, and vector/vector with one-to-one or group_left/right
matching on()/ignoring(), and the set operators and/or/unless (many-to-many)."""
import json

import numpy as np

from promql.engine import semantics
from promql.engine.arrays import Scalars, Steps, merge_same_labels, without_name
from promql.engine.plan import ARITHMETIC, COMPARISON
from promql.engine.values import ExecutionError

_COMPARE = {"==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less, ">=": np.greater_equal,
            "<=": np.less_equal}


def arithmetic(op: str, a, b):
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return np.true_divide(a, b)
        if op == "%":
            return np.fmod(a, b)  # Go's math.Mod: the sign follows the dividend
        if op == "^":
            return np.power(a, b)
        if op == "atan2":
            return np.arctan2(a, b)
    raise AssertionError(op)


def scalars(op: str, a: Scalars, b: Scalars) -> Scalars:
    if op in COMPARISON:  # the parser allows only `bool` here
        return Scalars(_COMPARE[op](a.values, b.values).astype(np.float64))
    return Scalars(arithmetic(op, a.values, b.values))


def with_scalar(node, vector: Steps, scalar: Scalars, scalar_on_left: bool) -> Steps:
    """A vector and a scalar: arithmetic drops the name; a comparison filters and keeps the vector's value (or
    answers 0/1 with bool, dropping the name)."""
    s = scalar.values[None, :]
    lhs, rhs = (s, vector.values) if scalar_on_left else (vector.values, s)
    if node.op in ARITHMETIC:
        values = arithmetic(node.op, lhs, rhs)
        return _named(vector.labels, values, vector.present, drop=node.op in semantics.OPERATORS_DROPPING_NAME)
    with np.errstate(invalid="ignore"):
        keep = _COMPARE[node.op](lhs, rhs)
    if node.return_bool:
        return _named(vector.labels, keep.astype(np.float64), vector.present, drop=True)
    return Steps(vector.labels, vector.values, vector.present & keep)


def _named(labels, values, present, *, drop: bool) -> Steps:
    steps = Steps([without_name(row) for row in labels] if drop else labels, values, present)
    return merge_same_labels(steps)


def signature(labels, on: bool | None, names: tuple[str, ...]) -> tuple:
    if on:
        wanted = set(names)
        return tuple(pair for pair in labels if pair[0] in wanted)
    unwanted = set(names) | {"__name__"}
    return tuple(pair for pair in labels if pair[0] not in unwanted)


def _signature_ids(lhs: Steps, rhs: Steps, on, names):
    ids: dict[tuple, int] = {}
    left = np.array([ids.setdefault(signature(labels, on, names), len(ids)) for labels in lhs.labels], np.int64)
    right = np.array([ids.setdefault(signature(labels, on, names), len(ids)) for labels in rhs.labels], np.int64)
    return left, right, list(ids)


def _any_by_signature(steps: Steps, ids: np.ndarray, count: int) -> np.ndarray:
    found = np.zeros((count, steps.values.shape[1]), dtype=bool)
    if steps.n:
        np.logical_or.at(found, ids, steps.present)
    return found


def set_operation(node, lhs: Steps, rhs: Steps) -> Steps:
    left, right, signatures = _signature_ids(lhs, rhs, node.on, node.labels)
    if node.op in ("and", "unless"):
        on_right = _any_by_signature(rhs, right, len(signatures))
        matched = on_right[left] if lhs.n else lhs.present
        keep = lhs.present & (matched if node.op == "and" else ~matched)
        return Steps(lhs.labels, lhs.values, keep)
    on_left = _any_by_signature(lhs, left, len(signatures))
    right_keep = rhs.present & ~on_left[right] if rhs.n else rhs.present
    merged = Steps(lhs.labels + rhs.labels, np.concatenate([lhs.values, rhs.values]),
                   np.concatenate([lhs.present, right_keep]))
    return merge_same_labels(merged)


def match_vectors(node, lhs: Steps, rhs: Steps) -> Steps:
    """Arithmetic and comparison between two vectors: each row of the "many" side (lhs, or rhs for group_right)
    meets the one row of the other side with its signature at that step."""
    many, one = (rhs, lhs) if node.group == "right" else (lhs, rhs)
    many_ids, one_ids, signatures = _signature_ids(many, one, node.on, node.labels)
    k = many.values.shape[1]
    # A step where either side is empty matches nothing, and 2.42 checks nothing there either.
    both = many.present.any(axis=0) & one.present.any(axis=0)
    partner = _unique_partner(node, one, one_ids, len(signatures), both)[many_ids] if many.n else \
        np.zeros((0, k), np.int64)
    matched = many.present & (partner >= 0)
    other = one.values[np.maximum(partner, 0), np.arange(k)[None, :]] if one.n else np.zeros(partner.shape)
    left, right = (other, many.values) if node.group == "right" else (many.values, other)
    if node.op in ARITHMETIC:
        values, keep = arithmetic(node.op, left, right), matched
    else:
        with np.errstate(invalid="ignore"):
            truth = _COMPARE[node.op](left, right)
        values, keep = (truth.astype(np.float64), matched) if node.return_bool else (left, matched & truth)
    if node.group is None:
        _at_most_one(keep, many_ids, len(signatures),
                     "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)")
    labels = _result_labels(node, many, one, partner, keep)
    return _rows_by_labels(labels, values, keep, partner)


def _unique_partner(node, one: Steps, ids, count: int, steps: np.ndarray) -> np.ndarray:
    """partner[signature, step]: the one-side row present with that signature at one of `steps`, -1 if none;
    two is an error."""
    k = len(steps)
    rows, columns = np.nonzero(one.present & steps[None, :])
    seen = np.zeros((count, k), np.int64)
    np.add.at(seen, (ids[rows], columns), 1)
    if (seen > 1).any():
        group, step = np.argwhere(seen > 1)[0]
        # Prometheus names the later row first: the one whose insertion found the other.
        twins = [one.labels[r] for r in rows[(ids[rows] == group) & (columns == step)][:2]][::-1]
        side = "left" if node.group == "right" else "right"
        raise ExecutionError(
            f"found duplicate series for the match group {_text(signature(twins[0], node.on, node.labels))} on the {side} "
            f"hand-side of the operation: [{_text(twins[0])}, {_text(twins[1])}];many-to-many matching not "
            "allowed: matching labels must be unique on one side")
    partner = np.full((count, k), -1, np.int64)
    partner[ids[rows], columns] = rows
    return partner


def _text(labels) -> str:
    """Labels as Prometheus prints them in messages: {a="1", b="2"}, values quoted as Go quotes them."""
    return "{" + ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in labels) + "}"


def _at_most_one(keep: np.ndarray, ids: np.ndarray, count: int, message: str) -> None:
    if not keep.size:
        return
    rows, columns = np.nonzero(keep)
    seen = np.zeros((count, keep.shape[1]), np.int64)
    np.add.at(seen, (ids[rows], columns), 1)
    if (seen > 1).any():
        raise ExecutionError(message)


def _result_labels(node, many: Steps, one: Steps, partner, keep):
    """Labels per kept cell's (many row, one row): the many side's, without the name for arithmetic or bool,
    cut to on()/ignoring() for one-to-one, plus group_x's labels from the one side."""
    drop_name = node.op in semantics.OPERATORS_DROPPING_NAME or node.return_bool

    def build(many_row, one_row):
        labels = dict(many.labels[many_row])
        if drop_name:
            labels.pop("__name__", None)
        if node.group is None:
            if node.on:
                labels = {n: v for n, v in labels.items() if n in node.labels}
            else:
                for name in node.labels:
                    labels.pop(name, None)
        for name in node.include:
            value = dict(one.labels[one_row]).get(name, "")
            if value:
                labels[name] = value
            else:
                labels.pop(name, None)
        return tuple(sorted(labels.items()))

    if not node.include:
        return [build(row, 0) for row in range(many.n)]
    rows, columns = np.nonzero(keep)
    return {(r, p): build(r, p) for r, p in set(zip(rows.tolist(), partner[rows, columns].tolist()))}


def _rows_by_labels(labels, values, keep, partner) -> Steps:
    if isinstance(labels, list):
        return merge_same_labels(Steps(labels, values, keep))
    k = values.shape[1]
    out: dict[tuple, int] = {}
    rows, columns = np.nonzero(keep)
    slot = np.array([out.setdefault(labels[(r, p)], len(out)) for r, p in
                     zip(rows.tolist(), partner[rows, columns].tolist())], np.int64)
    out_values = np.zeros((len(out), k))
    out_present = np.zeros((len(out), k), dtype=bool)
    seen = np.zeros((len(out), k), np.int64)
    np.add.at(seen, (slot, columns), 1)
    if (seen > 1).any():
        raise ExecutionError("multiple matches for labels: grouping labels must ensure unique matches")
    out_values[slot, columns] = values[rows, columns]
    out_present[slot, columns] = True
    return Steps(list(out), out_values, out_present)
