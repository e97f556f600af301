# Dog-breed classifier: SageMaker bring-your-own-container algorithm.
# `make help` lists the targets.
#
# Variables that name a path or a resource are set here with `=`, never `?=`: make takes them from
# its command line (`make demo WORK=/data/run`), never from an environment variable that happens to
# share the name (many systems set $WORK or $TAG). `make clean` removes only paths inside this checkout.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON = python3
VENV = .venv
PY := $(VENV)/bin/python
# This machine's pip configuration names local index folders that may not exist: drop that noise.
QUIET_PIP := 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
# Data for `make demo`: a zip, a folder or a URL in the dogImages layout.
# Empty: the Udacity dogImages.zip (1.1 GB download).
DATA = $(wildcard ../shared/data/dogs120-90px.zip)
WORK = work
# Photos `make demo` sends to its endpoint, and the port it serves on.
DEMO_PHOTOS = $(wildcard ../shared/data/sample-images/*.jpg)
DEMO_PORT = 8080
# `make demo` (orchestration/demo.py): with ImageNet weights, head-only tuning and training on the
# frozen backbone's cached 224 px features; without them, from scratch at small sizes. DEMO_TRIALS=0
# skips the tuning; DEMO_HP adds NAME=VALUE hyperparameters over the workflow's own.
DEMO_TRIALS ?= 4
DEMO_HP ?=

# The image: `make build push`. IMAGE is the local name; REGISTRY=host[:port] pushes there instead
# of Amazon ECR. Build arguments (see docker/Dockerfile) pass through when given: BASE_IMAGE,
# CUDA_COMPAT, PRETRAINED_WEIGHTS; BUILD_FLAGS adds engine flags (e.g. --isolation chroot).
IMAGE = dogbreed:latest
REPOSITORY = dogbreed
TAG = latest
REGISTRY =
export BASE_IMAGE CUDA_COMPAT PRETRAINED_WEIGHTS BUILD_FLAGS RUN_FLAGS ENGINE

.PHONY: help install test check test-unit test-e2e test-container lint demo serve predict lock clean docs \
        build push base-standin local-train local-serve bench-install

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

install: $(VENV)/.installed  ## create the virtual environment (system packages included)

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml container/pyproject.toml
	bash .ci/system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt $(QUIET_PIP)
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt $(QUIET_PIP)
	$(PY) -m pip install --quiet --no-deps -e ./container -e . $(QUIET_PIP)
	touch $@

# Only for bench/serve_vs_torchserve.py: TorchServe into the venv (pinned, nothing of requirements.txt
# changed) and Java 17 when `java` is missing (as root). The image and the tests never need them.
bench-install: install  ## TorchServe 0.12 and Java 17 for bench/serve_vs_torchserve.py
	bash .ci/system-packages.sh java=openjdk-17-jre-headless
	$(PY) -m pip install --quiet -c requirements.txt -r bench/requirements-torchserve.txt $(QUIET_PIP)

lint: install  ## ruff, and the layers (import-linter: pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

# Tests run in parallel processes (pytest-xdist), one per core, at most TEST_JOBS_MAX; an idle
# worker takes tests queued for a busy one (worksteal), so a few long tests do not leave a core idle.
TEST_JOBS ?= auto
TEST_JOBS_MAX ?= 4
PARALLEL = -n $(TEST_JOBS) --maxprocesses $(TEST_JOBS_MAX) --dist worksteal

test: install lint  ## every test: unit, end-to-end, then the image in a container engine
	$(PY) -m pytest $(PARALLEL) tests/unit tests/e2e
	$(MAKE) --no-print-directory test-container

check: install lint  ## the fast loop (a few minutes): unit tests and the end-to-end tests not marked slow
	$(PY) -m pytest $(PARALLEL) -m "not slow" tests/unit tests/e2e

test-unit: install  ## the fast unit tests only
	$(PY) -m pytest $(PARALLEL) tests/unit

test-e2e: install  ## the end-to-end tests only
	$(PY) -m pytest $(PARALLEL) tests/e2e

test-container: install  ## build the image (stand-in base offline), train, serve, push to a local registry
	bash .ci/container-engine.sh
	BUILDAH_ISOLATION=chroot $(PY) -m pytest -s -v tests/container

build:  ## build the image with docker (if its daemon answers) or podman: IMAGE=dogbreed:latest
	docker/build.sh $(IMAGE)

push: install  ## push the image to Amazon ECR (account/region of the AWS configuration), or REGISTRY=host:port
	$(PY) -m orchestration.registry $(IMAGE) --repository $(REPOSITORY) --tag $(TAG) $(if $(REGISTRY),--registry $(REGISTRY))

base-standin:  ## build the local stand-in base image (offline machines; needs root and debootstrap)
	PIP="$(PY) -m pip" docker/standin-base.sh

local-train: install  ## train in the image on the generated local_test/test_dir (docker run -v ...:/opt/ml IMAGE train)
	local_test/train_local.sh $(IMAGE)

local-serve:  ## serve local_test/test_dir's model from the image on port 8080 (docker run -p 8080:8080 ... serve)
	local_test/serve_local.sh $(IMAGE)

demo: install  ## the main job, locally: data, tuning, training with the debugger, report, endpoint (DATA=...)
	$(PY) -m orchestration.demo --workdir $(WORK) $(if $(DATA),--data "$(DATA)") --trials $(DEMO_TRIALS) \
	    --port $(DEMO_PORT) --image $(IMAGE) $(addprefix --hp ,$(DEMO_HP)) $(if $(DEMO_PHOTOS),--photos $(DEMO_PHOTOS))

serve: install  ## serve a model on port 8080 (MODEL=folder; default: the newest under work/runs)
	local_test/serve_model.sh $(MODEL)

predict:  ## send a photo to the server on port 8080 (either kind): make predict PHOTO=dog.jpg
	local_test/predict.sh "$(PHOTO)"

lock:  ## re-resolve requirements.in into requirements.txt (needs the package registries)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	.lock-venv/bin/pip install --quiet --no-deps -r requirements-nodeps.txt
	{ echo "# Generated by \`make lock\` from requirements.in: every package pinned. Do not edit by hand."; \
	  echo "# (and installed with requirements-nodeps.txt, whose packages are left out here)"; \
	  .lock-venv/bin/pip freeze | grep -v -i -x -f <(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1==.*/p' requirements-nodeps.txt); \
	  } > requirements.txt
	rm -rf .lock-venv

clean:  ## remove the virtual environment and the work folder (only inside this checkout)
	@for path in $(VENV) $(WORK); do \
	  case "$$(realpath -m "$$path")/" in \
	    "$(CURDIR)"/?*/) echo "rm -rf $$path"; rm -rf "$$path" ;; \
	    *) echo "clean: $$path is not inside $(CURDIR): left alone" >&2 ;; \
	  esac; \
	done

docs: install  ## regenerate docs/reference.md's generated sections (hyperparameters, metrics, rules)
	$(PY) -m orchestration.docs
