"""Where a run's process runs: ``local`` (a detached subprocess, the default) or ``ray`` (a job on
a Ray cluster, submitted with ``ray.job_submission.JobSubmissionClient``).

Both launch the same ``python -m agelab train --run-dir <folder>`` and share one interface:
``submit(config) -> run folder``, ``status(run_dir)``, ``logs(run_dir)``, ``stop(run_dir)``. The run
folder is the channel either way, so the runs folder (``AGELAB_RUNS_DIR``) of a Ray run must lie on
storage that this machine and the cluster both see. ``status.json`` records the backend
(``launcher``), and for Ray runs the job id (``job_id``) and the cluster (``ray_address``).

``ray`` is optional (``requirements-cluster.txt``); nothing here imports it until a Ray address is used.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any, Protocol

from agelab import runs, settings
from agelab.config import checked_config
from agelab.paths import runs_dir
from agelab.processes import identity, own_process, spawn
from agelab.training.devices import HIDE_GPUS, visible_gpus_env

RAY_ADDRESS_ENV = "AGELAB_RAY_ADDRESS"
INSTALL_RAY = ".venv/bin/pip install -r requirements-cluster.txt"
# Ray stops a job with SIGTERM and kills it this many seconds later; the run needs the time to
# finish its batch and save (the same graceful stop as a local run).
RAY_STOP_WAIT_S = 60
RAY_ACTIVE = ("PENDING", "RUNNING")


class LaunchError(RuntimeError):
    """A run or sweep that could not be handed to its backend, in one sentence."""


class Launcher(Protocol):
    name: str

    def submit(self, config: dict[str, Any], root: Path | None = None, **fields: Any) -> Path: ...

    def status(self, run_dir: Path) -> dict[str, Any]: ...

    def logs(self, run_dir: Path, lines: int = 200) -> str: ...

    def stop(self, run_dir: Path) -> str: ...


class LocalLauncher:
    """A detached ``python -m agelab train`` process on this machine."""

    name = "local"

    def submit(self, config: dict[str, Any], root: Path | None = None, **fields: Any) -> Path:
        """Start ``python -m agelab train`` for ``config`` as a detached process; return its folder.

        The config is validated here first, so a bad one never makes a folder.
        """
        config = checked_config(config)
        run_dir = runs.create_run(config, root)
        # TF_CPP_MIN_LOG_LEVEL=2: the log starts with the run, not TensorFlow's C++ notices (oneDNN, CPU).
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **visible_gpus_env(config)}
        if root is not None:
            env["AGELAB_RUNS_DIR"] = str(Path(root))
        # --log-redirected: spawn already sends its output to log.txt, which the run must not copy again.
        pid = spawn(["train", "--run-dir", str(run_dir), "--log-redirected"], run_dir / "log.txt", env)
        # Its identity (start time) too: Stop signals this pid only while it is still this process.
        runs.write_status(run_dir, pid=pid, process=identity(pid), launcher="local", **fields)
        return run_dir

    def status(self, run_dir: Path) -> dict[str, Any]:
        return runs.effective_status(run_dir)

    def logs(self, run_dir: Path, lines: int = 200) -> str:
        return runs.log_tail(run_dir, lines)

    def stop(self, run_dir: Path) -> str:
        """Ask a run to stop: the first call is graceful (it finishes the batch, saves, and is marked
        stopped); a second call kills it. Returns ``"stopping"``, ``"killed"`` or ``"not running"``.

        Only a process that is verifiably the run's own is signalled (:func:`agelab.processes.own_process`);
        a status naming any other pid raises :class:`LaunchError` and nothing is signalled."""
        run_dir = Path(run_dir)
        status = runs.effective_status(run_dir)
        if status.get("status") not in runs.ACTIVE:
            return "not running"
        # The pid as written, not as validated: own_process judges it, and its message quotes it.
        pid, why = own_process(runs.read_run_file(run_dir / "status.json", []))
        if pid is None:
            raise LaunchError(f"run {run_dir.name} was not signalled: {why}")
        if status.get("stop_requested"):
            _signal(pid, signal.SIGKILL)
            runs.write_status(
                run_dir, status="stopped", killed=True, ended=runs.now(), note="killed by a second Stop"
            )
            return "killed"
        runs.write_status(run_dir, stop_requested=runs.now())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return "not running"
        return "stopping"


def _signal(pid: int, sig: int) -> None:
    """``sig`` to the run's whole process group when it leads one (a launched run does), else to it
    alone (a run started by hand from a terminal shares its shell's group)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def ray_address(explicit: str | None = None) -> str:
    """The Ray address to use: ``explicit`` (a page field), else ``AGELAB_RAY_ADDRESS``; "" for none."""
    return (explicit or settings.get(RAY_ADDRESS_ENV) or "").strip()


def dashboard_url(address: str) -> str:
    """``127.0.0.1:8265`` -> ``http://127.0.0.1:8265`` (the Ray dashboard, which takes job submissions)."""
    address = address.strip().rstrip("/")
    return address if "://" in address else f"http://{address}"


def ray_missing(address: str) -> str | None:
    """What to install when a Ray address is set but ``ray`` is not importable; None when it is."""
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        return None
    return (
        f"A Ray address is set ({address}) but the ray package is not installed here: install it with"
        f" `{INSTALL_RAY}` (or clear the address to launch runs on this machine)."
    )


class RayLauncher:
    """A Ray job per run: the project's code travels with it (``runtime_env`` ``working_dir``) and it
    runs with this interpreter where the node has it, else the node's ``python``
    (:func:`agelab.cluster.job_entrypoint`)."""

    name = "ray"

    def __init__(self, address: str) -> None:
        if not address:
            raise LaunchError(f"no Ray address: set {RAY_ADDRESS_ENV} or the Train page's Ray address field")
        self.address = dashboard_url(address)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            missing = ray_missing(self.address)
            if missing:
                raise LaunchError(missing)
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as err:  # ConnectionError, or Ray's own errors for a bad address
                raise LaunchError(
                    f"cannot reach the Ray cluster at {self.address}: {str(err).splitlines()[0][:200]};"
                    " give the head's dashboard address (ray start --head prints it, port 8265 by default)"
                ) from None
        return self._client

    def runtime_env(self, root: Path) -> dict[str, Any]:
        """The job's code, environment variables and locations (:func:`agelab.cluster.job_runtime_env`)."""
        from agelab.cluster import job_runtime_env

        return job_runtime_env(self.address, root, RAY_JOB_STOP_WAIT_TIME_S=str(RAY_STOP_WAIT_S))

    def job_runtime_env(self, root: Path, config: dict[str, Any]) -> dict[str, Any]:
        """One run's ``runtime_env``: a job that reserved no GPU sees none (Ray leaves them all visible)."""
        env = self.runtime_env(root)
        if not config["num_gpus"]:
            env["env_vars"][HIDE_GPUS] = ""
        return env

    def submit(self, config: dict[str, Any], root: Path | None = None, **fields: Any) -> Path:
        from agelab.cluster import job_entrypoint

        config = checked_config(config)
        client = self.client  # before making a folder: a missing ray or a dead cluster makes none
        root = Path(root or runs_dir())
        run_dir = runs.create_run(config, root)
        runs.write_status(run_dir, launcher="ray", ray_address=self.address, **fields)
        try:
            job_id = client.submit_job(
                entrypoint=job_entrypoint("train", "--run-dir", str(run_dir.resolve())),
                submission_id=f"agelab-{run_dir.name}-{uuid.uuid4().hex[:8]}",
                runtime_env=self.job_runtime_env(root, config),
                entrypoint_num_cpus=config["num_cpus"],
                entrypoint_num_gpus=config["num_gpus"],
                metadata={"agelab_run": run_dir.name},
            )
        except Exception as err:
            reason = f"Ray did not take the job: {str(err).splitlines()[0][:300]}"
            runs.write_status(run_dir, status="failed", ended=runs.now(), error=reason)
            raise LaunchError(reason) from None
        runs.write_status(run_dir, job_id=job_id)
        return run_dir

    def refresh(self, run_dir: Path) -> dict[str, Any]:
        """The run's status, brought up to date from Ray when ``status.json`` still says it is active:
        a job that Ray failed or stopped before the run could record it is written down as such."""
        status = runs.effective_status(run_dir)
        job_id = status.get("job_id")
        if not job_id or status.get("status") not in runs.ACTIVE:
            return status
        try:
            info = self.client.get_job_info(job_id)
        except Exception:  # the cluster is unreachable: keep what the folder says
            return status
        state = str(getattr(info.status, "value", info.status))
        if state == status.get("ray_status") and state in RAY_ACTIVE:
            return status
        update: dict[str, Any] = {"ray_status": state}
        fresh = runs.read_run_file(Path(run_dir) / "status.json", [])
        if fresh.get("status") in runs.ACTIVE and state not in RAY_ACTIVE:
            if state == "SUCCEEDED":
                update.update(status="finished", ended=runs.now(), remote_only=True)
            elif state == "STOPPED":
                update.update(status="stopped", ended=runs.now(), note="stopped on the Ray cluster")
            else:
                tail = "\n".join(self.logs(run_dir, 20).splitlines()[-20:])
                update.update(
                    status="failed",
                    ended=runs.now(),
                    error=f"The Ray job {job_id} {state.lower()}: {info.message or ''}\n--- log tail ---\n{tail}",
                )
        runs.write_status(run_dir, **update)
        return runs.effective_status(run_dir)

    def status(self, run_dir: Path) -> dict[str, Any]:
        return self.refresh(run_dir)

    def logs(self, run_dir: Path, lines: int = 200) -> str:
        """The run's ``log.txt`` when this machine sees it, else the job's log from Ray."""
        local = runs.log_tail(run_dir, lines)
        if local:
            return local
        job_id = runs.read_run_file(Path(run_dir) / "status.json", []).get("job_id")
        if not job_id:
            return ""
        try:
            text = self.client.get_job_logs(job_id)
        except Exception as err:
            return f"(the Ray job's log cannot be read: {str(err).splitlines()[0][:200]})"
        rows = [row for row in text.splitlines() if not runs.TF_NOISE.match(row)]
        return "\n".join(rows[-lines:])

    def stop(self, run_dir: Path) -> str:
        """Ray sends the run SIGTERM (it finishes its batch and saves, as a local run does) and kills it
        ``RAY_STOP_WAIT_S`` later. Returns ``"stopping"`` or ``"not running"``."""
        status = self.refresh(run_dir)
        job_id = status.get("job_id")
        if status.get("status") not in runs.ACTIVE or not job_id:
            return "not running"
        runs.write_status(run_dir, stop_requested=runs.now())
        try:
            stopped = self.client.stop_job(job_id)
        except Exception as err:
            return stop_without_ray(
                Path(run_dir), f"Ray at {self.address} cannot be reached ({_first_line(err)})"
            )
        if status.get("status") == "queued" and status.get("ray_status", "PENDING") == "PENDING":
            # Still in Ray's queue: it never starts, so nothing but this records its end.
            runs.write_status(run_dir, status="stopped", ended=runs.now(), note="stopped before it started")
        return "stopping" if stopped else "not running"


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


def stop_without_ray(run_dir: Path, why: str) -> str:
    """Stop a Ray run that Ray cannot stop: the run reads the ``stop_requested`` already in its folder
    after its next batch; when it is on this host, its own process also gets SIGTERM."""
    pid, not_signalled = own_process(runs.read_run_file(run_dir / "status.json", []))
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
            return f"stopping: {why}, so its process {pid} here was sent SIGTERM"
        except ProcessLookupError:
            return "not running"
    return f"stopping: {why}, and {not_signalled}; it stops after its current batch, as its folder asks"


def get_launcher(address: str | None = None) -> LocalLauncher | RayLauncher:
    """Ray when an address is given or ``AGELAB_RAY_ADDRESS`` is set, else local."""
    address = ray_address(address)
    return RayLauncher(address) if address else LocalLauncher()


_RAY_LAUNCHERS: dict[str, RayLauncher] = {}


def ray_launcher(address: str) -> RayLauncher:
    """One launcher (and client connection) per cluster for this process: the page polls every 2 s."""
    url = dashboard_url(address)
    if url not in _RAY_LAUNCHERS:
        _RAY_LAUNCHERS[url] = RayLauncher(url)
    return _RAY_LAUNCHERS[url]


def launcher_for(run_dir: Path, status: dict[str, Any] | None = None) -> LocalLauncher | RayLauncher:
    """The backend that launched this run (recorded in its ``status.json``)."""
    status = status if status is not None else runs.read_run_file(Path(run_dir) / "status.json", [])
    if status.get("launcher") == "ray" and status.get("ray_address"):
        return ray_launcher(status["ray_address"])
    return LocalLauncher()


def refresh_runs(run_list: list[runs.Run]) -> bool:
    """Bring active Ray runs up to date from their clusters (one request each); True when any changed.
    Ray runs cannot be refreshed without ``ray`` installed: they keep what their folders say."""
    changed = False
    for run in run_list:
        if run.status.get("launcher") != "ray" or run.state not in runs.ACTIVE:
            continue
        address = run.status.get("ray_address") or ""
        if not address or ray_missing(address):
            continue
        try:
            after = ray_launcher(address).refresh(run.path)
        except LaunchError:
            continue
        changed = changed or after.get("status") != run.state
    return changed


def list_runs(root: Path | None = None) -> list[runs.Run]:
    """``runs.list_runs`` with active Ray runs refreshed from their clusters first."""
    current = runs.list_runs(root)
    return runs.list_runs(root) if refresh_runs(current) else current


def not_visible_warning(run: runs.Run) -> str | None:
    """For a finished Ray run whose files this machine cannot see: why, and what to change."""
    if run.status.get("launcher") != "ray" or run.state != "finished":
        return None
    if (run.path / "metrics.json").exists():
        return None
    return (
        f"Run {run.name} finished on the Ray cluster ({run.status.get('ray_address')}), but its files are not"
        f" in {run.path} here: the cluster wrote them to its own disk. Set AGELAB_RUNS_DIR to a folder that"
        " this machine and the cluster both mount (NFS, a shared volume), then launch again."
    )


def find_run(name: str, root: Path | None = None) -> Path:
    """A run folder by its name (``baseline_cnn-3``) under the runs folder, or by its path."""
    path = Path(name)
    if not (path / "status.json").exists():
        path = Path(root or runs_dir()) / name
    if not (path / "status.json").exists():
        raise LaunchError(
            f"no run {name!r} in {Path(root or runs_dir())}; `python -m agelab runs` lists them"
        )
    return path
