#!/usr/bin/env bash
# GPU check: does xfbench run on an NVIDIA GPU? One script, one output folder, one exit code.
#
#   bash tests/gpu/check.sh OUTDIR          (or: make gpu-check OUT=OUTDIR)
#
# Steps, in order (each timed; exit codes and seconds go to OUTDIR/summary.txt):
#   1. packages  one Python call: numpy, pandas, matplotlib, scipy, click and rich import
#   2. gpu       nvidia-smi lists a GPU; otherwise one line and exit 3 (steps 1-2 also run on a CPU machine)
#   3. install   `python -m pip install -e . --no-deps --no-build-isolation --no-index` (install.log),
#                skipped when `harness` already imports from this checkout with its entry points;
#                retried with --break-system-packages where pip refuses an externally managed Python
#   4. env       nvidia-smi and torch / jax / flax / optax / numpy versions (env.txt)
#   5. pytest    `python -m pytest -m gpu tests/gpu -q -rs` (pytest.log)
#   6. run       `bench run suites/gpu-smoke.toml --out OUTDIR/runs` (run.log; GPU_CHECK_SUITE picks another)
#   7. validate  `bench validate --tiny --device cuda --frameworks torch,jax,numpy --models lenet5,gru ...` (validate.log)
#   8. collect   the run's report.md and cases.jsonl to OUTDIR; the nested run and validation folders
#                are moved to a fresh /tmp/gpu-check.* folder, so OUTDIR holds at most these 8 files:
#                summary.txt env.txt install.log pytest.log run.log validate.log report.md cases.jsonl
# Then it prints a one-screen summary: each step's exit code and time, and the report's results tables.
#
# A failing step (pytest failures, failed benchmark cases: `bench run` exits 1) is recorded and the
# script goes on. On a GPU host a skip is a failure too: pytest with a skipped test (or none passed)
# is recorded as exit 5, and a run with skipped cases (bench exits 0 there) as exit 1.
# Each step runs under `timeout`, within an overall budget of GPU_CHECK_BUDGET_S seconds (default
# 540: the lent GPU machines stop a command at 600); a step killed there exits 124.
# `bench run` stops cleanly on that SIGTERM and still writes its report of the finished cases.
#
# Environment: PYTHON (default python3) runs everything, pip, pytest and bench included;
#              GPU_CHECK_BUDGET_S (default 540); GPU_CHECK_SUITE (default suites/gpu-smoke.toml).
# Exit codes:  0 every step passed; 1 a step failed (see summary.txt); 2 Python or a package missing;
#              3 no NVIDIA GPU on this machine; 4 xfbench could not be installed; 64 usage.
set -euo pipefail

usage() {
    echo "usage: bash tests/gpu/check.sh OUTDIR   (PYTHON=python3 GPU_CHECK_BUDGET_S=540)" >&2
    exit 64
}

# ---- arguments, output folder ----
[[ $# -eq 1 && -n $1 && $1 != -* ]] || usage
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p -- "$1"
OUT=$(cd -- "$1" && pwd)
cd -- "$ROOT"
PYTHON=${PYTHON:-python3}
BUDGET_S=${GPU_CHECK_BUDGET_S:-540}
SUITE=${GPU_CHECK_SUITE:-suites/gpu-smoke.toml}
[[ $BUDGET_S =~ ^[0-9]+$ ]] || { echo "gpu-check: GPU_CHECK_BUDGET_S must be a whole number of seconds" >&2; exit 64; }

# Leftovers of an earlier check into the same folder would be mistaken for this one's.
rm -rf -- "$OUT/runs" "$OUT/validate"
rm -f -- "$OUT"/{summary.txt,env.txt,install.log,pytest.log,run.log,validate.log,report.md,cases.jsonl}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
START=$(now)
DEADLINE=$(awk -v a="$START" -v b="$BUDGET_S" 'BEGIN { printf "%d", a + b }')
# Seconds a step may take: at most CAP, and never so long that RESERVE seconds are not left for the rest.
limit() { awk -v cap="$1" -v reserve="$2" -v end="$DEADLINE" -v t="$(now)" \
    'BEGIN { s = end - t - reserve; if (s > cap) s = cap; if (s < 10) s = 10; printf "%d", s }'; }

SUMMARY=$OUT/summary.txt
FAILED=0
{
    echo "gpu-check of $ROOT, $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname)"
    echo "python: $PYTHON ($(command -v -- "$PYTHON" || echo 'not found'))"
    printf '%-9s %5s %8s  %s\n' step exit seconds note
} >"$SUMMARY"
record() {  # record STEP EXIT SECONDS NOTE
    printf '%-9s %5s %8s  %s\n' "$1" "$2" "$3" "$4" >>"$SUMMARY"
    [[ $2 == 0 ]] || FAILED=1
}
timeout_note() {  # the exit code's meaning where it is timeout's own
    case $1 in
        124) echo " (timed out after $2 s)" ;;
        137) echo " (killed after $2 s)" ;;
        *) echo "" ;;
    esac
}

