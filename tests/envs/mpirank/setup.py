"""The extension is compiled with $CC, which the kit's environment build points at the image's mpicc."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mpirank._rank", ["src/mpirank/_rank.c"])], package_dir={"": "src"},
      packages=["mpirank"])
