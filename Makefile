# streamcloud.platform: `make lab` brings the platform up in local Docker containers; `make test`
# runs every check CI runs. Both set up what they need (virtualenv, Docker engine, test images).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Distros every container scenario runs on; MOLECULE_DISTRO picks one for a single `molecule test`.
DISTROS ?= debian12 debian13
# Scenarios (default: every molecule/*/molecule.yml).
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
LAB_DISTRO ?= debian12
COLLECTION_LINK := .build/collections/ansible_collections/streamcloud/platform
STAGE := scripts/stage.sh
# Parallel Molecule runs (scripts/molecule_all.py; never two runs of one scenario at once).
export MOLECULE_JOBS ?= 3
# Where the stages of `make test` record their results for the closing table.
export TEST_SUMMARY ?= $(CURDIR)/.build/test-summary.tsv

.PHONY: help setup venv docker images hosttools lint role-docs sanity unit offline reuse molecule test lab lab-check lab-down build clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(VENV)/.installed $(COLLECTION_LINK) ## Python virtualenv from requirements.txt

$(VENV)/.installed: requirements.txt
	@$(STAGE) venv bash -c 'python3 -m venv $(VENV) && $(VENV)/bin/pip install -q --upgrade pip && $(VENV)/bin/pip install -q -r requirements.txt'
	@touch $@

$(COLLECTION_LINK):
	@mkdir -p $(dir $@) && ln -sfn ../../../.. $@

docker: ## Docker engine (installed and started when missing, as root on Debian/Ubuntu) and the apt cache
	@$(STAGE) docker bash -c '. scripts/lib.sh && ensure_docker && ensure_apt_cache && apt_install openssh-client'

images: docker ## Test images for $(DISTROS)
	@$(STAGE) images scripts/build-images.sh $(DISTROS)

setup: venv images ## Everything the tests and the lab need

lint: venv ## ansible-lint (production), yamllint, ruff, role READMEs current, changelog fragments
	@$(STAGE) yamllint yamllint --strict .
	@$(STAGE) ansible-lint ansible-lint --offline
	@$(STAGE) ruff ruff check .
	@$(STAGE) role-docs scripts/role-docs.sh --check
	@$(STAGE) changelog antsibull-changelog lint

role-docs: venv ## Write each role README's variables section from its meta/argument_specs.yml
	@scripts/role-docs.sh

sanity: venv ## ansible-test sanity on the collection
	@$(STAGE) sanity scripts/sanity.sh

hosttools: ## Host programs the unit tests use (pigz, zstd), installed when missing (as root on Debian/Ubuntu)
	@$(STAGE) hosttools bash -c '. scripts/lib.sh && apt_install pigz zstd'

unit: venv hosttools ## pytest unit tests (tests/unit)
	@$(STAGE) unit pytest -q tests/unit

offline: venv ## Role checks without containers: templates rendered and parsed, bad input, package sources (tests/roles)
	@$(STAGE) offline pytest -q tests/roles

reuse: setup ## The collection tarball installed into an empty directory applies the common role to a fresh container
	@$(STAGE) reuse scripts/reuse-test.sh

RUN_MOLECULE = $(STAGE) molecule $(BIN)/python scripts/molecule_all.py --distros "$(DISTROS)" $(MOLECULE_ALSO) $(SCENARIOS)
molecule: setup ## Every Molecule scenario on every distro in DISTROS (MOLECULE_JOBS at a time)
	@$(RUN_MOLECULE)

# `make test` runs the offline role checks and the reuse test in the Molecule lanes, beside the scenarios,
# and builds the test images in the background while lint, sanity and unit run (a fresh machine spends
# minutes on debootstrap there, mostly waiting on the archive); the build's log is printed when it ends.
test: MOLECULE_ALSO = --also 'offline=pytest -q tests/roles' --also reuse=scripts/reuse-test.sh
test: ## Everything CI runs (every stage, even after a failure), then a table of stages and scenarios
	@mkdir -p .build && : >$(TEST_SUMMARY) && start=$$(date +%s) && rc=0 && \
	  $(MAKE) --no-print-directory venv docker hosttools || rc=$$?; \
	  $(STAGE) images scripts/build-images.sh $(DISTROS) >.build/images.log 2>&1 & images=$$!; \
	  $(MAKE) --no-print-directory -k lint sanity unit || rc=$$?; \
	  wait $$images || rc=$$?; cat .build/images.log >&2; \
	  $(RUN_MOLECULE) || rc=$$?; \
	  scripts/summary.sh $(TEST_SUMMARY) $$(( $$(date +%s) - start )); exit $$rc

build: venv ## Collection tarball (without tests, venvs or caches)
	@ansible-galaxy collection build --force --output-path .build/dist .

lab: venv docker ## The platform in local Docker containers (no AWS); LAB_DISTRO=debian13 for the other image
	@$(STAGE) images scripts/build-images.sh $(LAB_DISTRO)
	@$(STAGE) lab env LAB_DISTRO=$(LAB_DISTRO) ansible-playbook -i inventories/lab playbooks/lab.yml

lab-check: venv ## Check that every URL and port `make lab` printed answers (site, /live/, /files/, FTPS, SFTP)
	@ansible-playbook -i inventories/lab playbooks/lab_check.yml

lab-down: venv ## Remove the lab containers and network
	@ansible-playbook -i inventories/lab playbooks/lab_down.yml

clean: ## Remove the virtualenv and build outputs (images and containers stay)
	rm -rf $(VENV) .build .cache .pytest_cache .ruff_cache
