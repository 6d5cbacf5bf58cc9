"""Request bodies: the API's JSON parser and strict validation of the parsed object."""

import io

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, parsers, serializers

from leaderboard.errors import ApiError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser that refuses oversized bodies (413) and pathological nesting (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF reads the request as a stream, which skips Django's body-size check.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise RequestDataTooBig("Request body exceeded DATA_UPLOAD_MAX_MEMORY_SIZE.")
            stream = io.BytesIO(body)
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # 64 KiB of "[[[[" is enough to exhaust the stack; that is bad input, not a 500.
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


def parse_strict(serializer_class: type[serializers.Serializer], data: object) -> dict:
    """Validate a JSON object, refusing any field the serializer does not declare."""
    if not isinstance(data, dict):
        raise ApiError("invalid", "The body must be a JSON object.")
    serializer = serializer_class(data=data)
    unknown = sorted(set(data) - set(serializer.fields))
    if unknown:
        # Names are echoed back, so bound how much of an attacker's input is reflected.
        raise ApiError(
            "invalid",
            "Unknown fields in the request.",
            fields={name[:50]: ["This field is not allowed."] for name in unknown[:20]},
        )
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
