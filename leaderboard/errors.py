"""One error shape for the whole API: {"error", "detail", "fields"?} (SPEC.md section 6)."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import InvalidToken

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An API error with an explicit machine code, status and optional headers."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        headers: dict[str, str] | None = None,
        fields: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.code = code
        self.headers = headers or {}
        self.fields = fields


class ErrorSerializer(serializers.Serializer):
    """The error shape, for the OpenAPI schema."""

    error = serializers.CharField()
    detail = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


def error_responses(
    *codes: int, descriptions: dict[int, str] | None = None
) -> dict[int, OpenApiResponse]:
    """OpenAPI responses in the error shape for the given status codes."""
    descriptions = descriptions or {}
    return {
        code: OpenApiResponse(ErrorSerializer, description=descriptions.get(code, ""))
        for code in codes
    }


def error_body(code: str, detail: str, fields: dict[str, list[str]] | None = None) -> dict:
    """Build the error body of SPEC.md section 6."""
    body: dict[str, Any] = {"error": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def json_error(code: str, detail: str, status_code: int, **headers: str) -> JsonResponse:
    """A plain Django JSON response in the error shape (for non-DRF views)."""
    response = JsonResponse(error_body(code, detail), status=status_code)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [msg for value in detail.values() for msg in _flatten(value)]
    if isinstance(detail, list):
        return [msg for item in detail for msg in _flatten(item)]
    return [str(detail)]


def _fields(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(name): _flatten(value) for name, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def _token_detail(exc: InvalidToken) -> str:
    detail = exc.detail
    if isinstance(detail, dict):
        messages = detail.get("messages")
        if messages:
            return str(messages[0].get("message", detail.get("detail", "")))
        return str(detail.get("detail", "Token is invalid."))
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response:
    """Map every exception a view raises to the one error shape; never leak a trace."""
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        body = error_body(exc.code, str(exc.detail), exc.fields)
        return Response(body, status=exc.status_code, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("too_large", "The request body is too large."), status=413)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database connection dropped or the pool had none to lend: nothing was
        # committed, and a retry with the same action_id is safe.
        logger.warning("database unavailable: %s", exc)
        return Response(
            error_body("unavailable", "The database is unavailable; retry shortly."),
            status=503,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, InvalidToken):
        return Response(
            error_body("token_invalid", _token_detail(exc)),
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait) + 1)
        if isinstance(exc, exceptions.ValidationError):
            body = error_body("invalid", "The request is invalid.", _fields(exc.detail))
        elif isinstance(exc, exceptions.ParseError):
            body = error_body("invalid", str(exc.detail))
        elif isinstance(exc, exceptions.NotAuthenticated):
            body = error_body("not_authenticated", str(exc.detail))
        elif isinstance(exc, exceptions.AuthenticationFailed):
            body = error_body("token_invalid", str(exc.detail))
        elif isinstance(exc, exceptions.PermissionDenied):
            body = error_body("forbidden", str(exc.detail))
        elif isinstance(exc, exceptions.NotFound):
            body = error_body("not_found", str(exc.detail))
        elif isinstance(exc, exceptions.MethodNotAllowed):
            body = error_body("method_not_allowed", str(exc.detail))
        elif isinstance(exc, exceptions.UnsupportedMediaType):
            body = error_body("unsupported_media_type", str(exc.detail))
        elif isinstance(exc, exceptions.NotAcceptable):
            body = error_body("not_acceptable", str(exc.detail))
        elif isinstance(exc, exceptions.Throttled):
            body = error_body("rate_limited", "Too many requests; slow down.")
        else:
            body = error_body(str(exc.default_code), str(exc.detail))
        return Response(body, status=exc.status_code, headers=headers)
    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
    return Response(error_body("server_error", "An unexpected error occurred."), status=500)
