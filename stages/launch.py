"""Start a training stage as DVC's command: plain python for one process, torchrun (DDP) when
`launch.nproc_per_node` or `launch.nnodes` asks for more. Usage: python -m stages.launch stages.pretrain

Stages run as modules (`python -m`) from the project root, so they import this checkout's
`pipeline`, not another copy installed elsewhere.
"""

import os
import runpy
import sys

from pipeline.config import ConfigError, load_params
from pipeline.distributed import torchrun_command

if __name__ == "__main__":
    module = sys.argv[1]
    try:
        command = torchrun_command(load_params("params.yaml").launch, module)
    except ConfigError as exc:  # exit 2, as every stage does for a config error
        print(f"\n[launch] error: {exc}\n", file=sys.stderr)
        sys.exit(2)
    if command is None:
        sys.argv = [module]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        print("[launch]", " ".join(command), file=sys.stderr, flush=True)
        os.execvp(command[0], command)
