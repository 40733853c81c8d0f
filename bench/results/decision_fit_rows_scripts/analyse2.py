import sys, pickle, random
import numpy as np
sys.path.insert(0, "/work/main")
from kala_lib.decision_fit import fit_head
from kala_lib.decision import auc
from kala_lib import decision_eval
from kala_lib.models import adapter_tokenizer, get_profile
from kala_lib.chat_format import render_prompt
d = pickle.load(open(sys.argv[1], "rb"))
rows, val, S = d["rows"], d["val"], d["S"]; n = len(rows); Sf, Sv = S[:n], S[n:]
p = get_profile("smollm2-135m"); tok = adapter_tokenizer(p, "/work/cold6/data/training/6c551d9528004af0/checkpoints/step-000020/fitted")
L = np.array([len(tok(render_prompt(tok, list(r["messages"]), p.prompt_format), add_special_tokens=False)["input_ids"]) for r in rows + val])
vy = np.array([r["label"] == "harmful" for r in val]); kala = np.array([decision_eval.validation_slice(r["source"]) == "kala" for r in val])
cur = np.zeros((6, S.shape[1]))
def cost(idx): return (L[idx].sum() + L[n:].sum()) / (L[d["prop_ids"]].sum() + L[n:].sum())
def run(tag, idx):
    fit = fit_head(cur, Sf[idx], [rows[i] for i in idx], Sv, val, law_scales=(0.002, 0.005, 0.01, 0.02, 0.05))
    m = Sv @ fit.rows.T; m = m[:, 1:].max(1) - m[:, 0]
    print(f"{tag:<36} n={len(idx)} cost x{cost(idx):.2f} AUC {fit.val_auc:.3f} kala {auc(m[vy&kala].tolist(), m[~vy&kala].tolist()):.3f} public {auc(m[vy&~kala].tolist(), m[~vy&~kala].tolist()):.3f} l2 {fit.l2} s {fit.law_scale} law {fit.val_law_accuracy:.2f}", flush=True)
run("proportional 1500 (seed 0)", d["prop_ids"])
cells = {}
for i, r in enumerate(rows): cells.setdefault((r["source"], r["label"]), []).append(i)
for per in (250, 300, 400):
    for cap in (None, 384):
        for seed in (0, 1, 2):
            rng = random.Random(seed); idx = []
            for k in sorted(cells):
                pool = [i for i in cells[k] if cap is None or L[i] <= cap]
                idx += rng.sample(pool, min(per, len(pool)))
            run(f"per-cell<={per} len<={cap} seed {seed}", idx)
