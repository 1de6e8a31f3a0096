"""Framework environments: a framework in an interpreter of its own (docs/spec.md section 5.13, docs/gpu.md).

An environment is a virtual environment in `envs_dir()/<name>` that holds one set of framework packages,
xfbench itself and their dependencies, made by `bench env create`. It serves two needs:

- **Two versions of one framework, side by side.** Every adapter an environment offers is registered as
  `<adapter>@<environment>`: `torch@torch-2-12` beside the `torch` of bench's own interpreter is two adapters
  in one suite, one report and one `bench compare`.
- **Libraries that cannot share a process tree.** An environment made with `--default-for tensorflow` runs
  every `tensorflow` case with its interpreter (on a GPU host: TensorFlow's CUDA 12 libraries apart from
  torch's and JAX's CUDA 13).

The parent still imports no framework: what an environment offers (its adapters, their versions and
whether their imports are installed) is read by the environment's own interpreter when it is made
(`xfbench.harness.resolve.probe`), kept in its `xfbench-env.json`, and read again by `bench env check`. Workers started with an
environment's interpreter know it from the `xfbench-env.json` beside it, and their records say which
environment and which exact versions ran (the manifest's `environment` and `versions`).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .errors import XfbenchError

ENVS_VAR = "XFBENCH_ENVS"  # the folder of environments; default: envs_dir()
IN_ENV_VAR = "XFBENCH_ENVIRONMENT"  # set for the probe of an environment that is not finished yet
META = "xfbench-env.json"
LOCK = "requirements.lock"  # `pip freeze` of the environment when it was made or checked
META_VERSION = 1
MAIN = "main"  # what records call bench's own interpreter
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,47}\Z")
PROBE_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parents[1]  # the checkout, when xfbench runs from one


class EnvError(XfbenchError):
    """An environment that cannot be made, found or used; the message names the fix."""


def envs_dir() -> Path:
    """Where environments live: $XFBENCH_ENVS, else `xfbench-envs` inside bench's own environment.

    Beside the interpreter that runs bench, so that `make clean` (which removes .venv) removes them too,
    and two checkouts never share one.
    """
    return Path(os.environ.get(ENVS_VAR) or Path(sys.prefix) / "xfbench-envs").absolute()


@dataclass(frozen=True)
class Environment:
    name: str
    path: Path
    packages: tuple[str, ...]  # as asked for: "torch==2.12.0"
    default_for: tuple[str, ...]  # adapters this environment runs instead of bench's own interpreter
    created: str
    probe: dict[str, Any]  # python, platform, adapters: name -> AdapterInfo fields, missing, versions

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def adapters(self) -> dict[str, dict[str, Any]]:
        """The adapters this environment offers (their imports installed there), by name."""
        return {n: a for n, a in (self.probe.get("adapters") or {}).items() if not a.get("missing")}

    def versions(self) -> dict[str, str]:
        """The distributions' versions of the adapters it offers, as probed."""
        out: dict[str, str] = {}
        for a in self.adapters().values():
            out.update(a.get("versions") or {})
        return dict(sorted(out.items()))


def split(adapter: str) -> tuple[str, str | None]:
    """"torch@torch-2-12" -> ("torch", "torch-2-12"); "torch" -> ("torch", None)."""
    base, at, env = adapter.partition("@")
    return base, (env if at else None)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise EnvError(f"environment name {name!r}: use lowercase letters, digits, '.', '_' and '-' "
                       "(at most 48, starting with a letter or digit), e.g. torch-2-12")
    return name


