"""Ray for the multi-trial runners: a loopback-only local instance that dies with the
driver, and a bounded check that a cluster address answers before a run is written.

- :func:`start_local_ray`: a local Ray whose every process listens on 127.0.0.1 only.
  Ray replaces a loopback ``_node_ip_address`` by the machine's address unless
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its single-machine mode), which makes the GCS,
  raylets, workers, dashboard agent, runtime-env agent and metrics servers bind
  127.0.0.1; the dashboard is off and metrics collection is off
  (``RAY_enable_metrics_collection=0``).
- :class:`RayWatchdog`: a small process that tracks the local Ray processes (and their
  descendants) and SIGKILLs them when the driver disappears, even by SIGKILL. Ray's own
  fate sharing (``PR_SET_PDEATHSIG``) covers only the processes the driver forks itself:
  the agents and workers the raylet forks would otherwise outlive it.
- :func:`check_ray_address`: a ``host:port`` must accept a TCP connection *and* answer
  an HTTP/2 (gRPC) handshake within ``timeout`` seconds; a proxy that accepts any
  connection, or a port that is not Ray's, is an error in one line, before Ray's client
  (which retries for about a minute and logs every retry) is started.
- :func:`quiet_ray_init`: ``ray.init`` with its C++/Python console output captured; a
  failure becomes one :class:`~nasforge.errors.ConfigError` sentence.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from typing import Any, Iterator

from nasforge.errors import ConfigError

logger = logging.getLogger(__name__)

#: environment of a local Ray started by nasforge (inherited by every Ray process)
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # single-machine mode: node IP = 127.0.0.1
    "RAY_enable_metrics_collection": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Fail fast with one line when a ``host:port`` Ray address does not answer.

    ``None``, ``"auto"`` and ``"local"`` are not checked here (``auto`` fails quickly in
    ``ray.init`` when no cluster runs on this machine)."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not of the form host:port, 'auto' or 'local'")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({e.strerror or e or 'timed out'})") from None
    with sock:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return  # a TLS server does not answer a plain HTTP/2 preface
        try:
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except OSError:
            head = b""
        if len(head) < 9 or head[3] != 0x4:  # the server's first frame is SETTINGS
            raise ConfigError(
                f"cannot reach the Ray cluster at {address} (the port accepted a connection but no Ray/gRPC server answered within {timeout:g} s)"
            )


@contextlib.contextmanager
def _captured_output(release_after: float | None = None) -> Iterator[Any]:
    """Send fds 1 and 2 (Ray's C++ logging and prints) to a temporary file meanwhile.

    After ``release_after`` seconds the console is given back and what was captured is
    shown, so that a ``ray.init`` that keeps retrying is not a silent hang."""
    import threading

    for f in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            f.flush()
    tmp = tempfile.TemporaryFile(mode="w+b")
    saved = [os.dup(1), os.dup(2)]
    lock = threading.Lock()
    released = [False]

    def release(show: bool) -> None:
        with lock:
            if released[0]:
                return
            released[0] = True
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            if show:
                tmp.flush()
                tmp.seek(0)
                os.write(2, b"nasforge: Ray has not answered for %d s; its messages so far:\n" % int(release_after or 0) + tmp.read())

    timer = threading.Timer(release_after, release, args=(True,)) if release_after else None
    try:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        if timer is not None:
            timer.daemon = True
            timer.start()
        yield tmp
    finally:
        if timer is not None:
            timer.cancel()
        for f in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                f.flush()
        release(False)
        for fd in saved:
            os.close(fd)
        tmp.close()


def quiet_ray_init(ray: Any, where: str, release_after: float | None = None, **kw: Any) -> None:
    """``ray.init(**kw)`` without Ray's console output; errors as one ConfigError line."""
    err: BaseException | None = None
    with _captured_output(release_after) as tmp:
        try:
            ray.init(**kw)
        except BaseException as e:  # noqa: BLE001 - Ray raises many kinds; reported below
            err = e
        tmp.flush()
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    if text.strip():
        logger.debug("ray.init output:\n%s", text)
    if err is not None:
        if isinstance(err, KeyboardInterrupt):
            raise err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot start or join Ray at {where} ({first[:200]})") from None


@contextlib.contextmanager
def _single_machine(ray: Any) -> Iterator[None]:
    """Ray's single-machine mode meanwhile: loopback stays loopback (see module docstring)."""
    old_env = {k: os.environ.get(k) for k in LOCAL_RAY_ENV}
    os.environ.update(LOCAL_RAY_ENV)
    consts = ray._private.ray_constants
    old_flag = getattr(consts, "ENABLE_RAY_CLUSTER", None)
    consts.ENABLE_RAY_CLUSTER = False  # read at call time; the env var only at Ray's import
    try:
        yield
    finally:
        consts.ENABLE_RAY_CLUSTER = old_flag
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_local_ray(ray: Any, num_cpus: int, num_gpus: float | None) -> None:
    """Start a loopback-only local Ray (see the module docstring); always a new one
    (``address="local"``), never a cluster that ``RAY_ADDRESS`` or a ``ray start`` on
    this machine points to."""
    with _single_machine(ray):
        quiet_ray_init(
            ray, "a new local cluster", address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False,
        )


def join_ray(ray: Any, address: str) -> None:
    """Join the cluster at ``address`` (after :func:`check_ray_address`)."""
    quiet_ray_init(ray, address, release_after=30.0, address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)


_WATCHDOG = r"""
import json, os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def start(pid):
    # a process's start time (tells a pid's reuse apart); None once it is gone or a zombie
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return None
def ppids():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    out[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out
fd = sys.stdin.fileno()
buf = b""
while not buf.endswith(b"\n"):
    c = os.read(fd, 1)
    if not c:
        break
    buf += c
hello = json.loads(buf or b"{}")
driver = int(hello.get("driver", os.getppid()))
tracked = {p: start(p) for p in hello.get("roots", [])}
tracked = {p: s for p, s in tracked.items() if s is not None}
def scan():
    pp = ppids()
    grew = True
    while grew:
        grew = False
        for p, par in pp.items():
            if par in tracked and p not in tracked and p != os.getpid():
                s = start(p)
                if s is not None:
                    tracked[p] = s
                    grew = True
clean = False
while True:
    scan()
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        line = os.read(fd, 4096)
        if line.startswith(b"bye"):
            clean = True
        if not line or clean:
            break
    try:
        os.kill(driver, 0)
    except ProcessLookupError:
        break
    if start(driver) is None:
        break
deadline = time.time() + (5.0 if clean else 0.0)
while True:
    scan()
    alive = [p for p, s in tracked.items() if start(p) == s]
    if not alive:
        break
    if time.time() >= deadline:
        for p in alive:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.time() + 10.0
        time.sleep(0.1)
        if all(start(p) != s for p, s in tracked.items()):
            break
        continue
    time.sleep(0.1)
"""


def _ray_pids(ray: Any) -> list[int]:
    """Processes of the local Ray node started by this driver."""
    pids: list[int] = []
    with contextlib.suppress(Exception):
        node = ray._private.worker._global_node
        for infos in node.all_processes.values():
            pids += [int(i.process.pid) for i in infos if getattr(i, "process", None) is not None]
    if not pids:  # fall back to the driver's children that are Ray's
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me and b"ray" in cmd:
                pids.append(int(d))
    return pids


class RayWatchdog:
    """Kills the local Ray node's processes when this driver dies (see module docstring)."""

    def __init__(self, ray: Any):
        self.proc: subprocess.Popen | None = None
        if not sys.platform.startswith("linux"):
            return
        pids = _ray_pids(ray)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"driver": os.getpid(), "roots": pids}) + "\n").encode())
        self.proc.stdin.flush()
        logger.debug("Ray watchdog %d tracks %s", self.proc.pid, pids)

    def close(self) -> None:
        """After ``ray.shutdown()``: the watchdog kills what is left after 5 s, then exits."""
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write(b"bye\n")
            self.proc.stdin.flush()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc = None
