#!/usr/bin/env bash
# The runs a refactor must leave unchanged: the six demo configurations of the component
# redesign (linear finetune, [prs,lwf,ewc,pseudo], dlfl + herding, srn + ocdm, dr joint, static)
# and the demos of KRT-R, CSC, L3A and MULTI-LANE, seed 0, one thread each.
# Usage: bash bench/same_numbers.sh OUT_PARENT [NAME ...]; then
#        python bench/same_numbers.py BEFORE_PARENT AFTER_PARENT   (exit 1 on any difference)
set -euo pipefail
out=${1:?OUT_PARENT}; shift || true
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(finetune prs-lwf-ewc-pseudo dlfl-herding srn-ocdm dr-joint static krt-r csc l3a multilane)
python=${PYTHON:-python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for name in "${names[@]}"; do
  config=configs/demo.yaml; sets=()
  case $name in
    finetune) ;;
    prs-lwf-ewc-pseudo) sets=(--set "strategy.plugins=[prs,lwf,ewc,pseudo]" --set strategy.replay.size=200) ;;
    dlfl-herding) sets=(--set model.name=dlfl --set "strategy.plugins=[herding]" --set strategy.replay.per_class=8) ;;
    srn-ocdm) sets=(--set model.name=srn --set "strategy.plugins=[ocdm]" --set strategy.replay.size=200) ;;
    dr-joint) sets=(--set model.name=dr --set strategy.name=joint) ;;
    static) sets=(--set scenario.protocol=static) ;;
    krt-r|csc|l3a|multilane) config=configs/demo_${name%-r}.yaml ;;
    *) echo "unknown configuration: $name" >&2; exit 2 ;;
  esac
  [ -f "$out/$name/seed0/results.json" ] && continue
  rm -rf "$out/$name"
  $python -m cml run "$config" --out "$out/$name" --seeds 0 "${sets[@]}" > "$out.$name.log" 2>&1 \
    || { echo "$name failed, see $out.$name.log" >&2; exit 1; }
  echo "$name done"
done
