"""Feasibility v2: top-layer LoRA decision fine-tune from cached layer-K suffix states, shared prefix."""
import sys, time
import numpy as np, torch
sys.path.insert(0, "/work/main")
from transformers import DynamicCache
from kala_assets.resources import KalaWarehouse
from kala_lib import decision_eval
from kala_lib.chat_format import render_prompt
from kala_lib.decision import auc
from kala_lib.decision_data import decision_records, from_table
from kala_lib.decision_fit import balanced_weights, sample_fit_rows, fit_logistic, L2_GRID, common_prefix_length
from kala_lib.models import adapter_tokenizer, get_profile, load_adapter_model

K = int(sys.argv[1]); EPOCHS = int(sys.argv[2]); LR = float(sys.argv[3]); NFIT = int(sys.argv[4])
ADAPTER = sys.argv[5] if len(sys.argv) > 5 else "/work/cold6/data/training/6c551d9528004af0/checkpoints/step-000020/fitted"
torch.set_num_threads(2); torch.manual_seed(0)
wh = KalaWarehouse(); dec = from_table(wh.read_records("decision_rows"))
fit_rows = sample_fit_rows([dict(r) for r in dec if r["split"] == "train"], NFIT, seed=0)
val_rows = decision_eval.validation_prompts(decision_records(dec, "val"), 400)
profile = get_profile("smollm2-135m"); tok = adapter_tokenizer(profile, ADAPTER)
model = load_adapter_model(profile, ADAPTER).eval()
prompts = [render_prompt(tok, list(r["messages"]), profile.prompt_format) for r in [*fit_rows, *val_rows]]
enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
MAXLEN = 512
enc = [e if len(e) <= MAXLEN else e[:common_prefix_length([enc[0], e])] + e[-(MAXLEN - 60):] for e in enc]
P = common_prefix_length(enc); print("shared prefix", P, flush=True)
fy = np.array([r["label"] == "harmful" for r in fit_rows]); vy = np.array([r["label"] == "harmful" for r in val_rows])
kala = np.array([decision_eval.validation_slice(r["source"]) == "kala" for r in val_rows])
w = balanced_weights(fy.astype(int).tolist(), [str(r["source"]) for r in fit_rows]); w = w / w.sum() * len(w)
dm = model.get_base_model().model; cfg = dm.config
pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
suf = [e[P:] for e in enc]

def expand(cache_layers, B):
    data = []
    for i in range(cfg.num_hidden_layers):
        k, v = cache_layers[i]
        data.append((k.expand(B, *k.shape[1:]), v.expand(B, *v.shape[1:])))
    return DynamicCache(ddp_cache_data=data, config=cfg)

def pack(chunk, states=None):
    width = max(len(suf[i]) for i in chunk)
    att = torch.zeros((len(chunk), width), dtype=torch.long)
    if states is None:
        x = torch.full((len(chunk), width), pad)
    else:
        x = torch.zeros((len(chunk), width, cfg.hidden_size))
    for r, i in enumerate(chunk):
        n = len(suf[i]); att[r, :n] = 1
        if states is None: x[r, :n] = torch.tensor(suf[i])
        else: x[r, :n] = states[i].float()
    return x, torch.cat([att.new_ones(len(chunk), P), att], 1), torch.tensor([len(suf[i]) - 1 for i in chunk])

t0 = time.monotonic()
with torch.no_grad():
    pre = dm(input_ids=torch.tensor([enc[0][:P]]), use_cache=True, output_hidden_states=True)
    prefix_K = pre.hidden_states[K][0].clone()
    full_prefix = [(l.keys, l.values) for l in pre.past_key_values.layers]
    cache = [None] * len(enc)
    order = sorted(range(len(enc)), key=lambda i: len(suf[i]))
    for s in range(0, len(order), 16):
        chunk = order[s:s+16]; ids, att, last = pack(chunk)
        hs = dm(input_ids=ids, attention_mask=att, past_key_values=expand(full_prefix, len(chunk)), use_cache=True, output_hidden_states=True).hidden_states
        for r, i in enumerate(chunk):
            cache[i] = hs[K][r, :len(suf[i])].to(torch.bfloat16).clone()
