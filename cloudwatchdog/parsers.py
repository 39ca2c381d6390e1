"""The API's JSON body parser, in a module of its own: DRF imports it from its settings while
rest_framework itself is importing, so it may import nothing of ours that imports DRF's views."""
from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a body nested deeper than Python's json module recurses answered 400 (the
    module raises RecursionError, which DRF would let through as a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
