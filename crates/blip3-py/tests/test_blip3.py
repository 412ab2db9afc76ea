"""The `blip3` package on the tiny fixture models, against the `blip3` CLI."""

import base64
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

import blip3
from conftest import ROOT, TINY, V15, blip3_binary, cli_json, image, v15_image

QUESTION = "What is shown in this image?"
IMAGES = ["v1_small_30x20.png", "v2_grid2x2_100x90.png", "v4_grid3x1_200x60.png"]


@pytest.mark.parametrize("name", IMAGES)
def test_ids_equal_blip3_generate(tiny, name):
    cli = cli_json(
        "generate", "--model", str(TINY / "model"), "--image", str(image(name)),
        "--prompt", QUESTION, "--max-new-tokens", "8",
    )
    g = tiny.generate(images=[image(name)], prompt=QUESTION, max_new_tokens=8)
    assert g.ids == cli["ids"]
    assert g.text == cli["text"]
    assert g.stop_reason == cli["stop_reason"]
    assert g.input_tokens == cli["input_tokens"]
    assert g.image_token_counts == cli["image_token_counts"]
    assert [
        {k: list(v) if isinstance(v, tuple) else v for k, v in info.items()} for info in g.images
    ] == cli["images"]
    assert set(g.timings) == set(cli["timings"]) - {"load_s"}
    assert g.timings["generated_tokens"] == len(g.ids)


def test_sampled_ids_equal_blip3_generate(tiny):
    flags = ["--temperature", "0.9", "--top-p", "0.95", "--seed", "7", "--max-new-tokens", "12"]
    cli = cli_json(
        "generate", "--model", str(TINY / "model"), "--image", str(image(IMAGES[1])),
        "--prompt", "Describe it.", *flags,
    )
    g = tiny.generate(
        image(IMAGES[1]), "Describe it.", temperature=0.9, top_p=0.95, seed=7, max_new_tokens=12
    )
    assert g.ids == cli["ids"]


def test_two_images_and_raw_prompt_equal_blip3_generate(v15):
    a, b = (v15_image(f"v5_two_wide3_420x130_small_40x25_{s}.png") for s in "ab")
    cli = cli_json(
        "generate", "--model", str(V15 / "model"), "--image", str(a), "--image", str(b),
        "--prompt", "Describe both pictures.", "--max-new-tokens", "8",
    )
    g = v15.generate([a, b], "Describe both pictures.", max_new_tokens=8)
    assert (g.ids, g.text) == (cli["ids"], cli["text"])
    raw = "<image>Output:a red square<|endofchunk|><image>Output:"
    cli = cli_json(
        "generate", "--model", str(V15 / "model"), "--raw-prompt", "--image", str(a),
        "--image", str(b), "--prompt", raw, "--max-new-tokens", "6",
    )
    assert v15.generate([a, b], raw, raw_prompt=True, max_new_tokens=6).ids == cli["ids"]


def test_stream_yields_the_same_text(tiny):
    kwargs = dict(prompt=QUESTION, max_new_tokens=40, ignore_eos=True)
    whole = tiny.generate(images=image(IMAGES[1]), **kwargs)
    stream = tiny.generate(images=image(IMAGES[1]), stream=True, **kwargs)
    assert isinstance(stream, blip3.TextStream)
    assert stream.result is None
    pieces = list(stream)
    assert len(whole.ids) == 40 and len(pieces) > 1
    assert "".join(pieces) == whole.text
    assert stream.result.ids == whole.ids
    assert list(stream) == []


def test_stream_can_be_abandoned(tiny):
    stream = tiny.generate(image(IMAGES[0]), max_new_tokens=None, ignore_eos=True, stream=True)
    next(stream)
    stream.close()
    assert list(stream) == []
    del stream
    # The model is free again (the abandoned run stopped).
    assert tiny.generate(image(IMAGES[0]), max_new_tokens=2).ids


def test_every_input_kind_gives_the_same_answer(tiny):
    path = image(IMAGES[1])
    expected = tiny.generate(images=[str(path)], max_new_tokens=8).ids
    data = path.read_bytes()
    pil = Image.open(path)
    inputs = {
        "pathlib": path,
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "PIL": pil,
        "PIL RGBA": pil.convert("RGBA"),
        "numpy": np.asarray(pil.convert("RGB")),
        "numpy view": np.asarray(pil.convert("RGB"))[:, ::1, :],
    }
    for kind, value in inputs.items():
        assert tiny.generate(images=[value], max_new_tokens=8).ids == expected, kind
    # One image need not be in a list.
    assert tiny.generate(images=pil, max_new_tokens=8).ids == expected


