"""Small shared pieces of the admin's forms."""
import json


def whole_number(text: str | None, *, at_most: int = 10**9) -> int | None:
    """A query parameter as a whole number of ASCII digits up to `at_most`, else None ("²".isdigit() is
    true, and 5,000 digits pass isdigit but not int())."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > len(str(at_most)):
        return None
    number = int(text)
    return number if number <= at_most else None


class BoundedJSONDecoder(json.JSONDecoder):
    """JSON decoding that says a text nested deeper than Python's json module recurses is not valid JSON
    (the module raises RecursionError, which a form would let through as a 500)."""

    def decode(self, s, *args, **kwargs):
        try:
            return super().decode(s, *args, **kwargs)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", s, 0) from None
