"""The feature API on a real server: every answer equals a direct DuckDB query."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml
from serving_helpers import MODELS_YML, Server, direct, start_server, write_analytics

USERS = 300
KNOWN = [i * 3 + 1 for i in range(USERS)]  # write_analytics' ids
MAX_ID = 2**53 - 1


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    analytics = write_analytics(
        tmp_path_factory.mktemp("serve") / "analytics.duckdb", "run-a", USERS
    )
    server = start_server(analytics)
    yield server
    server.stop()


def test_every_user_matches_duckdb(api: Server) -> None:
    expected = direct(api.analytics, KNOWN)
    with api.client() as client:
        for user_id, row in zip(KNOWN, expected, strict=True):
            response = client.get(f"/features/{user_id}")
            assert response.status_code == 200
            assert response.headers["x-run-id"] == "run-a"
            assert response.json() == {"run_id": "run-a", "user_id": user_id, "features": row}
    assert len(expected) == USERS
    assert sum(1 for row in expected if row and row["age_imputed"] is None) == 43  # i % 7 == 0


def test_unknown_user_is_404(api: Server) -> None:
    with api.client() as client:
        for user_id in (2, 0, -5, KNOWN[-1] + 3, MAX_ID):
            response = client.get(f"/features/{user_id}")
            assert response.status_code == 404
            assert response.json() == {"detail": f"unknown user_id {user_id}"}


def test_batch_in_request_order_with_unknown_ids(api: Server) -> None:
    ids = [KNOWN[10], 2, KNOWN[0], KNOWN[10], KNOWN[-1], -7, 2, KNOWN[150]]
    with api.client() as client:
        response = client.post("/features", json={"user_ids": ids})
    assert response.status_code == 200
    assert response.json() == {
        "run_id": "run-a",
        "rows": direct(api.analytics, ids),
        "unknown_ids": [2, -7],
    }
    assert [r and r["user_id"] for r in response.json()["rows"]] == [
        KNOWN[10], None, KNOWN[0], KNOWN[10], KNOWN[-1], None, None, KNOWN[150]
    ]  # fmt: skip


def test_batch_of_the_maximum_size(api: Server) -> None:
    ids = [KNOWN[i % USERS] if i % 4 else i * 3 + 2 for i in range(10_000)]
    with api.client() as client:
        response = client.post("/features", json={"user_ids": ids})
    assert response.status_code == 200
    body = response.json()
    assert body["rows"] == direct(api.analytics, ids)
    assert len(body["rows"]) == 10_000
    assert sum(row is None for row in body["rows"]) == 2_500
    assert len(body["unknown_ids"]) == 2_500


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ({"user_ids": []}, ["body", "user_ids"], "List should have at least 1 item"),
        (
            {"user_ids": list(range(10_001))},
            ["body", "user_ids"],
            "List should have at most 10000 items",
        ),
        ({"user_ids": [1, "2"]}, ["body", "user_ids", 1], "user ids are JSON integers"),
        ({"user_ids": [True]}, ["body", "user_ids", 0], "user ids are JSON integers"),
        ({"user_ids": [1.5]}, ["body", "user_ids", 0], "user ids are JSON integers"),
        ({"user_ids": [MAX_ID + 1]}, ["body", "user_ids", 0], "less than or equal to"),
        ({"user_ids": [-MAX_ID - 1]}, ["body", "user_ids", 0], "greater than or equal to"),
        ({"user_ids": [1], "sql": "drop"}, ["body", "sql"], "Extra inputs are not permitted"),
        ({"ids": [1]}, ["body", "user_ids"], "Field required"),
        ([1, 2], ["body"], "valid dictionary"),
    ],
)
def test_bad_batches_are_422_with_where_and_why(
    api: Server, body: object, where: list[object], message: str
) -> None:
    with api.client() as client:
        response = client.post("/features", json=body)
    assert response.status_code == 422
    details = response.json()["detail"]
    assert details[0]["loc"] == where
    assert message in details[0]["msg"]
    assert "input" not in details[0]  # never echoes a 10,000-id body back


def test_bad_path_ids_and_bodies(api: Server) -> None:
    with api.client() as client:
        for text in ("abc", "1.5", str(MAX_ID + 1), "1%20or%201=1", "x" * 5000):
            response = client.get(f"/features/{text}")
            assert response.status_code == 422, text
            assert response.json()["detail"][0]["loc"] == ["path", "user_id"]
        not_json = client.post(
            "/features", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 422
        assert not_json.json()["detail"][0]["type"] == "json_invalid"
        huge = client.post(
            "/features",
            content=b'{"user_ids": [' + b"1," * 600_000 + b"1]}",
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        assert huge.json() == {"detail": "request body over 1048576 bytes: send at most 10000 ids"}


def test_health(api: Server) -> None:
    response = httpx.get(f"{api.url}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["loaded_at"]
    del body["loaded_at"]
    assert body == {
        "status": "ok",
        "run_id": "run-a",
        "published_at": "2026-02-03T04:05:06Z",
        "rows": USERS,
        "tables": {"dim_users": USERS + 5, "user_features": USERS},
    }


def test_metadata_names_types_and_dbt_descriptions(api: Server) -> None:
    with api.client() as client:
        response = client.get("/metadata")
    assert response.status_code == 200
    body = response.json()
    with duckdb.connect(str(api.analytics), read_only=True) as con:
        types = con.execute(
            "select column_name, data_type from duckdb_columns() "
            "where schema_name = 'marts' and table_name = 'user_features' order by column_index"
        ).fetchall()
        as_of = con.execute("select max(features_as_of) from marts.user_features").fetchone()
    doc = yaml.safe_load(Path(MODELS_YML).read_text(encoding="utf-8"))
    model = next(m for m in doc["models"] if m["name"] == "user_features")
    described = {c["name"]: " ".join(c["description"].split()) for c in model["columns"]}
    assert [(f["name"], f["type"]) for f in body["features"]] == types
    assert {f["name"]: f["description"] for f in body["features"]} == described
    assert len(body["features"]) == 19
    assert body["description"] == " ".join(model["description"].split())
    assert body["features_as_of"] == as_of[0].isoformat() + "Z"  # type: ignore[index]
    assert body["run_id"] == "run-a"
    assert body["table"] == "marts.user_features"


def test_bearer_token(tmp_path: Path, servers: list[Server]) -> None:
    analytics = write_analytics(tmp_path / "analytics.duckdb", "run-t", 10)
    server = start_server(analytics, token="s3cret-token")
    servers.append(server)
    anonymous = httpx.Client(base_url=server.url, timeout=600)
    wrong = httpx.Client(base_url=server.url, timeout=600, headers={"Authorization": "Bearer no"})
    basic = httpx.Client(base_url=server.url, timeout=600, headers={"Authorization": "Basic eA=="})
    with anonymous, wrong, basic, server.client() as right:
        for client in (anonymous, wrong, basic):
            for response in (
                client.get("/features/1"),
                client.post("/features", json={"user_ids": [1]}),
                client.get("/metadata"),
            ):
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json() == {
                    "detail": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
                }
            assert client.get("/health").status_code == 200
        assert right.get("/features/1").json()["features"] == direct(analytics, [1])[0]
        assert right.post("/features", json={"user_ids": [1]}).status_code == 200
        assert right.get("/metadata").status_code == 200
        schema = anonymous.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
