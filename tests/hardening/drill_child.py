"""Child process of the crash drills: run the training + export pipeline until SIGKILLed.

Usage: python drill_child.py BASE_URL API_KEY RUN_KEY DEST. Prints `FINISHED <sha256>` if it
is not killed first (the parent kills it when the service sees the chosen request).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hardening_helpers import drill_pipeline  # noqa: E402

base_url, api_key, run_key, dest = sys.argv[1:5]
_, digest = drill_pipeline(base_url, api_key, run_key, Path(dest))
print(f"FINISHED {digest}", flush=True)
