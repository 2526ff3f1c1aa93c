"""The sandbox keeps allowed packages importable when they live under /tmp (CI clones and
their virtualenvs often do), read-only, while everything beside them stays hidden."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mpmath

SCRIPT = """
import json, sys
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob
site = sys.argv[1]
jobs = [
    # mpmath.tests is not imported by `import mpmath`: a lazy import from the /tmp copy
    "import mpmath, mpmath.tests\\ndef solution(site):\\n"
    "    return [mpmath.__file__, mpmath.tests.__name__]",
    "import sibling_module\\ndef solution(site):\\n    pass",
    "def solution(site):\\n    return open(site + '/sibling_module.py').read()",
    "import os\\ndef solution(site):\\n    return os.listdir(site)",
    "def solution(site):\\n    open('/python/site/mpmath/new.py', 'w').write('x')",
]
with Sandbox(workers=1) as sb:
    assert sb.isolation == "full", sb.isolation
    r = sb.run([SandboxJob(id=str(i), code=c, kwargs={"site": site}) for i, c in enumerate(jobs)])
print(json.dumps([[x.status, x.result, x.error] for x in r]))
"""


def test_allowed_package_under_tmp_is_importable_read_only_and_its_siblings_hidden(
    tmp_path: Path,
) -> None:
    assert str(tmp_path).startswith("/tmp/")
    site = tmp_path / "site"
    shutil.copytree(Path(mpmath.__file__).parent, site / "mpmath")
    (site / "sibling_module.py").write_text("KEY = 'sk-sibling-secret'\n")
    for path in (tmp_path, site):
        path.chmod(0o755)  # as a checkout or virtualenv directory is; pytest makes it 0700
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        # the sandbox's interpreter imports mpmath from the copy, as from a virtualenv there
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    lazy, sibling, read, listing, write = json.loads(proc.stdout.splitlines()[-1])
    assert lazy[:2] == ["ok", ["/python/site/mpmath/__init__.py", "mpmath.tests"]], lazy
    assert sibling[0] == "error" and sibling[2].startswith("ModuleNotFoundError"), sibling
    assert read[0] == "error" and read[2].startswith("FileNotFoundError"), read
    assert listing[0] == "error" and listing[2].startswith("FileNotFoundError"), listing
    assert write[0] == "error" and write[2].startswith("OSError: [Errno 30]"), write
    assert not (site / "mpmath" / "new.py").exists()
