"""Issue 19 item 9: steps and pool workers die with their run (no orphan after a SIGKILL), and a
step whose run was marked failed does not publish."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import psutil
import pytest

from bscore_assets.step_guard import RunEndedError, ensure_run_active

pytestmark = pytest.mark.slow  # kills processes and waits for their children

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A scoring-like pool made by the real backend code: its workers block (as a long shard would).
POOL_PARENT = textwrap.dedent("""
    import os, time
    from resources.compute import shard_pool

    def pid_when_ready():
        time.sleep(0.2)
        return os.getpid()

    if __name__ == "__main__":
        with shard_pool(2) as pool:
            ready = set()  # a worker answers only once its initializer has run
            while len(ready) < 2:
                ready |= {f.result() for f in [pool.submit(pid_when_ready) for _ in range(4)]}
            futures = [pool.submit(time.sleep, 600) for _ in range(2)]
            print(" ".join(str(pid) for pid in ready), flush=True)
            time.sleep(600)
""")

# A step as Dagster's multiprocess executor starts it: a spawned multiprocessing child.
STEP_PARENT = textwrap.dedent("""
    import multiprocessing, time
    from bscore_assets.step_guard import guard_step

    def step():
        guard_step()
        time.sleep(600)

    if __name__ == "__main__":
        child = multiprocessing.get_context("spawn").Process(target=step)
        child.start()
        time.sleep(3)  # the step has imported and called guard_step
        print(child.pid, flush=True)
        time.sleep(600)
""")


# A run's process as the daemon's run worker is: Dagster's multiprocess executor starts the step.
DAGSTER_RUN = textwrap.dedent("""
    import os, sys, time
    import dagster as dg
    from bscore_assets.step_guard import guard_step

    @dg.op
    def long_step():
        guard_step()
        with open(os.environ["STEP_PID_FILE"] + ".tmp", "w") as out:
            out.write(str(os.getpid()))
        os.replace(os.environ["STEP_PID_FILE"] + ".tmp", os.environ["STEP_PID_FILE"])
        time.sleep(600)

    @dg.job(executor_def=dg.multiprocess_executor)
    def long_job():
        long_step()

    if __name__ == "__main__":
        with dg.DagsterInstance.local_temp(sys.argv[1]) as instance:
            dg.execute_job(dg.reconstructable(long_job), instance=instance)
""")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(script: str, tmp_path) -> tuple[subprocess.Popen, list[int]]:
    path = tmp_path / "parent.py"
    path.write_text(script)
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})
    line = proc.stdout.readline()
    assert line.strip(), "the parent did not report its children"
    return proc, [int(pid) for pid in line.split()]


@pytest.mark.parametrize("script", [POOL_PARENT, STEP_PARENT], ids=["pool-workers", "step"])
def test_children_die_within_seconds_of_a_sigkilled_parent(script, tmp_path):
    proc, children = _start(script, tmp_path)
    try:
        assert children and all(_alive(pid) for pid in children)
        assert all(psutil.Process(pid).ppid() == proc.pid for pid in children)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if _alive(pid)] == [], "children outlived their killed parent"
    finally:
        for pid in [proc.pid, *children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_dagster_step_dies_with_its_sigkilled_run_process(tmp_path):
    (tmp_path / "run.py").write_text(DAGSTER_RUN)
    (tmp_path / "instance").mkdir()
    pid_file = tmp_path / "step.pid"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "instance")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "run.log", "w"),
                            env={**os.environ, "PYTHONPATH": ROOT, "STEP_PID_FILE": str(pid_file)})
    step = None
    try:
        deadline = time.monotonic() + 300  # a spawned step imports Dagster: slow on a busy machine
        while not pid_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert pid_file.exists(), (tmp_path / "run.log").read_text()[-3000:]
        step = int(pid_file.read_text())
        assert psutil.Process(step).ppid() == proc.pid  # a process of its own, started by the run's
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(step) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(step), "the step outlived its killed run process"
    finally:
        for pid in [proc.pid, step]:
            try:
                os.kill(pid, signal.SIGKILL) if pid else None
            except ProcessLookupError:
                pass


def test_children_of_a_living_parent_keep_working(tmp_path):
    proc, children = _start(POOL_PARENT, tmp_path)
    try:
        time.sleep(2)  # two watch periods and more
        assert all(_alive(pid) for pid in children)
    finally:
        proc.kill()
        proc.wait(timeout=10)


@dg.op
def _noop():
    return 1


@dg.job
def _one_step_job():
    _noop()


def test_a_step_of_a_failed_run_refuses_to_publish():
    with dg.DagsterInstance.ephemeral() as instance:
        run_id = _one_step_job.execute_in_process(instance=instance).run_id
        ensure_run_active(instance, run_id)  # SUCCESS is not an ended-by-failure run
        instance.report_run_failed(instance.get_run_by_id(run_id))
        with pytest.raises(RunEndedError, match=f"run {run_id} was marked FAILURE"):
            ensure_run_active(instance, run_id)
