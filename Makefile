# Factory relay: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CONSOLE_ORIGINS := http://127.0.0.1:8000,http://localhost:8000
CONSOLE_RELAY_URL := ws://127.0.0.1:8001/ws

.DEFAULT_GOAL := help
.PHONY: help install run test lint migrate bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED) ## Create .venv and install the project with its dev tools

.env:
	@$(PYTHON) -c 'import secrets; print("JWT_SECRET=" + secrets.token_urlsafe(32))' > .env
	@echo "CORS_ORIGINS=$(CONSOLE_ORIGINS)" >> .env
	@echo "RELAY_PUBLIC_URL=$(CONSOLE_RELAY_URL)" >> .env
	@chmod 600 .env
	@echo "wrote .env with a random JWT_SECRET"

run: $(INSTALLED) .env ## Start the auth service (:8000), the relay (:8001) and a simulated factory
	@grep -q '^CORS_ORIGINS=' .env || echo "CORS_ORIGINS=$(CONSOLE_ORIGINS)" >> .env
	@grep -q '^RELAY_PUBLIC_URL=' .env || echo "RELAY_PUBLIC_URL=$(CONSOLE_RELAY_URL)" >> .env
	$(BIN)/auth-service migrate
	$(BIN)/auth-service demo-users
	@echo "operator console: http://127.0.0.1:8000/console/ (Ctrl-C stops everything)"
	@$(BIN)/python -m devtools.supervise \
	  "auth=env PORT=8000 $(BIN)/auth-service serve" \
	  "relay=env PORT=8001 $(BIN)/relay-service" \
	  "bridge=sh -c 'sleep 2 && exec $(BIN)/factory-bridge'"

test: $(INSTALLED) ## Run every test (real PostgreSQL and Redis where reachable)
	$(BIN)/pytest

lint: $(INSTALLED) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared auth_service relay_service relay_client migrations tests bench devtools

migrate: $(INSTALLED) .env ## Apply the database migrations (DATABASE_URL or the SQLite default)
	$(BIN)/auth-service migrate

bench: $(INSTALLED) ## Run the benchmarks under bench/ and print their figures
	$(BIN)/python -m bench

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
