#!/usr/bin/env bash
# cml's GPU check: one script for a short GPU slot (one H200, 16 cores, no network, 15 minutes of
# device time in all), finishing within TOTAL_S (default 540 s) and writing as it goes.
#
#   1 facts        python, torch, CUDA, cuDNN, timm, avalanche; GPU, /dev/shm, cores, memory
#   2 correctness  KRT-R (configs/demo_krt.yaml) and prs+lwf+ewc+pseudo online (configs/demo.yaml),
#                  2 steps each, fp16 + channels_last: finite mAP; host syncs per iteration
#   3 resume       a 3-step KRT-R run killed (kill -9) after step 0's checkpoint, --resume,
#                  results.json against an uninterrupted run (exact, or the max difference)
#   4 ceiling      model-only training images/s on device tensors: krt and linear on TResNet-M
#                  224, batch 128, fp16, channels_last; linear ResNet-101 256, batch 20, fp32 (PRS)
#   5 krt-data     KRT-R (configs/coco_b0_c10.yaml, B70-C10: 2 steps) on generated 640x480 COCO
#                  JPEGs, 14 workers, from the JPEGs and from the image cache (and from the JPEGs
#                  with data.num_workers=auto): images/s against 4 (goal: >= 0.9 of it from the cache)
#   6 prs-data     PRS online (configs/cocoseq_prs.yaml: ResNet-101, 256 px) on generated split
#                  files: as shipped (workers auto, no cache) and with data.cache=true
#   7 compile      train.compile off and on (static KRT, from the cache): images/s, fall-back
#
# Each section runs under its own `timeout` (cut to what is left of TOTAL_S) in a child process;
# a failure or a timeout is recorded and the next section runs. Results, as each section ends:
#   $OUT/gpu_check.md     the report        $OUT/gpu_check.jsonl  one JSON object per section
#   $OUT/logs.tar.gz      logs/<section>/: every run's log, epoch record (bench/_gpu_run.py),
#                         results.json and config.yaml; logs/install.log, logs/keys.txt
# Images/s and how each figure was taken: bench/_gpu_rates.py.
#
# On the GPU box (torch, timm, torchmetrics, tensorboard there; avalanche-lib and some of its
# dependencies not, and no network):
#   here, once:  bash bench/gpu_wheels.sh        # the missing wheels into .whl/ (ignored by git)
#   there:       carry [".whl"], timeout_s 600:  OUT=$OUT bash bench/gpu_check.sh
# The script installs .whl/*.whl with --no-deps into $WORK/site, puts it and the repository on
# PYTHONPATH (cml itself is not installed), and writes a stand-in `wandb` module when wandb is
# absent (avalanche imports it at import time; cml never calls it).
#
# Here, on the CPU, in CI-sized time (tests/bench/test_gpu_check.py runs this):
#   DRY=1 bash bench/gpu_check.sh                # OUT defaults to runs/gpu-check-dry
# DRY: test_resnet at 32 px, a few dozen images, one epoch, 1 worker, one thread, no wheels, no
# real compilation (torch._dynamo disabled): it checks the plumbing and the verdicts, not speed.
#
# Environment: OUT, WORK (data, runs, caches; default a new folder under /tmp: never inside OUT,
# whose files travel back), PYTHON (default python3; DRY: .venv/bin/python when present),
# TOTAL_S, SECTIONS (default "s1 s2 s3 s4 s5 s6 s7"), N_TRAIN / N_VAL (section 5's images).
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
DRY=${DRY:-0}

# -- sizes ---------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  TINY=(--set model.backbone=test_resnet --set data.image_size=32 --set eval.batch_size=32)
  SYN=(--set data.synthetic.num_classes=6 --set data.synthetic.train_images=60 --set data.synthetic.test_images=30
       --set data.synthetic.image_size=32 --set train.batch_size=16)
  KRT_TINY=(--set model.options.embed_dim=16)
  HALF=3; THIRD=2; EPOCHS=1; S3_WORKERS=1; WORKERS=1; N_TRAIN=${N_TRAIN:-48}; N_VAL=${N_VAL:-16}
  PER_TASK=8; TEST_PER_TASK=4; COCO_BATCH=(--set train.batch_size=16 --set strategy.replay.per_class=2)
  PRS_BATCH=(--set train.batch_size=4)  # 8 images a task: online mode drops an incomplete batch
  CEILING=(--iterations 2 --repeats 1 --warmup 1); BB=test_resnet; SIZE=32; BATCH=8; PRS_BB=test_resnet; PRS_SIZE=32
  NO_DYNAMO=(--no-dynamo)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # torch's spinning threads on 2 shared cores: up to 40x slower
