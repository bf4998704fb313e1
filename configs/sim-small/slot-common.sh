# Shared by the GPU-slot scripts (gpu-slot.sh, gpu-sf.sh), sourced after SLOT, WORK and OUT are set: a `yume` that
# runs from the checkout, the slot's clock, and the logs packed into OUT/logs.tgz however the script ends.
T0=$(date +%s)
yume() { python3 -m yume.cli "$@"; }
left() { echo $((SLOT - ($(date +%s) - T0))); }
say() { echo "[$(($(date +%s) - T0)) s] $*"; }
fail() { say "$1 failed"; tail -20 "$2"; exit 1; }
mkdir -p "$WORK" "$OUT"
pack_logs() { (cd "$WORK" && find . -name '*.log' -o -name log.jsonl -o -name '*.toml' | tar czf "$OUT/logs.tgz" -T -) 2>/dev/null; }
trap pack_logs EXIT
