"""Both test layers import the kit's package from scripts/, as scripts/kit does."""

import sys
from pathlib import Path

# The kit writes no bytecode into the checkout (a refused command must change nothing),
# and neither do the tests' own imports of it.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