else
  TINY=(); SYN=(); KRT_TINY=()
  HALF=12; THIRD=8; EPOCHS=2; S3_WORKERS=4; WORKERS=14; N_TRAIN=${N_TRAIN:-3000}; N_VAL=${N_VAL:-500}
  PER_TASK=200; TEST_PER_TASK=50; COCO_BATCH=(); PRS_BATCH=()
  CEILING=(--iterations 20 --repeats 3 --warmup 5); BB=tresnet_m; SIZE=224; BATCH=128; PRS_BB=resnet101.tv_in1k; PRS_SIZE=256
  NO_DYNAMO=()
fi
KRT_EPOCHS=$(( DRY == 1 ? 1 : 3 ))  # section 5: epochs 2-3 of step 0 are the steady state
declare -A TITLE=([s1]="1. Machine facts" [s2]="2. Correctness: KRT-R, prs+lwf+ewc+pseudo online (fp16, channels_last)"
  [s3]="3. Kill -9 and --resume" [s4]="4. Model-only ceiling" [s5]="5. KRT-R from JPEGs and from the cache"
  [s6]="6. PRS online ResNet-101: as shipped and with the cache" [s7]="7. train.compile off and on")
declare -A LIMIT=([s1]=40 [s2]=110 [s3]=130 [s4]=70 [s5]=190 [s6]=110 [s7]=160)

run_cml_group() { "$PY" bench/_gpu_run.py "$@"; }  # bench/_gpu_run.py LOGDIR [opts] -- NAME args --- ...

keep_results() {  # keep_results SECTION RUNDIR... : results.json and config.yaml into the logs
  local s=$1 d; shift
  for d in "$@"; do
    for f in results.json config.yaml; do [ -f "$d/$f" ] && cp "$d/$f" "$LOGS/$s/$(basename "$d").$f"; done
  done
}

ensure_data() {  # the generated COCO folder and PRS split files of sections 5-7
  [ -f "$DATA/.done" ] && return 0
  rm -rf "$DATA" && "$PY" bench/_gpu_data.py "$DATA/coco" --train "$N_TRAIN" --val "$N_VAL" --split-dir "$DATA/splits" \
    --per-task "$PER_TASK" --test-per-task "$TEST_PER_TASK" --workers "$(nproc)" && touch "$DATA/.done"
}

# -- the sections (each runs as `bash gpu_check.sh --section sN` under its own timeout) ---------
s1() { "$PY" bench/_gpu_facts.py "$RES/s1.json" "$WORK"; }

s2() {
  local R=$WORK/runs/s2 common=(--set train.amp=fp16 --set train.channels_last=true --set train.epochs=$EPOCHS
    --set scenario.base=$HALF --set scenario.increment=$HALF "${TINY[@]}" "${SYN[@]}")
  rm -rf "$R"
  run_cml_group "$LOGS/s2" --sync -- \
    krt run configs/demo_krt.yaml --out "$R/krt" "${common[@]}" "${KRT_TINY[@]}" --- \
    prs run configs/demo.yaml --out "$R/prs" "${common[@]}" --set 'strategy.plugins=[prs,lwf,ewc,pseudo]' \
      --set train.online=true --set train.batch_size=10 --set strategy.replay.size=200
  keep_results s2 "$R/krt" "$R/prs"
  "$PY" bench/_gpu_report.py correctness "$RES/s2.json" "krt=$R/krt:$LOGS/s2/krt.json" "prs=$R/prs:$LOGS/s2/prs.json" --steps 2
}

