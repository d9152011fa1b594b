# zerorun: `make run` sets everything up and serves the app; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := webapp/static/vendor/.installed
TRANSLATIONS := webapp/translations
MO_FILES := $(TRANSLATIONS)/zh/LC_MESSAGES/messages.mo $(TRANSLATIONS)/en/LC_MESSAGES/messages.mo
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run setup test lint typecheck pytest bench worker clean translations

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	$(BIN)/python -m webapp.assets
	touch $(NPM_STAMP)

# Compiled message catalogues (not committed): Chinese is the default language.
$(TRANSLATIONS)/%/LC_MESSAGES/messages.mo: $(TRANSLATIONS)/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --use-fuzzy -d $(TRANSLATIONS) -l $* -i $< -o $@

# After changing user-facing strings: refresh the template and both catalogues.
# The agency modules listed give messages the web app translates where it shows them:
# texts marked N_(...), intake errors and cell messages, column headers, record kinds.
ENGINE_MESSAGES := agency/intake.py agency/enterprise.py agency/records.py agency/calendar.py agency/webhooks.py \
	agency/clocks.py
translations: $(STAMP)
	$(BIN)/pybabel extract -F $(TRANSLATIONS)/babel.cfg -k _l -k lazy_gettext -k N_ \
		-k IntakeError -k Message:2 -k Column:2 -k Kind:2 --no-location \
		--sort-output --project zerorun -o $(TRANSLATIONS)/messages.pot webapp $(ENGINE_MESSAGES)
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) --no-fuzzy-matching

setup: $(STAMP) $(NPM_STAMP) $(MO_FILES)
	$(BIN)/zerorun setup

run: setup
	$(BIN)/zerorun serve --with-worker --host $(HOST) --port $(PORT)

worker: setup
	$(BIN)/zerorun worker

lint: $(STAMP)
	$(BIN)/ruff check engine agency webapp tests bench

typecheck: $(STAMP)
	$(BIN)/mypy engine agency

pytest: $(STAMP) $(NPM_STAMP) $(MO_FILES)
	$(BIN)/python -m pytest -n auto --dist loadfile -q

test: setup lint typecheck pytest

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules webapp/static/vendor instance
