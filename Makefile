# handcast: every set-up step lives here, so a fresh machine needs only `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HANDCAST := $(VENV)/bin/handcast
STAMP := $(VENV)/.installed
DEMO := out/demo
EX := src/handcast/assets/examples
JOBS ?= auto

.PHONY: demo test test-fast bench-synth install clean system-deps

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so nothing pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test,detect]"
	touch $(STAMP)

install: $(STAMP)

# Headless OpenGL (EGL on Mesa llvmpipe) for rendering, and headless Chromium for the HTML viewer's test;
# installed only when missing.
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) apt-get
system-deps:
	@pkgs=""; \
	if ! ldconfig -p | grep -q 'libEGL.so.1' || ! ldconfig -p | grep -q 'libEGL_mesa'; then pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri"; fi; \
	if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then pkgs="$$pkgs chromium chromium-driver"; fi; \
	if [ -n "$$pkgs" ]; then echo "installing Debian packages:$$pkgs"; \
		$(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $$pkgs >/dev/null; fi

# The main job: build the tiny synthetic benchmark, score the static-pose baseline, render one clip, and
# (--overwrite: the demo re-runs into its own folder)
# forecast with the shipped tiny models: the image model on a synthetic scene, the keypoint model on a real photo.
demo: $(STAMP)
	$(HANDCAST) synth --preset tiny --out $(DEMO)/store --overwrite
	$(HANDCAST) export-gt --store $(DEMO)/store --split lab_test --out $(DEMO)/gt_lab_test.npz --overwrite
	$(HANDCAST) baseline static --store $(DEMO)/store --split lab_test --out $(DEMO)/pred_static.npz --overwrite
	$(HANDCAST) evaluate --pred $(DEMO)/pred_static.npz --gt $(DEMO)/gt_lab_test.npz --json $(DEMO)/static_lab_test.json --overwrite
	$(HANDCAST) render --store $(DEMO)/store --split lab_test --clip 0 --out $(DEMO)/render --overwrite
	$(HANDCAST) forecast $(EX)/synthetic_scene.png --intrinsics $(EX)/synthetic_scene.K.json --no-detect --out $(DEMO)/forecast_synthetic --overwrite
	$(HANDCAST) forecast $(EX)/real_hand.jpg --keypoints $(EX)/real_hand.keypoints.json --out $(DEMO)/forecast_real --overwrite
	$(HANDCAST) view $(DEMO)/forecast_real/forecast.npz --out $(DEMO)/forecast_real/view.html --overwrite
	@echo "demo outputs in $(DEMO)/"

# the layer contract (pyproject.toml [tool.importlinter], docs/architecture.md), then the whole suite
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n $(JOBS) --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -m "not slow"

bench-synth: $(STAMP)
	$(PY) scripts/bench_synth.py

clean:
	rm -rf $(VENV) out .pytest_cache
