"""Rendering chat messages as plain text, for models without a chat template.

One renderer serves the prompt/completion export and (later) models such as Pythia whose
tokenizer has no chat template, so training and evaluation see the same format.
"""

from __future__ import annotations

_HEADERS = {"system": "### System:", "user": "### User:", "assistant": "### Assistant:"}


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