def current() -> str | None:
    """The environment this interpreter belongs to (its `xfbench-env.json` beside it); None for bench's own."""
    try:
        return json.loads((Path(sys.prefix) / META).read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return os.environ.get(IN_ENV_VAR) or None


def describe() -> dict[str, str]:
    """The manifest's `environment`: which environment ran the worker, with which Python."""
    return {"name": current() or MAIN, "python": platform.python_version(), "executable": sys.executable}


def environments() -> dict[str, Environment]:
    """The finished environments, by name; none inside an environment (workers and probes run there)."""
    if current() is not None:
        return {}
    folder = envs_dir()
    if not folder.is_dir():
        return {}
    out = {}
    for meta in sorted(folder.glob(f"*/{META}")):
        try:
            d = json.loads(meta.read_text())
            out[d["name"]] = Environment(d["name"], meta.parent, tuple(d["packages"]), tuple(d["default_for"]),
                                         d["created"], d["probe"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EnvError(f"{meta} is unreadable ({type(e).__name__}: {e}); "
                           f"make it again: bench env create {meta.parent.name} --force ...") from None
    return out


def unfinished() -> list[str]:
    """Folders in envs_dir() without xfbench-env.json: a `bench env create` that failed or was stopped."""
    folder = envs_dir()
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not (p / META).exists()) \
        if folder.is_dir() and current() is None else []


def defaults(envs: dict[str, Environment]) -> dict[str, Environment]:
    """adapter -> the environment that runs it by default; two environments claiming one adapter is an error."""
    out: dict[str, Environment] = {}
    for env in envs.values():
        for adapter in env.default_for:
            if adapter in out:
                raise EnvError(f"environments {out[adapter].name!r} and {env.name!r} are both the default "
                               f"for {adapter!r}; remove one: bench env remove NAME")
            out[adapter] = env
    return out


def interpreter_for(adapter: str) -> tuple[str, str | None]:
    """(interpreter, environment name or None) that runs workers of `adapter`."""
    base, name = split(adapter)
    envs = environments()
    env = envs.get(name) if name else defaults(envs).get(base)
    if name and env is None:
        raise EnvError(f"no environment {name!r} (adapter {adapter!r}); make it with "
                       f"`bench env create {name} PACKAGE...` or see `bench env list`")
    return (str(env.python), env.name) if env else (sys.executable, None)


# ---- making, checking and removing ----

def _install_source() -> list[str]:
    """How an environment gets this xfbench: editable from the checkout (its edits apply), else the release."""
    if (ROOT / "pyproject.toml").is_file() and (ROOT / "harness" / "envs.py").is_file():
        return ["-e", str(ROOT)]
    return [f"xfbench=={__version__}"]


def create(name: str, packages: list[str], *, default_for: list[str] = (), python: str | None = None,
           pip_args: list[str] = (), force: bool = False, echo: Callable[[str], None] = lambda s: None) -> Environment:
    """Make environment `name`: a venv, `pip install PACKAGES xfbench` in one resolve, then the probe.

    `xfbench-env.json` is written last: a folder without it is unfinished, and `create` starts it over.
    """
    check_name(name)
    if not packages:
        raise EnvError(f"bench env create {name}: name the packages to install, e.g. torch==2.12.0")
    path = envs_dir() / name
    if (path / META).exists() and not force:
        raise EnvError(f"environment {name!r} exists ({path}); add --force to make it again, "
                       f"or `bench env remove {name}`")
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = python or sys.executable
    echo(f"python -m venv {path}  ({base})")
    _call([base, "-m", "venv", str(path)], f"making the venv with {base}")
    py = str(path / "bin" / "python")
    cmd = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip_args, *packages,
           *_install_source()]
    echo(" ".join(cmd[1:]))
    _call(cmd, "pip install")
    env = _finish(name, path, tuple(packages), tuple(default_for),
                  dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    echo(f"environment {name}: " + (", ".join(sorted(env.adapters())) or "no adapter") + " offered")
    return env


def check(name: str) -> Environment:
    """Probe environment `name` again (after a `pip install` into it by hand) and store what it offers now."""
    env = environments().get(check_name(name))
    if env is None:
        raise EnvError(f"no environment {name!r}; see `bench env list`")
    return _finish(env.name, env.path, env.packages, env.default_for, env.created)


def remove(name: str) -> Path:
    path = envs_dir() / check_name(name)
    if not path.is_dir():
        raise EnvError(f"no environment {name!r} in {envs_dir()}; see `bench env list`")
    shutil.rmtree(path)
    return path


def _finish(name: str, path: Path, packages: tuple[str, ...], default_for: tuple[str, ...],
            created: str) -> Environment:
    probe = run_probe(path / "bin" / "python")
    offered = {n for n, a in probe["adapters"].items() if not a.get("missing")}
    unknown = [a for a in default_for if a not in offered]
    if unknown:
        raise EnvError(f"environment {name!r} cannot be the default for {', '.join(unknown)}: it offers "
                       f"{', '.join(sorted(offered)) or 'no adapter'}; install the framework into it")
    frozen = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"],
                            capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    (path / LOCK).write_text(frozen.stdout)
    meta = {"version": META_VERSION, "name": name, "packages": list(packages), "default_for": list(default_for),
            "created": created, "probe": probe}
    tmp = path / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(path / META)
    env = Environment(name, path, packages, default_for, created, probe)
    defaults({**environments(), name: env})  # refuse a second default for one adapter now, not at the next run
    return env


def _call(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise EnvError(f"{what} could not start: {e}") from None
    if done.returncode:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise EnvError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}")


def run_probe(python: Path) -> dict[str, Any]:
    """What the interpreter `python` offers, asked of it (`python -m xfbench.harness.resolve --probe`)."""
    with tempfile.TemporaryDirectory(prefix="xfbench-probe-") as tmp:
        out = Path(tmp) / "probe.json"
        env = {**os.environ, IN_ENV_VAR: "probe"}
        env.pop("PYTHONPATH", None)  # the environment's own xfbench, not the one on bench's path
        try:
            done = subprocess.run([str(python), "-P", "-m", "xfbench.harness.resolve", "--probe", str(out)], env=env,
                                  cwd=tmp, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise EnvError(f"probing {python} failed: {e}") from None
        if done.returncode or not out.exists():
            lines = done.stderr.strip().splitlines()
            raise EnvError(f"probing {python} failed (exit {done.returncode}): "
                           f"{lines[-1] if lines else 'no output'}; is xfbench installed there?")
        return json.loads(out.read_text())
