"""The event helpers: what they write, and that they do nothing without the agent."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import wattwise
from wattwise import EventWriter


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.log"
    path.write_text("")  # the agent creates the file before the script starts
    return path


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (the module reads its environment once)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("WATTWISE_")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60)


def test_writer_writes_the_protocol(events: Path) -> None:
    w = EventWriter(events)
    assert w.active and w.path == str(events)
    w.step_begin()
    w.step_end()
    with w.step():
        pass
    w.epoch_end(0.75)
    w.epoch_end(3)
    w.epoch_end(1e-5)
    w.close()
    w.epoch_end(2.5e20)  # reopens
    assert lines(events) == [
        "step_begin",
        "step_end",
        "step_begin",
        "step_end",
        "epoch_end 0.75",
        "epoch_end 3.0",
        "epoch_end 1e-05",
        "epoch_end 2.5e+20",
    ]


def test_step_ends_even_when_the_step_fails(events: Path) -> None:
    w = EventWriter(events)
    with pytest.raises(ZeroDivisionError):
        with w.step():
            1 / 0
    assert lines(events) == ["step_begin", "step_end"]


def test_metric_must_be_a_finite_number(events: Path) -> None:
    w = EventWriter(events)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="finite number"):
            w.epoch_end(bad)
    with pytest.raises((TypeError, ValueError)):
        w.epoch_end("high")  # type: ignore[arg-type]
    assert lines(events) == []


def test_metric_accepts_anything_float_accepts(events: Path) -> None:
    class Scalar:
        def __float__(self) -> float:
            return 0.5

    EventWriter(events).epoch_end(Scalar())
    assert lines(events) == ["epoch_end 0.5"]


def test_inactive_writer_does_nothing(tmp_path: Path) -> None:
    w = EventWriter(None)
    assert not w.active and w.path is None
    w.step_begin()
    with w.step():
        pass
    w.epoch_end(1.0)
    w.close()
    assert list(tmp_path.iterdir()) == []


def test_missing_events_file_is_a_clear_error(tmp_path: Path) -> None:
    w = EventWriter(tmp_path / "gone.log")
    with pytest.raises(RuntimeError, match="cannot open the events file .*WATTWISE_EVENTS"):
        w.step_begin()
    assert not (tmp_path / "gone.log").exists()


def test_lines_never_interleave_across_threads_and_processes(events: Path) -> None:
    w = EventWriter(events)

    def work() -> None:
        for _ in range(500):
            w.step_begin()
            w.epoch_end(0.123456789)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    pid = os.fork()
    if pid == 0:  # a forked child (e.g. a data loader worker) shares the descriptor
        try:
            work()
        finally:
            os._exit(0)
    for t in threads:
        t.join()
    os.waitpid(pid, 0)
    got = lines(events)
    assert len(got) == 5 * 1000
    assert set(got) == {"step_begin", "epoch_end 0.123456789"}


def test_module_functions_follow_the_environment(events: Path) -> None:
    code = (
        "import wattwise\n"
        "assert wattwise.active()\n"
        "print(wattwise.batch_size(), wattwise.batch_size(8))\n"
        "wattwise.step_begin(); wattwise.step_end()\n"
        "with wattwise.step(): pass\n"
        "wattwise.epoch_end(0.5)\n"
    )
    p = run_python(code, {"WATTWISE_EVENTS": str(events), "WATTWISE_BATCH_SIZE": "128"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["128", "128"]
    assert lines(events) == ["step_begin", "step_end", "step_begin", "step_end", "epoch_end 0.5"]


def test_without_the_agent_everything_is_a_no_op(tmp_path: Path) -> None:
    code = (
        "import sys, wattwise\n"
        "assert not wattwise.active()\n"
        "print(wattwise.batch_size(), wattwise.batch_size(32))\n"
        "wattwise.step_begin(); wattwise.step_end(); wattwise.epoch_end(1)\n"
        "with wattwise.step(): pass\n"
        "assert not {'torch', 'transformers', 'lightning', 'pytorch_lightning'} & set(sys.modules)\n"
    )
    p = run_python(code, {})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["None", "32"]


@pytest.mark.parametrize("text", ["0", "-4", "abc", "1.5"])
def test_bad_batch_size_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(wattwise.BATCH_SIZE_ENV, text)
    with pytest.raises(ValueError, match="WATTWISE_BATCH_SIZE=.*positive integer"):
        wattwise.batch_size(16)


def test_batch_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wattwise.BATCH_SIZE_ENV, " 96 ")
    assert wattwise.batch_size() == 96
    monkeypatch.setenv(wattwise.BATCH_SIZE_ENV, "")
    assert wattwise.batch_size(16) == 16


def test_the_package_is_typed() -> None:
    assert (Path(wattwise.__file__).parent / "py.typed").exists()