s3() {
  local sets=(--set scenario.base=$THIRD --set scenario.increment=$THIRD --set train.amp=fp16
    --set train.channels_last=true --set train.epochs=$EPOCHS --set data.num_workers=$S3_WORKERS
    "${TINY[@]}" "${SYN[@]}" "${KRT_TINY[@]}")
  # train.deterministic (being added to cml): on where it exists, so that GPU runs can be exact;
  # if torch then refuses an op (no deterministic CUDA kernel), once more without it
  if grep -q '^train.deterministic ' "$LOGS/keys.txt"; then
    s3_once "${sets[@]}" --set train.deterministic=true
    grep -q '"status": "fail"' "$RES/s3.json" && grep -qi 'deterministic' "$LOGS/s3/killed.log" || return 0
    mkdir -p "$LOGS/s3/deterministic"; mv "$LOGS/s3/"{killed,resumed,full,repeat}.* "$LOGS/s3/deterministic/" 2>/dev/null
    DET_NOTE="train.deterministic=true failed ($(grep -i -m1 'deterministic' "$LOGS/s3/deterministic/killed.log" | cut -c 1-160)), so without it"
  fi
  s3_once "${sets[@]}"
}

s3_once() {
  local R=$WORK/runs/s3 note
  rm -rf "$R"; mkdir -p "$R"
  "$PY" -m cml run configs/demo_krt.yaml --out "$R/killed" "$@" > "$LOGS/s3/killed.log" 2>&1 &
  local pid=$! t0=$SECONDS
  while kill -0 $pid 2>/dev/null && [ ! -f "$R/killed/checkpoint.pt" ]; do sleep 0.1; done
  if [ -f "$R/killed/checkpoint.pt" ] && kill -9 $pid 2>/dev/null; then
    note="killed with kill -9 when checkpoint.pt appeared, $(( SECONDS - t0 )) s after its start"
  else
    note="the run ended before its first checkpoint appeared"
  fi
  wait $pid; note+=" (exit $?); steps in its results.json at the kill: $("$PY" -c 'import json,sys
try: print(len(json.load(open(sys.argv[1]))["steps"]))
except Exception: print(0)' "$R/killed/results.json")"
  # Orphaned DataLoader workers hold the run's lock until they notice their parent is gone.
  local t1=$SECONDS
  [ -f "$R/killed/run.lock" ] && flock -w 60 "$R/killed/run.lock" true && note+="; its lock was free $(( SECONDS - t1 )) s after the kill"
  local repeat=(); [ "$DRY" = 1 ] || repeat=(--- repeat run configs/demo_krt.yaml --out "$R/repeat" "$@")
  run_cml_group "$LOGS/s3" -- resumed run configs/demo_krt.yaml --out "$R/killed" --resume "$@" --- \
    full run configs/demo_krt.yaml --out "$R/full" "$@" "${repeat[@]}"
  keep_results s3 "$R/killed" "$R/full" "$R/repeat"
  note+="; $(grep -o 'train.deterministic=true' <<< "$*" || echo "${DET_NOTE:-train.deterministic: not in this cml}")"
  "$PY" bench/_gpu_report.py resume "$RES/s3.json" --full "$R/full" --resumed "$R/killed" \
    ${repeat:+--repeat "$R/repeat"} --note "$note"
}

s4() {
  "$PY" bench/_gpu_ceiling.py "$RES/s4.json" "${CEILING[@]}" --case "krt=krt,$BB,$SIZE,$BATCH,fp16,70,cl" \
    --case "linear=linear,$BB,$SIZE,$BATCH,fp16,70,cl" --case "prs=linear,$PRS_BB,$PRS_SIZE,20,none,70"
}

coco_sets() {  # KRT-R on the generated COCO folder: B70-C10 (2 steps), from scratch
  COCO=(--set data.root="$DATA/coco" --set data.cache_dir="$WORK/cache" --set model.pretrained=false
    --set scenario.base=70 --set scenario.increment=10 --set train.epochs=$KRT_EPOCHS
    --set data.num_workers=$WORKERS "${TINY[@]}" "${KRT_TINY[@]}" "${COCO_BATCH[@]}")
  # data.num_workers: 14 of the 16 cores, by hand; `auto` (at most 8) runs beside it where cml has it
}

