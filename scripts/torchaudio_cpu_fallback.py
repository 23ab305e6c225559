"""Make torchaudio importable beside a CPU-only torch (run by the Makefile after install).

braindecode imports torchaudio at module level. The only torchaudio on PyPI that pip resolves here
is a CUDA build whose compiled extension fails to load beside CPU torch (``libc10_cuda.so`` missing).
torchaudio falls back to its pure-Python code when the extension files are absent, which is all
braindecode's models use. So: only when torch is a CPU build AND the extension fails to load,
delete ``torchaudio/lib/*.so``. A working torchaudio (e.g. a GPU user's matching build) is left alone.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def main() -> int:
    import torch

    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        return 0
    probe = subprocess.run([sys.executable, "-c", "import torchaudio"], capture_output=True, text=True)
    if probe.returncode == 0:
        return 0
    if torch.version.cuda is not None:
        print(f"torchaudio fails to import beside a CUDA torch; not touching it:\n{probe.stderr[-400:]}",
              file=sys.stderr)
        return 1
    libs = sorted((Path(spec.origin).parent / "lib").glob("*.so"))
    for lib in libs:
        lib.unlink()
    print(f"torchaudio: removed {len(libs)} CUDA extension file(s); using its pure-Python fallback (CPU torch)")
    recheck = subprocess.run([sys.executable, "-c", "import torchaudio, braindecode.models"],
                             capture_output=True, text=True)
    if recheck.returncode != 0:
        print(recheck.stderr[-800:], file=sys.stderr)
    return recheck.returncode


if __name__ == "__main__":
    sys.exit(main())