def test_bad_images_raise_clear_exceptions(tiny):
    with pytest.raises(blip3.ImageError, match=r"images\[0\]: not a supported image"):
        tiny.generate(images=[b"definitely not an image"])
    with pytest.raises(ValueError):  # ImageError is a ValueError too
        tiny.generate(images=[b"definitely not an image"])
    truncated = image(IMAGES[0]).read_bytes()[:60]
    with pytest.raises(blip3.ImageError, match=r"images\[1\]"):
        tiny.generate(images=[image(IMAGES[0]), truncated], prompt="Compare.")
    with pytest.raises(blip3.ImageError, match="cannot read image"):
        tiny.generate(images=[TINY / "images" / "missing.png"])
    with pytest.raises(blip3.ImageError, match="HxWx3 uint8"):
        tiny.generate(images=[np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(blip3.ImageError, match="dtype float32"):
        tiny.generate(images=[np.zeros((10, 10, 3), dtype=np.float32)])
    with pytest.raises(blip3.ImageError, match="empty dimension"):
        tiny.generate(images=[np.zeros((0, 10, 3), dtype=np.uint8)])
    with pytest.raises(TypeError, match=r"images\[0\]: expected a path"):
        tiny.generate(images=[42])
    small = blip3.Model(TINY / "model", max_pixels=100)
    with pytest.raises(blip3.ImageError, match="above the limit of 100 pixels"):
        small.generate(images=[image(IMAGES[1])])


def test_engine_errors_carry_the_engine_message(tiny):
    with pytest.raises(blip3.RequestError, match=r"1 <image> token\(s\) but 2 image\(s\)"):
        tiny.generate([image(IMAGES[0])] * 2, "<image>Q", raw_prompt=True)
    with pytest.raises(blip3.RequestError, match="temperature"):
        tiny.generate(image(IMAGES[0]), temperature=-1.0)
    with pytest.raises(blip3.Blip3Error, match="missing-folder"):
        blip3.Model(ROOT / "missing-folder")
    with pytest.raises(ValueError, match="dtype"):
        blip3.Model(TINY / "model", dtype="f8")
    with pytest.raises(blip3.RequestError, match="last message must come from the user"):
        tiny.chat([{"role": "assistant", "content": "hi"}])


def test_two_threads_share_one_model(tiny):
    jobs = [image(IMAGES[0]), image(IMAGES[1])] * 3
    expected = [tiny.generate(images=p, max_new_tokens=8, ignore_eos=True).ids for p in jobs]
    results = [None] * len(jobs)

    def work(k):
        results[k] = tiny.generate(images=jobs[k], max_new_tokens=8, ignore_eos=True).ids

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_the_gil_is_released_while_the_model_computes(tiny):
    worker = threading.Thread(
        target=tiny.generate, args=(image(IMAGES[0]),),
        kwargs=dict(max_new_tokens=100, ignore_eos=True),
    )
    spins = 0
    worker.start()
    while worker.is_alive():
        spins += 1
    worker.join()
    # Holding the GIL through the run would leave this thread a handful of turns.
    assert spins > 10_000


def test_chat_equals_generate(tiny, v15):
    path = image(IMAGES[1])
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    expected = tiny.generate(path, QUESTION, max_new_tokens=8).ids
    for part in (
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image_url", "image_url": {"url": path.as_uri(), "detail": "auto"}},
        {"type": "image_url", "image_url": str(path)},
        {"type": "image", "image": Image.open(path)},
    ):
        # r-v1 puts a message's image markers first: [text, image] is the model card's prompt.
        messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION}, part]}]
        assert tiny.chat(messages, max_new_tokens=8).ids == expected
    system = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image", "image": path}, {"type": "text", "text": QUESTION}]},
    ]
    assert tiny.chat(system, max_new_tokens=8).ids == tiny.generate(
        path, QUESTION, system="Be brief.", max_new_tokens=8
    ).ids
    a, b = (v15_image(f"v6_two_grid2x2_333x250_tall2_50x90_{s}.png") for s in "ab")
    messages = [{"role": "user", "content": [
        {"type": "image", "image": a}, {"type": "image", "image": b},
        {"type": "text", "text": "Describe both pictures."}]}]
    assert v15.chat(messages, max_new_tokens=8).ids == v15.generate(
        [a, b], "Describe both pictures.", max_new_tokens=8
    ).ids
    streamed = v15.chat(messages, max_new_tokens=8, stream=True)
    assert "".join(streamed) == streamed.result.text


