"""Small shared pieces of the admin's forms."""
import json

from django import forms


def whole_number(text: str | None, *, at_most: int = 10**9) -> int | None:
    """A query parameter as a whole number of ASCII digits up to `at_most`, else None ("²".isdigit() is
    true, and 5,000 digits pass isdigit but not int())."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > len(str(at_most)):
        return None
    number = int(text)
    return number if number <= at_most else None


class BoundedJSONDecoder(json.JSONDecoder):
    """JSON decoding that says a text nested deeper than Python's json module recurses, or holding a
    number of more digits than int() converts (4,300), is not valid JSON: the module raises RecursionError
    and ValueError, which a form (it catches JSONDecodeError only) would let through as a 500."""

    def decode(self, s, *args, **kwargs):
        try:
            return super().decode(s, *args, **kwargs)
        except json.JSONDecodeError:
            raise
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", s, 0) from None
        except ValueError:
            raise json.JSONDecodeError("a number with too many digits", s, 0) from None


class EscapingJSONField(forms.JSONField):
    """Every JSON field of the admin (tenants.admin.JSON_FIELDS): JSON shown back as typed, but with a lone
    surrogate (\\ud800, refused) escaped: the page is UTF-8, which cannot hold one, and would otherwise fail
    to render. Nested too deeply, or with a number too long to convert, it is invalid (BoundedJSONDecoder)."""

    def __init__(self, encoder=None, decoder=None, **kwargs):
        super().__init__(encoder=encoder, decoder=decoder or BoundedJSONDecoder, **kwargs)

    def prepare_value(self, value):
        text = super().prepare_value(value)
        if isinstance(text, str) and any("\ud800" <= c <= "\udfff" for c in text):
            return json.dumps(value, cls=self.encoder)
        return text
