#!/usr/bin/env bash
# Trains the four conditioning variants of paper Table 2 (tiny preset) on a synthetic store, two at a time.
#   bash scripts/train_lifting_ablation.sh STORE RUNS_DIR
set -euo pipefail
store=${1:-out/synth_tiny}
runs=${2:-runs/lift_ablation}
hc=${HANDCAST:-.venv/bin/handcast}
c=model.conditioning
train() {  # name overrides...
  local name=$1; shift
  OMP_NUM_THREADS=1 $hc train lift --config tiny --store "$store" --out "$runs/$name" --quiet "$@"
}
train all &
train none $c.camera=false $c.plucker=false $c.kpe=false &
wait
train extrinsics_kpe $c.plucker=false &
train plucker $c.camera=false $c.kpe=false &
wait
