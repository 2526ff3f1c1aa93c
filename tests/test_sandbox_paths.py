"""The sandbox keeps import paths that live under /tmp (CI clones, virtualenvs there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob
code = "def solution():\\n    import tmp_helper_mod\\n    return tmp_helper_mod.VALUE"
write = "def solution():\\n    open(%r, 'w').write('x')\\n    return 1" % (sys.argv[1] + '/new.txt')
with Sandbox(workers=1) as sb:
    r = sb.run([SandboxJob(id="a", code=code), SandboxJob(id="b", code=write)])
print(json.dumps([[x.status, x.result, x.error] for x in r]))
"""


def test_module_under_tmp_is_importable_but_read_only(tmp_path: Path) -> None:
    assert str(tmp_path).startswith("/tmp/")
    (tmp_path / "tmp_helper_mod.py").write_text("VALUE = 42\n")
    tmp_path.chmod(0o755)  # as a checkout or virtualenv directory is; pytest makes it 0700
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        # The sandbox's own interpreter gets the directory on its sys.path, as a virtualenv's
        # site-packages would be.
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    (status_a, result_a, error_a), (status_b, _, _) = json.loads(proc.stdout.splitlines()[-1])
    assert (status_a, result_a) == ("ok", 42), error_a
    assert status_b == "error"
    assert not (tmp_path / "new.txt").exists()
