"""benchmarks/gpu_check.py runs end to end on the CPU with --dry-run (tiny architectures): every section writes
its JSON as it finishes, and the out-of-memory section's run completes after splitting."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def test_the_gpu_check_runs_dry_on_the_cpu_and_reports_each_section(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--flux", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sections = {path.stem: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}
    assert set(sections) == {"sd15", "sdxl", "oom", "flux"}
    sd15 = sections["sd15"]
    assert sd15["auto_batch_size"] in sd15["probe"]["sizes"] and sd15["batch_1_s_per_image"] > 0
    assert sd15["probe"]["sizes"][:2] == [1, 2] and sd15["engine_over_loop"] > 0
    oom = sections["oom"]
    assert oom["simulated"] and oom["ok"] == oom["images"] == 16 and oom["sizes_used"] == [2] and oom["splits"] == [3]
    assert [row["config"] for row in sections["flux"]["table"]] == ["baseline", "first_block_cache=10.0",
                                                                    "mag_cache=10.0"]  # fmt: skip
    assert oom["ran_out"] and "out of memory (simulated): 16/16 images made" in done.stdout
    assert "arch/tiny-flux baseline" in done.stdout and "failed" not in done.stdout