s5() {
  local R=$WORK/runs/s5; ensure_data > "$LOGS/s5/data.log" 2>&1 || return 1
  cat "$LOGS/s5/data.log"; coco_sets; rm -rf "$R"
  local auto=() runs=("jpeg=$R/jpeg:$LOGS/s5/jpeg.json" "cache=$R/cache:$LOGS/s5/cache.json")
  if grep -q "^data.num_workers .*'auto'" "$LOGS/keys.txt"; then
    auto=(--- jpeg-auto run configs/coco_b0_c10.yaml --out "$R/jpeg-auto" "${COCO[@]}" --set data.cache=false
      --set data.num_workers=auto); runs+=("jpeg-auto=$R/jpeg-auto:$LOGS/s5/jpeg-auto.json")
  fi
  run_cml_group "$LOGS/s5" -- jpeg run configs/coco_b0_c10.yaml --out "$R/jpeg" "${COCO[@]}" --set data.cache=false --- \
    cache run configs/coco_b0_c10.yaml --out "$R/cache" "${COCO[@]}" --set data.cache=true "${auto[@]}"
  keep_results s5 "$R/jpeg" "$R/cache" "$R/jpeg-auto"
  "$PY" bench/_gpu_report.py throughput "$RES/s5.json" "${runs[@]}" --out "$OUT" --ceiling krt --goal 0.9 \
    --goal-run cache --compare jpeg,cache
}

s6() {
  local R=$WORK/runs/s6 S=$DATA/splits; ensure_data > "$LOGS/s6/data.log" 2>&1 || return 1
  local sets=(--set data.root="$DATA/coco" --set data.cache_dir="$WORK/cache" --set scenario.split_dir="$S"
    --set model.pretrained=false --set eval.groups.majority="$S/major_cats.json"
    --set eval.groups.moderate="$S/moderate_cats.json" --set eval.groups.minority="$S/minor_cats.json" "${TINY[@]}" "${PRS_BATCH[@]}")
  rm -rf "$R"
  run_cml_group "$LOGS/s6" -- shipped run configs/cocoseq_prs.yaml --out "$R/shipped" "${sets[@]}" --- \
    cache run configs/cocoseq_prs.yaml --out "$R/cache" "${sets[@]}" --set data.cache=true
  keep_results s6 "$R/shipped" "$R/cache"
  "$PY" bench/_gpu_report.py throughput "$RES/s6.json" "shipped=$R/shipped:$LOGS/s6/shipped.json" \
    "cache=$R/cache:$LOGS/s6/cache.json" --out "$OUT" --ceiling prs --compare shipped,cache
}

s7() {
  local R=$WORK/runs/s7; ensure_data > "$LOGS/s7/data.log" 2>&1 || return 1
  coco_sets; rm -rf "$R"
  local sets=("${COCO[@]}" --set scenario.protocol=static --set 'strategy.plugins=[]' --set data.cache=true
    --set train.epochs=$(( DRY == 1 ? 1 : 2 )))
  run_cml_group "$LOGS/s7" "${NO_DYNAMO[@]}" -- eager run configs/coco_b0_c10.yaml --out "$R/eager" "${sets[@]}" \
    --set train.compile=false --- compiled run configs/coco_b0_c10.yaml --out "$R/compiled" "${sets[@]}" --set train.compile=true
  keep_results s7 "$R/eager" "$R/compiled"
  "$PY" bench/_gpu_report.py throughput "$RES/s7.json" "eager=$R/eager:$LOGS/s7/eager.json" \
    "compiled=$R/compiled:$LOGS/s7/compiled.json" --out "$OUT" --ceiling krt --compare eager,compiled
}

if [ "${1:-}" = "--section" ]; then  # a child: one section, its output to its log
  "$2"; exit $?
fi

