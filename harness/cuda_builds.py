"""Is an adapter's framework a CUDA build? Read from package metadata, without importing the framework.

`bench list frameworks` on a host with an NVIDIA GPU says "cpu only: <why>" for an adapter whose framework
cannot use it (docs/gpu.md): a CPU wheel of torch, `tensorflow-cpu`, jax without a CUDA plugin, the CPU
`onnxruntime`. Its CUDA cases are then skipped with the adapter's own reason, never measured on the CPU.
This is what the installed distributions say; `bench list frameworks --check` also runs a tiny CUDA case
in each adapter's worker, which is the proof.
"""
from __future__ import annotations

import importlib.metadata as md
import re


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _installed(pattern: str) -> list[str]:
    """Installed distributions whose normalised name matches `pattern` (e.g. jax-cuda13-plugin)."""
    names = set()
    for d in md.distributions():
        name = re.sub(r"[-_.]+", "-", (d.metadata.get("Name") or "").lower())
        if re.fullmatch(pattern, name):
            names.add(name)
    return sorted(names)


def _torch() -> str | None:
    v = _version("torch")
    if v is None:
        return None
    if "+cpu" in v:
        return f"torch {v} is a CPU build"
    needs = md.requires("torch") or []
    if "+cu" in v or any(r.lower().startswith("nvidia-") for r in needs):
        return None
    return f"torch {v} lists no CUDA libraries (a CPU build)"


def _tensorflow() -> str | None:
    if _version("tensorflow") is None:
        cpu = _version("tensorflow-cpu")
        return f"tensorflow-cpu {cpu} is a CPU build" if cpu else None
    if not _installed(r"nvidia-cudnn-cu\d+"):
        return f"tensorflow {_version('tensorflow')} without its CUDA libraries (install tensorflow[and-cuda])"
    return None


def _jax() -> str | None:
    v = _version("jax")
    if v is None or _installed(r"jax-cuda\d+-plugin"):
        return None
    return f"jax {v} has no CUDA plugin (install jax[cuda13])"


def _onnxruntime() -> str | None:
    if _version("onnxruntime-gpu") is not None:
        return None
    v = _version("onnxruntime")
    return f"onnxruntime {v} is the CPU build (install onnxruntime-gpu)" if v else None


_CHECKS = {"torch": _torch, "tensorflow": _tensorflow, "jax": _jax, "onnxruntime": _onnxruntime}


def cpu_only(requires: tuple[str, ...], reference: bool = False) -> str | None:
    """Why an adapter with these imports cannot run on CUDA here, in a few words; None where nothing says so.

    An import this module does not know (a third-party framework) is no evidence either way.
    """
    if reference:
        return "the NumPy reference runs on the CPU"
    for name in requires:
        check = _CHECKS.get(name)
        why = check() if check else None
        if why:
            return why
    return None
