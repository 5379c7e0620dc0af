"""A task under APPTAINER_MODE=join that outlives its node's holder: the holder (the node's first rank,
which ran the image itself; its environment names it) ends as soon as every other task of its node has
joined it, every other task waits until it is gone and then still reads the image (numpy, a file of the
venv). No MPI: plain srun tasks.

The holder waits for the others to have joined (each leaves a mark in the node's /tmp, which the image
shares with the node): ending at once, on a loaded machine a task that started late found no holder and
became one itself, which is join working as meant, but not what this test looks at."""

import os
import socket
import sys
import time


def main() -> None:
    marks = f"/tmp/outlive-holder-{os.environ.get('SLURM_JOB_ID', '0')}.{os.environ.get('SLURM_STEP_ID', '0')}"
    os.makedirs(marks, exist_ok=True)
    if os.environ.get("MPI4PY_KIT_HOLDER"):
        others = int(os.environ.get("SLURM_NTASKS_PER_NODE", "1")) - 1
        deadline = time.monotonic() + 60
        while len(os.listdir(marks)) < others and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"holder on {socket.gethostname()} ends", flush=True)
        return
    open(os.path.join(marks, str(os.getpid())), "w").close()
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3)
    import numpy  # from the image only after the holder has gone

    with open(os.path.join(sys.prefix, "pyvenv.cfg")) as cfg:
        assert cfg.read(), "empty pyvenv.cfg"
    os.remove(os.path.join(marks, str(os.getpid())))
    try:
        os.rmdir(marks)  # the node's last task
    except OSError:
        pass
    print(f"joined task on {socket.gethostname()} read the image after its holder ended: numpy "
          f"{numpy.__version__} from {sys.prefix}", flush=True)


if __name__ == "__main__":
    main()
