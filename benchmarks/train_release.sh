#!/usr/bin/env bash
# Rebuild the release model from LFW and measure it on LFW View 2 (numbers in training/README.md):
#   1. train the release head (dlib ResNet frozen, cosine distance, logistic head) on View 1 people;
#   2. export the served SavedModel from dlib's weights + that head;
#   3. run the LFW protocol on View 2 (pairs.txt) through the full pipeline from the JPEG files;
#   4. export again with those metrics recorded in the model card.
# Outputs: runs/release (git-ignored) and models/release. Chips and embeddings are cached
# (~/.cache/faceverify), so a second run skips detection and embedding of the training images.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/lfw}"
RUN="${RUN:-runs/release}"
time faceverify train --data "$DATA" --run-dir "$RUN" --release-head-out "$RUN/release_head.json"
time faceverify export --release --head "$RUN/release_head.json" --out models/release
time faceverify evaluate --images "$DATA/images" --pairs "$DATA/pairs.txt" --model models/release \
  --json "$RUN/lfw_view2.json" --plots "$RUN/lfw_view2_plots"
faceverify export --release --head "$RUN/release_head.json" --out models/release \
  --metrics-json "$RUN/lfw_view2.json"
