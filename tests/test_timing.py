"""benchmarks/timing.py: the benchmarks' stopwatch, repeated calls and machine-load check."""
import pytest

from benchmarks import timing


def test_repeat_times_each_call_after_the_warm_up():
    calls = []
    t = timing.repeat(lambda: calls.append(1), 3, warmup=2)
    assert len(calls) == 5 and len(t.warmup) == 2 and len(t.times) == 3
    assert t.first == t.warmup[0] and t.best <= t.median
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        timing.repeat(lambda: None, 0)


def test_a_busy_machine_is_refused_unless_forced(monkeypatch, capsys):
    loads = iter([(3.2, 2.0, 1.0), (3.5, 2.5, 1.2), (3.6, 2.6, 1.3)])
    monkeypatch.setattr(timing.os, "getloadavg", lambda: next(loads))
    with pytest.raises(SystemExit) as stop:
        timing.check_load(1.5, force=False)
    assert stop.value.code == 2 and "3.20 is above --max_load 1.5" in capsys.readouterr().err
    load = timing.check_load(1.5, force=True)  # the second reading
    report = load.report()
    assert report.startswith("load average (1, 5, 15 min) before 3.50, 2.50, 1.20, after")
    assert "UNDER LOAD" in report and load.under_load


def test_a_quiet_machine_reports_its_load_before_and_after(monkeypatch):
    loads = iter([(0.4, 0.3, 0.2), (1.9, 0.8, 0.4)])
    monkeypatch.setattr(timing.os, "getloadavg", lambda: next(loads))
    load = timing.check_load(1.5, force=False)
    assert not load.under_load  # its own work raises the load afterwards; only the start counts
    assert load.report() == "load average (1, 5, 15 min) before 0.40, 0.30, 0.20, after 1.90, 0.80, 0.40"
