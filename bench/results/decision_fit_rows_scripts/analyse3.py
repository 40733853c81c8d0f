"""Same rows (new sampler applied to the dumped rows, 3000), base readouts per layer vs the SFT'd model's fitted head."""
import sys, pickle
import numpy as np
sys.path.insert(0, "/work/main")
from kala_lib.decision_fit import fit_head, fit_logistic, balanced_weights, sample_fit_rows, L2_GRID
from kala_lib.decision import auc
from kala_lib import decision_eval
A = pickle.load(open("/work/tmp/states_cold6.pkl", "rb")); B = pickle.load(open("/work/tmp/states_base.pkl", "rb"))
assert [r["key"] for r in A["rows"]] == [r["key"] for r in B["rows"]] and [r["key"] for r in A["val"]] == [r["key"] for r in B["val"]]
rows, val = A["rows"], A["val"]; n = len(rows)
vy = np.array([r["label"] == "harmful" for r in val]); kala = np.array([decision_eval.validation_slice(r["source"]) == "kala" for r in val])
def pts(m): return auc(m[vy].tolist(), m[~vy].tolist()), auc(m[vy&kala].tolist(), m[~vy&kala].tolist()), auc(m[vy&~kala].tolist(), m[~vy&~kala].tolist())
pos = {id(r): i for i, r in enumerate(rows)}
for limit, seed in ((1500, 0), (2000, 0), (3000, 0), (3000, 42)):
    idx = [pos[id(r)] for r in sample_fit_rows(rows, limit, seed, equal_cells=True)]
    y = np.array([rows[i]["label"] == "harmful" for i in idx]).astype(int); w = balanced_weights(y.tolist(), [str(rows[i]["source"]) for i in idx])
    out = []
    for name, X in (("base L18", B["S18"]), ("base L24", B["S24"]), ("base L27", B["S27"]), ("base L30", B["S"]), ("sft L30 logistic", A["S"])):
        best = None
        for l2 in L2_GRID:
            s = fit_logistic(X[idx], y, l2, sample_weight=w).scores(X[n:]); p = pts(s)
            if best is None or p[0] > best[0][0]: best = (p, l2)
        out.append(f"{name} {best[0][0]:.3f}")
    fit = fit_head(np.zeros((6, A["S"].shape[1])), A["S"][idx], [rows[i] for i in idx], A["S"][n:], val)
    m = A["S"][n:] @ fit.rows.T; m = m[:, 1:].max(1) - m[:, 0]; p = pts(m)
    print(f"limit {limit} seed {seed} n={len(idx)}: " + ", ".join(out) + f" | shipped fit {p[0]:.3f} (kala {p[1]:.3f} public {p[2]:.3f}, s {fit.law_scale}, law {fit.val_law_accuracy:.2f})", flush=True)
