"""``format_status``: the table ``isthmus federation status`` prints from ``/v1/proxies``."""

from __future__ import annotations

from federation.snapshots.status import format_status


def _proxy(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "ingress-1",
        "role": "ingress",
        "version": "aaaa",
        "applied_version": "aaaa",
        "state": "in sync",
        "in_sync": True,
        "error": "",
        "compile_error": "",
        "connected": True,
        "age_s": 3.2,
    }
    base.update(fields)
    return base


def test_every_proxy_gets_a_line_with_its_versions_state_and_error() -> None:
    table = format_status(
        {
            "cluster": "east",
            "proxies": [
                _proxy(),
                _proxy(
                    id="ingress-2",
                    applied_version="old1",
                    state="refused",
                    in_sync=False,
                    error="worker 0:\n  cannot listen on 127.0.0.1:80",
                    age_s=130,
                ),
                _proxy(id="ingress-3", state="pending", in_sync=False, connected=False, age_s=7300),
            ],
        }
    )
    lines = table.splitlines()
    assert lines[0] == "cluster east"
    assert lines[1].split() == ["PROXY", "ROLE", "VERSION", "APPLIED", "STATE", "LAST", "SEEN",
                                "ERROR"]  # fmt: skip
    assert lines[2].split() == ["ingress-1", "ingress", "aaaa", "aaaa", "in", "sync", "3s",
                                "ago", "-"]  # fmt: skip
    assert "refused" in lines[3] and "2m ago" in lines[3]
    assert lines[3].endswith("worker 0: cannot listen on 127.0.0.1:80")  # one line
    assert "pending, disconnected" in lines[4] and "2h ago" in lines[4]
    assert lines[-1] == "1/3 proxies in sync"
    # Columns line up.
    assert len({line.index("ingress ") for line in lines[2:5]}) == 1


def test_a_compile_error_shows_when_the_proxy_has_no_error_of_its_own() -> None:
    table = format_status([_proxy(state="no snapshot", version="", compile_error="x" * 500)])
    line = table.splitlines()[1]
    assert line.endswith("...") and len(line) < 250


def test_no_proxies() -> None:
    assert format_status({"cluster": "east", "proxies": []}) == (
        "cluster east\nno proxies have connected\n"
    )
