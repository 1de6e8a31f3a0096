"""report.html opened from disk in headless Chromium, offline: every image loads, the verdict table shows.

CI installs Chromium in .ci/run (apt-get install chromium); elsewhere the test skips if it is absent.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xfbench.harness.report.write import write_reports

FIXTURE = Path(__file__).parent / "fixtures" / "run-small"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if shutil.which(n)), None)

# Appended to a copy of the page (never to the report itself): runs after every image has loaded or
# failed, and writes what it found into the DOM that --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const v = document.getElementById("verdict");
  const box = v ? v.getBoundingClientRect() : {width: 0, height: 0};
  const style = v ? getComputedStyle(v) : {visibility: "hidden", display: "none"};
  const out = document.createElement("pre");
  out.id = "xfbench-probe";
  out.textContent = JSON.stringify({
    images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
    verdict_visible: box.width > 0 && box.height > 0 && style.visibility === "visible" && style.display !== "none",
    verdict_rows: v ? v.rows.length : 0,
    network: performance.getEntriesByType("resource").map(e => e.name).filter(n => !n.startsWith("data:")),
  });
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs it: apt-get install chromium)")
def test_report_html_in_headless_chromium(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    write_reports(run)
    page = tmp_path / "probe.html"  # elsewhere than the run directory: the page must not need its files
    page.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: a page that needs it would show it
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", "--virtual-time-budget=10000",
           "--dump-dom", page.as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="xfbench-probe">(.*?)</pre>', p.stdout, re.S)
    assert m, f"no probe result; exit {p.returncode}, stderr tail: {p.stderr[-2000:]}"
    probe = json.loads(m.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert probe["images"] == 7 and probe["loaded"] == 7, probe  # the heat map and six plots
    assert probe["verdict_visible"] and probe["verdict_rows"] == 4, probe  # header + jax, torch, tensorflow
    assert probe["network"] == [], probe
