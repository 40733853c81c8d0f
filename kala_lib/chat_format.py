"""Rendering chat messages as plain text, for models without a chat template.

One renderer serves the prompt/completion export and (later) models such as Pythia whose
tokenizer has no chat template, so training and evaluation see the same format.
"""

from __future__ import annotations

_HEADERS = {"system": "### System:", "user": "### User:", "assistant": "### Assistant:"}


def with_system(system: str | None, messages) -> list[dict[str, str]]:
    """``messages`` after a system turn holding ``system`` (none when ``system`` is empty)."""
    return ([{"role": "system", "content": system}] if system else []) + list(messages)


def render_plain_prompt(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """``### Role:`` blocks separated by blank lines, ending with an open assistant header."""
    parts = []
    for message in messages:
        role = message["role"]
        if role not in _HEADERS:
            raise ValueError(f"unknown role {role!r} in chat message")
        parts.append(f"{_HEADERS[role]}\n{message['content'].strip()}")
    if add_generation_prompt:
        parts.append(_HEADERS["assistant"] + "\n")
    return "\n\n".join(parts)


def render_prompt(tokenizer, messages: list[dict[str, str]], prompt_format: str) -> str:
    """The text a model sees before it answers: its chat template, or KALA's plain format."""
    if prompt_format == "chat_template":
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return render_plain_prompt(messages)


def end_of_turn(tokenizer, prompt_format: str) -> str:
    """What closes an assistant turn, so the model learns to stop."""
    # convert_tokens_to_ids, not get_vocab(): building the vocab dict costs ~30 ms per call.
    if prompt_format == "chat_template" and tokenizer.convert_tokens_to_ids("<|im_end|>") not in (None, tokenizer.unk_token_id):
        return "<|im_end|>"
    return tokenizer.eos_token or ""


def plain_chat_template() -> str:
    """KALA's plain ``### Role:`` format as a Jinja chat template, for tokenizers without one."""
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '### System:\\n' + message['content'] | trim }}"
        "{% elif message['role'] == 'user' %}{{ '### User:\\n' + message['content'] | trim }}"
        "{% else %}{{ '### Assistant:\\n' + message['content'] | trim }}{% endif %}"
        "{% if not loop.last %}{{ '\\n\\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '\\n\\n### Assistant:\\n' }}{% endif %}"
    )


def with_default_system(template: str | None, system_prompt: str) -> str:
    """``template`` (or the plain format) with ``system_prompt`` as the system turn whenever a
    conversation has none: a promoted model chats under the constitution it was trained and
    evaluated with, instead of its base model's default system prompt."""
    import json

    prelude = (
        "{%- if messages and messages[0]['role'] != 'system' -%}"
        "{%- set messages = [{'role': 'system', 'content': " + json.dumps(system_prompt) + "}] + messages -%}"
        "{%- endif -%}"
    )
    return prelude + (template or plain_chat_template())
