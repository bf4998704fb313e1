#!/usr/bin/env bash
# Self-Forcing at a GPU's batch size in one time-boxed slot of SLOT seconds (docs/sim-model.md, session 30). On this
# CPU a Self-Forcing step has one rollout (data.batch_size = 1) and 1,000 steps take ~30 minutes; here each step
# takes BATCH rollouts. Every stage is a plain `yume` command:
#
#   1. render CLIPS worlds as the session-24 data was rendered (0.2 m a frame, an action drawn anew every 8 frames,
#      events coming in at chunk starts), on every core but one;
#   2. cache them with the package's VAE and text encoder (8 GPU processes);
#   3. Self-Forcing (configs/sim-small/self-forcing-motion.toml with session 26's settings) from INIT against
#      TEACHER, batch BATCH, for the time left; then export the generator for 4-step sampling into OUT.
#
# Usage (from the repository root, `yume` importable):
#
#   SLOT=480 WORK=/tmp/sf OUT=out/sf INIT=yume/assets/yume-sim-small/dit TEACHER=path/to/teacher/dit \
#       [CLIPS=240] [FIRST_SEED=4000] [BATCH=16] [SF_SETS="optim.lr=4e-5"] [DEVICE=cuda] [STEPS=N] bash configs/sim-small/gpu-sf.sh
#
# Self-Forcing takes the GPU when there is one (DEVICE only places the caching); STEPS caps its steps (a CPU trial).
# Session 30 ran it as SLOT=530 BATCH=16 CLIPS=240 FIRST_SEED=4000 SF_SETS="optim.lr=4e-5" with INIT the package's
# DiT and TEACHER gpu29-1804: 986 steps in 6.6 min; the asked event twice as often (15 of 30 against 8), no more walk
# (126 of 216 against 132): docs/sim-model.md, session 30.
# OUT receives dit.tar (the exported DiT, bf16), sf.log and logs.tgz.
set -u
SLOT=${SLOT:-480}
WORK=${WORK:-/tmp/sf}
OUT=${OUT:-out/sf}
CLIPS=${CLIPS:-240}
FIRST_SEED=${FIRST_SEED:-4000}  # held-out benchmarks start at 100000
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-cuda}
PKG=yume/assets/yume-sim-small
: "${INIT:?INIT: the DiT to continue (e.g. $PKG/dit)}" "${TEACHER:?TEACHER: the flow teacher DiT folder}"
CORES=$(nproc --all)
source "$(dirname "$0")/slot-common.sh"

say "render $CLIPS worlds from seed $FIRST_SEED on $((CORES > 1 ? CORES - 1 : 1)) of $CORES cores"
yume data synth "$WORK/raw" --clips "$CLIPS" --first-seed "$FIRST_SEED" --workers $((CORES > 1 ? CORES - 1 : 1)) \
    --move-speed 0.2 --segments 10 --segment-frames 8 --event-onsets 9,17 >"$WORK/synth.log" 2>&1 ||
    fail synth "$WORK/synth.log"
say "cache them"
yume data cache "$WORK/raw" "$WORK/cache" --vae "$PKG/vae" --text-encoder "$PKG/text" --text-dtype fp32 --text-len 128 \
    --device "$DEVICE" --workers "$([ "$DEVICE" = cpu ] && echo 1 || echo 8)" >"$WORK/cache.log" 2>&1 ||
    fail cache "$WORK/cache.log"
MIN=$(python3 -c "print(round(($(left) - 45) / 60, 2))")
python3 -c "import sys; sys.exit($MIN < 0.3)" || { say "only $MIN min left for Self-Forcing: raise SLOT or render fewer worlds"; exit 1; }
say "Self-Forcing, batch $BATCH, for $MIN min"
SF=(--config configs/sim-small/self-forcing-motion.toml --set model.weights="$INIT" --set self_forcing.teacher="$TEACHER"
    --set data.cache="$WORK/cache" --set data.history_stride=8 --set self_forcing.real_weight=1.0
    --set data.batch_size="$BATCH" --set run.out="$WORK/sf" --set run.steps="${STEPS:-1000000}" --set run.save_every=1000000
    --set run.log_every=25 --set run.max_minutes="$MIN")
for kv in ${SF_SETS:-}; do SF+=(--set "$kv"); done
yume train self-forcing "${SF[@]}" >"$WORK/sf.log" 2>&1 || fail Self-Forcing "$WORK/sf.log"
grep -E "^step" "$WORK/sf.log" | awk 'NR % 4 == 1' | tail -12
cp "$WORK/sf.log" "$OUT/sf.log"
CKPT=$(ls -d "$WORK"/sf/checkpoints/step-* | tail -1)
say "export $CKPT"
yume train export "$CKPT/generator/original" "$PKG/vae" "$WORK/model" --sampling release-4step --chunk-latents 8 \
    --move-speed 0.2 --text "$PKG/text" >"$WORK/export.log" 2>&1 || fail export "$WORK/export.log"
tar cf "$OUT/dit.tar" -C "$WORK/model" dit sampling.json
say "done"
