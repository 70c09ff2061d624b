#!/usr/bin/env bash
# Trains a recipe by name into ../runs/NAME, resumably: run it again and it continues from the run folder's last
# checkpoint (a run folder holding another recipe is refused, with the keys that differ).
# Usage: scripts/train_zoo.sh NAME [extra tfrecog train flags: --max-seconds S, --epochs N]
# NAME is a zoo entry (its recipe zoo/recipes/NAME.json: the card's model and the stopping rule it was trained with)
# or an experiment (recipes/NAME.json). The recipes are data, checked by tfrecog.recipes when read; this script only
# finds the file. Where the run folder is missing and progress/NAME holds a snapshot (scripts/progress.py), the
# run starts again from that snapshot ($TFRECOG_PROGRESS names another snapshots' folder). Equivalent: tfrecog train --recipe FILE --run ../runs/NAME --data-dir ../shared/data --verbose 2
set -euo pipefail
name=${1:?usage: scripts/train_zoo.sh NAME [tfrecog train flags]}; shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${TFRECOG_DATA_DIR:-../shared/data}
runs=${TFRECOG_RUNS:-../runs}  # outside the work tree, so a re-laid checkout keeps the run folders
progress=${TFRECOG_PROGRESS:-$root/progress}
recipe=$root/zoo/recipes/$name.json
[ -f "$recipe" ] || recipe=$root/recipes/$name.json
if [ ! -f "$recipe" ]; then
  echo "unknown recipe $name: expected $root/zoo/recipes/$name.json or $root/recipes/$name.json" >&2; exit 2
fi
if [ ! -e "$runs/$name/config.json" ] && [ -f "$progress/$name/state.json" ]; then
  # A new machine: start again from the snapshot committed by scripts/progress.py save (its best epoch).
  python "$root/scripts/progress.py" restore "$name" --runs "$runs" --progress "$progress"
fi
exec tfrecog train --recipe "$recipe" --data-dir "$data" --run "$runs/$name" --verbose 2 "$@"
