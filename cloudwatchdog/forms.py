"""Small shared pieces of the admin's forms."""
import json


class BoundedJSONDecoder(json.JSONDecoder):
    """JSON decoding that says a text nested deeper than Python's json module recurses is not valid JSON
    (the module raises RecursionError, which a form would let through as a 500)."""

    def decode(self, s, *args, **kwargs):
        try:
            return super().decode(s, *args, **kwargs)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", s, 0) from None
