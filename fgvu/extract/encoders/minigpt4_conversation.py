"""How MiniGPT-4 is asked and answers: the official conversation templates, answer cleanup, decoding.

The templates are those of the official `minigpt4/conversation/conversation.py`
(`CONV_VISION_Vicuna0`, `CONV_VISION_LLama2`); the image tokens replace `<ImageHere>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fgvu.extract.encoders.minigpt4_config import MiniGPT4Error

IMAGE_PLACEHOLDER = "<ImageHere>"
SYSTEM_MESSAGE = (
    "Give the following image: <Img>ImageContent</Img>. "
    "You will be able to see the image once I provide it to you. Please answer my questions."
)


@dataclass(frozen=True)
class ConversationTemplate:
    """One turn of MiniGPT-4's `Conversation` with `SeparatorStyle.SINGLE`."""

    user_role: str
    assistant_role: str
    separator: str

    def render(self, question: str) -> str:
        """The prompt `Chat` builds after `upload_img`, `ask(question)` and `answer_prepare`."""
        user_message = f"<Img>{IMAGE_PLACEHOLDER}</Img> {question}"
        return SYSTEM_MESSAGE + self.separator + self.user_role + user_message + self.separator + self.assistant_role


TEMPLATES = {
    "vicuna0": ConversationTemplate(user_role="Human: ", assistant_role="Assistant: ", separator="###"),
    "llama2": ConversationTemplate(user_role="<s>[INST] ", assistant_role=" [/INST] ", separator=""),
}


def clean_answer(text: str, variant: str) -> str:
    """Cut a generated answer the way the official code does (stop sign, role echo)."""
    if variant == "vicuna0":
        return text.split("###")[0].split("Assistant:")[-1].strip()
    return text.split("</s>")[0].replace("<s>", "").split("[/INST]")[-1].strip()


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding: greedy by default; a temperature switches to sampling (top-p 0.9, as `Chat`)."""

    max_new_tokens: int = 30
    num_beams: int = 1
    temperature: float | None = None
    min_new_tokens: int = 0  # benchmarks force a fixed length with min_new_tokens == max_new_tokens

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_beams < 1 or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise MiniGPT4Error(f"invalid generation settings: {self}")
        if self.temperature is not None and self.temperature <= 0:
            raise MiniGPT4Error(f"temperature must be positive, got {self.temperature}")
