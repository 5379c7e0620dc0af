"""The smallest MPI job: init, barrier, finalize. Timed from outside (the wall
time of the whole launch) to measure the start-up cost of a runtime."""

from mpi4py import MPI

MPI.COMM_WORLD.Barrier()
