# mpi4py-kit: the user interface. Every target is a thin call to scripts/kit,
# which checks the knobs, picks the runtime, prints the exact command and runs it.
# `make` or `make help` lists targets and knobs.

include versions.env

NP       ?= 4## number of MPI ranks
RUNTIME  ?= auto## auto | native | docker | apptainer | srun | cluster (auto: srun in an allocation, apptainer, docker, native)
BASE     ?= $(DEFAULT_BASE)## Debian base of the image: trixie (Open MPI 5) | bookworm (Open MPI 4)
IMAGE    ?=## Docker image (default mpi4py-kit:BASE, built on first use)
SIF      ?= mpi.sif## Apptainer image file for `make sif`
SCRIPT   ?=## your own script for `make run`, under the current directory
ARGS     ?=## arguments passed to the example or SCRIPT
TIMEOUT  ?= 1800## stop a run after this many seconds, naming the ranks still running (0: no limit)
SRUN_MPI ?= pmix## srun --mpi plugin for RUNTIME=srun/cluster (srun --mpi=list shows yours)
QUICK    ?= 0## make bench: 1 for a short run (proves it works; figures not for quoting)
LAUNCH   ?=## make doctor: check your own launch line, e.g. LAUNCH='docker run --rm IMAGE mpiexec -n 2'
CA_CERT  ?=## CA bundle for a TLS-intercepting proxy (default: PIP_CERT if set)
PYTEST_ARGS ?=## extra pytest arguments for `make test`

export NP RUNTIME BASE IMAGE SIF SCRIPT ARGS TIMEOUT CA_CERT SRUN_MPI LAUNCH QUICK PYTEST_ARGS
KIT := python3 scripts/kit
# Example short names, from the one list in scripts/mpikit/config.py.
EXAMPLES := $(shell $(KIT) examples | cut -f1)

.DEFAULT_GOAL := help
.PHONY: help bench doctor image sif cluster-up cluster-down cluster-batch cluster-shell run smoke test lint lock venv clean $(addprefix run-,$(EXAMPLES))

# Known examples get a static pattern rule (phony targets skip implicit rules);
# run-% catches any other name so the kit can say which names exist.
$(addprefix run-,$(EXAMPLES)): run-%:
	@$(KIT) run $*

help: ## show this help
	@echo "usage: make TARGET [KNOB=value ...]"
	@echo
	@echo "targets:"
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'
	@$(KIT) examples | awk -F'\t' '{printf "  %-14s run examples/%s\n", "run-" $$1, $$2}'
	@echo
	@echo "knobs (KNOB=current value):"
	@grep -hE '^[A-Z_]+ +\?=.*## ' $(MAKEFILE_LIST) | sed -E 's/^([A-Z_]+) +\?=[^#]*## (.*)/\1\t\2/' | \
	  while IFS="$$(printf '\t')" read -r k d; do printf "  %-22s %s\n" "$$k=$$(printenv "$$k")" "$$d"; done
	@echo
	@echo "examples: make run-scatter NP=4 | make run SCRIPT=my.py NP=2 ARGS='--n 10' | make test"

run-%: ## run an example: run-rank, run-p2p, run-bcast, run-scatter
	@$(KIT) run $*

run: ## run your own SCRIPT=path.py with NP ranks
	@$(KIT) run --script "$$SCRIPT"

smoke: ## run all four examples under RUNTIME and check their output
	@$(KIT) smoke

bench: ## container vs native in one run: ping-pong, start-up, scatter, image facts -> results/
	@$(KIT) bench

doctor: ## check host and image for RUNTIME: launch 2 ranks, explain each problem and its fix
	@$(KIT) doctor

image: ## build the Docker image for BASE (makes the base image if none can be pulled)
	@$(KIT) image

sif: venv ## build the Apptainer image SIF from Apptainer.def (unprivileged, via spython)
	@.venv/bin/python scripts/kit sif

cluster-up: ## start the test Slurm cluster: controller + 2 nodes, munge, PMIx, Apptainer
	@$(KIT) cluster up

cluster-down: ## remove every container, network and volume the cluster made
	@$(KIT) cluster down

cluster-batch: ## sbatch slurm/example.sbatch (SCRIPT, default scatter) in the test cluster; show its output
	@$(KIT) batch

cluster-shell: ## a login shell on the cluster's controller, as the user hpcuser
	@$(KIT) cluster shell

venv: ## create .venv: the native runtime plus the test tools
	@$(KIT) venv --dev

test: venv ## provision Docker if possible, then run the test suite
	@bash scripts/provision.sh docker
	@.venv/bin/python -m pytest tests $(PYTEST_ARGS)

lint: venv ## ruff, shellcheck and hadolint
	@.venv/bin/python -m pytest tests/test_lint.py $(PYTEST_ARGS)

lock: venv ## refresh the hashes in requirements/*.txt after editing requirements/*.in
	@cd requirements && for f in image native build dev; do \
	  echo "locking requirements/$$f.txt"; \
	  ../.venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	    --no-emit-index-url --no-emit-find-links -o $$f.txt $$f.in || exit 1; done

clean: ## remove .venv, build/ and caches (images and SIF files stay)
	rm -rf .venv build .pytest_cache .ruff_cache tests/__pycache__ scripts/mpikit/__pycache__
