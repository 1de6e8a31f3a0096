"""`--executor ray` where Ray is not installed: one line that says how to install it (no Ray needed here)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_without_ray_the_executor_says_how_to_install_it(tmp_path):
    run = ("import sys; sys.modules['ray'] = None; sys.argv = ['bench'] + sys.argv[1:]; "  # import ray fails
           "from xfbench.harness.cli import main; main()")
    p = subprocess.run([sys.executable, "-c", run, "run", "smoke", "--executor", "ray", "--out", str(tmp_path / "r")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip() == ("error: --executor ray needs Ray, which is not installed; install it with: "
                                "pip install 'xfbench[ray]'")
    assert not (tmp_path / "r").exists()


def test_a_cluster_address_without_the_ray_executor_is_refused(tmp_path):
    p = subprocess.run([sys.executable, "-m", "xfbench.harness.cli", "run", "smoke", "--address", "10.0.0.1:6379",
                        "--out", str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip() == "error: --address goes with --executor ray; add it, or drop the option"
