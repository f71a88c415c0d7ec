#!/usr/bin/env bash
# One-shot check of the node agent against a real GPU's NVML, for machines
# that have one: prints what nvidia-smi says next to what the agent
# discovers, idle and under load. Usage: hack/device-check.sh [bin/node-agent]
set -uo pipefail
agent=${1:-bin/node-agent}
out=${OUT:-/tmp}
{
  echo "### nvidia-smi -L"; nvidia-smi -L
  echo "### nvidia-smi topo -m"; nvidia-smi topo -m
  echo "### nvidia-smi query"
  nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,pci.bus_id,utilization.gpu,temperature.gpu,power.draw,ecc.errors.uncorrected.volatile.total,mig.mode.current --format=csv
  echo "### nvidia-smi nvlink -s"; nvidia-smi nvlink -s 2>&1 | head -40
  echo "### node-agent --nvml=real --once --print (idle)"
  "$agent" --nvml=real --node-name="$(hostname)" --once --print; echo "exit $?"
  echo "### node-agent under load (torch matmul loop in the background)"
  python3 - <<'PY' &
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 8
while time.time() < end:
    a @ a
torch.cuda.synchronize()
PY
  load=$!
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits | grep -qv '^0$' && break
    sleep 0.5
  done
  sleep 2
  "$agent" --nvml=real --node-name="$(hostname)" --once --print | tail -n 3; echo "exit $?"
  wait "$load"
} 2>&1 | tee "$out/device-check.txt"
