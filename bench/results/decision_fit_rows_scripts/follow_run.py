import sys, time
sys.path.insert(0, "/work/main")
import torch
from pathlib import Path
from kala_lib.models import get_profile, load_adapter_model, adapter_tokenizer
from kala_lib.training import target_loss_module, read_messages, _save_adapter
from kala_lib.decision_follow import refusal_examples, tune_refusal_rows, input_rows
from kala_lib.decision_fit import head_rows
adapter, train_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
steps, lr, tokens, batch = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
torch.set_num_threads(2)
profile = get_profile("smollm2-135m")
model = load_adapter_model(profile, adapter)
tok = adapter_tokenizer(profile, adapter)
lm = target_loss_module()(model, autocast_dtype=torch.bfloat16)
ex = refusal_examples(tok, read_messages(train_file), profile.prompt_format, tokens)
h0, i0 = head_rows(model, tok), input_rows(model, tok)
r = tune_refusal_rows(model, tok, lm, ex, steps, lr, batch, log=print)
h1, i1 = head_rows(model, tok), input_rows(model, tok)
print(r.summary(), "head unchanged", abs(h1-h0).max(), "respond unchanged", abs(i1[0]-i0[0]).max(), "refuse moved", abs(i1[1:]-i0[1:]).max())
_save_adapter(model, Path(out), tok)
