"""Fork servers: one framework imported once per round, one forked process per case (process_start "fork").

Importing TensorFlow takes 7-11 s on a 2-core machine, torch 2-3 s, JAX 1.5-2 s: with a fresh interpreter
per case, a suite of two processes per case spends most of its time importing. A fork server pins
itself and imports one framework's adapter exactly as a case worker would (`worker.prepare`), then,
for every case it is sent, forks a child that runs `worker.run_case` and exits. The child is still a
process of its own: its own heap, thread pools (the server never starts them: importing does not), peak
memory, its own session, log file and record, killed alone on a timeout or over its memory limit.
What it shares with its siblings of the round is the address-space layout the server got at exec; the
runner starts new servers for every round, so the processes of one case never come from the same one.

Protocol (the runner's side is `ForkServer`): the server is started as
`python -m xfbench.harness.measure.forkserver ADAPTER THREADS DEVICE REPLY_FD`; it writes one JSON line to
REPLY_FD, {"ready": true} or {"error": "..."}; then for each request line on stdin, {"case": path,
"record": path, "log": path}, it answers {"pid": N} when the child runs and {"exit": code} when it has
ended (negative: killed by that signal). A request {"peak": path, ...} measures the roofline
(xfbench.harness.measure.peak) instead, its reply written to "record". End of stdin ends the server.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..envs import interpreter_for
from ..errors import XfbenchError
from .process import MEMORY_POLL_S, MemoryLimitExceeded, die_with_parent, group_memory_bytes, module_command, worker_env

FORK_REPLY_S = 30.0  # a fork of a server holding a framework takes milliseconds; this long means it is stuck


class ServerGone(XfbenchError):
    """The fork server could not start, or stopped answering; the runner starts the case fresh instead."""


# ---- the server process ----

def _send(out: Any, **message: Any) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _child(request: dict[str, str], prepared: Any, server: int, reply_fd: int) -> int:
    """In the forked process: become a worker of its own, measure the case, write its record."""
    os.setsid()  # a process group of its own: the runner kills it, and what it starts, alone
    os.close(reply_fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    die_with_parent(server)
    os.chdir(Path(request["log"]).parent)
    from ..results import write_json_atomic
    if "peak" in request:  # the roofline (xfbench.harness.measure.peak) of this server's adapter
        from .peak import answer
        with open(request["peak"]) as f:
            write_json_atomic(request["record"], answer(json.load(f), prepared.adapter_cls))
        return 0
    from ..case import Case
    from .worker import run_case
    with open(request["case"]) as f:
        case = Case.from_dict(json.load(f))
    write_json_atomic(request["record"], run_case(case, prepared).to_json())
    return 0


def serve(adapter: str, threads: int, device: str, reply_fd: int) -> int:
    die_with_parent()
    reply = os.fdopen(reply_fd, "w")
    try:
        from .worker import prepare
        prepared = prepare(adapter, threads, device)
        # What every case imports next, so that no child pays for it.
        from .. import models, optimizers, records, results, weights  # noqa: F401
        from . import timing  # noqa: F401
    except Exception as e:
        traceback.print_exc(limit=-5)
        _send(reply, error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
        return 1
    _send(reply, ready=True, import_s=prepared.import_s)
    me = os.getpid()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request, prepared, me, reply_fd)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc(limit=-5)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _send(reply, pid=pid)
        _send(reply, exit=os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m xfbench.harness.measure.forkserver ADAPTER THREADS DEVICE REPLY_FD", file=sys.stderr)
        return 2
    return serve(argv[0], int(argv[1]), argv[2], int(argv[3]))


# ---- the runner's side ----

class ForkServer:
    """A running fork server for one adapter, thread count, device and round; `run` measures a case in it."""

    def __init__(self, adapter: str, threads: int, device: str, log_file: Path):
        """Start the server; `wait_ready` waits for its import."""
        self.adapter = adapter
        read_fd, write_fd = os.pipe()
        self._fd, self._buffer = read_fd, b""
        self.log_file = Path(log_file).absolute()
        try:
            with open(self.log_file, "wb") as log:
                self.proc = subprocess.Popen(
                    module_command("xfbench.harness.measure.forkserver", adapter, str(threads), device, str(write_fd),
                                   python=interpreter_for(adapter)[0]),
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=worker_env(),
                    start_new_session=True, cwd=self.log_file.parent, pass_fds=(write_fd,))
        except OSError as e:
            os.close(read_fd)
            raise ServerGone(f"cannot start the fork server: {e}") from None
        finally:
            os.close(write_fd)

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until the server has imported its adapter; ServerGone (the server ended) if it could not."""
        try:
            reply = self._reply(timeout_s)
        except ServerGone:
            reply = {"error": "it ended"}
        if reply is None or "ready" not in reply:
            self.close()
            why = f"not ready within {timeout_s:g} s" if reply is None else reply.get("error", "no ready message")
            raise ServerGone(f"the fork server for {self.adapter} could not start ({why}); see {self.log_file}")

    def _reply(self, timeout_s: float) -> dict[str, Any] | None:
        """The server's next message; None when none came within `timeout_s`; ServerGone when it has ended."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                return None
            chunk = os.read(self._fd, 4096)
            if not chunk:
                raise ServerGone(f"the fork server ended (see {self.log_file})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            raise ServerGone(f"the fork server answered nonsense: {line[:200]!r}") from None

    def run(self, case_file: Path, record_file: Path, log_file: Path, timeout_s: float,
            rss_limit_bytes: int | None = None, kind: str = "case") -> int | None:
        """Measure a case in a forked process; its exit code, None on timeout (as `process.run_isolated`).

        Over `rss_limit_bytes` (the forked process and its children) it is killed and MemoryLimitExceeded raised.
        `kind` "peak": `case_file` is a roofline request (xfbench.harness.measure.peak) instead.
        """
        request = {kind: str(case_file), "record": str(record_file), "log": str(Path(log_file).absolute())}
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as e:
            raise ServerGone(f"the fork server is gone: {e}") from None
        started = self._reply(FORK_REPLY_S)
        if started is None or "pid" not in started:
            raise ServerGone(f"the fork server did not fork the case (see {self.log_file})")
        pid, deadline = started["pid"], time.monotonic() + timeout_s
        try:
            while True:
                done = self._reply(max(0.0, min(MEMORY_POLL_S, deadline - time.monotonic())))
                if done is not None:
                    return done["exit"]
                if time.monotonic() >= deadline:
                    self._kill(pid)
                    return None
                used = group_memory_bytes(pid, over=rss_limit_bytes) if rss_limit_bytes is not None else None
                if used is not None and used > rss_limit_bytes:
                    raise MemoryLimitExceeded(used, rss_limit_bytes)
        except BaseException:  # Ctrl-C, SIGTERM, the memory limit: take the case's process down with us
            self._kill(pid)
            raise

    def _kill(self, pid: int) -> None:
        """SIGKILL the forked process's group and wait until the server has reaped it."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:  # not yet a group of its own (it calls setsid first thing)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self._reply(FORK_REPLY_S)
        except ServerGone:
            pass

    def close(self) -> None:
        """End the server at once: SIGKILL. It holds nothing to save, and TensorFlow's orderly exit takes seconds."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self._fd)


def _key(case: Any) -> tuple:
    return case.framework, case.threads, case.device, case.process


class ForkServers:
    """The fork servers of a run: started together when a round needs its first one, ended with the round.

    With `plan(cases)`, the first case of a round starts the servers of every adapter in that round side
    by side (a server's import is single-threaded: on 2 cores TensorFlow's and the others' imports then
    overlap), before any case of the round is timed. A server that cannot start is remembered, and its
    cases start fresh (`process_start` "exec"): the fresh worker then reports whatever stopped the server
    in the case's own record.
    """

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)
        self.servers: dict[tuple, ForkServer] = {}
        self.broken: dict[tuple, str] = {}
        self.rounds: dict[int, dict[tuple, Any]] = {}  # round -> key -> a case of it

    def plan(self, cases: list[Any]) -> None:
        """The cases about to run, so that each round's servers start together."""
        for c in cases:
            if c.process_start == "fork" and c.device == "cpu":
                self.rounds.setdefault(c.process, {}).setdefault(_key(c), c)

    def get(self, case: Any) -> ForkServer | None:
        key = _key(case)
        for other in [k for k in self.servers if k[3] != case.process]:
            self.servers.pop(other).close()  # a new round: the last round's servers are done
        if key not in self.servers and key not in self.broken:
            self._start({**self.rounds.get(case.process, {}), key: case})
        return self.servers.get(key)

    def _start(self, wanted: dict[tuple, Any]) -> None:
        """Start the servers of `wanted` (key -> a case) not started yet, side by side, and wait for each."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        starting = {}
        for key, c in wanted.items():
            if key in self.servers or key in self.broken:
                continue
            log = self.logdir / f"forkserver-{c.framework}-{c.device}-t{c.threads}-p{c.process}.log"
            try:
                starting[key] = (ForkServer(c.framework, c.threads, c.device, log), c)
            except ServerGone as e:
                self.broken[key] = str(e)
        for key, (server, c) in starting.items():
            try:
                server.wait_ready(c.case_timeout_s)
                self.servers[key] = server
            except ServerGone as e:
                self.broken[key] = str(e)

    def drop(self, case: Any, why: str) -> None:
        """The case's server stopped answering: end it, and start its round's remaining cases fresh."""
        key = _key(case)
        server = self.servers.pop(key, None)
        if server is not None:
            server.close()
        self.broken[key] = why

    def close(self) -> None:
        while self.servers:
            self.servers.popitem()[1].close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
