# mpi4py-kit: the user interface. Every target but lint, lock and clean (the
# developer's tools, which run in .venv) is a thin call to scripts/kit, which
# checks the knobs, picks the runtime, prints the exact command and runs it.
# Knobs (NP=4 RUNTIME=docker ...) are declared once, in scripts/mpikit/knobs.py;
# make passes the ones given on its command line to the kit as environment
# variables. `make` or `make help` lists targets and knobs.

KIT := python3 scripts/kit

.DEFAULT_GOAL := help
.PHONY: help bench bench-build bench-curve bench-docs bench-env bind-plan doctor image keypair sign verify sif sbom reproduce \
	reproduce-sif twin pins-check cluster-up cluster-down cluster-batch cluster-shell line run sbatch smoke test \
	test-fast lint lock venv clean shell FORCE

help: ## show this help
	@echo "usage: make TARGET [KNOB=value ...]"
	@echo
	@echo "targets:"
	@grep -hE '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'
	@$(KIT) examples | awk -F'\t' '{printf "  %-14s run examples/%s\n", "run-" $$1, $$2}'
	@echo
	@echo "knobs (KNOB=current value):"
	@$(KIT) knobs
	@echo
	@echo "examples: make run-scatter NP=4 | make run SCRIPT=my.py NP=2 ARGS='--n 10' | make test"

# run-NAME: the kit knows the examples (scripts/mpikit/config.py) and names them
# when NAME is not one. FORCE, not .PHONY (which takes no pattern), so a file
# called run-NAME never makes the run "up to date". No list of examples is read
# here: that cost every make command a second start of Python.
run-%: FORCE ## run an example (listed below)
	@$(KIT) run $*

FORCE:

run: ## run your own SCRIPT=path.py with NP ranks
	@$(KIT) run

line: ## print the full line make run would run for SCRIPT (environment included; runs nothing)
	@$(KIT) line

sbatch: ## print a batch script that runs SCRIPT with the kit's srun line: make sbatch SCRIPT=x.py NP=8 > x.sbatch
	@$(KIT) sbatch

shell: ## a shell in the image (RUNTIME=docker or apptainer; REQUIREMENTS honoured), as make run sees it; COMMAND='...' runs one command instead
	@$(KIT) shell

smoke: ## run every example under RUNTIME and check its output
	@$(KIT) smoke

bench: ## container vs native in one run: ping-pong, start-up, scatter -> results/
	@$(KIT) bench

bench-build: ## what building costs: image and SIF sizes, a rebuild after an edit, a cold build -> results/
	@$(KIT) bench-build

bench-env: ## REQUIREMENTS=...: your environment's SIF against the kit's at start-up, 2 nodes x 2 ranks -> results/
	@$(KIT) bench-env

bench-curve: ## seconds against ranks per node for each APPTAINER_MODE vs bare srun, and where they go -> results/
	@$(KIT) bench-curve

bench-docs: ## copy a full run's results/ to docs/bench/ and regenerate docs/performance.md's tables
	@$(KIT) bench-docs

doctor: ## check host and image for RUNTIME: launch 2 ranks, explain each problem and its fix
	@$(KIT) doctor

bind-plan: ## HOST_MPI=PREFIX: what the bind model binds for the site's MPI, and why (RUNTIME=srun|cluster)
	@$(KIT) bind-plan

keypair: ## KEY=path: a new PEM key pair for signing SIFs (the private key at path, mode 0600; path.pub)
	@$(KIT) keypair

sign: ## KEY=private.pem: sign SIF (make verify checks it; VERIFY_KEY makes every run check it)
	@$(KIT) sign

verify: ## VERIFY_KEY=public.pem: check SIF's signature (unsigned, changed after signing or another key: exit 1)
	@$(KIT) verify

image: ## build the Docker image for BASE (makes the base image if none can be pulled)
	@$(KIT) image

sif: ## build the Apptainer image SIF: from the Docker image where an engine answers, else Apptainer.def (SIF_FROM; cached)
	@$(KIT) sif

sbom: ## the SBOM inside IMAGE (RUNTIME=docker) or SIF (RUNTIME=apptainer): written to results/sbom/, its path printed
	@$(KIT) sbom

reproduce: ## rebuild IMAGE without the build cache under a scratch tag; "identical" or the paths that differ (exit 1)
	@$(KIT) reproduce

twin: ## the SIF made from the image (SIF_FROM=image) against Apptainer.def's build: the same files, or what differs
	@$(KIT) twin

reproduce-sif: ## rebuild the SIF from the same inputs; its root file system against the cached build's
	@$(KIT) reproduce-sif

pins-check: ## check versions.env's Debian pins exist for every PLATFORM, from apt metadata (no build)
	@$(KIT) pins-check

cluster-up: ## start the test Slurm cluster: controller + 2 nodes, munge, PMIx, Apptainer
	@$(KIT) cluster-up

cluster-down: ## remove every container, network and volume the cluster made
	@$(KIT) cluster-down

cluster-batch: ## sbatch --wait make sbatch's script (SCRIPT, default scatter) in the test cluster; show its output
	@$(KIT) batch

cluster-shell: ## a login shell on the cluster's controller, as the user hpcuser
	@$(KIT) cluster-shell

venv: ## create .venv: the native runtime plus the test tools
	@$(KIT) venv

test: ## the whole test suite (installs/starts Docker when it can; container tests skip without it)
	@$(KIT) test

test-fast: ## the unit tests only: the kit's logic, in-process, in seconds
	@$(KIT) test-fast

lint: venv ## ruff, shellcheck and hadolint
	@.venv/bin/python -m pytest tests/integration/test_lint.py $(PYTEST_ARGS)

# With REQUIREMENTS=my.in the kit locks the user's file (docs/environment.md); without, the kit's own.
lock: ## refresh the hashes in requirements/*.txt after editing requirements/*.in; REQUIREMENTS=my.in: lock yours
	@if [ -n "$(REQUIREMENTS)" ]; then $(KIT) lock; else $(MAKE) --no-print-directory venv && \
	  cd requirements && for f in image native build build-abi sbom dev site env-build lock-tools; do \
	  echo "locking requirements/$$f.txt"; \
	  ../.venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	    --no-emit-index-url --no-emit-find-links -o $$f.txt $$f.in || exit 1; done; fi

clean: ## remove .venv, build/ and caches (images, SIF files and the SIF cache stay)
	rm -rf .venv build .pytest_cache .ruff_cache .hypothesis
	find scripts tests -name __pycache__ -prune -exec rm -rf {} +
