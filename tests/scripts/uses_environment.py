"""Each rank imports the environment's packages (scipy, pandas, and mpirank, a C extension compiled with the
image's mpicc) and checks that the extension's own MPI_Comm_rank agrees with mpi4py's, and that both use the
same MPI library; rank 0 gathers every rank's report."""

import mpirank
import pandas
import scipy.special
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
assert mpirank.world_rank() == rank, (mpirank.world_rank(), rank)
assert mpirank.library() == MPI.Get_library_version(), "the extension's MPI is not mpi4py's"
frame = pandas.DataFrame({"rank": [rank], "gamma": [scipy.special.gamma(rank + 1)]})
reports = comm.gather((rank, float(frame["gamma"][0]), MPI.Get_processor_name()), root=0)
print(f"rank: {rank} of {size} on {MPI.Get_processor_name()}: scipy {scipy.__version__}, pandas "
      f"{pandas.__version__}, mpirank says rank {mpirank.world_rank()}", flush=True)
if rank == 0:
    assert sorted(r for r, _, _ in reports) == list(range(size))
    assert all(abs(g - scipy.special.factorial(r)) < 1e-9 for r, g, _ in reports)
    print(f"check passed: {size} ranks imported scipy and pandas; mpirank's MPI_Comm_rank matched on every rank "
          f"(hosts: {', '.join(sorted({h for _, _, h in reports}))})", flush=True)
