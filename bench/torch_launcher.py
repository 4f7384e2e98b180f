"""torch's own launcher, ``torch.distributed.run``, ending at once when it has succeeded.

``python -m bench.torch_launcher ARGS`` is ``python -m torch.distributed.run ARGS``: the same argument parsing,
rendezvous, rank processes, monitoring, exit barrier and failure summary. Only after it returns successfully does
the process end without the interpreter's teardown of torch, which takes about a second here while the
configuration waits. A failure still raises out of the launcher, with its summary and exit code unchanged.
"""

from __future__ import annotations

import sys

from torch.distributed.run import main

from bench.child import exit_now

if __name__ == "__main__":
    main(sys.argv[1:])
    exit_now(0)
