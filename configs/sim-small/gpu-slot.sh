#!/usr/bin/env bash
# The sim-small recipe (docs/sim-model.md) squeezed into one time-boxed GPU slot of SLOT seconds: render worlds on
# every CPU core while the VAE trains on the GPU, cache with several GPU processes, then flow-match the DiT for
# whatever time is left, pack the model and probe it. Every stage is a plain `yume` command; only the time boxes
# are new. Usage (from the repository root, `yume` importable):
#
#   SLOT=540 WORK=/tmp/sim OUT=out/sim-gpu [VAE_INIT=path/to/vae] [TEXT=path/to/text] bash configs/sim-small/gpu-slot.sh
#
# VAE_INIT: continue a trained sim VAE (else single frames, then 9-frame windows, from scratch); VAE_MINUTES=0
# uses it as it is, so the slot goes to rendering, caching and the DiT. TEXT: the text
# encoder folder to cache and pack with (`TextEncoder.save_pretrained`; else the tiny random one of seed 0).
# OUT receives model.tar (split into 15 MB parts: dit/, vae/, text/) and logs.tgz.
set -u
SLOT=${SLOT:-540}
WORK=${WORK:-/tmp/sim}
OUT=${OUT:-out/sim-gpu}
CLIPS_FIRST=${CLIPS_FIRST:-192}   # rendered first: the VAE trains on these while the rest render
CLIPS_MORE=${CLIPS_MORE:-1100}
BATCH=${BATCH:-64}
DEVICE=${DEVICE:-cuda}
T0=$(date +%s)
CORES=$(nproc)
RENDER_A=$((CORES > 3 ? CORES - 2 : 1))  # leave cores for the main processes
RENDER_B=$((CORES > 4 ? CORES - 3 : 1))
CACHE_WORKERS=$([ "$DEVICE" = cpu ] && echo 1 || echo 8)
yume() { python3 -m yume.cli "$@"; }
left() { echo $((SLOT - ($(date +%s) - T0))); }
say() { echo "[$(($(date +%s) - T0)) s] $*"; }
mkdir -p "$WORK" "$OUT"
pack_logs() { (cd "$WORK" && find . -name '*.log' -o -name log.jsonl -o -name '*.toml' | tar czf "$OUT/logs.tgz" -T -) 2>/dev/null; }
trap pack_logs EXIT

say "data: ${CLIPS_FIRST} worlds, ${CORES} cores"
yume data synth "$WORK/raw-a" --clips "$CLIPS_FIRST" --workers "$RENDER_A" >"$WORK/synth-a.log" 2>&1 || { say "synth failed"; tail "$WORK/synth-a.log"; exit 1; }
yume data synth "$WORK/raw-b" --clips "$CLIPS_MORE" --first-seed "$CLIPS_FIRST" --workers "$RENDER_B" \
    >"$WORK/synth-b.log" 2>&1 &
SYNTH=$!

VAE_MIN=${VAE_MINUTES:-$(python3 -c "print(round(min(2.5, $(left) * 0.22 / 60), 2))")}
if [ "$VAE_MIN" = 0 ]; then
    [ -n "${VAE_INIT:-}" ] || { say "VAE_MINUTES=0 needs VAE_INIT, the VAE to use as it is"; exit 1; }
    say "VAE: $VAE_INIT as it is"
    cp -r "$VAE_INIT" "$WORK/vae"
elif [ -n "${VAE_INIT:-}" ]; then
    say "VAE: continue $VAE_INIT on 9-frame windows for $VAE_MIN min"
    yume train vae "$WORK/raw-a" "$WORK/vae" --init "$VAE_INIT" --frames 9 --batch-size 16 --lr 3e-4 \
        --steps 1000000 --max-minutes "$VAE_MIN" --device "$DEVICE" >"$WORK/vae.log" 2>&1
else
    say "VAE: single frames, then 9-frame windows, $VAE_MIN min in all"
    half=$(python3 -c "print($VAE_MIN / 2)")
    yume train vae "$WORK/raw-a" "$WORK/vae-img" --frames 1 --batch-size 64 --lr 1e-3 --steps 1000000 \
        --max-minutes "$half" --device "$DEVICE" >"$WORK/vae-img.log" 2>&1 &&
    yume train vae "$WORK/raw-a" "$WORK/vae" --init "$WORK/vae-img" --frames 9 --batch-size 16 --lr 5e-4 \
        --steps 1000000 --max-minutes "$half" --device "$DEVICE" >"$WORK/vae.log" 2>&1
fi
[ -f "$WORK/vae/config.json" ] || { say "VAE training failed"; tail -20 "$WORK"/vae*.log; exit 1; }
[ -f "$WORK/vae.log" ] && tail -2 "$WORK/vae.log"

say "waiting for the renderer"
wait $SYNTH || { say "synth of raw-b failed"; tail "$WORK/synth-b.log"; exit 1; }
tail -1 "$WORK/synth-b.log"

TEXT_ARGS=(--text-encoder tiny --text-dim 64 --text-len 128)
[ -n "${TEXT:-}" ] && TEXT_ARGS=(--text-encoder "$TEXT" --text-dtype fp32 --text-len 128)
say "cache: $CACHE_WORKERS processes on $DEVICE"
yume data cache "$WORK/raw-a" "$WORK/raw-b" "$WORK/cache" --vae "$WORK/vae" "${TEXT_ARGS[@]}" --device "$DEVICE" \
    --workers "$CACHE_WORKERS" >"$WORK/cache.log" 2>&1 || { say "cache failed"; tail "$WORK/cache.log"; exit 1; }
tail -1 "$WORK/cache.log"

FLOW_MIN=$(python3 -c "print(round(($(left) - 75) / 60, 2))")
python3 -c "import sys; sys.exit($FLOW_MIN < 0.5)" || { say "only $FLOW_MIN min left for the DiT: raise SLOT or render fewer clips"; exit 1; }
say "flow: $FLOW_MIN min, batch $BATCH"
yume train flow --config configs/sim-small/flow.toml --set data.cache="$WORK/cache" --set run.out="$WORK/flow" \
    --set data.batch_size="$BATCH" --set run.steps=1000000 --set run.save_every=1000000 --set run.log_every=100 \
    --set run.ema_decay=0.999 --set run.max_minutes="$FLOW_MIN" >"$WORK/flow.log" 2>&1 || { say "flow failed"; tail -20 "$WORK/flow.log"; exit 1; }
grep -E "^step" "$WORK/flow.log" | awk 'NR % 5 == 1' | tail -12
tail -2 "$WORK/flow.log"
CKPT=$(ls -d "$WORK"/flow/checkpoints/step-* | tail -1)

say "pack $CKPT"
EXPORT_ARGS=()
[ -n "${TEXT:-}" ] && EXPORT_ARGS=(--text "$TEXT")
yume train export "$CKPT/generator/ema" "$WORK/vae" "$WORK/model" "${EXPORT_ARGS[@]}"
tar cf - -C "$WORK/model" . | split -b 15000000 - "$OUT/model.tar.part-"
say "probe"
yume train probe "$CKPT/generator/ema" "$WORK/cache" --batches 16 --batch-size 16 --device "$DEVICE" | tee "$WORK/probe.log"
say "done"
