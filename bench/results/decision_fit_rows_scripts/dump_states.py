import sys, time, random, pickle
import numpy as np, torch
sys.path.insert(0, "/work/main")
from kala_assets.resources import KalaWarehouse
from kala_lib import decision_eval
from kala_lib.chat_format import render_prompt
from kala_lib.decision_data import decision_records, from_table
from kala_lib.decision_fit import sample_fit_rows, prompt_states
from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model
ADAPTER = sys.argv[1]; OUT = sys.argv[2]
torch.set_num_threads(2)
dec = from_table(KalaWarehouse().read_records("decision_rows"))
train = [dict(r) for r in dec if r["split"] == "train"]
prop = sample_fit_rows(train, 1500, seed=0)
rng = random.Random(1); cells = {}
for r in train: cells.setdefault((r["source"], r["label"]), []).append(r)
extra = []
for k in sorted(cells): extra += rng.sample(cells[k], min(400, len(cells[k])))
seen = set(); rows = []
for r in prop + extra:
    key = id(r)
    if key not in seen: seen.add(key); rows.append(r)
val = decision_eval.validation_prompts(decision_records(dec, "val"), 400)
profile = get_profile("smollm2-135m"); tok = adapter_tokenizer(profile, ADAPTER) if ADAPTER != "base" else __import__("kala_lib.models", fromlist=["x"]).load_tokenizer(profile)
model = (load_adapter_model(profile, ADAPTER) if ADAPTER != "base" else __import__("kala_lib.models", fromlist=["x"]).load_model(profile)).eval()
prompts = [render_prompt(tok, list(r["messages"]), profile.prompt_format) for r in rows + val]
t = time.monotonic(); S = prompt_states(model, tok, prompts, layers=[18, 24, 27, -1])
print(f"{len(prompts)} states in {time.monotonic()-t:.0f} s", flush=True)
pickle.dump({"rows": rows, "n_prop": len(prop), "prop_ids": [rows.index(r) for r in prop], "val": val,
             "S": S[-1], "S27": S[27], "S18": S[18], "S24": S[24]}, open(OUT, "wb"))
