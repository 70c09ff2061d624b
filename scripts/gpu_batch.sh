#!/usr/bin/env bash
# Runs several scripts/gpu_sbn.py trainings side by side on one lent GPU, for SECONDS each, and packs each one's
# best weights, meta.json, history.csv and log into $OUT/results-N.tar (the device tool brings back at most 8 files
# of 16 MiB: the results fill tars of up to 15 MiB in turn). Maintainers' tool; runs on the device machine (JAX, no TensorFlow).
#   bash scripts/gpu_batch.sh SECONDS [JOBS_FILE]      (default scripts/gpu_jobs.txt; '#' lines are comments)
# A job line is `NAME ARGS...`: NAME names the recipe it is imported into here afterwards
# (zoo/recipes/NAME.json or recipes/NAME.json), ARGS are `gpu_sbn.py train` arguments. Then, here, for each NAME:
#   tar -xf DIR/results-N.tar -C ../gpu-runs && python scripts/gpu_sbn.py import ../gpu-runs/NAME RECIPE ../runs/NAME
set -uo pipefail
seconds=${1:?usage: scripts/gpu_batch.sh SECONDS [JOBS_FILE]}
jobs_file=${2:-scripts/gpu_jobs.txt}
out=${OUT:-/tmp/gpu-out}
work=/tmp/gpu-batch
mkdir -p "$out" "$work"
rm -f "$out"/results-*.tar
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # several JAX processes share the GPU's memory
names=()
while read -r name args; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  names+=("$name")
  # shellcheck disable=SC2086  # ARGS are words
  python3 scripts/gpu_sbn.py train --data .gpu/bmnist.npz --seconds "$seconds" --eval-every 10 \
    --out "$work/$name" $args > "$work/$name.log" 2>&1 &
done < "$jobs_file"
wait
# Results go back as at most 8 tar files of at most 15 MiB each, filled job by job.
pack=0; size=0; limit=$((15 * 1024 * 1024))
for name in "${names[@]}"; do
  cp "$work/$name.log" "$work/$name/log.txt" 2>/dev/null
  if [ ! -f "$work/$name/best.npz" ]; then echo "$name: no result (its log below)"; tail -n 5 "$work/$name.log"; continue; fi
  bytes=$(du -cb "$work/$name"/{best.npz,meta.json,history.csv,log.txt} | tail -n 1 | cut -f1)
  if (( size > 0 && size + bytes > limit )); then pack=$((pack + 1)); size=0; fi
  tar -rf "$out/results-$pack.tar" -C "$work" "$name/best.npz" "$name/meta.json" "$name/history.csv" "$name/log.txt"
  size=$((size + bytes))
  echo "== $name (results-$pack.tar)"; grep '^epoch' "$work/$name.log" | tail -n 1; tail -n 1 "$work/$name.log"
done
