"""DVC stage entry points: `python -m stages.<name>` (dvc.yaml runs them from the project root).

This package runs before any stage imports a library, so the stages' console settings live here.
"""

import os

# Progress bars of steps done within a second (datasets' "Map", "Generating train split") are not
# drawn: tqdm (>= 4.66) reads TQDM_* defaults when it is imported. A user's own TQDM_DELAY wins.
os.environ.setdefault("TQDM_DELAY", "1")