# -- the driver ------------------------------------------------------------------------------------
START=$SECONDS; TOTAL_S=${TOTAL_S:-540}
if [ "$DRY" = 1 ]; then OUT=${OUT:-$REPO/runs/gpu-check-dry}; else OUT=${OUT:-$REPO/runs/gpu-check}; fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$(mktemp -d /tmp/cml-gpu-check.XXXXXX)}; mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd)
case "$WORK/" in "$OUT"/*) echo "WORK ($WORK) must not be inside OUT ($OUT)" >&2; exit 2 ;; esac
if [ -z "${PYTHON:-}" ] && [ "$DRY" = 1 ] && [ -x "$REPO/.venv/bin/python" ]; then PYTHON=$REPO/.venv/bin/python; fi
PY=${PYTHON:-python3}
LOGS=$WORK/logs; RES=$WORK/results; DATA=$WORK/data
rm -rf "$LOGS" "$RES"; mkdir -p "$LOGS" "$RES"; rm -f "$OUT/gpu_check.md" "$OUT/gpu_check.jsonl" "$OUT/logs.tar.gz"
export REPO DRY OUT WORK PY LOGS RES DATA N_TRAIN N_VAL PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CML_CACHE=$WORK/cml-cache
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

install=skipped
if [ "$DRY" != 1 ] && compgen -G ".whl/*.whl" > /dev/null; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
      > "$LOGS/install.log" 2>&1; then install="$(ls .whl/*.whl | wc -l) wheels from .whl/"; else install="FAILED (logs/install.log)"; fi
  export PYTHONPATH=$PYTHONPATH:$WORK/site  # after the repository: one wheel ships a top-level `tests`
fi
if ! "$PY" -c "import wandb" > /dev/null 2>&1; then  # avalanche imports it at import time only
  mkdir -p "$WORK/stub/wandb"
  printf '%s\n' '"""Stand-in written by bench/gpu_check.sh: avalanche imports wandb at import time, cml never uses it."""' \
    '__version__ = "0.0.0+stand-in"' 'def __getattr__(name):' \
    '    raise AttributeError(f"wandb is a stand-in here (bench/gpu_check.sh): no wandb.{name}")' > "$WORK/stub/wandb/__init__.py"
  export PYTHONPATH=$PYTHONPATH:$WORK/stub; install+="; wandb: stand-in"
fi
"$PY" -m cml keys > "$LOGS/keys.txt" 2>&1
{
  echo "# cml GPU check ($([ "$DRY" = 1 ] && echo 'DRY mode: CPU plumbing, tiny sizes, no meaning for speed' || echo 'real mode'))"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(hostname), budget ${TOTAL_S} s; python $PY; wheels: $install"
} > "$OUT/gpu_check.md"

pack_logs() { tar -czf "$OUT/logs.tar.gz.part" -C "$WORK" logs 2>/dev/null && mv "$OUT/logs.tar.gz.part" "$OUT/logs.tar.gz"; }

for s in ${SECTIONS:-s1 s2 s3 s4 s5 s6 s7}; do
  mkdir -p "$LOGS/$s"
  left=$(( TOTAL_S - (SECONDS - START) - 5 )); limit=${LIMIT[$s]}
  (( limit > left )) && limit=$left
  t0=$(date +%s.%N)
  if (( limit < 15 )); then
    echo '{"status": "skip", "summary": "no time left in TOTAL_S", "md": []}' > "$RES/$s.json"; rc=0
  else
    echo "== ${TITLE[$s]} (limit ${limit} s)"
    timeout -k 10 "$limit" bash "$0" --section "$s" > "$LOGS/$s/section.log" 2>&1; rc=$?
  fi
  seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  "$PY" bench/_gpu_report.py append "$OUT" "$RES/$s.json" --section "$s" --title "${TITLE[$s]}" --rc $rc --seconds "$seconds" \
    --tail "$LOGS/$s/section.log"
  tail -n 1 "$OUT/gpu_check.jsonl" | cut -c 1-300
  pack_logs
done
echo "done in $(( SECONDS - START )) s: $OUT/gpu_check.md"
[ -n "${KEEP_WORK:-}" ] || [[ "$WORK" != /tmp/cml-gpu-check.* ]] || rm -rf "$WORK"
