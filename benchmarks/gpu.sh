#!/usr/bin/env bash
# Every GPU check in one run, for a machine with an NVIDIA GPU and searcher installed:
# the test suite, a SciFact index build on CUDA (throughput), its dense and hybrid nDCG@10,
# the encoding benchmark against sentence-transformers in fp16, POST /v1/embeddings under
# 1, 4 and 16 clients, and search latency.
#
#   bash benchmarks/gpu.sh [OUT_DIR]           (DATASET=path/to/scifact to use another copy)
#
# Each step's output goes to OUT_DIR (default /tmp/searcher-gpu); a summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/searcher-gpu}"
dataset="${DATASET:-../shared/datasets/scifact}"
py="${PYTHON:-python}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$py" -c "import torch, faiss; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'| faiss', faiss.__version__, 'gpus', getattr(faiss, 'get_num_gpus', lambda: 0)())" | tee -a "$out/gpu.txt"

step() {  # step NAME COMMAND...: run, log, remember the exit status
  local name=$1; shift
  echo "== $name: $*"
  local started=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - started))s" | tee -a "$out/summary.txt"
  tail -n 5 "$out/$name.log"
}

step tests "$py" -m pytest -q -x -p no:cacheprovider tests
rm -rf "$out/index"
step index "$py" -m searcher index "$dataset/corpus.jsonl" --index "$out/index" --device cuda --batch-size 128 --json
step eval-dense "$py" -m searcher eval "$dataset" --index "$out/index" --device cuda --mode dense --json
step eval-hybrid "$py" -m searcher eval "$dataset" --index "$out/index" --device cuda --mode hybrid --json
if [ -f benchmarks/encode.py ]; then
  step encode "$py" benchmarks/encode.py --dataset "$dataset" --device cuda
fi
step embeddings-endpoint "$py" benchmarks/embeddings_endpoint.py --dataset "$dataset" --device cuda --seconds 10 --rounds 1 --batch-wait-ms 0,2
step index-profile "$py" benchmarks/index_profile.py --dataset "$dataset" --device cuda --batch-size 128 --docs 1500 --ahead 0,256
step latency "$py" benchmarks/latency.py --index "$out/index" --dataset "$dataset" --concurrency 1,4 --requests 1000

echo "== summary"
cat "$out/summary.txt"
grep -h -E '"(documents|chunks|tokens|seconds)"' "$out/index.log" | tr -d ' \n'; echo
grep -h -E 'ndcg|recall|mrr' "$out/eval-dense.log" "$out/eval-hybrid.log"
tail -n 12 "$out/encode.log" 2>/dev/null
tail -n 15 "$out/embeddings-endpoint.log"
grep -h -E "ENCODE_AHEAD|ratio" "$out/index-profile.log"
tail -n 6 "$out/latency.log"
