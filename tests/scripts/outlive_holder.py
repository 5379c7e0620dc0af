"""A task under APPTAINER_MODE=join that outlives its node's holder: the holder (the node's first rank,
which ran the image itself; its environment names it) ends at once, every other task waits until it
is gone and then still reads the image (numpy, a file of the venv). No MPI: plain srun tasks."""

import os
import socket
import sys
import time


def main() -> None:
    if os.environ.get("MPI4PY_KIT_HOLDER"):
        print(f"holder on {socket.gethostname()} ends", flush=True)
        return
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3)
    import numpy  # from the image only after the holder has gone

    with open(os.path.join(sys.prefix, "pyvenv.cfg")) as cfg:
        assert cfg.read(), "empty pyvenv.cfg"
    print(f"joined task on {socket.gethostname()} read the image after its holder ended: numpy "
          f"{numpy.__version__} from {sys.prefix}", flush=True)


if __name__ == "__main__":
    main()
