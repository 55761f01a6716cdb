"""Request body parsers for the API (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as BaseJSONParser


class JSONParser(BaseJSONParser):
    """DRF's JSON parser, with a body nested too deeply for Python refused as 400.

    Python's json module gives up on about a thousand nested arrays or objects
    with RecursionError, which DRF does not catch (it expects ValueError): the
    client would get a 500 for its own malformed body.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                "JSON parse error - the body is nested too deeply."
            ) from None
