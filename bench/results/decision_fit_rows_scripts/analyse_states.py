import sys, pickle, random, time
import numpy as np
sys.path.insert(0, "/work/main")
from kala_lib.decision_fit import fit_head, fit_logistic, balanced_weights, L2_GRID
from kala_lib.decision import auc
from kala_lib import decision_eval
d = pickle.load(open(sys.argv[1], "rb"))
rows, val, S, S27 = d["rows"], d["val"], d["S"], d["S27"]
n = len(rows); Sf, Sv = S[:n], S[n:]
vy = np.array([r["label"] == "harmful" for r in val]); kala = np.array([decision_eval.validation_slice(r["source"]) == "kala" for r in val])
current = np.random.default_rng(0).normal(size=(6, S.shape[1])) * 0.01
def pts(m):
    return auc(m[vy].tolist(), m[~vy].tolist()), auc(m[vy & kala].tolist(), m[~vy & kala].tolist()), auc(m[vy & ~kala].tolist(), m[~vy & ~kala].tolist())
def run(tag, idx, scales):
    t = time.monotonic()
    fit = fit_head(current, Sf[idx], [rows[i] for i in idx], Sv, val, law_scales=scales)
    m = (Sv @ fit.rows.T); m = m[:, 1:].max(1) - m[:, 0]
    a, ak, ap = pts(m)
    print(f"{tag:<40} n={len(idx)} AUC {a:.3f} kala {ak:.3f} public {ap:.3f} l2 {fit.l2} s {fit.law_scale} law_acc {fit.val_law_accuracy} [{time.monotonic()-t:.0f}s]", flush=True)
prop = d["prop_ids"]
run("proportional 1500, scales as shipped", prop, (0.05, 0.1, 0.25, 0.5, 1.0))
run("proportional 1500, small scales", prop, (0.002, 0.005, 0.01, 0.02, 0.05))
cells = {}
for i, r in enumerate(rows): cells.setdefault((r["source"], r["label"]), []).append(i)
rng = random.Random(0)
for per in (125, 200, 400):
    idx = []
    for k in sorted(cells): idx += rng.sample(cells[k], min(per, len(cells[k])))
    run(f"per-cell <= {per}, small scales", idx, (0.002, 0.005, 0.01, 0.02, 0.05))
run("all dumped, small scales", list(range(n)), (0.002, 0.005, 0.01, 0.02, 0.05))
# SFT'd layer 27 readout, for reference (proportional rows)
for name, X in (("final", S), ("layer27", S27)):
    best = None
    y = np.array([rows[i]["label"] == "harmful" for i in prop]).astype(int)
    w = balanced_weights(y.tolist(), [str(rows[i]["source"]) for i in prop])
    for l2 in L2_GRID:
        f = fit_logistic(X[:n][prop], y, l2, sample_weight=w); s = f.scores(X[n:])
        a = pts(s)
        if best is None or a[0] > best[0][0]: best = (a, l2)
    print(f"SFT'd {name} logistic (proportional rows): AUC {best[0][0]:.3f} kala {best[0][1]:.3f} public {best[0][2]:.3f} l2 {best[1]}")
