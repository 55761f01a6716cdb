from drf_spectacular.extensions import OpenApiAuthenticationExtension

from accounts.authentication import ApiKeyAuthentication


def test_auth_class_is_described_to_drf_spectacular():
    extension = OpenApiAuthenticationExtension.get_match(ApiKeyAuthentication())
    assert extension is not None
    assert extension.name == "ApiKeyAuth"
    assert extension.get_security_definition(None) == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Api-Key <key>`",
    }