print(f"cached layer {K} of {len(enc)} prompts in {time.monotonic()-t0:.0f} s", flush=True)

dm.layers = torch.nn.ModuleList(list(dm.layers)[K:])
for p in model.parameters(): p.requires_grad = False
top = [p for n, p in dm.layers.named_parameters() if "lora_" in n]
for p in top: p.requires_grad = True
zeros = [(torch.zeros_like(k), torch.zeros_like(v)) for k, v in full_prefix[:K]]

def top_final(chunk):
    pre = dm(inputs_embeds=prefix_K[None], use_cache=True)
    kv = zeros + [(l.keys, l.values) for l in pre.past_key_values.layers[K:]]
    x, att, last = pack(chunk, cache)
    h = dm(inputs_embeds=x, attention_mask=att, past_key_values=expand(kv, len(chunk)), use_cache=True).last_hidden_state
    return h[torch.arange(len(chunk)), last]

nfit = len(fit_rows); fit_idx = list(range(nfit)); val_idx = list(range(nfit, len(enc)))
def states(idx):
    S = np.zeros((len(idx), cfg.hidden_size), dtype=np.float32); pos = {i: j for j, i in enumerate(idx)}
    srt = sorted(idx, key=lambda i: len(suf[i]))
    with torch.no_grad():
        for s in range(0, len(srt), 32):
            chunk = srt[s:s+32]; h = top_final(chunk)
            S[[pos[i] for i in chunk]] = h.float().numpy()
    return S
def report(tag, s):
    a = auc(s[vy].tolist(), s[~vy].tolist()); ak = auc(s[vy & kala].tolist(), s[~vy & kala].tolist()); ap = auc(s[vy & ~kala].tolist(), s[~vy & ~kala].tolist())
    print(f"{tag}: val AUC {a:.3f} (kala {ak:.3f}, public {ap:.3f})", flush=True); return a
def refit(tag):
    model.eval(); t = time.monotonic(); S = states(fit_idx + val_idx); best = None
    for l2 in L2_GRID:
        f = fit_logistic(S[:nfit], fy.astype(int), l2, sample_weight=w); s = f.scores(S[nfit:])
        a = auc(s[vy].tolist(), s[~vy].tolist())
        if best is None or a > best[0]: best = (a, l2, f, s)
    report(f"{tag} refit l2 {best[1]} [{time.monotonic()-t:.0f} s]", best[3]); return best[2]

f = refit("before")
wv = torch.nn.Parameter(torch.tensor(f.weight, dtype=torch.float32)); bv = torch.nn.Parameter(torch.tensor(f.bias, dtype=torch.float32).reshape(1))
opt = torch.optim.AdamW([{"params": top, "lr": LR, "weight_decay": 0.0}, {"params": [wv, bv], "lr": LR * 0.1, "weight_decay": 0.0}])
yt = torch.tensor(fy, dtype=torch.float32); wt = torch.tensor(w, dtype=torch.float32)
rng = np.random.default_rng(0)
srt = sorted(fit_idx, key=lambda i: len(suf[i])); buckets = [srt[s:s+16] for s in range(0, nfit, 16)]
for epoch in range(EPOCHS):
    model.train(); t = time.monotonic(); tot = 0
    for bi in rng.permutation(len(buckets)):
        chunk = buckets[bi]; z = top_final(chunk) @ wv + bv
        loss = (wt[chunk] * torch.nn.functional.binary_cross_entropy_with_logits(z, yt[chunk], reduction="none")).mean()
        opt.zero_grad(); loss.backward(); opt.step(); tot += loss.item() * len(chunk)
    model.eval()
    s = states(val_idx).astype(np.float64) @ wv.detach().double().numpy() + float(bv)
    report(f"epoch {epoch+1} loss {tot/nfit:.4f} [{time.monotonic()-t:.0f} s] trained readout", s)
refit("after")
