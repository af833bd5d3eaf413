#!/usr/bin/env bash
# The GPU report on a host reached through a remote-run tool (docs/gpu/RUNBOOK.md), in the
# repository root: unpack the packages scripts/gpu_wheels.sh packed (once per host), print what the
# host has, run `python -m loadtest gpu-report` within BUDGET_S seconds (a rerun does only what is missing:
# results/ is kept between runs on the same host), and pack the report for the way back.
#
#   scripts/gpu_device_round.sh [BUDGET_S (400)] [BACK_DIR ($OUT, else results/gpu-back)]
# Exit: the round's (0 every step that could run ran, 1 a step failed, 2 no usable GPU, 4 out of time:
# run again); 3 the packages are missing.
set -uo pipefail
budget=${1:-400}
back=${2:-${OUT:-results/gpu-back}}
site=${H2H_SITE:-/tmp/site}  # where the packages are unpacked (once per host)
if [ ! -f "$site/.unpacked" ]; then
  if [ -f .carry/site.tar.xz ]; then
    pack=(.carry/site.tar.xz)
  else  # ARCH=all packs: one part per call, unpacked once the last one is here
    parts=(.carry/part-*/chunk)
    [ -f "${parts[0]}" ] || { echo "error: no .carry/site.tar.xz: run scripts/gpu_wheels.sh and carry .carry" >&2; exit 3; }
    want=$(cat .carry/part-1/of 2>/dev/null || echo "?")
    [ "${#parts[@]}" = "$want" ] || { echo "have ${#parts[@]} of $want parts: carry the next one"; exit 0; }
    pack=($(printf '%s\n' "${parts[@]}" | sort -V))
  fi
  mkdir -p "$site" && cat "${pack[@]}" | xz -dc | tar -x -C "$site" && touch "$site/.unpacked" || exit 3
fi
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import onnxruntime as o, torch; print('onnxruntime', o.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
mkdir -p "$back"
python3 -m loadtest gpu-report --out-root results/gpu --budget-s "$budget" 2>&1 | tee "$back/gpu-report.log"
rc=${PIPESTATUS[0]}
tar -czf "$back/gpu-report.tgz" results/gpu docs/benchmarks.md 2>/dev/null
tar -czf "$back/gpu-logs.tgz" results/gpu-report-logs 2>/dev/null
ls -l "$back"
exit "$rc"
