"""relaunch_if_needed as a real parent process: signals reach the child's whole process group, exit codes
and rank errors come back. The accelerate launcher is swapped for a small Python child (fast); the real
launcher is exercised in tests/e2e/test_multiprocess.py."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.conftest import REPO

# The parent: our relaunch code, with `accelerate launch ...` replaced by CHILD_CODE.
PARENT = textwrap.dedent("""
    import sys
    from stackllama_cli.dist import relaunch as launch
    launch.count_visible_gpus = lambda env: 0
    launch.build_launch_argv = lambda *a, **k: [sys.executable, "-c", sys.argv[1]]
    launch.relaunch_if_needed(launch.LaunchOptions(cpu_processes=2), args=["sft"])
    print("not reached")
""")

# A stand-in launcher with one "rank" below it, both in the launcher's process group.
CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    marks = os.environ["MARKS"]
    rank = subprocess.Popen([sys.executable, "-c", '''
    import os, signal, time
    def stop(s, f):
        open(os.path.join(os.environ["MARKS"], "rank-got-%d" % s), "w").close()
        raise SystemExit(3)
    signal.signal(signal.SIGINT, stop); signal.signal(signal.SIGTERM, stop)
    open(os.path.join(os.environ["MARKS"], "rank-ready"), "w").close()
    time.sleep(60)
    '''])
    def stop(s, f):  # like torch-elastic: note it, let the rank finish, then fail
        open(os.path.join(marks, "launcher-got-%d" % s), "w").close()
    signal.signal(signal.SIGINT, stop); signal.signal(signal.SIGTERM, stop)
    sys.exit(rank.wait() + 4)
""")


def start_parent(child: str, tmp_path, **env) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")}
    full.update(MARKS=str(tmp_path), PYTHONPATH=str(REPO), **env)
    return subprocess.Popen([sys.executable, "-c", PARENT, child], env=full, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path, seconds=30):
    deadline = time.time() + seconds
    while not path.exists():
        assert time.time() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_ctrl_c_reaches_every_process_of_the_child_group(tmp_path):
    parent = start_parent(CHILD, tmp_path)
    wait_for(tmp_path / "rank-ready")
    parent.send_signal(signal.SIGINT)  # what the terminal does on Ctrl-C: only our parent is in its group
    out, err = parent.communicate(timeout=30)
    assert (tmp_path / f"launcher-got-{int(signal.SIGINT)}").exists()
    assert (tmp_path / f"rank-got-{int(signal.SIGINT)}").exists()
    assert parent.returncode == 130, err
    assert "stopping every rank" in err and "Launching 2 CPU process(es)" in err
    assert "not reached" not in out and "Traceback" not in err


def test_sigterm_is_forwarded_to_the_group(tmp_path):
    parent = start_parent(CHILD, tmp_path)
    wait_for(tmp_path / "rank-ready")
    parent.send_signal(signal.SIGTERM)
    parent.communicate(timeout=30)
    assert (tmp_path / f"rank-got-{int(signal.SIGTERM)}").exists()
    assert (tmp_path / f"launcher-got-{int(signal.SIGTERM)}").exists()
    assert parent.returncode == 130


def test_exit_code_and_each_rank_error_once(tmp_path):
    child = textwrap.dedent("""
        import os, sys
        d = os.environ["STACKLLAMA_ERROR_DIR"]
        assert os.environ["STACKLLAMA_LAUNCHED"] == "1" and os.environ["ACCELERATE_USE_CPU"] == "1"
        for rank, msg in ((0, "shown by rank 0 itself"), (1, "disk full"), (2, "disk full"), (3, "other")):
            open(os.path.join(d, "rank-%d.txt" % rank), "w").write(msg)
        sys.exit(5)
    """)
    parent = start_parent(child, tmp_path)
    _, err = parent.communicate(timeout=30)
    assert parent.returncode == 5
    assert err.count("disk full") == 1 and "error (rank 1, 2): disk full" in err
    assert "error (rank 3): other" in err and "shown by rank 0" not in err


def test_success_passes_the_exit_code_and_output_through(tmp_path):
    parent = start_parent("print('rank output'); import sys; sys.stderr.write('progress\\n')", tmp_path)
    out, err = parent.communicate(timeout=30)
    assert parent.returncode == 0 and out == "rank output\n" and "progress" in err


STUBBORN = textwrap.dedent("""
    import os, signal, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a rank stuck in a collective ignores the first Ctrl-C
    def stop(s, f):
        open(os.path.join(os.environ["MARKS"], "got-term"), "w").close()
        raise SystemExit(1)
    signal.signal(signal.SIGTERM, stop)
    open(os.path.join(os.environ["MARKS"], "rank-ready"), "w").close()
    time.sleep(60)
""")


def test_second_ctrl_c_kills_the_group(tmp_path):
    parent = start_parent(STUBBORN, tmp_path)
    wait_for(tmp_path / "rank-ready")
    parent.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert parent.poll() is None  # ignored: still running
    parent.send_signal(signal.SIGINT)
    parent.communicate(timeout=30)
    assert parent.returncode == 130


def test_child_group_is_stopped_when_the_parent_is_killed(tmp_path):
    if not sys.platform.startswith("linux"):
        return
    parent = start_parent(STUBBORN, tmp_path)
    wait_for(tmp_path / "rank-ready")
    parent.kill()  # SIGKILL: no handler runs in the parent; PR_SET_PDEATHSIG still warns the child
    parent.wait(timeout=30)
    wait_for(tmp_path / "got-term", seconds=10)