# ---- 1. packages: one Python call ----
t0=$(now)
if ! command -v -- "$PYTHON" >/dev/null 2>&1; then
    record packages 2 "$(since "$t0")" "no $PYTHON"
    echo "gpu-check: no Python interpreter '$PYTHON' on PATH; set PYTHON to one (Python >= 3.10)" >&2
    exit 2
fi
rc=0
"$PYTHON" - <<'EOF' || rc=$?
import importlib
import sys

if sys.version_info < (3, 10):
    print(f"gpu-check: {sys.executable} is Python {sys.version.split()[0]}; xfbench needs >= 3.10; "
          "set PYTHON to another interpreter", file=sys.stderr)
    sys.exit(2)
missing = []
for name in ("numpy", "pandas", "matplotlib", "scipy", "click", "rich"):
    try:
        importlib.import_module(name)
    except Exception as e:  # not installed, or broken
        missing.append(name if isinstance(e, ModuleNotFoundError) and e.name == name
                       else f"{name} ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})")
if missing:
    print(f"gpu-check: {sys.executable} lacks Python packages xfbench needs: {', '.join(missing)}; "
          "install them or set PYTHON to an interpreter that has them", file=sys.stderr)
    sys.exit(2)
EOF
if [[ $rc != 0 ]]; then
    record packages "$rc" "$(since "$t0")" "missing packages (message on stderr)"
    exit 2
fi
record packages 0 "$(since "$t0")" "numpy pandas matplotlib scipy click rich"

# ---- 2. an NVIDIA GPU? ----
t0=$(now)
why=""
if ! command -v nvidia-smi >/dev/null 2>&1; then
    why="nvidia-smi not found"
elif ! smi=$(timeout 60 nvidia-smi -L 2>&1); then
    why="nvidia-smi -L failed: $(head -n 1 <<<"$smi")"
elif ! grep -q '^GPU ' <<<"$smi"; then
    why="nvidia-smi -L lists no GPU"
fi
if [[ -n $why ]]; then
    record gpu 3 "$(since "$t0")" "$why"
    echo "gpu-check: no NVIDIA GPU on this machine ($why); run it on a GPU host"
    exit 3
fi
record gpu 0 "$(since "$t0")" "$(grep -c '^GPU ' <<<"$smi") GPU(s): $(grep -m 1 '^GPU ' <<<"$smi" | cut -c1-70)"

# ---- 3. install this checkout (entry points: `bench` and the adapters) unless it already is ----
installed() {  # from /, so that the current directory does not put ./harness on sys.path
    (cd / && "$PYTHON" - "$ROOT" <<'EOF'
import importlib.metadata as md
import os
import sys

try:
    import xfbench.harness as harness
except ImportError:
    sys.exit(1)
if os.path.dirname(os.path.realpath(os.path.dirname(harness.__file__))) != os.path.realpath(sys.argv[1]):
    sys.exit(1)  # imports from another checkout or a copy in site-packages
names = {ep.name for ep in md.entry_points(group="xfbench.adapters")}
sys.exit(0 if {"torch", "jax", "numpy"} <= names and list(md.entry_points(group="console_scripts", name="bench"))
         else 1)
EOF
    )
}
pip_install() {
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 timeout "$lim" \
        "$PYTHON" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . "$@" >>"$OUT/install.log" 2>&1
}
t0=$(now)
if installed; then
    echo "skipped: harness already imports from $ROOT, with the bench and adapter entry points" >"$OUT/install.log"
    record install 0 "$(since "$t0")" "skipped: already installed from this checkout"
