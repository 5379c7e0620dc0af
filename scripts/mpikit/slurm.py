"""Reading Slurm's answers, wherever they come from (this node, the test cluster's login node)."""

from __future__ import annotations

import re


def parse_mpi_list(text: str) -> tuple[list[str], list[str]]:
    """`srun --mpi=list` -> (plugin types, specific pmix versions like pmix_v5)."""
    versions = re.findall(r"\bpmix_v\d+\b", text)
    plugins = [line.strip() for line in text.splitlines()
               if re.fullmatch(r"\s*[a-z][a-z0-9_]*\s*", line) and line.strip() not in versions]
    return plugins, sorted(set(versions))
