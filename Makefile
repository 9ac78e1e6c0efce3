# Transfer Learning Lab -- two commands do everything:
#   make lab    build the environment, fetch the assets, open your workspace (work/) in JupyterLab
#   make test   build the same environment, then run the unit tests and every notebook (nbval)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8888
NB     ?=
GRADE_ARGS ?=
# the student's workspace: solution-free copies of the lessons, created once, never overwritten (git-ignored)
WORK   ?= work
# what JupyterLab keeps outside the repository: checkpoints (File > Revert to checkpoint)
LAB_STATE ?= $(HOME)/.local/state/transfer-lab
LAB_DIR   ?= $(WORK)
LAB_ARGS  ?=

.PHONY: help install assets doctor lab lab-solutions serve-lab workspace test unit notebooks exercises execute student grade lock clean

help:
	@echo "make lab      build everything and open your workspace (work/: lessons without solutions) in JupyterLab"
	@echo "make lab-solutions   open the solution notebooks (notebooks/) in JupyterLab"
	@echo "make test     build everything, run unit tests and every notebook (nbval)"
	@echo "make execute  re-run every notebook in place (committed outputs come from a real run)"
	@echo "make student  write the student notebooks (no solutions, no outputs) to build/student"
	@echo "make grade NB=path/to/submitted.ipynb [GRADE_ARGS=--exercises-only]   score a notebook per exercise"
	@echo "make doctor   report Python, packages, device, cache and assets"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Install the exact versions CI tested (requirements.lock), then labkit itself in editable mode.
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

assets: install
	$(BIN)/python -m labkit fetch

doctor: install
	$(BIN)/python -m labkit doctor

# make lab: add every lesson not yet in $(WORK) (solutions removed), then serve $(WORK). Notebooks already
# there are never overwritten, so answers survive `git pull`; delete one to get a fresh copy.
workspace: install
	$(BIN)/python -m labkit workspace notebooks $(WORK)

lab: assets workspace
	@$(MAKE) --no-print-directory serve-lab LAB_DIR=$(WORK)

# the instructor notebooks, with solutions and the outputs of a real run (for instructors and self-checking)
lab-solutions: assets
	@$(MAKE) --no-print-directory serve-lab LAB_DIR=notebooks

# JupyterLab on LAB_DIR, nothing built first (tests/test_browser.py starts it this way). The course's
# settings (lab-settings/overrides.json: no news or update pop-up) are defaults the user can still change;
# checkpoints go to LAB_STATE, outside the repository.
serve-lab:
	@mkdir -p "$(abspath $(LAB_STATE))/checkpoints/$(notdir $(LAB_DIR))"
	$(BIN)/jupyter lab --notebook-dir="$(LAB_DIR)" --port=$(PORT) \
		--LabApp.app_settings_dir="$(CURDIR)/lab-settings" \
		--FileCheckpoints.checkpoint_dir="$(abspath $(LAB_STATE))/checkpoints/$(notdir $(LAB_DIR))" \
		$(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

unit: assets
	$(BIN)/python -m pytest tests -q -m "not exercises"

notebooks: assets
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -q notebooks

# every exercise: the solution passes its check, the blank student version does not (after the
# notebooks, so the embeddings they cached are reused)
exercises: assets
	$(BIN)/python -m pytest tests -q -m exercises

test: unit notebooks exercises

execute: assets
	cd notebooks && for nb in [0-9]*.ipynb; do \
		echo "== $$nb"; MPLBACKEND=module://matplotlib_inline.backend_inline \
			/usr/bin/time -f "$$nb: %e s wall, %U s user CPU" ../$(BIN)/jupyter nbconvert --to notebook \
			--execute --inplace --ExecutePreprocessor.timeout=900 "$$nb" || exit 1; \
	done

student: install
	$(BIN)/python -m labkit student notebooks build/student

grade: install
	@test -n "$(NB)" || { echo "usage: make grade NB=path/to/notebook.ipynb"; exit 2; }
	$(BIN)/python -m labkit grade "$(NB)" $(GRADE_ARGS)

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^labkit' \
		| sed 's/^torch==2.13.0+cpu/torch==2.13.0/' > requirements.lock.new
	{ echo "# Exact versions tested in CI (Python 3.11, CPU). \`make install\` installs from this file."; \
	  echo "# Regenerate after changing pyproject.toml: make lock"; cat requirements.lock.new; } > requirements.lock
	rm requirements.lock.new

clean:
	rm -rf $(VENV) build .pytest_cache
