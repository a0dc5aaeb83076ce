"""torchrun worker of tests/agent/test_distributed.py (not a test module): ``agent.train.main`` on the
arguments, then the names of the gloo threads still alive in this process, printed for the test.

A gloo worker thread alive at interpreter exit can abort a finished run (see agent.distributed.shutdown).
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.train import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    threads = [task.joinpath("comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]
    print(f"gloo threads after main: {sorted(name for name in threads if 'gloo' in name)}", flush=True)
    sys.exit(code)
