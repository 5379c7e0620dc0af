"""Point-to-point latency and bandwidth between ranks 0 and 1, with mpi4py.

Two paths, as users write them: the buffer API (comm.Send/Recv of numpy
arrays, no pickling) and the pickle API (comm.send/recv of bytes objects).
For each message size, rank 0 times batches of round trips; the one-way time
is half a round trip; the figure reported is the median over the batches.
Prints one line per (api, size): `BENCH {json}`.

    mpiexec -n 2 python scripts/mpi/pingpong.py --batches 7
"""

import argparse
import json
import statistics

import numpy as np
from mpi4py import MPI

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--sizes", default="8,65536,1048576,4194304", help="message sizes in bytes")
parser.add_argument("--batches", type=int, default=7, help="timed batches per size (the median is kept)")
parser.add_argument("--seconds", type=float, default=0.2, help="target duration of one batch")
parser.add_argument("--label", default="", help="a tag copied into every result line")
args = parser.parse_args()

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
if comm.Get_size() < 2:
    raise SystemExit("pingpong needs 2 ranks: mpiexec -n 2 python scripts/mpi/pingpong.py")
peer = 1 - rank if rank < 2 else None


def round_trips(api, size, count):
    """Time `count` round trips of `size` bytes between ranks 0 and 1."""
    buf = np.ones(size, dtype=np.uint8)
    obj = bytes(size)
    comm.Barrier()
    start = MPI.Wtime()
    for _ in range(count):
        if api == "buffer":
            if rank == 0:
                comm.Send(buf, dest=peer)
                comm.Recv(buf, source=peer)
            elif rank == 1:
                comm.Recv(buf, source=peer)
                comm.Send(buf, dest=peer)
        else:
            if rank == 0:
                comm.send(obj, dest=peer)
                obj = comm.recv(source=peer)
            elif rank == 1:
                obj = comm.recv(source=peer)
                comm.send(obj, dest=peer)
    return MPI.Wtime() - start


for size in (int(s) for s in args.sizes.split(",")):
    for api in ("buffer", "pickle"):
        round_trips(api, size, 20)  # warm-up: connection set-up, first touch of the buffers
        # Calibrate: enough round trips that a batch lasts about --seconds.
        probe = comm.bcast(round_trips(api, size, 20), root=0)
        count = max(10, int(args.seconds / max(probe / 20, 1e-7)))
        one_way = []
        for _ in range(args.batches):
            elapsed = comm.bcast(round_trips(api, size, count), root=0)
            one_way.append(elapsed / count / 2)
        if rank == 0:
            latency = statistics.median(one_way)
            print("BENCH " + json.dumps({
                "kind": "pingpong", "label": args.label, "api": api, "bytes": size, "count": count,
                "batches": args.batches, "latency_us": latency * 1e6, "bandwidth_MBps": size / latency / 1e6,
                "library": MPI.Get_library_version().split(",")[0].strip().rstrip("\x00"),
            }), flush=True)
