"""OpenAPI: every operation documents the error shape for the errors it can give."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A stable code, e.g. STORE_NOT_FOUND.")
    message = serializers.CharField()
    status_code = serializers.IntegerField()
    details = serializers.DictField(child=serializers.JSONField())
    request_id = serializers.CharField()
    timestamp = serializers.DateTimeField()

    class Meta:
        ref_name = "Error"


_DESCRIPTIONS = {
    400: "Invalid input (VALIDATION_ERROR and friends)",
    401: "AUTHENTICATION_REQUIRED",
    403: "PERMISSION_DENIED",
    404: "Not found (STORE_NOT_FOUND, DOCUMENT_NOT_FOUND, NOT_FOUND)",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "STORE_EXISTS or DOCUMENT_BUSY",
    413: "FILE_SIZE_EXCEEDED or REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_FILE_TYPE or UNSUPPORTED_MEDIA_TYPE",
    422: "UNSAFE_FILE or ANSWER_REJECTED",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "UPSTREAM_ERROR",
    503: "UPSTREAM_UNAVAILABLE or DATABASE_UNAVAILABLE",
    507: "INSUFFICIENT_STORAGE",
}
_COMMON = (400, 401, 403, 404, 405, 406, 429, 500, 503)


class AutoSchema(SpectacularAutoSchema):
    """Adds the error responses; a view lists extra ones in ``error_statuses``."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        extra = getattr(self.view, "error_statuses", {})
        if isinstance(extra, dict):
            extra = extra.get(self.method.upper(), ())
        if self.method.upper() in ("POST", "PUT", "PATCH"):
            extra = (*extra, 415)
        for status_code in sorted({*_COMMON, *extra}):
            if str(status_code) in responses:
                continue
            responses[str(status_code)] = self._get_response_for_code(
                OpenApiResponse(
                    ErrorSerializer, description=_DESCRIPTIONS[status_code]
                ),
                str(status_code),
                direction=direction,
            )
        return responses
