"""GGUF files written with gguf.GGUFWriter in F32, F16, Q8_0, TQ2_0 (ternary) and a hand-packed
Q4_K, read back with known values; metadata carried over; 32-byte alignment; bad files refused."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from genome.errors import BadInput
from genome.formats import items_of, open_model, write_gguf


def pack_q4_k(d: float, dmin: float, sc: np.ndarray, mn: np.ndarray, q: np.ndarray) -> np.ndarray:
    """One Q4_K block (144 bytes) from scales sc[8], mins mn[8] (0..63) and nibbles q[256] (0..15)."""
    scales = np.zeros(12, np.uint8)
    scales[0:4] = (sc[0:4] & 0x3F) | ((sc[4:8] >> 4) << 6)
    scales[4:8] = (mn[0:4] & 0x3F) | ((mn[4:8] >> 4) << 6)
    scales[8:12] = (sc[4:8] & 0x0F) | ((mn[4:8] & 0x0F) << 4)
    qs = np.zeros(128, np.uint8)
    sub = q.reshape(8, 32)  # sub-block s, position i -> byte 32*(s//2)+i, nibble s%2
    for s in range(8):
        qs[32 * (s // 2): 32 * (s // 2) + 32] |= (sub[s].astype(np.uint8) << (4 * (s % 2)))
    head = np.array([d, dmin], dtype=np.float16).view(np.uint8)
    return np.concatenate([head, scales, qs])


def known_values() -> dict[str, tuple[np.ndarray, np.ndarray | None, Q]]:
    """name -> (expected float values, raw quantised bytes or None, GGML type)."""
    rng = np.random.default_rng(0)
    f32 = np.arange(4 * 32, dtype=np.float32).reshape(4, 32) / 7
    f16 = (np.arange(2 * 64, dtype=np.float32).reshape(2, 64) - 64) / 8  # exact in float16
    q8 = rng.integers(-127, 128, size=(2, 64)).astype(np.float32)
    q8[:, ::32] = 127  # every 32-block has max |x| = 127, so the Q8_0 scale is exactly 1
    tern = rng.integers(-1, 2, size=(2, 256)).astype(np.float32)
    tern[:, 0] = 1  # every 256-block has max |x| = 1
    sc, mn = np.arange(1, 9, dtype=np.uint8) * 7, np.arange(8, dtype=np.uint8) * 9  # use the high bits too
    nib = rng.integers(0, 16, size=256).astype(np.uint8)
    q4k = (0.5 * np.repeat(sc.astype(np.float32), 32) * nib - 0.25 * np.repeat(mn.astype(np.float32), 32))
    return {
        "blk.0.attn_q.weight": (f32, None, Q.F32),
        "blk.0.attn_k.weight": (f16, None, Q.F16),
        "blk.0.ffn_up.weight": (q8, gguf.quants.quantize(q8, Q.Q8_0), Q.Q8_0),
        "blk.0.ffn_down.weight": (tern, gguf.quants.quantize(tern, Q.TQ2_0), Q.TQ2_0),
        "blk.0.ffn_gate.weight": (q4k.reshape(1, 256), pack_q4_k(0.5, 0.25, sc, mn, nib).reshape(1, 144), Q.Q4_K),
    }


def write_fixture(path: Path) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(1)
    writer.add_string("test.note", "hello")
    writer.add_array("test.list", [1, 2, 3])
    writer.add_float32("test.pi", 3.25)
    for name, (values, raw, qtype) in known_values().items():
        if raw is None:
            writer.add_tensor(name, values.astype(np.float16) if qtype == Q.F16 else values)
        else:
            writer.add_tensor(name, raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    return write_fixture(tmp_path / "tiny.gguf")


def test_reads_every_type_with_known_values(gguf_file: Path) -> None:
    with open_model(gguf_file) as model:
        assert model.format == "gguf" and model.arch == "llama"
        dtypes = {i.name: i.dtype for i in model}
        assert dtypes == {"blk.0.attn_q.weight": "F32", "blk.0.attn_k.weight": "F16", "blk.0.ffn_up.weight": "Q8_0",
                          "blk.0.ffn_down.weight": "TQ2_0", "blk.0.ffn_gate.weight": "Q4_K"}
        for name, (values, _, _) in known_values().items():
            got = model.array(name)
            assert got.shape == values.shape, name
            np.testing.assert_array_equal(got.astype(np.float32), values, err_msg=name)


def test_shapes_are_pytorch_order_and_bytes_exact(gguf_file: Path) -> None:
    with open_model(gguf_file) as model:
        info = model.info("blk.0.ffn_up.weight")
        assert info.shape == (2, 64) and info.nbytes == 2 * 2 * 34  # two Q8_0 blocks of 34 bytes per row
        raw = model.raw("blk.0.ffn_up.weight")
        assert raw.dtype == np.uint8 and raw.nbytes == info.nbytes
        assert bytes(raw) == bytes(known_values()["blk.0.ffn_up.weight"][1])


def test_metadata_carried_over_and_alignment(gguf_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.gguf"
    with open_model(gguf_file) as model:
        write_gguf(out, items_of(model), model.metadata, model.arch)
        originals = {i.name: bytes(model.raw(i.name)) for i in model}
    reader = gguf.GGUFReader(out)
    assert reader.alignment == 32
    assert all(t.data_offset % 32 == 0 for t in reader.tensors)
    assert reader.fields["test.note"].contents() == "hello"
    assert reader.fields["test.list"].contents() == [1, 2, 3]
    assert reader.fields["test.pi"].contents() == pytest.approx(3.25)
    assert reader.fields["llama.block_count"].contents() == 1
    assert reader.fields["general.architecture"].contents() == "llama"
    with open_model(out) as copy:
        assert {i.name: bytes(copy.raw(i.name)) for i in copy} == originals


def _tensor_type_offset(path: Path, name: str) -> int:
    """Byte offset of a tensor's type id inside the tensor-info section."""
    reader = gguf.GGUFReader(path)
    field = next(t.field for t in reader.tensors if t.name == name)
    return field.offset + sum(int(p.nbytes) for p in field.parts[:4])


