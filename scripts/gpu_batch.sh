#!/usr/bin/env bash
# Runs several scripts/gpu_sbn.py trainings side by side on one lent GPU, for SECONDS each, and packs each one's
# best weights, meta.json, history.csv and log into $OUT/NAME.tar (the device tool brings back at most 8 files of
# 16 MiB: at most 8 jobs). Maintainers' tool; runs on the device machine (JAX, no TensorFlow).
#   bash scripts/gpu_batch.sh SECONDS [JOBS_FILE]      (default scripts/gpu_jobs.txt; '#' lines are comments)
# A job line is `NAME ARGS...`: NAME names the recipe it is imported into here afterwards
# (zoo/recipes/NAME.json or recipes/NAME.json), ARGS are `gpu_sbn.py train` arguments. Then, here, for each NAME:
#   tar -xf DIR/NAME.tar -C ../gpu-runs/NAME && python scripts/gpu_sbn.py import ../gpu-runs/NAME RECIPE ../runs/NAME
set -uo pipefail
seconds=${1:?usage: scripts/gpu_batch.sh SECONDS [JOBS_FILE]}
jobs_file=${2:-scripts/gpu_jobs.txt}
out=${OUT:-/tmp/gpu-out}
work=/tmp/gpu-batch
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # several JAX processes share the GPU's memory
names=()
while read -r name args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  names+=("$name")
  # shellcheck disable=SC2086  # ARGS are words
  python3 scripts/gpu_sbn.py train --data .gpu/bmnist.npz --seconds "$seconds" --eval-every 10 \
    --out "$work/$name" $args > "$work/$name.log" 2>&1 &
done < "$jobs_file"
if (( ${#names[@]} > 8 )); then echo "at most 8 jobs (the files that come back); got ${#names[@]}" >&2; fi
wait
for name in "${names[@]}"; do
  cp "$work/$name.log" "$work/$name/log.txt" 2>/dev/null
  tar -cf "$out/$name.tar" -C "$work/$name" best.npz meta.json history.csv log.txt 2>/dev/null \
    || echo "$name: no result (see its log below)"
  echo "== $name"; grep -v '^epoch' "$work/$name.log" | tail -n 3; grep '^epoch' "$work/$name.log" | tail -n 1
done
