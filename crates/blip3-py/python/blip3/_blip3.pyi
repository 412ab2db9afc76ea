"""Type stubs of the native module (the Rust bindings)."""

import os
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Union, overload

import numpy as np

try:  # Pillow is optional
    from PIL.Image import Image as _PILImage
except ImportError:  # pragma: no cover
    _PILImage = Any  # type: ignore[misc,assignment]

__version__: str

#: One image: a path, encoded PNG/JPEG/WebP/GIF/BMP bytes, a PIL image or an
#: ``HxWx3`` ``uint8`` RGB numpy array.
ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, _PILImage, np.ndarray]
#: One image or a list/tuple of images (``None``: no image).
Images = Union[ImageLike, Sequence[ImageLike], None]
#: An OpenAI-style chat message: ``{"role": ..., "content": str | [parts]}``.
Message = Dict[str, Any]

class Generation:
    """The result of one generation."""

    text: str
    """The answer (special tokens skipped, cut at ``<|end|>``)."""
    ids: List[int]
    """Generated token ids, the stop id included (the ids of ``blip3 generate --json``)."""
    stop_reason: str
    """``"end_<id>"``, ``"eos_<id>"`` or ``"max_new_tokens"``."""
    input_tokens: int
    """Prompt token ids before the images were spliced in (BOS included)."""
    timings: Dict[str, float]
    """Seconds per stage (``preprocess_s``, ``vision_encode_s``, ``resampler_s``, ``prefill_s``,
    ``ttft_s``, ``decode_s``), rates and token counts (``prefill_tokens``, ``generated_tokens``)."""
    images: List[Dict[str, Any]]
    """How each image was cut: ``image_size``, ``best_resolution``, ``grid``, ``num_crops``."""
    image_token_counts: List[int]
    """Visual tokens spliced per image (crops x 128)."""

class TextStream(Iterator[str]):
    """Pieces of the answer as they are generated (``stream=True``).

    Joined, the pieces are ``result.text``. Dropping or closing the stream (or leaving a
    ``with`` block) stops the generation at its next token; Ctrl-C while waiting raises
    ``KeyboardInterrupt``.
    """

    def __iter__(self) -> "TextStream": ...
    def __next__(self) -> str: ...
    @property
    def result(self) -> Optional[Generation]:
        """The ``Generation`` once the stream is exhausted, else ``None``."""
    def close(self) -> None:
        """Stops the generation at its next token; the iterator ends."""
    def __enter__(self) -> "TextStream": ...
    def __exit__(self, *exc_info: Any) -> bool:
        """Closes the stream (a ``with`` block stops an abandoned generation at once)."""

class Model:
    """A BLIP-3 / xGen-MM model loaded for inference.

    ``model`` is a Hugging Face model folder or a Hub id (``owner/name[@revision]``,
    fetched into / found in the standard HF cache). ``dtype``: in-memory weights
    (``"auto"`` keeps the stored dtype, ``"f32"``, ``"bf16"``); ``quantize``: ``None``,
    ``"q8_0"``, ``"q4_0"`` or ``"q4_k"`` (linear layers at load time); ``threads``:
    compute threads (the pool is sized once per process); ``kv_cache``: ``"auto"``,
    ``"f32"`` or ``"f16"``; ``aspect``: ``None`` (the config's), ``"anyres"`` or ``"pad"``;
    ``max_pixels``: the decompression-bomb guard.

    One model runs one request at a time; other threads wait (the GIL released).
    """

    def __init__(
        self,
        model: Union[str, "os.PathLike[str]"],
        *,
        dtype: str = "auto",
        quantize: Optional[str] = None,
        threads: Optional[int] = None,
        kv_cache: str = "auto",
        aspect: Optional[str] = None,
        max_pixels: int = 89_478_485,
    ) -> None: ...
    @property
    def family(self) -> str:
        """``"blip3-r1"`` or ``"xgenmm-v15"``."""
    @property
    def path(self) -> str:
        """The local model folder (a Hub id resolved to its snapshot)."""
    @property
    def load_s(self) -> float:
        """Seconds spent resolving and loading the model."""
    @overload
    def generate(
        self,
        images: Images = None,
        prompt: str = "Describe this image.",
        *,
        system: Optional[str] = None,
        raw_prompt: bool = False,
        max_new_tokens: Optional[int] = 768,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int = 0,
        ignore_eos: bool = False,
        stream: Literal[False] = False,
    ) -> Generation:
        """Answers ``prompt`` about ``images``, as ``blip3 generate`` does.

        The prompt is the family's chat frame (optional ``system`` prompt) with one image
        marker per image; with ``raw_prompt=True`` it is sent as is, with one ``<image>``
        per image (base models) and the completion stop rule. ``temperature=0`` is greedy;
        sampling is reproducible from ``seed``. ``max_new_tokens=None`` generates up to the
        context. Returns a ``Generation``, or with ``stream=True`` a ``TextStream``.
        """
    @overload
    def generate(
        self,
        images: Images = None,
        prompt: str = "Describe this image.",
        *,
        system: Optional[str] = None,
        raw_prompt: bool = False,
        max_new_tokens: Optional[int] = 768,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int = 0,
        ignore_eos: bool = False,
        stream: Literal[True],
    ) -> TextStream: ...
    @overload
    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: Optional[int] = 768,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int = 0,
        ignore_eos: bool = False,
        stream: Literal[False] = False,
    ) -> Generation:
        """Answers OpenAI-style chat messages with the prompt ``blip3 serve`` builds.

        Roles: ``system``/``developer``, ``user``, ``assistant`` (the last one ``user``).
        Content: a string, or parts ``{"type": "text", "text": ...}``,
        ``{"type": "image_url", "image_url": {"url": ...}}`` (a ``data:`` or ``file://`` URL,
        or a local path) and ``{"type": "image", "image": <image>}``. Messages' text is
        plain text: it cannot open a turn or place an image. Returns a ``Generation``, or
        with ``stream=True`` a ``TextStream``.
        """
    @overload
    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_new_tokens: Optional[int] = 768,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int = 0,
        ignore_eos: bool = False,
        stream: Literal[True],
    ) -> TextStream: ...
    def encode_images(
        self,
        images: Images,
        prompt: str = "Describe this image.",
        *,
        system: Optional[str] = None,
    ) -> List[np.ndarray]:
        """The vision tokens of ``images``: one float32 array ``[crops * 128, hidden]`` per
        image, the rows ``generate`` splices at its ``<image>`` for this ``prompt`` (r-v1
        instruct's perceiver reads the prompt; the other families ignore it)."""
    def dump(
        self,
        images: Images,
        prompt: str,
        *,
        system: Optional[str] = None,
        raw_prompt: bool = False,
        max_new_tokens: int = 8,
    ) -> Dict[str, np.ndarray]:
        """The stage tensors of one greedy run, as ``blip3 dump`` writes them: ``input_ids``,
        ``pixel_values``, ``vision_features``, ``vision_tokens``, ``inputs_embeds``,
        ``last_logits``, ``generated_ids``, ``image_token_counts``, ``debug.vit_tokens``, and
        ``vision_attn_mask`` / ``debug.text_embeds`` where the family has them."""
