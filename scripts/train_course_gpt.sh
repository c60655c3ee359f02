#!/usr/bin/env bash
# Train the course's pretrained model (chapter 06) and ship it in the package:
#   bash scripts/train_course_gpt.sh [RUN_FOLDER]
# 45 minutes on a 2-core CPU (the `pretrain` recipe at the cpu profile: a 6-layer,
# 192-wide character GPT on tiny Shakespeare without DUKE VINCENTIO's speeches), then
# scripts/export_course_gpt.py scores it on nanoGPT's validation split and writes
# aigc_tf/weights/course_gpt.npz. Run it alone: shared cores mean fewer steps.
set -euo pipefail
run=${1:-runs/course-gpt}
mkdir -p "$(dirname "$run")"
uptime > "$run.load"
# /usr/bin/time -v appends the run's CPU seconds to the log (the export reads them).
AIGC_OFFLINE=1 /usr/bin/time -v aigc-tf train gpt --profile cpu --recipe pretrain --out "$run" > "$run.log" 2>&1
uptime >> "$run.load"
python scripts/export_course_gpt.py "$run"
