"""A task under APPTAINER_MODE=join that outlives its node's holder: the holder (the node's first rank,
which ran the image itself; its environment names it) ends at once, every other task waits until it
is gone and then still reads the image (numpy, a file of the venv). No MPI: plain srun tasks."""

import os
import socket
import sys
import time

if os.environ.get("MPI4PY_KIT_HOLDER"):
    print(f"holder on {socket.gethostname()} ends", flush=True)
    sys.exit(0)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3)
import numpy  # noqa: E402  (imported from the image only after the holder has gone)

with open(os.path.join(sys.prefix, "pyvenv.cfg")) as cfg:
    assert cfg.read(), "empty pyvenv.cfg"
print(f"joined task on {socket.gethostname()} read the image after its holder ended: numpy {numpy.__version__} "
      f"from {sys.prefix}", flush=True)
