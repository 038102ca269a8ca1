"""What a finished run's embedding says about its classes, and the Explore figures of RESULTS.md.

    SIGSCOPE_RUNS_DIR=/work/explore-results .venv/bin/python bench/explore_findings.py --run RUN_ID

Prints, for the run's test windows, the share of each window's 10 nearest neighbours (in the
standardized forward_features embedding) that belong to each class, the most mixed class
pairs and the test errors by (true, predicted); then renders the test windows' UMAP map and
the channel importance (permutation, 10 repeats) to docs/results/ with Debian's Chromium.
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core.store import Store
from core.explore import embed_run, project
from core.explore.importance import importance
from sklearn.neighbors import NearestNeighbors
from dashboard import explore_figures as ef
from figures_png import PngRenderer

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--run", required=True)
parser.add_argument("--out", default="docs/results/explore_hapt", help="figure path prefix")
args = parser.parse_args()
R = args.run
store = Store()
emb = embed_run(R, store)
t = emb.table
names = t.class_names
test = t.split == "test"
v = emb.vectors[test]
v = (v - v.mean(0)) / (v.std(0) + 1e-8)
y = t.labels[test]
nn = NearestNeighbors(n_neighbors=11).fit(v)
_, idx = nn.kneighbors(v)
nb = y[idx[:, 1:]]
K = len(names)
mix = np.zeros((K, K))
for i in range(K):
    rows = nb[y == i]
    for j in range(K):
        mix[i, j] = (rows == j).mean()
print("share of each test window's 10 nearest neighbours (128-D embedding) in each class:")
print(" " * 20 + " ".join(f"{n[:9]:>9}" for n in names))
for i in range(K):
    print(f"{names[i]:>20}" + " ".join(f"{mix[i, j]:9.3f}" for j in range(K)))
pairs = sorted(((mix[i, j] + mix[j, i]) / 2, names[i], names[j]) for i in range(K) for j in range(i + 1, K))[::-1]
print("most mixed pairs:", [(a, b, round(m, 3)) for m, a, b in pairs[:4]])
pred = emb.predicted[test]
errors = [(names[a], names[b]) for a, b in zip(y, pred) if a != b]
print("test errors:", len(errors), "of", test.sum(), Counter(errors).most_common(5))
proj = project(emb, "umap", seed=0)
frame = t.frame()
frame["predicted"] = [names[i] for i in emb.predicted]
frame["confidence"] = emb.confidence
frame["correct"] = emb.correct
sel = np.flatnonzero(test)
fig = ef.projection_map(proj.xy[sel], frame.iloc[sel].reset_index(drop=True), "true", names,
                        title="HAPT test subjects 20-25: hapt_resnet1d's features, UMAP")
imp = importance(R, by="channel", repeats=10, store=store)
bars = ef.importance_bars(imp.names, imp.drop, imp.low, imp.high, title="Channel importance (permutation, 10 repeats)")
with PngRenderer() as png:
    png.render(fig, f"{args.out}_umap.png")
    png.render(bars, f"{args.out}_channels.png")
print("figures written")
