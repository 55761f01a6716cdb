import pytest

from accounts.models import ApiKey
from accounts.services import api_key_create


@pytest.fixture
def make_key(db):
    """Create a key and return (model, plaintext)."""

    def make(scope: str = ApiKey.Scope.READ, **kwargs) -> tuple[ApiKey, str]:
        return api_key_create(
            name=kwargs.pop("name", f"{scope} key"), scope=scope, **kwargs
        )

    return make
