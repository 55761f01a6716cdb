"""`Authorization: Api-Key <key>` authentication for DRF.

djangorestframework-api-key only ships a permission; an authentication class lets
DRF answer 401 with `WWW-Authenticate`, and gives views the key's scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from accounts.models import ApiKey
from flamehaven.rowmemo import RowMemo

if TYPE_CHECKING:
    # DRF imports this module from its settings while loading its views.
    from rest_framework.request import Request

KEYWORD = "Api-Key"
# Real keys are 41 characters; anything far longer is not worth hashing.
_MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class ApiKeyUser:
    """Stands in for request.user: a key is not a person and has no DB row.

    Django and DRF code only ask a user whether it is authenticated, staff and so
    on; answering those is enough, and `pk` None keeps it out of anything that
    would save a foreign key to it.
    """

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    @property
    def username(self) -> str:
        return f"api-key:{self.api_key.prefix}"

    @property
    def scope(self) -> str:
        return self.api_key.scope

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username


# Usable keys by prefix, shared by the process's threads: a revoke or any other
# write to the table is seen by the next request (flamehaven.rowmemo).
_usable_keys = RowMemo("accounts_apikey")


def _key_from(key: str) -> ApiKey:
    """ApiKey.objects.get_from_key, with the row from the memo."""
    prefix = key.partition(".")[0]
    api_key = _usable_keys.fetch(
        prefix, lambda: ApiKey.objects.get_usable_keys().get(prefix=prefix)
    )
    if not api_key.is_valid(key):
        raise ApiKey.DoesNotExist("Key is not valid.")
    return api_key


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate with a scoped API key; leave other schemes to other classes."""

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2 or len(parts[1]) > _MAX_KEY_LENGTH:
            raise AuthenticationFailed("Invalid API key.")
        try:
            key = parts[1].decode("ascii")
            api_key = _key_from(key)
        except (UnicodeDecodeError, ApiKey.DoesNotExist):
            # One message for every failure: never say which part was wrong,
            # and never echo the key.
            raise AuthenticationFailed("Invalid API key.") from None
        if api_key.has_expired:
            raise AuthenticationFailed("Invalid API key.")
        api_key.touch()
        return ApiKeyUser(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # Without this DRF turns a missing credential into 403 instead of 401.
        return KEYWORD
