#!/usr/bin/env bash
# The sim-small recipe (docs/sim-model.md) squeezed into one time-boxed GPU slot of SLOT seconds. Every stage is a
# plain `yume` command; only the scheduling is new:
#
#   1. render CLIPS_FIRST worlds on every core;
#   2. VAE: train on them on the GPU (VAE_MINUTES, default ~22% of the slot), or VAE_MINUTES=0 to use VAE_INIT
#      as it is; meanwhile the next CLIPS_MORE worlds render;
#   3. cache the first worlds (8 GPU processes) and start the DiT on them (phase 1, in the background);
#   4. when the rest has rendered, cache all worlds, stop phase 1 (`run.stop_file`) and resume the same run on the
#      whole cache (phase 2) for the time left; then pack the model and probe it.
#   CLIPS_MORE=0 skips 3-4's overlap: cache the first worlds only, then the DiT has the GPU to itself (a slot whose
#   data is only a minute or two of rendering gains more DiT steps from it than from the overlap).
#
# Usage (from the repository root, `yume` importable):
#
#   SLOT=540 WORK=/tmp/sim OUT=out/sim-gpu [VAE_INIT=path/to/vae] [VAE_MINUTES=0] [TEXT=path/to/text] \
#       [VAE_PRESET=sim-small-t2] [DIT_INIT=path/to/dit] bash configs/sim-small/gpu-slot.sh
#
# VAE_INIT: a trained sim VAE to continue (else single frames, then 9-frame windows, from scratch). TEXT: the text
# encoder folder to cache and pack with (`TextEncoder.save_pretrained`; else the tiny random one of seed 0).
# VAE_PRESET: the VAE structure, sim-small (4x temporal stride, the default from scratch), sim-small-t2 (2x) or
# sim-small-t1 (none); with VAE_INIT it moves that VAE into the preset's structure. A 2x VAE's DiT trains with
# flow-t2.toml, a stride-free one's with flow-t1.toml.
# DIT_INIT: a trained DiT (e.g. a CPU run's generator/ema; bf16 is fine, training keeps fp32 master weights) to
# continue instead of starting from random: a short slot cannot afford the few thousand steps before the DiT takes off.
# EMA: the DiT's EMA decay (default 0.999; 0.998 for a slot of under ~2,000 steps, so the EMA is not mostly the init).
# DEC_MINUTES: also tune the VAE's decoder alone (`--train decoder`, the latent space the DiT works in unchanged) on
# the rendered worlds for this long, on the same GPU beside the caching and the DiT, with DEC_NOISE latent stds of
# noise on its input (default 0.3: a decoder for a DiT's latents, not only the encoder's); OUT gets it as vae-dec.tar.
# Not free: on an H200 (session 13) it halved the DiT's samples/s (370 against 710-765 alone) and itself ran 950
# steps of 16 in 6 min; a slot that wants both is better split into two calls, one for each.
# MOVE_SPEED / TURN_SPEED / SEGMENTS / SEGMENT_FRAMES: render the worlds at other key speeds (`yume data synth
# --move-speed` ...; a 0.2 m walk wants SEGMENTS=4 SEGMENT_FRAMES=20 to stay in the street); the export records the
# speeds in sampling.json. EVENT_ONSETS: the frames events may come in at (`--event-onsets`, e.g. 9,17).
# FLOW_SETS: more `--set` overrides for the DiT, e.g. "optim.lr=3e-4 flow.motion_weight=2".
# The next slot's plan (docs/sim-model.md, sessions 20-24): session 24's slot DiT (walks 160 of 216 fresh chunks,
# turns 0.843) continued on worlds it has not seen, rendered as its data was (0.2 m a frame, an action drawn anew
# every 8 frames, events coming in at chunk starts, v2v histories on that chunk grid). It is kept in history
# (git archive 0febecf kept/session24/gpu24-2013/dit | tar x --strip-components 3 -C runs/sim/g24, then put in
# the package's dit/ for the call, as session 24 did, so that the checkout and .gpu/ stay under 64 MiB):
#   TEXT=yume/assets/yume-sim-small/text VAE_INIT=yume/assets/yume-sim-small/vae VAE_MINUTES=0 EMA=0.998 \
#   DIT_INIT=yume/assets/yume-sim-small/dit FLOW_SETS="data.history_min=9 data.history_stride=8 data.mix=0.05,0.4,0.55" \
#   MOVE_SPEED=0.2 SEGMENTS=10 SEGMENT_FRAMES=8 EVENT_ONSETS=9,17 FIRST_SEED=1240 CLIPS_FIRST=800 CLIPS_MORE=0 \
#   bash configs/sim-small/gpu-slot.sh
# Session 29 ran this plan with FIRST_SEED=3000 and flow.shift=7 added to FLOW_SETS: 1,804 steps, more events (21 of
# 30 against 17), not more walk (153 of 216 against 160). Its DiT is kept in history (git archive 0a4e5ef
# kept/session29/gpu29-1804/dit). The same section traced the models' short step to a near ground whose texture
# wobbles, which the estimator's tracks drop: a slot that only adds flow steps is not the next lever.
# OUT receives model.tar (split into 15 MB parts: dit/, vae/, text/) and logs.tgz.
set -u
SLOT=${SLOT:-540}
WORK=${WORK:-/tmp/sim}
OUT=${OUT:-out/sim-gpu}
CLIPS_FIRST=${CLIPS_FIRST:-320}
CLIPS_MORE=${CLIPS_MORE:-1000}
FIRST_SEED=${FIRST_SEED:-0}  # the worlds' seeds: FIRST_SEED, FIRST_SEED + 1, ... (held-out benchmarks start at 100000)
BATCH=${BATCH:-128}
DEVICE=${DEVICE:-cuda}
PRESET=()
[ -n "${VAE_PRESET:-}" ] && PRESET=(--preset "$VAE_PRESET")
SYNTH_ARGS=()  # the world's key speeds and segments, when not the data defaults
[ -n "${MOVE_SPEED:-}" ] && SYNTH_ARGS+=(--move-speed "$MOVE_SPEED")
[ -n "${TURN_SPEED:-}" ] && SYNTH_ARGS+=(--turn-speed "$TURN_SPEED")
[ -n "${SEGMENTS:-}" ] && SYNTH_ARGS+=(--segments "$SEGMENTS")
[ -n "${SEGMENT_FRAMES:-}" ] && SYNTH_ARGS+=(--segment-frames "$SEGMENT_FRAMES")
[ -n "${EVENT_ONSETS:-}" ] && SYNTH_ARGS+=(--event-onsets "$EVENT_ONSETS")
CORES=$(nproc)
RENDER_A=$((CORES > 3 ? CORES - 1 : 1))
RENDER_B=$((CORES > 4 ? CORES - 3 : 1))  # leave cores for the VAE or the DiT and the cache's main process
CACHE_WORKERS=$([ "$DEVICE" = cpu ] && echo 1 || echo 8)
source "$(dirname "$0")/slot-common.sh"