def test_unknown_quantisation_type(gguf_file: Path) -> None:
    off = _tensor_type_offset(gguf_file, "blk.0.attn_q.weight")
    data = bytearray(gguf_file.read_bytes())
    assert struct.unpack_from("<I", data, off)[0] == 0  # F32
    struct.pack_into("<I", data, off, 200)
    gguf_file.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="unknown quantisation type id 200"):
        open_model(gguf_file)


def test_truncated_header_and_data_past_end(gguf_file: Path, tmp_path: Path) -> None:
    data = gguf_file.read_bytes()
    short = tmp_path / "short.gguf"
    short.write_bytes(data[:40])
    with pytest.raises(BadInput, match="truncated GGUF header"):
        open_model(short)
    reader = gguf.GGUFReader(gguf_file)
    last = max(reader.tensors, key=lambda t: t.data_offset)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: last.data_offset + last.n_bytes // 2])
    with pytest.raises(BadInput, match="past the end of the file"):
        open_model(cut)


def test_wrong_magic_and_empty(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUX" + bytes(60))
    with pytest.raises(BadInput, match="magic"):
        open_model(bad)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match="empty"):
        open_model(empty)


def test_type_gguf_cannot_dequantise_is_clear(tmp_path: Path) -> None:
    path = tmp_path / "q8k.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((1, 292), np.uint8), raw_dtype=Q.Q8_K)  # one Q8_K block
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open_model(path) as model:
        assert model.info("blk.0.ffn_up.weight").shape == (1, 256)
        assert model.raw("blk.0.ffn_up.weight").nbytes == 292  # bytes still copy through
        with pytest.raises(BadInput, match="cannot be dequantised"):
            model.array("blk.0.ffn_up.weight")


def test_quantised_gguf_through_organs_to_both_formats(gguf_file: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from genome.organs import assemble, extract

    manifest = extract(gguf_file, tmp_path / "organs")
    assert {e["dtype"] for e in manifest["tensors"]} == {"F32", "F16", "Q8_0", "TQ2_0", "Q4_K"}
    assemble(tmp_path / "organs", tmp_path / "back.gguf")  # quantised bytes pass through unchanged
    with open_model(gguf_file) as a, open_model(tmp_path / "back.gguf") as b:
        assert {i.name: bytes(a.raw(i.name)) for i in a} == {i.name: bytes(b.raw(i.name)) for i in b}
    assemble(tmp_path / "organs", tmp_path / "plain.safetensors")  # safetensors: dequantised to F32
    plain = load_file(str(tmp_path / "plain.safetensors"))
    for name, (values, _, qtype) in known_values().items():
        assert plain[name].dtype == (np.float16 if qtype == Q.F16 else np.float32)
        np.testing.assert_array_equal(plain[name].astype(np.float32), values)


def test_undequantisable_type_still_extracts(tmp_path: Path) -> None:
    from genome.organs import extract

    path = tmp_path / "q8k.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((1, 292), np.uint8), raw_dtype=Q.Q8_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    entry = extract(path, tmp_path / "organs")["tensors"][0]
    assert entry["dtype"] == "Q8_K" and entry["nbytes"] == 292 and entry["measure"] is None
