"""The API docs: every operation in a section of its own, with a one-line summary and a description."""
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator


def test_every_operation_has_a_declared_section_a_summary_and_a_description():
    sections = [tag["name"] for tag in settings.SPECTACULAR_SETTINGS["TAGS"]]
    schema = SchemaGenerator().get_schema(request=None, public=True)
    undocumented = [
        f"{method.upper()} {path}" for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if len(operation.get("tags", [])) != 1 or operation["tags"][0] not in sections
        or not operation.get("summary") or "\n" in operation["summary"] or not operation.get("description")
    ]
    used = {operation["tags"][0] for operations in schema["paths"].values() for operation in operations.values()}
    assert undocumented == [] and used == set(sections)


def test_the_ingest_request_body_is_documented_so_a_generated_client_can_ingest():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    body = schema["paths"]["/api/v1/ingest/metrics"]["post"]["requestBody"]
    assert body["required"] and body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IngestRequest"}
    event = schema["components"]["schemas"]["Event"]
    assert {"service", "resource_id", "metric_name", "value", "timestamp"} <= set(event["required"])