TEXT_ARGS=(--text-encoder tiny --text-dim 64 --text-len 128)
[ -n "${TEXT:-}" ] && TEXT_ARGS=(--text-encoder "$TEXT" --text-dtype fp32 --text-len 128)
cache() {  # cache OUT LOG DATASET...
    local out=$1 log=$2
    shift 2
    yume data cache "$@" "$out" --vae "$WORK/vae" "${TEXT_ARGS[@]}" --device "$DEVICE" --workers "$CACHE_WORKERS" >"$log" 2>&1
}
FLOW=(--config configs/sim-small/flow.toml --set run.out="$WORK/flow" --set data.batch_size="$BATCH"
      --set run.steps=1000000 --set run.save_every=1000000 --set run.log_every=100 --set run.ema_decay="${EMA:-0.999}")
[ -n "${DIT_INIT:-}" ] && FLOW+=(--set model.weights="$DIT_INIT")
for kv in ${FLOW_SETS:-}; do FLOW+=(--set "$kv"); done

say "render ${CLIPS_FIRST} worlds on ${RENDER_A} of ${CORES} cores"
yume data synth "$WORK/raw-a" --clips "$CLIPS_FIRST" --first-seed "$FIRST_SEED" --workers "$RENDER_A" "${SYNTH_ARGS[@]}" >"$WORK/synth-a.log" 2>&1 || fail synth "$WORK/synth-a.log"
if [ "$CLIPS_MORE" -gt 0 ]; then
    yume data synth "$WORK/raw-b" --clips "$CLIPS_MORE" --first-seed "$((FIRST_SEED + CLIPS_FIRST))" --workers "$RENDER_B" \
        "${SYNTH_ARGS[@]}" >"$WORK/synth-b.log" 2>&1 &
    SYNTH=$!
