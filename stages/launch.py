"""Start a training stage as DVC's command: plain python for one process, torchrun (DDP) when
`launch.nproc_per_node` or `launch.nnodes` asks for more. Usage: python stages/launch.py stages/pretrain.py"""

import os
import runpy
import sys

from pipeline.config import ConfigError, load_params
from pipeline.distributed import torchrun_command

if __name__ == "__main__":
    script = sys.argv[1]
    try:
        command = torchrun_command(load_params("params.yaml").launch, script)
    except ConfigError as exc:
        sys.exit(f"\n[launch] error: {exc}\n")
    if command is None:
        sys.argv = [script]
        runpy.run_path(script, run_name="__main__")
    else:
        print("[launch]", " ".join(command), file=sys.stderr, flush=True)
        os.execvp(command[0], command)
