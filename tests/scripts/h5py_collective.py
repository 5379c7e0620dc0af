"""Every rank writes its own slice of one HDF5 dataset collectively (driver="mpio", h5py built against HDF5
with MPI); rank 0 then reads the whole file back, checks every value and removes it. The file lies in $TMPDIR
(the test cluster's shared scratch; /tmp in one container). ARGS: the values per rank."""

import os
import sys

import h5py
import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
per_rank = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"collective-{os.environ.get('SLURM_JOB_ID', 'local')}.h5")
assert h5py.get_config().mpi, "this h5py was built without MPI: driver='mpio' is not there"
with h5py.File(path, "w", driver="mpio", comm=comm) as f:
    dset = f.create_dataset("values", (size * per_rank,), dtype="f8")
    with dset.collective:
        dset[rank * per_rank:(rank + 1) * per_rank] = np.arange(rank * per_rank, (rank + 1) * per_rank, dtype="f8")
hosts = comm.gather(MPI.Get_processor_name(), root=0)
first, last = rank * per_rank, (rank + 1) * per_rank - 1
print(f"rank: {rank} of {size} on {MPI.Get_processor_name()}: wrote values {first}..{last}", flush=True)
if rank == 0:
    with h5py.File(path, "r") as f:
        values = f["values"][:]
    os.remove(path)
    assert values.shape == (size * per_rank,) and np.array_equal(values, np.arange(size * per_rank, dtype="f8"))
    print(f"check passed: {size} ranks wrote one HDF5 file collectively (driver=mpio, h5py {h5py.__version__}, HDF5 "
          f"{h5py.version.hdf5_version}) in {os.path.dirname(path)}; rank 0 read back all {size * per_rank} values "
          f"(hosts: {', '.join(sorted(set(hosts)))})", flush=True)
