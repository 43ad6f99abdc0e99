#!/usr/bin/env bash
# Simulated z-stacks, with their ground truth, for training and evaluating the bundled
# Deep-Z models.
#
#   bash scripts/make_simulator_stacks.sh [OUT_DIR]      (default: runs/simulator-stacks)
#
# Every stack: 49 planes, ±12 µm around the specimen's centre plane in 0.5 µm steps
# (covers the models' ±10 µm refocusing range from any input plane near focus), 10 ms
# exposure at the default LED intensity: the same light as a live time-lapse frame, so
# training inputs have the noise of live frames. `--ground-truth` saves beside each
# stack its noise-free twin (*.clean.ome.tif: clean training targets and clean scores;
# `deepz evaluate` finds the objects of its axial score as the twin's 3-D maxima) and
# the true objects with their in-focus z (*.objects.csv).
# Seeds are disjoint:
#   train/  worms 100-123 (centre depth 8-16 µm), beads 200-205, sheets 300-301
#   fresh/  worms 900-904: never used in training, for `deepz evaluate`
# About 0.7 s per plane on 2 CPU cores (each new focus recomputes every object's image,
# once for the recorded plane and once for its noise-free twin): ~20 min in all.
set -euo pipefail
out="${1:-runs/simulator-stacks}"
mkdir -p "$out/train" "$out/fresh"
stack() {  # stack FILE KIND SEED [DEPTH]
  local file="$1" kind="$2" seed="$3" depth="${4:-}"
  # done only with its twin (stacks from before --ground-truth are recorded again)
  [ -e "$file" ] && [ -e "${file%.ome.tif}.clean.ome.tif" ] && return 0
  local extra=(--overwrite)
  [ -n "$depth" ] && extra+=(--set "Specimen,Depth,$depth")
  deepz zstack --range-um 24 --step-um 0.5 --exposure-ms 10 --ground-truth \
    --set Camera,Clock,simulated --set "Specimen,Kind,$kind" --set "Specimen,Seed,$seed" \
    "${extra[@]}" --out "$file" --json
}
for seed in 900 901 902 903 904; do stack "$out/fresh/worm-$seed.ome.tif" worm "$seed"; done
depths=(8 9 10 11 12 13 14 15 16 12 10 14 9 15 11 13 8 16 10 12 14 9 11 13)
for i in $(seq 0 23); do
  seed=$((100 + i))
  stack "$out/train/worm-$seed.ome.tif" worm "$seed" "${depths[$i]}"
done
for seed in 200 201 202 203 204 205; do stack "$out/train/beads-$seed.ome.tif" beads "$seed"; done
stack "$out/train/tilted-sheet-300.ome.tif" tilted-sheet 300
stack "$out/train/curved-sheet-301.ome.tif" curved-sheet 301
