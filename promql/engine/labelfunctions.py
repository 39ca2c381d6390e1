"""label_replace and label_join, with Go's regexp template expansion ($1, ${1}, $name, $$)."""
import re

import re2

# A tenant's bad regex is answered as an error; RE2 need not also log it to the server's stderr.
_QUIET = re2.Options()
_QUIET.log_errors = False

from promql.engine.arrays import Steps, merge_same_labels
from promql.engine.values import ExecutionError

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_WORD = re.compile(r"[a-zA-Z0-9_]+")


def _with(labels, name: str, value: str):
    kept = {n: v for n, v in labels if n != name}
    if value != "":
        kept[name] = value
    return tuple(sorted(kept.items()))


def label_replace(steps: Steps, destination: str, template: str, source: str, regex: str) -> Steps:
    try:
        pattern = re2.compile(f"^(?:{regex})$", _QUIET)
    except re2.error:
        raise ExecutionError(f"invalid regular expression in label_replace(): {regex}") from None
    if not _LABEL_NAME.match(destination):
        raise ExecutionError(f"invalid destination label name in label_replace(): {destination}")
    labels = []
    for series_labels in steps.labels:
        value = dict(series_labels).get(source, "")
        found = pattern.match(value)
        if found is None:
            labels.append(series_labels)
        else:
            labels.append(_with(series_labels, destination, expand(template, found)))
    return merge_same_labels(Steps(labels, steps.values, steps.present))


def label_join(steps: Steps, destination: str, separator: str, sources: list[str]) -> Steps:
    for source in sources:
        if not _LABEL_NAME.match(source):
            raise ExecutionError(f"invalid source label name in label_join(): {source}")
    if not _LABEL_NAME.match(destination):
        raise ExecutionError(f"invalid destination label name in label_join(): {destination}")
    labels = []
    for series_labels in steps.labels:
        values = dict(series_labels)
        joined = separator.join(values.get(source, "") for source in sources)
        labels.append(_with(series_labels, destination, joined))
    return merge_same_labels(Steps(labels, steps.values, steps.present))


def expand(template: str, found) -> str:
    """Go's Regexp.ExpandString: $name or ${name} is a group by number or name (empty if there is none),
    $$ is a dollar, and a $ that starts neither is kept as it is."""
    out, i = [], 0
    while i < len(template):
        char = template[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        if template[i + 1:i + 2] == "$":
            out.append("$")
            i += 2
            continue
        name, end = _reference(template, i + 1)
        if name is None:
            out.append("$")
            i += 1
            continue
        out.append(_group(found, name))
        i = end
    return "".join(out)


def _reference(template: str, at: int):
    braced = template[at:at + 1] == "{"
    word = _WORD.match(template, at + 1 if braced else at)
    if word is None:
        return None, at
    end = word.end()
    if braced:
        if template[end:end + 1] != "}":
            return None, at
        end += 1
    return word.group(), end


def _group(found, name: str) -> str:
    if name.isdigit() and not (name[0] == "0" and len(name) > 1) and len(name) < 9:
        number = int(name)
        try:
            return found.group(number) or ""
        except IndexError:
            return ""
    try:
        return found.group(name) or ""
    except IndexError:
        return ""
