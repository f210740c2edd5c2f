#!/usr/bin/env bash
# The one prepared GPU check (one H100/H200, well under 10 minutes): GPU-only kernel tests, then the
# kernel benchmarks. Results land in benchmarks/results/ (or $OUT when the device tool sets it),
# each file naming card, versions and date.
#   bash benchmarks/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
[ -x .venv/bin/python ] && PY=.venv/bin/python
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
stamp=$(date -u +%Y-%m-%dT%H:%MZ)
{
  echo "date: $stamp"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} > "$DEST/gpu_env.txt" 2>&1
cat "$DEST/gpu_env.txt"

status=0
# 1. Correctness on the GPU (bf16, D=128, large shapes, speed vs SDPA): ~2 min.
timeout 240 $PY -m pytest -q -m gpu -rs tests/kernels 2>&1 | tee "$DEST/gpu_tests.txt" || status=1
# 2. Attention sweep (fwd, fwd+bwd) against SDPA backends: ~3 min.
timeout 240 $PY benchmarks/kernels/bench_attention.py 2>&1 | tail -n 60 || status=1
# 3. Contrastive loss memory and time, B = 4k-64k, d = 512: ~2 min.
timeout 180 $PY benchmarks/kernels/bench_contrastive.py --mode single --batches 4096 16384 65536 \
  2>&1 | tail -n 30 || status=1
[ "$DEST" != benchmarks/results ] && cp benchmarks/results/*.md benchmarks/results/*.jsonl "$DEST"/ 2>/dev/null
exit $status
