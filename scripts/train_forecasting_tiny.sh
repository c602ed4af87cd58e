#!/usr/bin/env bash
# Trains the forecasting rows of paper Tables 3 and 5 (tiny preset), two at a time on 2 cores.
#   bash scripts/train_forecasting_tiny.sh STORE IMPUTED_STORE RUNS_DIR [NAME ...]
# STORE: handcast synth --preset tiny; IMPUTED_STORE: handcast impute ... --split diverse_train
# (split diverse_train_imputed). Without NAMEs every row is trained.
set -euo pipefail
store=${1:-out/synth_tiny}
imputed=${2:-out/imputed_tiny}
runs=${3:-runs/forecast_tiny}
shift $(( $# < 3 ? $# : 3 ))
hc=${HANDCAST:-.venv/bin/handcast}
lab="data.train=[{store: null, split: lab_train}]"
lab_imp="data.train=[{store: null, split: lab_train}, {store: $imputed, split: diverse_train_imputed}]"
lab_2d="data.train=[{store: null, split: lab_train}, {store: null, split: diverse_train}]"
train() {  # name overrides...
  local name=$1; shift
  [ -f "$runs/$name/forecast.safetensors" ] && return 0
  OMP_NUM_THREADS=1 $hc train forecast --config tiny --store "$store" --out "$runs/$name" --quiet "$@"
}
declare -A rows=(
  [f_lab]="$lab"
  [f_imputed]="$lab_imp"
  [regressor_3d]="$lab|model.head=regression"
  [regressor_3d_2d]="$lab_2d|model.head=regression|train.reproj=1.0"
  [f_2d_regression_head]="$lab_2d|model.aux2d=regression"
  [f_2d_diffusion_head]="$lab_2d|model.aux2d=diffusion"
  [f_keypoints_imputed]="$lab_imp|model.image=null|model.keypoints=true"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(f_lab f_imputed regressor_3d regressor_3d_2d f_keypoints_imputed f_2d_regression_head f_2d_diffusion_head)
i=0
for n in "${names[@]}"; do
  IFS='|' read -r -a ov <<< "${rows[$n]}"
  train "$n" "${ov[@]}" &
  i=$((i + 1))
  if (( i % 2 == 0 )); then wait; fi
done
wait