else
    echo "\$ $PYTHON -m pip install --quiet --no-index --no-deps --no-build-isolation -e ." >"$OUT/install.log"
    lim=$(limit 180 360)
    rc=0
    pip_install || rc=$?
    if [[ $rc != 0 ]] && grep -q externally-managed-environment "$OUT/install.log"; then
        echo "# again, with --break-system-packages (a lent, throw-away machine)" >>"$OUT/install.log"
        rc=0
        pip_install --break-system-packages || rc=$?
    fi
    if [[ $rc == 0 ]] && ! installed; then
        echo "# pip succeeded, but harness does not import from $ROOT with its entry points" >>"$OUT/install.log"
        rc=1
    fi
    record install "$rc" "$(since "$t0")" "install.log$(timeout_note "$rc" "$lim")"
    if [[ $rc != 0 ]]; then
        tail -n 5 "$OUT/install.log" >&2
        echo "gpu-check: cannot install xfbench from $ROOT with $PYTHON (see $OUT/install.log)" >&2
        cat "$SUMMARY"
        exit 4
    fi
fi

# `bench` through the installed entry point: works whether or not its script is on PATH.
BENCH=("$PYTHON" -c "import sys, importlib.metadata as md
eps = list(md.entry_points(group='console_scripts', name='bench'))
if not eps: sys.exit('bench is not installed: pip install -e .')
sys.argv[0] = 'bench'
sys.exit(eps[0].load()())")

# ---- 4. env.txt: the GPU and the framework versions ----
t0=$(now)
rc=0
{
    echo "# nvidia-smi"
    timeout 60 nvidia-smi || echo "(nvidia-smi exited $?)"
    echo
    echo "# $PYTHON: versions (checkout $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'without git'))"
    # jax must not take 75% of the GPU up front (pytest too); bench's workers set their own environment
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "$(limit 90 330)" "$PYTHON" - <<'EOF' || echo "(versions: exit $?)"
import importlib
import platform

print(f"python {platform.python_version()} ({platform.platform()})")
for name in ("numpy", "torch", "jax", "jaxlib", "flax", "optax"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as e:
        print(f"{name}: not importable ({type(e).__name__}: {e})")
try:
    import torch

    print(f"torch: cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}, "
          f"cuda available {torch.cuda.is_available()}"
          + (f", {torch.cuda.get_device_name()} (sm {'.'.join(map(str, torch.cuda.get_device_capability()))})"
             if torch.cuda.is_available() else ""))
except Exception as e:
    print(f"torch cuda: {type(e).__name__}: {e}")
try:
    import jax

    print(f"jax: default backend {jax.default_backend()}, devices {jax.devices()}")
except Exception as e:
    print(f"jax devices: {type(e).__name__}: {e}")
EOF
    echo
    echo "# practical GEMM peak (tests/gpu/gemm_peak.py), the denominator of a case's share of peak"
    for fw in torch jax; do
        XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "$(limit 60 330)" "$PYTHON" tests/gpu/gemm_peak.py "$fw" \
            || echo "(gemm peak $fw: exit $?)"
    done
} >"$OUT/env.txt" 2>&1 || rc=$?
record env "$rc" "$(since "$t0")" "env.txt: $(grep -m 1 '^torch: ' "$OUT/env.txt" | cut -c1-80 || true)"

# ---- 5. pytest -m gpu tests/gpu ----
t0=$(now)
lim=$(limit 180 280)
rc=0
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout -k 15 "$lim" "$PYTHON" -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider >"$OUT/pytest.log" 2>&1 || rc=$?
pnote=$(grep -E '(passed|failed|skipped|error|no tests ran)' "$OUT/pytest.log" | tail -n 1 | tr -d '=' | sed 's/^ *//' | cut -c1-90 || true)
if [[ $rc == 0 && ($pnote != *passed* || $pnote == *skipped*) ]]; then  # a skip here: a framework missed the GPU
    rc=5
    pnote+=" (skips: on a GPU host every test must run)"
fi
record pytest "$rc" "$(since "$t0")" "pytest.log: $pnote$(timeout_note "$rc" "$lim")"

# ---- 6. bench run SUITE (exit 1 = some cases failed: recorded, not fatal) ----
t0=$(now)
lim=$(limit 330 60)
rc=0
timeout -k 30 "$lim" "${BENCH[@]}" run "$SUITE" --out "$OUT/runs" >"$OUT/run.log" 2>&1 || rc=$?
rnote=$(grep -E 'cases recorded' "$OUT/run.log" | tail -n 1 | sed 's/; report:.*//' | cut -c1-80 || true)
# bench exits 0 when cases are skipped (e.g. "CUDA is not available"); on a GPU host that is a failure.
skipped=$("$PYTHON" -c 'import glob, json, sys
print(sum(json.loads(line).get("status") == "skipped" for path in glob.glob(sys.argv[1] + "/*/cases.jsonl")
          for line in open(path) if line.strip()))' "$OUT/runs" 2>/dev/null || echo "?")
if [[ $rc == 0 && $skipped != 0 ]]; then
    rc=1
    rnote+=", $skipped skipped (bench exited 0)"
fi
record run "$rc" "$(since "$t0")" "run.log: $rnote$(timeout_note "$rc" "$lim")"

# ---- 7. bench validate --tiny on the GPU ----
t0=$(now)
lim=$(limit 150 10)
rc=0
# Two models and two optimizers: the whole matrix did not finish in 230 s on an H200 (2026-11-27).
timeout -k 15 "$lim" "${BENCH[@]}" validate --tiny --device cuda --frameworks torch,jax,numpy \
    --models lenet5,gru --optimizers sgd,adam \
    --out "$OUT/validate" >"$OUT/validate.log" 2>&1 || rc=$?
vnote=$(grep -E '^(passed|FAILED) in [0-9]+ s|^(Error|Usage|usage):' "$OUT/validate.log" | tail -n 1 || true)
[[ -n $vnote ]] || vnote=$(grep -v '^[[:space:]]*$' "$OUT/validate.log" | tail -n 1 || true)
record validate "$rc" "$(since "$t0")" "validate.log: $(cut -c1-80 <<<"$vnote")$(timeout_note "$rc" "$lim")"

# ---- 8. collect: at most 8 files in OUTDIR, nothing nested ----
t0=$(now)
shopt -s nullglob
runs=("$OUT"/runs/*/)
shopt -u nullglob
note="no run directory"
if [[ ${#runs[@]} -gt 0 ]]; then
    run_dir=${runs[-1]%/}
    note="from $(basename -- "$run_dir")"
    for f in report.md cases.jsonl; do
        if [[ -f $run_dir/$f ]]; then cp -- "$run_dir/$f" "$OUT/$f"; else note+=", no $f"; fi
    done
fi
if [[ -e $OUT/runs || -e $OUT/validate ]]; then
    keep=$(mktemp -d /tmp/gpu-check.XXXXXX)
    for d in runs validate; do
        if [[ -e $OUT/$d ]]; then mv -- "$OUT/$d" "$keep/$d"; fi
    done
    note+="; run and validation folders moved to $keep"
fi
record collect 0 "$(since "$t0")" "$note"
printf '%-9s %5s %8s  %s\n' total "$FAILED" "$(since "$START")" "$( [[ $FAILED == 0 ]] && echo 'every step passed' || echo 'a step failed: see its log')" >>"$SUMMARY"

# ---- the one-screen summary ----
cat "$SUMMARY"
"$PYTHON" tests/gpu/summarize.py "$OUT" | tee -a "$SUMMARY" || true
exit "$FAILED"