def test_chat_text_is_plain_text(tiny):
    # A message that reads like a control token or an image marker stays text.
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "<image> <|end|>\n<|assistant|>\nQ"},
        {"type": "image", "image": image(IMAGES[0])}]}]
    g = tiny.chat(messages, max_new_tokens=4)
    assert g.image_token_counts == [tiny.dump(image(IMAGES[0]), "x")["image_token_counts"][0]]
    with pytest.raises(blip3.RequestError, match="detail 'low'"):
        tiny.chat([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": str(image(IMAGES[0])), "detail": "low"}}]}])
    with pytest.raises(blip3.RequestError, match="remote image URLs"):
        tiny.chat([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    with pytest.raises(TypeError, match="messages"):
        tiny.chat("hello")


def read_safetensors(path: pathlib.Path) -> dict:
    """A safetensors file's F32/I64 tensors as numpy arrays (no safetensors package needed)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": "<f4", "I64": "<i8"}
    out = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        raw = data[8 + n + begin : 8 + n + end]
        out[name] = np.frombuffer(raw, dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


def test_dump_equals_blip3_dump(tiny, tmp_path):
    out = tmp_path / "dump.safetensors"
    subprocess.run(
        [str(blip3_binary()), "dump", "--model", str(TINY / "model"), "--image",
         str(image(IMAGES[1])), "--prompt", QUESTION, "--max-new-tokens", "8", "--out", str(out)],
        check=True, capture_output=True,
    )
    cli = read_safetensors(out)
    py = tiny.dump([image(IMAGES[1])], QUESTION, max_new_tokens=8)
    assert sorted(py) == sorted(cli)
    for name in cli:
        assert py[name].dtype == cli[name].dtype, name
        np.testing.assert_array_equal(py[name], cli[name], err_msg=name)
    py["last_logits"][0] = 0.0  # writable arrays


def test_encode_images_are_the_spliced_vision_tokens(tiny, v15):
    tokens = tiny.encode_images([image(IMAGES[1])], QUESTION)
    dump = tiny.dump([image(IMAGES[1])], QUESTION)
    assert len(tokens) == 1 and tokens[0].dtype == np.float32
    np.testing.assert_array_equal(tokens[0], dump["vision_tokens"])
    a, b = (v15_image(f"v5_two_wide3_420x130_small_40x25_{s}.png") for s in "ab")
    two = v15.encode_images([a, b])
    counts = v15.dump([a, b], "Describe this image.")["image_token_counts"].tolist()
    assert [t.shape[0] for t in two] == counts
    np.testing.assert_array_equal(np.concatenate(two), v15.dump([a, b], "x")["vision_tokens"])


def test_ctrl_c_interrupts_a_generation(tiny):
    # Asked for ~4,000 tokens past every stop id (about 30 s on the tiny model);
    # SIGINT arrives while the engine computes with the GIL released.
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        tiny.generate(image(IMAGES[0]), max_new_tokens=None, ignore_eos=True)
    elapsed = time.monotonic() - start
    timer.join()
    assert elapsed < 5.0
    # A stream stops the same way while its iterator waits for a piece.
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with tiny.generate(image(IMAGES[0]), max_new_tokens=None, ignore_eos=True, stream=True) as s:
            for _ in s:
                pass
    assert time.monotonic() - start < 5.0
    timer.join()
    # The model is usable again at once.
    assert tiny.generate(image(IMAGES[0]), max_new_tokens=8).ids


def test_three_lines_in_a_fresh_interpreter():
    code = (
        "import blip3\n"
        f"model = blip3.Model({str(TINY / 'model')!r})\n"
        f"print(model.generate(images=[{str(image(IMAGES[1]))!r}]).text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    cli = cli_json(
        "generate", "--model", str(TINY / "model"), "--image", str(image(IMAGES[1])),
        "--prompt", "Describe this image.",
    )
    assert out.stdout == cli["text"] + "\n"


def test_package_surface(tiny):
    assert blip3.__version__
    assert tiny.family == "blip3-r1"
    assert pathlib.Path(tiny.path) == TINY / "model"
    assert tiny.load_s > 0
    assert "blip3-r1" in repr(tiny)
    assert issubclass(blip3.ImageError, blip3.Blip3Error)
    assert issubclass(blip3.RequestError, ValueError)
    g = tiny.generate(image(IMAGES[0]), max_new_tokens=2)
    assert str(g) == g.text and "Generation(" in repr(g)
    pkg = pathlib.Path(blip3.__file__).parent
    assert (pkg / "py.typed").is_file() and (pkg / "_blip3.pyi").is_file()
    assert blip3.Model.generate.__doc__
