"""Builds the images a test cluster runs (the Apptainer helper and the node image), without starting it:
the test session runs this in the background for the forky cluster, whose tests come last
(tests/integration/conftest.py, PREBUILDS); make cluster-up CLUSTER=forky then finds them up to date.

    python tests/scripts/cluster_images.py NAME
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

# The kit's own modules, from the path set just above.
from mpikit import cluster

if __name__ == "__main__":
    print(f"built {cluster.build_images(sys.argv[1])}")
