import pytest

ENDPOINTS = {
    ("/api/auth/register", "post"): {"201", "400", "413", "429"},
    ("/api/auth/token", "post"): {"200", "400", "401", "429"},
    ("/api/auth/token/refresh", "post"): {"200", "400", "401"},
    ("/api/auth/token/verify", "post"): {"200", "400", "401"},
    ("/api/auth/logout", "post"): {"205", "400", "401", "403"},
    ("/api/auth/me", "get"): {"200", "401"},
}


@pytest.mark.django_db
def test_schema_documents_every_account_endpoint_and_its_errors(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for (path, method), codes in ENDPOINTS.items():
        responses = paths[path][method]["responses"]
        assert codes <= set(responses), (path, sorted(responses))
    limited = paths["/api/auth/token"]["post"]["responses"]["429"]
    assert "Retry-After" in limited["headers"]
