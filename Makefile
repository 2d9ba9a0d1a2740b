# fgvu: `make demo` runs the whole pipeline on synthetic data; `make test` runs the tests.
# Both create .venv on first use (pip takes the pinned torch from the local wheel cache).

PY      := .venv/bin/python
STAMP   := .venv/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

DEMO    ?= demo
CACHE   ?= $(DEMO)/caches/aff-wild2
TASK    ?=
SEEDS   ?= 5
JOBS    ?= 2
ABLATIONS_OUT ?= results/ablations-$(notdir $(CACHE))

.PHONY: venv demo test ablations bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	.venv/bin/fgvu demo --out $(DEMO)

test: $(STAMP)
	.venv/bin/pytest -q -n 2 --durations=15

ablations: $(STAMP)  ## the ablation grid with stats, tables, plots; CACHE=… TASK=va|violence GRID=… EPOCHS=…
	@test -f $(CACHE)/cache.json || $(MAKE) demo
	.venv/bin/fgvu ablations $(CACHE) --out $(ABLATIONS_OUT) --seeds $(SEEDS) --jobs $(JOBS) \
	  $(if $(TASK),--task $(TASK)) $(if $(GRID),--grid $(GRID)) $(if $(EPOCHS),--epochs $(EPOCHS))

bench: $(STAMP)
	$(PY) benchmarks/bench_loader.py
	$(PY) benchmarks/bench_decode.py
	$(PY) benchmarks/bench_extract.py
	$(PY) benchmarks/bench_scaleout.py
	$(PY) benchmarks/bench_encoders.py --quick
	$(PY) benchmarks/bench_captioner.py
	$(PY) benchmarks/bench_stream.py
	$(PY) benchmarks/bench_audio.py
	$(PY) benchmarks/bench_stage2_scale.py
	$(PY) benchmarks/bench_verify.py
	$(PY) benchmarks/bench_damage.py

clean:
	rm -rf $(DEMO) results .pytest_cache
