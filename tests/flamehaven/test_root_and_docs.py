"""Open endpoints: service info, landing page, health, the OpenAPI schema and docs."""

import re

import pytest
import yaml
from django.core.management import call_command


@pytest.mark.django_db
def test_service_info_as_json(client):
    response = client.get("/")

    body = response.json()
    assert body["name"] == "Flamehaven FileSearch"
    assert body["endpoints"]["search"] == "/api/search"
    assert body["features"]["gemini"] is False


@pytest.mark.django_db
def test_landing_page_for_browsers(client):
    response = client.get("/", HTTP_ACCEPT="text/html,application/xhtml+xml")

    assert response["Content-Type"].startswith("text/html")
    assert b'href="/admin/"' in response.content
    assert b'href="/api/docs/"' in response.content


@pytest.mark.django_db
def test_health_is_open_and_reports_checks(client):
    response = client.get("/health")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["cache"]["ok"] is True
    assert body["search_backend"] == "local"


def test_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    schema = yaml.safe_load(out.read_text())
    search = schema["paths"]["/api/search"]["post"]
    assert search["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert "ApiKeyAuth" in schema["components"]["securitySchemes"]
    upload = schema["paths"]["/api/stores/{store_name}/documents/"]["post"]
    assert {"201", "413", "415", "422"} <= set(upload["responses"])
    # What the service checks itself is still in the schema for clients.
    from stores.models import STORE_NAME_PATTERN

    name = schema["components"]["schemas"]["Store"]["properties"]["name"]
    assert name["pattern"] == STORE_NAME_PATTERN
    # One file answers a document, several {"results": [...]}: both documented.
    created = upload["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/UploadResult"}
    assert schema["components"]["schemas"]["UploadResult"]["oneOf"] == [
        {"$ref": "#/components/schemas/Document"},
        {"$ref": "#/components/schemas/DocumentListResult"},
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_their_assets_locally(client, page):
    response = client.get(page)

    html = response.content.decode()
    assert response.status_code == 200
    assert "googleapis" not in html and "cdn." not in html
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert assets, html
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    if page == "/api/docs/":
        assert "<script>" not in html  # the split view keeps scripts in files
