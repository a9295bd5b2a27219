#!/usr/bin/env bash
# The README's methods table: KRT-R, POD-R, CSC, L3A and MULTI-LANE beside finetune, joint and
# prs+lwf (linear) on the demo's scenario, over SEEDS, then `cml compare`.
# Usage: bash bench/compare_methods.sh OUT_PARENT "SEEDS" [NAME ...]
# Seeds run one at a time over every configuration, so an interrupted command leaves whole
# seeds; re-running continues (--resume skips the finished runs).
set -euo pipefail
out=${1:?OUT_PARENT}; seeds=${2:-"0 1 2"}; shift 2 || true
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(finetune joint prs+lwf krt-r pod-r csc l3a multilane)
python=${PYTHON:-python}
for seed in $seeds; do
  for name in "${names[@]}"; do
    config=configs/demo.yaml; sets=()
    case $name in
      finetune) ;;
      joint) sets=(--set strategy.name=joint) ;;
      prs+lwf) sets=(--set "strategy.plugins=[prs,lwf]" --set strategy.replay.size=200) ;;
      krt-r) config=configs/demo_krt.yaml ;;
      pod-r) sets=(--set "strategy.plugins=[herding,pod]" --set strategy.replay.per_class=8
                   --set strategy.replay.relabel=true --set strategy.replay.mix=concat) ;;
      csc|l3a|multilane) config=configs/demo_$name.yaml ;;
      *) echo "unknown configuration: $name" >&2; exit 2 ;;
    esac
    dir=$out/$name
    [ -f "$dir/seed$seed/results.json" ] && $python -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(len(r['steps']) != r['n_steps'])" "$dir/seed$seed/results.json" && continue
    resume=(); [ -d "$dir/seed$seed" ] && resume=(--resume)
    start=$(date +%s)
    $python -m cml run "$config" --out "$dir" --seeds "$seed" "${sets[@]}" "${resume[@]}"
    echo "$name seed $seed: $(( $(date +%s) - start )) s" | tee -a "$out/wall_times.txt"
  done
done
dirs=(); for name in "${names[@]}"; do dirs+=("$out/$name"); done
$python -m cml compare "${dirs[@]}" --out "$out/methods.png"
