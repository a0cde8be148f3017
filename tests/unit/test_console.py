"""Output modes (core/console.py) and progress as lines (core/progress_lines.py): auto, NO_COLOR, TERM=dumb,
plain, json, quiet."""

import json

import pytest

from stackllama_cli.core import console as c
from stackllama_cli.core.errors import UsageError
from stackllama_cli.core.progress_lines import LineProgress, clock, number

ENV = ("STACKLLAMA_LOG_FORMAT", "STACKLLAMA_QUIET", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR")


@pytest.fixture
def env(monkeypatch):
    """A clean environment for configure(); the console is set back from the real one afterwards."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    yield monkeypatch
    monkeypatch.undo()
    c.configure()


def terminal(env, term="xterm-256color"):
    env.setenv("TTY_COMPATIBLE", "1")  # Rich's way to say "stderr is a terminal"
    env.setenv("TERM", term)


def test_auto_is_rich_on_a_terminal_plain_elsewhere_and_on_dumb_terminals(env):
    env.setenv("TTY_COMPATIBLE", "0")
    assert c.configure() == "plain"
    terminal(env)
    assert c.configure() == "rich" and c.configure("auto") == "rich"
    terminal(env, "dumb")
    assert c.configure() == "plain"
    assert c.configure("rich") == "rich"  # asked for explicitly


def test_the_environment_carries_the_choice_and_options_win(env):
    terminal(env)
    env.setenv("STACKLLAMA_LOG_FORMAT", "json")
    assert c.configure() == "json" and c.configure("plain") == "plain"
    env.setenv("STACKLLAMA_QUIET", "1")
    c.configure()
    assert c.quiet()
    env.setenv("STACKLLAMA_LOG_FORMAT", "fancy")
    with pytest.raises(UsageError, match="--log-format"):
        c.configure()
    assert c.mode() == "rich"  # falls back to auto


@pytest.mark.parametrize("no_color", [False, True])
def test_no_color_on_a_terminal(env, capsys, no_color):
    terminal(env)
    if no_color:
        env.setenv("NO_COLOR", "1")
    c.configure()
    c.console.print("[red]red[/]")
    assert ("\x1b[31m" in capsys.readouterr().err) is not no_color


def test_plain_writes_no_escape_codes_and_does_not_wrap(env, capsys):
    terminal(env)
    c.configure("plain")
    c.warn("x " * 100)
    c.summary_table("sft -> " + "/long/path" * 20, {"loss": 1.5})
    err = capsys.readouterr().err
    assert "\x1b" not in err and "warning: " + "x " * 99 in err and "/long/path" * 20 in err


def test_json_every_line_is_an_event(env, capsys):
    c.configure("json")
    c.info("[bold]Loading[/] model")
    c.warn("few pairs")
    c.console.print("a [bold]message[/]")
    c.summary_table("sft -> out", {"loss": 1.5, "nan": float("nan")})
    c.error("bad input")
    c.report("progress", "ignored text", stage="sft", step=1)
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in events] == ["info", "warning", "message", "summary", "error", "progress"]
    assert events[0]["message"] == "Loading model" and events[2]["text"] == "a message"
    assert events[3]["values"] == {"loss": 1.5, "nan": None} and events[5]["step"] == 1
    assert all("time" in e for e in events)


def test_quiet_keeps_errors_warnings_and_the_summary(env, capsys):
    c.configure("plain", quiet=True)
    c.info("loading")
    c.report("progress", "sft step 1/3")
    with c.progress() as bar:
        bar.advance(bar.add_task("score", total=2, extra=""), 2)
    c.warn("careful")
    c.summary_table("sft -> out", {"loss": 1.5})
    c.error("bad")
    err = capsys.readouterr().err
    assert "loading" not in err and "step" not in err and "score" not in err
    assert "warning: careful" in err and "loss" in err and "error: bad" in err


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_line_progress_reports_on_interval_completion_phase_and_stop(env, capsys):
    c.configure("plain")
    now = Clock()
    bar = LineProgress(now)
    with bar:
        task = bar.add_task("scan beer", total=40.0, extra="MiB")
        now.t = 5
        bar.advance(task, 10)  # within the interval: no line
        now.t = 12
        bar.advance(task, 10)
        now.t = 13
        bar.advance(task, 20)  # done
        other = bar.add_task("merge: load", total=3, extra="")
        bar.update(other, advance=1, description="merge: save")  # a new phase
        now.t = 14
        bar.advance(other)  # not reported yet: at stop
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["scan beer 20/40 MiB  50%  elapsed 0:00:12  ETA 0:00:12",
                     "scan beer 40/40 MiB  100%  elapsed 0:00:13  ETA 0:00:00",
                     "merge: save 1/3  33%  elapsed 0:00:00  ETA 0:00:00",
                     "merge: save 2/3  67%  elapsed 0:00:01  ETA 0:00:00"]


def test_progress_is_lines_outside_rich_mode(env):
    c.configure("plain")
    assert isinstance(c.progress(), LineProgress)
    c.configure("rich")
    assert not isinstance(c.progress(), LineProgress)


def test_formatting():
    assert [clock(5), clock(3725), clock(None), clock(-1)] == ["0:00:05", "1:02:05", "?", "0:00:00"]
    assert [number(12.0), number(12.34), number(0.0299), number(None)] == ["12", "12.3", "0.030", "?"]


def test_line_progress_quick_tasks_report_once_and_not_before_an_error(env, capsys):
    c.configure("plain")
    now = Clock()
    bar = LineProgress(now)
    with bar:
        scan = bar.add_task("scan a", total=1.0, extra="MiB")
        bar.advance(scan, 1.0)  # done at once: reported when the next task starts
        assert capsys.readouterr().err == ""
        bar.add_task("convert a", total=2, extra="")
        assert capsys.readouterr().err.startswith("scan a 1/1 MiB  100%")
    assert capsys.readouterr().err == ""  # convert never advanced: nothing to say
    with pytest.raises(ValueError):
        with LineProgress(now) as bar:
            bar.advance(bar.add_task("scan b", total=1.0, extra="MiB"), 1.0)
            raise ValueError("broken XML")
    assert capsys.readouterr().err == ""  # the error is the one line
