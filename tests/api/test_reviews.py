"""Signal review through the API: every legal move, every illegal one (409 naming the allowed
moves), ETag/If-Match (412, 428), reopening by a strengthened signal, the work queue's overdue
reviews under a movable clock, and who sees whose review."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from pvsignal.review import MOVES, Review, Status
from pvsignal.store import open_store
from tests.api.conftest import PLANTED, Seed, World, copy_world, test_settings

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PT = PLANTED["A1"]
PATH = f"/v1/signals/all/A1/{quote(PT)}/review"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clocked(seeded: Seed, tmp_path: Path) -> Iterator[tuple[World, Clock]]:
    url = copy_world(seeded, tmp_path / "world.db")
    clock = Clock()
    with TestClient(create_app(test_settings(url), clock=clock)) as client:
        yield World(client, seeded.keys, url), clock


def read(world: World, who: str, path: str = PATH) -> tuple[dict, str]:
    answer = world.get(who, path)
    assert answer.status_code == 200, answer.text
    return answer.json(), answer.headers["etag"]


def patch(world: World, who: str, body: dict, etag: str | None, path: str = PATH):
    headers = world.headers(who)
    if etag is not None:
        headers["If-Match"] = etag
    return world.client.patch(path, json=body, headers=headers)


def move(world: World, who: str, target: Status, path: str = PATH) -> dict:
    _, etag = read(world, who, path)
    answer = patch(world, who, {"status": target.value, "reason": "test"}, etag, path)
    assert answer.status_code == 200, answer.text
    return answer.json()["review"]


def route(start: Status, goal: Status) -> list[Status]:
    """The shortest chain of legal moves from start to goal."""
    came: dict[Status, Status | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in MOVES[here]:
            if there not in came:
                came[there] = here
                queue.append(there)
    steps, at = [], goal
    while at != start:
        steps.append(at)
        at = came[at]  # type: ignore[assignment]
    return steps[::-1]


def test_every_legal_move_works_and_every_illegal_one_is_409(clocked):
    world, _ = clocked
    status = Status.unreviewed
    tried: set[Status] = set()
    for source, targets in MOVES.items():
        for target in targets:
            for step in route(status, source):
                assert move(world, "mah_a", step)["status"] == step.value
            status = source
            if status not in tried:  # every move the table refuses, from here
                tried.add(status)
                document, etag = read(world, "mah_a")
                assert document["review"]["allowed_moves"] == [s.value for s in MOVES[status]]
                for refused in set(Status) - set(MOVES[status]) - {status}:
                    answer = patch(world, "mah_a", {"status": refused.value}, etag)
                    assert answer.status_code == 409, (status, refused)
                    problem = answer.json()
                    assert problem["allowed_moves"] == [s.value for s in MOVES[status]]
                    assert problem["status_now"] == status.value
                    for allowed in MOVES[status]:
                        assert allowed.value in problem["detail"]
            review = move(world, "mah_a", target)
            assert review["status"] == target.value
            assert review["history"][-1]["from"] == source.value
            assert review["history"][-1]["by"].startswith("mah:MAH-A:")
            status = target
    assert tried == set(MOVES)


def test_fields_due_dates_comments_and_links(clocked):
    world, clock = clocked
    _, etag = read(world, "mah_a")
    assert etag == '"0"'
    body = {
        "status": "validation",
        "priority": "high",
        "assignee": "li.wei",
        "linked_cases": ["H-1/C-1", "H-1/C-2", "H-1/C-1"],
        "comment": "three cases in a week",
        "shared": True,
    }
    answer = patch(world, "mah_a", body, etag)
    assert answer.status_code == 200 and answer.headers["etag"] == '"1"'
    review = answer.json()["review"]
    assert review["due_at"] == (T0 + dt.timedelta(days=30)).isoformat()
    assert (review["priority"], review["assignee"], review["shared"]) == ("high", "li.wei", True)
    assert review["linked_cases"] == ["H-1/C-1", "H-1/C-2"]
    [comment] = review["comments"]
    assert comment["text"] == "three cases in a week" and comment["at"] == T0.isoformat()
    assert comment["author"].startswith("mah:MAH-A:")
    # Explicit due date and clearing the assignee; fields left out stay.
    clock.now = T0 + dt.timedelta(days=1)
    answer = patch(world, "mah_a", {"assignee": None, "due_at": "2026-03-05T00:00:00Z"}, '"1"')
    review = answer.json()["review"]
    assert review["assignee"] is None and review["priority"] == "high"
    assert review["due_at"] == "2026-03-05T00:00:00+00:00"
    # Entering assessment: 60 days from now.
    move(world, "mah_a", Status.validated)
    review = move(world, "mah_a", Status.assessment)
    assert review["due_at"] == (clock.now + dt.timedelta(days=60)).isoformat()


def test_concurrent_edits_412_and_a_patch_without_if_match_428(clocked):
    world, _ = clocked
    _, etag = read(world, "mah_a")
    first = patch(world, "mah_a", {"status": "validation"}, etag)
    assert first.status_code == 200
    second = patch(world, "mah_a", {"priority": "low"}, etag)  # read before the first write
    assert second.status_code == 412 and second.json()["etag"] == '"1"'
    missing = patch(world, "mah_a", {"priority": "low"}, None)
    assert missing.status_code == 428
    assert patch(world, "mah_a", {"priority": "low"}, "*").status_code == 200
    assert patch(world, "mah_a", {"priority": "low"}, 'W/"2", "7"').status_code == 200
    assert read(world, "mah_a")[0]["review"]["version"] == 3


def test_a_strengthened_signal_reopens_a_refuted_review(clocked):
    world, _ = clocked
    for step in (Status.validation, Status.refuted):
        move(world, "mah_a", step)
    move(world, "regulator", Status.validation)  # in progress: not reopened
    alert = {
        "product_id": "A1",
        "pt": PT,
        "transition": "strengthened",
        "changes": {"ebgm": "strengthened", "prr": "weakened"},
        "mah_id": "MAH-A",
    }
    store = open_store(world.url)
    try:
        store.write_detection("all", {}, [], [alert], "2026-04-01T00:00:00+00:00")
        assert store.verify_audit() is None
        [row] = store.audit_entries(action="review.reopen")
    finally:
        store.close()
    review = read(world, "mah_a")[0]["review"]
    assert review["status"] == "validation"
    last = review["history"][-1]
    assert (last["from"], last["to"], last["by"]) == ("refuted", "validation", "system:-:detection")
    assert "ebgm strengthened" in last["reason"] and "after refuted" in last["reason"]
    assert last["alert_id"] is not None
    assert review["due_at"] == "2026-05-01T00:00:00+00:00"
    assert row["before"]["status"] == "refuted" and row["after"]["status"] == "validation"
    assert read(world, "regulator")[0]["review"]["version"] == 1  # untouched


def test_the_work_queue_finds_overdue_reviews(clocked):
    world, clock = clocked
    move(world, "mah_a", Status.validation)
    b_path = f"/v1/signals/all/A2/{quote(PLANTED['A2'])}/review"
    _, etag = read(world, "mah_a", b_path)
    patch(world, "mah_a", {"status": "validation", "assignee": "zhang"}, etag, b_path)

    def queue(**params) -> list[tuple[str, str | None]]:
        answer = world.get("mah_a", "/v1/reviews", params=params)
        assert answer.status_code == 200, answer.text
        return [(r["product_id"], r["assignee"]) for r in answer.json()["reviews"]]

    assert queue() == [("A1", None), ("A2", "zhang")]
    assert queue(overdue="true") == []
    assert queue(overdue="false") == [("A1", None), ("A2", "zhang")]
    assert queue(assignee="zhang") == [("A2", "zhang")]
    clock.now = T0 + dt.timedelta(days=31)
    assert queue(overdue="true") == [("A1", None), ("A2", "zhang")]
    assert queue(overdue="false") == []
    first = world.get("mah_a", "/v1/reviews", params={"overdue": "true", "limit": 1}).json()
    assert first["reviews"][0]["overdue"] is True and first["next_cursor"]
    rest = world.get(
        "mah_a", "/v1/reviews", params={"overdue": "true", "cursor": first["next_cursor"]}
    )
    assert [r["product_id"] for r in rest.json()["reviews"]] == ["A2"]
    assert queue(status="assessment") == []
    assert world.get("mah_b", "/v1/reviews").json()["reviews"] == []  # another organisation's


def test_tenancy_of_reviews(clocked):
    world, _ = clocked
    assert world.get("mah_b", PATH).status_code == 404
    assert patch(world, "mah_b", {"status": "validation"}, "*").status_code == 404
    assert world.get("hospital", PATH).status_code == 403
    assert (
        world.get("mah_a", f"/v1/signals/all/A1/{quote('No such event')}/review").status_code == 404
    )
    _, etag = read(world, "mah_a")
    patch(world, "mah_a", {"status": "validation", "comment": "internal"}, etag)
    regulator = read(world, "regulator")[0]
    assert (
        regulator["review"]["org"] == "regulator" and regulator["review"]["status"] == "unreviewed"
    )
    assert regulator["shared"] == []  # not shared yet
    patch(world, "mah_a", {"shared": True}, '"1"')
    [shared] = read(world, "regulator")[0]["shared"]
    assert (shared["org"], shared["status"]) == ("MAH-A", "validation")
    move(world, "regulator", Status.validation)
    mah = read(world, "mah_a")[0]
    assert mah["shared"] == [] and mah["review"]["org"] == "MAH-A"  # never the regulator's


def test_review_rules_round_trip():
    review = Review("all", "A1", PT, "MAH-A", status=Status.monitoring, version=4)
    assert Review.from_document(review.document()) == review
