"""A Ray head on this machine, and what every Ray job of agelab carries.

``python -m agelab cluster up`` starts a head on 127.0.0.1 (its own ports and its own ``--temp-dir``)
and records what it started in ``runs/.cluster.json``; ``cluster down`` stops that head alone: the
processes whose command line names its temp folder, and their children. ``ray stop`` is never used,
since it stops every Ray process of the user on the machine, whoever started them.

:func:`job_runtime_env` and :func:`job_entrypoint` are the job's side: the project's own interpreter
(the submitter's ``sys.executable`` where the node has it, so a head started without the venv on
``PATH`` still runs agelab), ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the caches outside Ray's temp
folder, and an upload without the models, data, runs and venv.

``ray`` is optional (``requirements-cluster.txt``); this module imports it only to talk to a head.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agelab import atomic, settings
from agelab.paths import PROJECT_ROOT, cache_dir, data_dir, keras_home, models_dir, runs_dir

# Without it Ray binds the machine's network address, not 127.0.0.1 (and refuses on macOS/Windows).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
STATE_FILE = ".cluster.json"
DASHBOARD_PORT = 8265
# What the job's working_dir upload leaves out (gitignore syntax, relative to the project): the
# weights and detectors (26 MB, read from AGELAB_MODELS_DIR instead), the data, the runs, the venv.
RAY_EXCLUDES = [
    "/.git/",
    "/.venv/",
    "/bench/.venv-peer/",
    "/data/",
    "/runs/",
    "/.keras/",
    "/models/*.keras",
    "*.tflite",
    "__pycache__/",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.pyc",
]
# Where a job on another machine keeps its caches when AGELAB_CACHE_DIR is not set here: on the
# node's own disk, not in Ray's temporary package folder (Ray expands ${HOME} on the node).
REMOTE_CACHE_DIR = "${HOME}/.cache/agelab"
# The locations a job on this machine's head reads from the project (absolute, since the job's
# working folder is Ray's copy of the code).
LOCAL_LOCATIONS = {
    "AGELAB_CACHE_DIR": cache_dir,
    "AGELAB_MODELS_DIR": models_dir,
    "AGELAB_DATA": data_dir,
    "KERAS_HOME": keras_home,
}
FORWARDED_ENV = ("AGELAB_MIRROR",)
STOP_GRACE_S = 20.0


class ClusterError(RuntimeError):
    """A head that could not be started, found or stopped, in one sentence."""


# ---------------------------------------------------------------- what a job carries


def is_local_address(address: str) -> bool:
    """Whether a Ray address (``127.0.0.1:8265``, ``http://host:8265``) is a head on this machine."""
    host = urlsplit(address if "://" in address else f"http://{address}").hostname or ""
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    if ip.is_loopback:
        return True
    try:
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        own = set()
    return str(ip) in own


def job_env(address: str, runs_root: Path) -> dict[str, str]:
    """The job's environment variables: the runs folder, the caches and the models as absolute
    paths (this project's on a head on this machine; the node's own cache folder elsewhere)."""
    env = {
        **LOOPBACK_ENV,
        "AGELAB_RUNS_DIR": str(Path(runs_root).resolve()),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    local = is_local_address(address)
    for name, location in LOCAL_LOCATIONS.items():
        if local or set_here(name):
            env[name] = str(Path(location()).expanduser().resolve())
        elif name == "AGELAB_CACHE_DIR":
            env[name] = REMOTE_CACHE_DIR
    for name in FORWARDED_ENV:
        if set_here(name):
            value = str(settings.get(name))
            env[name] = value if "://" in value else str(Path(value).expanduser().resolve())
    return env


def set_here(name: str) -> bool:
    """Whether the variable is set in this process (its default does not count)."""
    return bool(os.environ.get(name, "").strip())


def job_runtime_env(address: str, runs_root: Path, **env: str) -> dict[str, Any]:
    """The ``runtime_env`` of an agelab job: the project's code without its large files, and
    :func:`job_env` (plus ``env``)."""
    return {
        "working_dir": str(PROJECT_ROOT),
        "excludes": RAY_EXCLUDES,
        "env_vars": {**job_env(address, runs_root), **env},
    }


def job_entrypoint(*args: str) -> str:
    """``python -m agelab ARGS`` with this interpreter (the project's venv) where the node has it, else
    the node's ``python`` (a container image's)."""
    python = shlex.quote(sys.executable)
    command = " ".join(shlex.quote(a) for a in args)
    return f'P={python}; [ -x "$P" ] || P=python; exec "$P" -m agelab {command}'


# ---------------------------------------------------------------- a head on this machine


def state_file(root: Path | None = None) -> Path:
    return Path(root or runs_dir()) / STATE_FILE


def ray_command() -> Path:
    """The ``ray`` command beside this interpreter (the venv's)."""
    command = Path(sys.executable).parent / "ray"
    if not command.exists():
        raise ClusterError(
            f"{command} does not exist: install Ray with `{sys.executable} -m pip install -r"
            " requirements-cluster.txt`"
        )
    return command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _processes() -> dict[int, tuple[int, str, list[str]]]:
    """Every process on this machine: pid -> (parent pid, state, arguments)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (
            int(fields[1]),
            fields[0],
            [a.decode("utf-8", "replace") for a in args if a],
        )
    return table


def names_folder(args: list[str], folder: str) -> bool:
    """Whether an argument is ``folder``, a path inside it, or ``--option=folder``."""
    return any(a == folder or a.endswith("=" + folder) or folder + "/" in a for a in args)


def head_processes(temp_dir: str | Path, descendants: bool = True) -> list[int]:
    """The live processes of the head whose ``--temp-dir`` is ``temp_dir`` (each names the folder in
    its arguments: the GCS, the raylet, the dashboard, the monitors), and with ``descendants`` all
    their children (workers, agents, the jobs' processes, which come and go)."""
    folder = str(Path(temp_dir).resolve())
    table = _processes()
    found = {pid for pid, (_, state, args) in table.items() if state != "Z" and names_folder(args, folder)}
    found.discard(os.getpid())
    grown = descendants
    while grown:
        children = {pid for pid, (ppid, state, _) in table.items() if ppid in found and state != "Z"}
        grown = not children <= found
        found |= children
    return sorted(found)


def stop_head(temp_dir: str | Path, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM to the head's processes, SIGKILL to those left after ``grace`` seconds; how many there were."""
    pids = head_processes(temp_dir)
    total = len(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (left := set(head_processes(temp_dir)) & set(pids)):
            time.sleep(0.5)
        left = set(head_processes(temp_dir)) & set(pids)
        if not left:
            break
        pids = sorted(left)
    return total


def ray_env() -> dict[str, str]:
    return dict(os.environ, **LOOPBACK_ENV)


def wait_for_head(address: str, timeout: float = 120.0) -> None:
    """Until the head's dashboard takes job requests (it answers some seconds after ``ray start``)."""
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            return
        except Exception as err:  # ConnectionError until the dashboard listens
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the head at {address} did not answer in {timeout:.0f} s: {err}"
                ) from None
            time.sleep(1.0)


def up(
    dashboard_port: int = DASHBOARD_PORT,
    num_cpus: int | None = None,
    temp_dir: str | Path | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """Start a head on 127.0.0.1 and record it in ``runs/.cluster.json``; return the record. A head
    recorded there and still running is returned as it is."""
    current = read_state(root)
    if current and head_processes(current["temp_dir"]):
        return current
    if port_taken(dashboard_port):
        raise ClusterError(
            f"port {dashboard_port} on 127.0.0.1 is taken (another Ray head?): give another with"
            " --dashboard-port, or use that head"
        )
    # Short: Ray's socket paths inside it must fit in 107 bytes.
    temp = Path(temp_dir or f"/tmp/ray-agelab-{os.getuid()}-{dashboard_port}").resolve()
    if head_processes(temp):
        raise ClusterError(f"a Ray head already uses {temp}; stop it, or give another --temp-dir")
    gcs_port = free_port()
    command = [
        str(ray_command()), "start", "--head", "--node-ip-address", "127.0.0.1",
        "--port", str(gcs_port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
        "--temp-dir", str(temp), "--disable-usage-stats",
    ]  # fmt: skip
    if num_cpus:
        command += ["--num-cpus", str(num_cpus)]
    started = subprocess.run(command, env=ray_env(), capture_output=True, text=True, timeout=300)
    address = f"http://127.0.0.1:{dashboard_port}"
    state = {
        "address": address,
        "gcs_address": f"127.0.0.1:{gcs_port}",
        "temp_dir": str(temp),
        "pids": head_processes(temp),
        "started": time.time(),
        "command": command,
    }
    if started.returncode != 0:
        stop_head(temp)
        tail = (started.stderr or started.stdout).strip().splitlines()[-3:]
        raise ClusterError(f"ray start failed (exit {started.returncode}): {' '.join(tail)[:400]}")
    atomic.write_json(state_file(root), state)
    try:
        wait_for_head(address)
    except ClusterError:
        down(root)
        raise
    return state


def read_state(root: Path | None = None) -> dict[str, Any] | None:
    """The head ``cluster up`` recorded, or None; a damaged record raises ClusterError naming it."""
    path = state_file(root)
    try:
        state = atomic.read_json(path, None)
    except (ValueError, OSError) as err:
        raise ClusterError(
            f"{path} cannot be read ({err}); delete it after stopping the head by hand"
        ) from None
    if state is not None and not (isinstance(state, dict) and state.get("temp_dir") and state.get("address")):
        raise ClusterError(f"{path} holds no head (no temp_dir or address); delete it")
    return state


def down(root: Path | None = None) -> dict[str, Any]:
    """Stop the head ``cluster up`` recorded, and only it; remove its record and its temp folder."""
    state = read_state(root)
    if state is None:
        return {"stopped": 0, "address": None}
    stopped = stop_head(state["temp_dir"])
    shutil.rmtree(state["temp_dir"], ignore_errors=True)
    state_file(root).unlink(missing_ok=True)
    return {"stopped": stopped, "address": state["address"]}


def status(root: Path | None = None) -> dict[str, Any]:
    """The recorded head: its address, whether it runs, its CPUs and its jobs by state."""
    state = read_state(root)
    if state is None:
        return {"running": False, "address": None}
    running = bool(head_processes(state["temp_dir"]))
    out: dict[str, Any] = {
        "running": running,
        "address": state["address"],
        "temp_dir": state["temp_dir"],
        "processes": len(head_processes(state["temp_dir"])),
    }
    if running:
        try:
            from ray.job_submission import JobSubmissionClient

            jobs = JobSubmissionClient(state["address"]).list_jobs()
            out["jobs"] = {}
            for job in jobs:
                name = str(getattr(job.status, "value", job.status))
                out["jobs"][name] = out["jobs"].get(name, 0) + 1
        except Exception as err:  # a head that is still starting, or whose dashboard died
            out["error"] = str(err).splitlines()[0][:200]
    return out
