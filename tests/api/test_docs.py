"""The API documentation page works offline: Swagger UI 5 is served from the installed bundle."""

from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import test_settings


def test_docs_use_local_swagger_ui(tmp_path):
    with TestClient(create_app(test_settings(f"sqlite:///{tmp_path}/s.db"))) as client:
        page = client.get("/docs").text
        assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn." not in page
        script = client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


def test_no_docs_assets_outside_development(tmp_path):
    settings = test_settings(
        f"sqlite:///{tmp_path}/s.db", environment="production", secret_key="x" * 48
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/docs/assets/swagger-ui-bundle.js").status_code in (401, 404)
        assert client.get("/docs").status_code == 401
