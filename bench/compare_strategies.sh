#!/usr/bin/env bash
# The README's strategy table: each configuration over SEEDS on configs/demo.yaml, then `cml compare`.
# Usage: bash bench/compare_strategies.sh OUT_PARENT MODEL "SEEDS" [NAME ...]
# Re-running with more seeds continues (--resume skips the finished seeds).
set -euo pipefail
out=${1:?OUT_PARENT}; model=${2:-linear}; seeds=${3:-"0 1 2"}; shift 3 || true
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(finetune joint prs lwf ewc prs+lwf prs+lwf+pseudo)
python=${PYTHON:-python}
buffer="--set strategy.replay.size=200"  # 13% of the demo's 1,500 training images
for name in "${names[@]}"; do
  case $name in
    finetune) sets=() ;;
    joint) sets=(--set strategy.name=joint) ;;
    herding*) sets=(--set "strategy.plugins=[${name//+/,}]" --set strategy.replay.per_class=8) ;;  # 192 <= 200
    *) sets=(--set "strategy.plugins=[${name//+/,}]" $buffer) ;;
  esac
  dir=$out/$model/$name
  resume=(); [ -d "$dir" ] && resume=(--resume)
  # shellcheck disable=SC2086
  $python -m cml run configs/demo.yaml --out "$dir" --seeds $seeds --set model.name=$model "${sets[@]}" "${resume[@]}"
done
dirs=(); for name in "${names[@]}"; do dirs+=("$out/$model/$name"); done
$python -m cml compare "${dirs[@]}" --out "$out/$model.png"
