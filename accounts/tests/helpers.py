"""Helpers shared by the account tests."""

PASSWORD = "tangerine-otter-42"


def error_of(response) -> str:
    """The machine code of an error response, after checking it has the one error shape."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) <= {"error", "detail", "fields"}, body
    assert isinstance(body["error"], str)
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body["error"]


def post(client, path: str, data, **extra):
    """POST a JSON body to an /api/auth/ endpoint."""
    return client.post(f"/api/auth/{path}", data, format="json", **extra)


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
