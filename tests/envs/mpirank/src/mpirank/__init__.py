"""world_rank(): MPI_Comm_rank(MPI_COMM_WORLD) from C; library(): MPI_Get_library_version from C."""

from mpirank._rank import library, world_rank

__all__ = ["library", "world_rank"]