fi

VAE_MIN=${VAE_MINUTES:-$(python3 -c "print(round(min(2.5, $(left) * 0.22 / 60), 2))")}
if [ "$VAE_MIN" = 0 ]; then
    [ -n "${VAE_INIT:-}" ] || { say "VAE_MINUTES=0 needs VAE_INIT, the VAE to use as it is"; exit 1; }
    say "VAE: $VAE_INIT as it is"
    cp -r "$VAE_INIT" "$WORK/vae"
elif [ -n "${VAE_INIT:-}" ]; then
    say "VAE: continue $VAE_INIT on 9-frame windows for $VAE_MIN min"
    yume train vae "$WORK/raw-a" "$WORK/vae" --init "$VAE_INIT" "${PRESET[@]}" --frames 9 --batch-size 16 --lr 3e-4 \
        --steps 1000000 --max-minutes "$VAE_MIN" --device "$DEVICE" >"$WORK/vae.log" 2>&1
else
    say "VAE: single frames, then 9-frame windows, $VAE_MIN min in all"
    half=$(python3 -c "print($VAE_MIN / 2)")
    yume train vae "$WORK/raw-a" "$WORK/vae-img" "${PRESET[@]}" --frames 1 --batch-size 64 --lr 1e-3 --steps 1000000 \
        --max-minutes "$half" --device "$DEVICE" >"$WORK/vae-img.log" 2>&1 &&
    yume train vae "$WORK/raw-a" "$WORK/vae" --init "$WORK/vae-img" --frames 9 --batch-size 16 --lr 5e-4 \
        --steps 1000000 --max-minutes "$half" --device "$DEVICE" >"$WORK/vae.log" 2>&1
fi
[ -f "$WORK/vae/config.json" ] || fail "VAE training" "$WORK/vae.log"
DEC=
if [ "${DEC_MINUTES:-0}" != 0 ]; then
    say "decoder of $WORK/vae: $DEC_MINUTES min beside the rest, latent noise ${DEC_NOISE:-0.3}"
    yume train vae "$WORK/raw-a" "$WORK/vae-dec" --init "$WORK/vae" --train decoder --latent-noise "${DEC_NOISE:-0.3}" \
        --frames 9 --batch-size 16 --lr 3e-4 --steps 1000000 --max-minutes "$DEC_MINUTES" --device "$DEVICE" \
        >"$WORK/vae-dec.log" 2>&1 &
    DEC=$!
fi
FLOW[1]=configs/sim-small/flow.toml  # the DiT's chunk and history lengths follow the VAE's temporal stride
STRIDE=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['scale_factor_temporal'])" "$WORK/vae/config.json")
[ "$STRIDE" = 2 ] && FLOW[1]=configs/sim-small/flow-t2.toml
[ "$STRIDE" = 1 ] && FLOW[1]=configs/sim-small/flow-t1.toml
[ -f "$WORK/vae.log" ] && tail -2 "$WORK/vae.log"

