"""mpikit: builds the image and launches MPI ranks under every runtime.

The Makefile and the tests both call this package (through scripts/kit), so
what is tested is what users run.
"""
