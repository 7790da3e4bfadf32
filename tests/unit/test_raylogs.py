"""Reading why a Ray process aborted from its saved session logs (harness.raylogs).

The fatal line is what Ray 2.60.0's raylet wrote on this machine in a head container limited
to a tenth of a CPU (`docker run --cpus=0.1`): its dashboard agent took longer than the
raylet's fixed 15 s to write its port file.
"""

from __future__ import annotations

from pathlib import Path

from harness import raylogs, report
from harness.results import CellResult, Check, Status

NODE = "e3f88d66588eb6fd2e06a19671ba18189b0b3dcc0372a4dbc92e0e35"
FATAL = (
    "[2026-12-01 10:14:32,734 C 307 307] (raylet) node_manager.cc:3588:  An unexpected system "
    "state has occurred. You have likely discovered a bug in Ray. Please report this issue at "
    "https://github.com/ray-project/ray/issues and we'll work with you to fix it. Check failed: "
    "statussetor3588.has_value() Timed out waiting for file "
    f"/tmp/ray/session_2026-12-01_10-13-33_437710_1/dashboard_agent_listen_port_{NODE}\n"
)
BEFORE = (
    "[2026-12-01 10:14:13,932 I 307 339] (raylet) agent_manager.cc:81: Monitor agent process "
    "with name dashboard_agent\n"
)


def node_logs(root: Path, role: str, files: dict[str, str]) -> None:
    (root / role).mkdir(parents=True)
    for name, text in files.items():
        (root / role / name).write_text(text)


def test_a_starved_agent_is_named_with_ray_s_limit(tmp_path: Path) -> None:
    node_logs(tmp_path, "worker", {"raylet.out": BEFORE + FATAL, "dashboard_agent.err": ""})
    node_logs(tmp_path, "head", {"raylet.out": BEFORE, "gcs_server.out": "fine\n"})
    causes = raylogs.fatal_causes(tmp_path, ["head", "worker"])
    assert list(causes) == ["worker"]  # the head's logs hold no fatal line
    assert raylogs.starved(causes)
    why = causes["worker"]
    assert "raylet gave up waiting for dashboard_agent_listen_port" in why
    assert "15 s" in why and "ray-project/ray#65983" in why
    assert "dashboard_agent.err is empty: the agent was still starting" in why
    assert "likely discovered a bug" not in why  # Ray's boilerplate is dropped


def test_a_failed_agent_is_quoted_not_called_slow(tmp_path: Path) -> None:
    err = "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'grpc'\n"
    node_logs(tmp_path, "head", {"raylet.out": FATAL, "dashboard_agent.err": err})
    causes = raylogs.fatal_causes(tmp_path, ["head"])
    assert "dashboard_agent.err ends: ModuleNotFoundError: No module named 'grpc'" in causes["head"]
    assert "still starting" not in causes["head"]
    assert not raylogs.starved(causes)  # the image's fault, not the machine's


def test_other_fatal_lines_are_reported_as_ray_wrote_them(tmp_path: Path) -> None:
    line = (
        "[2026-12-01 10:00:00,000 C 9 9] (gcs_server) gcs_server.cc:120:  Check failed: "
        "ok Failed to bind port 6379\n"
    )
    node_logs(tmp_path, "head", {"gcs_server.err": line})
    causes = raylogs.fatal_causes(tmp_path, ["head"])
    assert causes == {"head": "gcs_server aborted (gcs_server.cc:120): Failed to bind port 6379"}
    assert not raylogs.starved(causes)


def test_nothing_saved_nothing_fatal_or_not_just_copied_says_nothing(tmp_path: Path) -> None:
    assert raylogs.fatal_causes(tmp_path / "missing", ["head"]) == {}
    node_logs(tmp_path, "worker", {"raylet.out": BEFORE})
    node_logs(tmp_path, "head", {"raylet.out": FATAL})  # left by an earlier run
    assert raylogs.fatal_causes(tmp_path, ["worker"]) == {}
    assert not raylogs.starved({})


def test_the_report_lists_what_stopped_a_node(tmp_path: Path) -> None:
    node_logs(tmp_path / "ray", "worker", {"raylet.out": FATAL})
    causes = raylogs.fatal_causes(tmp_path / "ray", ["worker"])
    c = CellResult(id="ray2.60.0-py3.11.2-cpu", ray="2.60.0", python="3.11.2", variant="cpu")
    c.test_checks = [
        Check("cluster:ready", Status.FAILED, "1 of 2 nodes", data={"ray_aborted": causes})
    ]
    c.settle()
    report.write(tmp_path, {c.id: c}, "matrix.yaml", "run1")
    md = (tmp_path / "report.md").read_text()
    assert "What Ray's logs say stopped a node:" in md
    assert f"- worker: {causes['worker']}" in md


def test_a_starved_node_makes_its_start_checks_errors_not_failures(tmp_path: Path) -> None:
    node_logs(tmp_path, "notebook", {"raylet.out": FATAL})
    checks = [
        Check("client:parity", Status.PASSED, "same"),
        Check("serve:http", Status.FAILED, "no answer"),
        Check("driver:connect", Status.FAILED, "`ray start` in the notebook failed"),
    ]
    raylogs.judge(checks, raylogs.fatal_causes(tmp_path, ["notebook"]))
    assert [c.status for c in checks] == ["passed", "failed", "error"]
    assert checks[2].detail.startswith("undecided, a node too slow for Ray's start-up limit")
    assert "ray_aborted" not in checks[0].data
    assert checks[1].data["ray_aborted"] == checks[2].data["ray_aborted"]


def test_an_agent_that_failed_leaves_the_failures_failures(tmp_path: Path) -> None:
    err = "ImportError: cannot import name 'x'\n"
    node_logs(tmp_path, "worker", {"raylet.out": FATAL, "dashboard_agent.err": err})
    checks = [Check("cluster:ready", Status.FAILED, "1 of 2 nodes")]
    raylogs.judge(checks, raylogs.fatal_causes(tmp_path, ["worker"]))
    assert checks[0].status == "failed" and checks[0].detail == "1 of 2 nodes"


def test_a_wait_ray_states_is_quoted_instead_of_15_s(tmp_path: Path) -> None:
    """Newer Rays make the wait a setting and print it ("... after 30000 ms. The ...")."""
    line = FATAL.replace(NODE + "\n", NODE + " after 30000 ms. The process may be slow.\n")
    node_logs(tmp_path, "worker", {"raylet.out": line})
    why = raylogs.fatal_causes(tmp_path, ["worker"])["worker"]
    assert "after Ray's 30 s for its dashboard_agent to start" in why
