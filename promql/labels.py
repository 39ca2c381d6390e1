"""A stored series' Prometheus labels: the one mapping the query API reads with (README, "Reading with PromQL").

Remote write stores `__name__` as the metric name, `job` as the service, `instance` as the resource id and
every other label as a tag, so those series read back with exactly the labels they were written with. JSON and
OTLP series read the same way; their tag names may hold characters a Prometheus label cannot, which become `_`
(with `key_` in front of a leading digit, as OpenTelemetry's Prometheus exporter names them)."""
import re

from metrics.protocols import UNKNOWN_RESOURCE, UNKNOWN_SERVICE

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
# Labels the series' own fields give; a tag of the same name is renamed as Prometheus renames a scraped
# label that collides with a target label (honor_labels: false).
_RESERVED = ("__name__", "job", "instance")


def label_name(tag_name: str) -> str:
    name = _INVALID.sub("_", tag_name)
    if name[:1].isdigit():
        name = "key_" + name
    return name


def tag_label_name(tag_name: str) -> str:
    """The label a tag reads back as."""
    name = label_name(tag_name)
    return "exported_" + name if name in _RESERVED else name


def series_labels(*, metric_name: str, service: str, resource_id: str, tags: dict[str, str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for tag, value in tags.items():
        if value == "":
            continue  # an empty label is no label, in Prometheus
        name = tag_label_name(tag)
        # Two tags that sanitise to one name keep both values, joined as the OTel exporter joins them.
        labels[name] = f"{labels[name]};{value}" if name in labels else value
    labels["__name__"] = metric_name
    if service != UNKNOWN_SERVICE:
        labels["job"] = service
    if resource_id != UNKNOWN_RESOURCE:
        labels["instance"] = resource_id
    return dict(sorted(labels.items()))
