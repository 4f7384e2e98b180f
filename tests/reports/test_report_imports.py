"""``reports`` and the commands built on it never import a framework: they must work where neither is installed."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import reports, reports.compare, reports.frame, reports.markdown, reports.plots, reports.table
import cli
folder = sys.argv[1]
codes = [cli.main(["show", folder]), cli.main(["report", folder]), cli.main(["compare", folder, folder]),
         cli.main(["export", folder, "--format", "json"])]
assert codes == [0, 0, 0, 0], codes
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "tensorflow", "keras", "jax"))
print("FRAMEWORKS:", loaded)
"""


def test_reports_and_its_commands_import_no_framework(mixed_run):
    completed = subprocess.run([sys.executable, "-c", PROBE, str(mixed_run)], cwd=REPO, capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "FRAMEWORKS: []"
    assert (mixed_run / "report.md").exists()
