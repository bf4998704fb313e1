# changes.py CACHE [CHUNK HISTORY_MIN HISTORY_MAX]: of the history lengths a v2v flow batch draws from
# (`yume.data.loader`: HISTORY_MIN .. min(HISTORY_MAX, frames - CHUNK); flow-t1.toml: 8, 1, 72), how many give a
# chunk whose caption's action (the most common over its latents) differs from the last history latent's, clip by
# clip of a latent cache; the benchmark asks for a new action in every chunk after its first.
import sys
from collections import Counter

from yume.data.cache import LatentCache

cache = LatentCache(sys.argv[1])
chunk, hmin, hmax = (int(v) for v in sys.argv[2:5]) if len(sys.argv) > 4 else (8, 1, 72)
counts = Counter()
for clip in cache.clips:
    a = clip.actions
    starts = range(hmin, min(hmax, clip.frames - chunk) + 1)
    changed = sum(Counter(a[s : s + chunk]).most_common(1)[0][0] != a[s - 1] for s in starts)
    counts[(changed, len(starts))] += 1
for (changed, total), clips in sorted(counts.items()):
    print(f"{clips} clips: {changed} of {total} history lengths give a chunk whose action differs from the history's")
