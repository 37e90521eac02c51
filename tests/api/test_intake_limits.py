"""Intake limits are enforced while the body is read, off the event loop.

The reader is checked chunk by chunk against the plain split it replaces; the route through
TestClient for its problems; and a real server (uvicorn in its own process, so its memory and
its event loop are its own) for what the limits are for: a 64 MiB body is refused without the
server's memory growing with it, while /livez keeps answering at once.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.intake import SUPPORTED, Limits, read_records
from api.problems import ContentTooLargeError
from tests.api.conftest import Seed, copy_world, report, test_settings
from tests.support.server import Server, serve

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
LOOSE = Limits(max_records=1_000, max_record_bytes=1_000)


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def ndjson(body: bytes, chunk: int, limits: Limits = LOOSE) -> list[tuple[str, bytes]]:
    records = read_records("application/x-ndjson", chunked(body, chunk), "r", limits)
    return [(r.location, r.payload) for r in records]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 64, 10_000])
def test_lines_are_found_across_chunks_as_a_plain_split_finds_them(chunk: int):
    body = b'{"a": 1}\n\n  \n{"b": 2}\r\n \t{"c": 3}\n\n\n{"d": 4}'
    expected = [
        (f"r:{number}", line)
        for number, line in enumerate(body.split(b"\n"), start=1)
        if line.strip()
    ]
    assert ndjson(body, chunk) == expected
    assert ndjson(body + b"\n", chunk) == expected


@pytest.mark.parametrize("chunk", [1, 7, 1_000_000])
def test_the_record_after_the_last_allowed_is_refused(chunk: int):
    limits = Limits(max_records=3, max_record_bytes=100)
    assert len(ndjson(b"1\n\n2\n3\n\n", chunk, limits)) == 3
    with pytest.raises(ContentTooLargeError) as refused:
        ndjson(b"1\n2\n3\n4\n" + b"5\n" * 1000, chunk, limits)
    assert refused.value.extra == {"limit": "max_records", "maximum": 3, "value": 4}
    assert "at most 3" in refused.value.detail


def test_a_long_line_is_refused_before_it_ends():
    limits = Limits(max_records=10, max_record_bytes=100)
    assert ndjson(b"x" * 100 + b"\n" + b"y" * 100, 30, limits)[1] == ("r:2", b"y" * 100)
    read: list[int] = []

    def endless() -> Iterator[bytes]:
        yield b"ok\n"
        while True:
            read.append(40)
            yield b"z" * 40

    with pytest.raises(ContentTooLargeError) as refused:
        list(read_records("application/x-ndjson", endless(), "r", limits))
    assert sum(read) == 120  # the line stops being read once over 100 bytes
    assert refused.value.extra == {"limit": "max_record_bytes", "maximum": 100, "value": 120}
    assert refused.value.detail.startswith("line 2 is over 100 bytes")
    for body in (b"a\n" + b"b" * 101 + b"\nc\n", b"a\n" + b"b" * 101):  # in one chunk
        with pytest.raises(ContentTooLargeError, match="line 2"):
            ndjson(body, len(body), limits)


def test_a_json_body_is_one_record_under_the_record_limit():
    limits = Limits(max_records=10, max_record_bytes=100)
    [record] = read_records("application/json", [b'{"a":', b" 1}"], "r", limits)
    assert record.location == "r:1" and record.payload == b'{"a": 1}'
    with pytest.raises(ContentTooLargeError, match="the JSON body is over 100 bytes"):
        list(read_records("application/json", chunked(b"[" * 300, 64), "r", limits))


@pytest.fixture
def small_limits(seeded: Seed, tmp_path: Path) -> Iterator[TestClient]:
    url = copy_world(seeded, tmp_path / "limits.db")
    settings = test_settings(url, max_batch_records=3, max_record_bytes=2_000)
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {seeded.keys['hospital']}"
        yield client


def test_refusals_are_problems_naming_the_limit_and_write_nothing(small_limits: TestClient):
    ndjson_type = {"content-type": "application/x-ndjson"}
    lines = [report(f"LIM-{i}", "alphamab", ["Rash"]) for i in range(5)]
    too_many = small_limits.post("/v1/reports", content=b"\n".join(lines), headers=ndjson_type)
    assert too_many.status_code == 413
    assert too_many.headers["content-type"] == "application/problem+json"
    problem = too_many.json()
    assert problem["type"] == "urn:pvsignal:problem:content-too-large"
    assert (problem["limit"], problem["maximum"], problem["value"]) == ("max_records", 3, 4)

    huge = report("LIM-9", "alphamab", ["Rash"] * 500)  # a report over 2,000 bytes
    for content_type, body in [
        ("application/x-ndjson", lines[0] + b"\n" + huge),
        ("application/json", huge),
    ]:
        refused = small_limits.post(
            "/v1/reports", content=body, headers={"content-type": content_type}
        )
        assert refused.status_code == 413, content_type
        assert refused.json()["limit"] == "max_record_bytes"

    # Nothing of a refused body was applied: the first line is new when sent alone.
    alone = small_limits.post("/v1/reports", content=lines[0], headers=ndjson_type)
    assert [r["outcome"] for r in alone.json()["results"]] == ["new"]


def test_a_too_long_body_is_refused_by_the_transport_limit(seeded: Seed, tmp_path: Path):
    url = copy_world(seeded, tmp_path / "body.db")
    with TestClient(create_app(test_settings(url, max_report_body_bytes=10_000))) as client:
        headers = {
            "Authorization": f"Bearer {seeded.keys['hospital']}",
            "content-type": "application/x-ndjson",
        }
        lines = iter([report(f"B-{i}", "alphamab", ["Rash"]) + b"\n" for i in range(100)])
        refused = client.post("/v1/reports", content=lines, headers=headers)
        assert refused.status_code == 413
        assert "limit of 10000 bytes" in refused.json()["detail"]
        # The cut-off body was not applied in part.
        first = client.post(
            "/v1/reports", content=report("B-0", "alphamab", ["Rash"]), headers=headers
        )
        assert first.json()["results"][0]["outcome"] == "new"


def test_an_unsupported_type_is_refused_before_the_body_is_read(small_limits: TestClient):
    def body() -> Iterator[bytes]:
        yield b"a,b\n"
        raise AssertionError("the body was read")

    refused = small_limits.post("/v1/reports", content=body(), headers={"content-type": "text/csv"})
    assert refused.status_code == 415


def test_xml_stops_at_the_record_limit():
    data = (ROOT / "tests" / "pvsignal" / "readers" / "data" / "e2b_batch.xml").read_bytes()
    read = read_records("application/xml", chunked(data, 4096), "r", LOOSE)
    assert [r.location.split(" (")[0] for r in read] == ["r.xml:message 1", "r.xml:message 2"]
    with pytest.raises(ContentTooLargeError) as refused:
        list(read_records("application/xml", chunked(data, 4096), "r", Limits(1, 1_000)))
    assert refused.value.extra == {"limit": "max_records", "maximum": 1, "value": 2}


# --- a real server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(seeded: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = copy_world(seeded, tmp_path_factory.mktemp("served") / "served.db")
    with serve(url, seeded.keys) as running:
        yield running


@dataclass
class Probe:
    """GET /livez (and, for the record, /v1/signals) over and over until stopped."""

    base: str
    key: str
    livez: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered) times
    signals: list[tuple[float, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.base, timeout=30) as client:
            client.get("/livez")  # the connection is open before the clock starts
            while not self.stop.is_set():
                for path, times in (("/livez", self.livez), ("/v1/signals?limit=1", self.signals)):
                    started = time.perf_counter()
                    response = client.get(path, headers=headers)
                    times.append((started, time.perf_counter()))
                    if response.status_code != 200:
                        self.failures.append(f"{path}: {response.status_code}")


def body_of(size: int, piece: bytes) -> Iterator[bytes]:
    """``size`` bytes of ``piece`` repeated, made lazily in 1 MiB chunks."""
    chunk = piece * (MIB // len(piece))
    for _ in range(size // len(chunk)):
        yield chunk


@pytest.mark.parametrize(
    ("piece", "limit"),
    [(b"1\n", "max_records"), (b"x", "max_record_bytes")],
    ids=["tiny-lines", "one-huge-line"],
)
def test_a_64_mib_body_is_refused_in_bounded_memory_while_livez_answers(
    server: Server, piece: bytes, limit: str
):
    headers = {
        "Authorization": f"Bearer {server.keys['hospital']}",
        "content-type": "application/x-ndjson",
    }
    warm = httpx.post(f"{server.base}/v1/reports", content=b"\n", headers=headers)
    assert warm.status_code == 200
    size = 64 * MIB
    baseline = server.memory("VmRSS")
    server.reset_peak()
    probe = Probe(server.base, server.keys["regulator"])
    prober = threading.Thread(target=probe.run)
    prober.start()
    while len(probe.livez) < 3:  # the probe runs before the body starts
        time.sleep(0.01)
    try:
        started = time.perf_counter()
        response = httpx.post(
            f"{server.base}/v1/reports", content=body_of(size, piece), headers=headers, timeout=60
        )
        ended = time.perf_counter()
        answered = ended - started
    finally:
        probe.stop.set()
        prober.join()
    growth = server.memory("VmHWM") - baseline
    print(
        f"\n{limit}: {response.status_code} in {answered:.3f} s; server RSS +{growth / MIB:.1f} "
        f"MiB; /livez max {_slowest(probe.livez) * 1000:.1f} ms over {len(probe.livez)} probes; "
        f"/v1/signals max {_slowest(probe.signals) * 1000:.1f} ms"
    )
    assert response.status_code == 413 and response.json()["limit"] == limit
    assert growth < 5 * size
    assert not probe.failures
    # The event loop kept serving while the body streamed in: some /livez was sent and
    # answered before the refusal came (a loop blocked on the body answers none). No latency
    # threshold: how fast is for benchmarks, on a quiet machine.
    during = [(sent, got) for sent, got in probe.livez if started <= sent and got <= ended]
    assert during, f"no /livez answered during the {answered:.3f} s upload"


def _slowest(times: list[tuple[float, float]]) -> float:
    return max(got - sent for sent, got in times)


def test_the_documented_body_is_the_one_accepted(tmp_path: Path):
    with TestClient(create_app(test_settings(f"sqlite:///{tmp_path}/doc.db"))) as client:
        document = client.get("/openapi.json").json()
    text = orjson.dumps(document).decode()
    schemas = document["components"]["schemas"]
    for ref in set(re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', text)):
        assert ref in schemas, ref  # every reference resolves
    assert schemas["Report"]["properties"]["reactions"]["maxItems"] == 500
    operation = document["paths"]["/v1/reports"]["post"]
    assert sorted(operation["requestBody"]["content"]) == SUPPORTED
    for status in ("413", "415", "422"):
        assert "application/problem+json" in operation["responses"][status]["content"]