if [ "$CLIPS_MORE" -gt 0 ]; then
    say "cache the first worlds; the DiT starts on them (phase 1, batch $BATCH)"
    cache "$WORK/cache-a" "$WORK/cache-a.log" "$WORK/raw-a" || fail "cache of raw-a" "$WORK/cache-a.log"
    SAFETY=$(python3 -c "print(round(($(left) - 75) / 60, 2))")
    yume train flow "${FLOW[@]}" --set data.cache="$WORK/cache-a" --set run.stop_file="$WORK/STOP" \
        --set run.max_minutes="$SAFETY" >"$WORK/flow-1.log" 2>&1 &
    PHASE1=$!

    wait $SYNTH || fail "synth of raw-b" "$WORK/synth-b.log"
    say "$(tail -1 "$WORK/synth-b.log"); cache all worlds"
    CACHE=$WORK/cache-ab
    cache "$CACHE" "$WORK/cache-ab.log" "$WORK/raw-a" "$WORK/raw-b" || fail "cache of all worlds" "$WORK/cache-ab.log"
    touch "$WORK/STOP"
    wait $PHASE1 || fail "flow phase 1" "$WORK/flow-1.log"
    tail -1 "$WORK/flow-1.log"
else  # CLIPS_MORE=0: one cache, then the DiT alone on the GPU (no phase sharing it with the caching)
    say "cache the worlds"
    CACHE=$WORK/cache-a
    cache "$CACHE" "$WORK/cache-a.log" "$WORK/raw-a" || fail "cache of raw-a" "$WORK/cache-a.log"
fi

FLOW_MIN=$(python3 -c "print(round(($(left) - 75) / 60, 2))")
python3 -c "import sys; sys.exit($FLOW_MIN < 0.5)" || { say "only $FLOW_MIN min left for the DiT: raise SLOT or render fewer worlds"; exit 1; }
say "DiT on $CACHE for $FLOW_MIN min"
yume train flow "${FLOW[@]}" --set data.cache="$CACHE" --set run.max_minutes="$FLOW_MIN" \
    >"$WORK/flow-2.log" 2>&1 || fail "flow phase 2" "$WORK/flow-2.log"
grep -shE "^step" "$WORK/flow-1.log" "$WORK/flow-2.log" | awk 'NR % 5 == 1' | tail -12  # -s: CLIPS_MORE=0 has no phase 1
tail -1 "$WORK/flow-2.log"
CKPT=$(ls -d "$WORK"/flow/checkpoints/step-* | tail -1)

say "pack $CKPT"
EXPORT_ARGS=(--sampling flow-cfg)  # a flow model: 16 steps with CFG 3 (docs/sim-model.md)
[ -n "${TEXT:-}" ] && EXPORT_ARGS+=(--text "$TEXT")
[ -n "${MOVE_SPEED:-}" ] && EXPORT_ARGS+=(--move-speed "$MOVE_SPEED")
[ -n "${TURN_SPEED:-}" ] && EXPORT_ARGS+=(--turn-speed "$TURN_SPEED")
# sessions sample the DiT in the chunks its flow config trained it on (flow-t1.toml: 8 latents; the others 4)
EXPORT_ARGS+=(--chunk-latents "$(python3 -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['data']['chunk_latents'])" "${FLOW[1]}")")
yume train export "$CKPT/generator/ema" "$WORK/vae" "$WORK/model" "${EXPORT_ARGS[@]}"
tar cf - -C "$WORK/model" . | split -b 15000000 - "$OUT/model.tar.part-"
if [ -n "$DEC" ]; then
    wait $DEC || fail "decoder tuning" "$WORK/vae-dec.log"
    tail -2 "$WORK/vae-dec.log"
    tar cf "$OUT/vae-dec.tar" -C "$WORK/vae-dec" .
fi
say "probe"
yume train probe "$CKPT/generator/ema" "$CACHE" --batches 16 --batch-size 16 --device "$DEVICE" | tee "$WORK/probe.log"
say "done"
