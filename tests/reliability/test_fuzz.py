"""Bad input, generated: every config mapping, CSV file, IDX header and npz archive either loads
or is refused with a SkierError — never another exception, a traceback or a hang."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skier.config import DataConfig, RunConfig, config_from_mapping
from skier.config.search import parse_space
from skier.data import load_data
from skier.errors import ConfigError, SkierError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), scalars, max_size=2),
)


def _section_strategy(name: str) -> st.SearchStrategy[dict[str, Any]]:
    model = RunConfig.model_fields[name].annotation
    keys = [*getattr(model, "model_fields", {}), "bogus_key"]
    return st.dictionaries(st.sampled_from(keys), values, max_size=4)


configs = st.fixed_dictionaries(
    {},
    optional={name: _section_strategy(name) for name in RunConfig.model_fields}
    | {"not_a_section": values},
)


@FUZZ
@given(configs)
def test_any_config_mapping_is_valid_or_one_config_error(data: dict[str, Any]) -> None:
    try:
        config = config_from_mapping(data, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems and all(p.startswith("fuzz.yaml: ") for p in exc.problems)
        assert all("\n" not in p for p in exc.problems)
    else:
        assert isinstance(config, RunConfig)


space_entries = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["float", "int", "categorical", "bogus", 3]),
        "low": scalars,
        "high": scalars,
        "log": scalars,
        "step": scalars,
        "choices": st.one_of(scalars, st.lists(scalars, max_size=3)),
    },
)


@FUZZ
@given(st.dictionaries(st.sampled_from(["optim.lr", "train.batch_size", "optim.nam", "x"]),
                       st.one_of(space_entries, scalars), max_size=3))  # fmt: skip
def test_any_search_space_is_valid_or_config_errors(data: dict[str, Any]) -> None:
    try:
        space = parse_space(data)
    except ConfigError as exc:
        assert exc.problems and all("\n" not in p for p in exc.problems)
    else:
        assert len(space) == len(data)


cells = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "NA", "abc", "1e400", "-", '"x,y"', "  ", "0x10"]),
)


@st.composite
def csv_files(draw: Any) -> tuple[bytes, str]:
    columns = draw(st.lists(st.sampled_from(["a", "b", "y", "", "a b", "é"]), min_size=1,
                            max_size=4))  # fmt: skip
    rows = draw(st.lists(st.lists(cells, min_size=len(columns), max_size=len(columns)),
                         max_size=8))  # fmt: skip
    text = "\n".join([",".join(columns), *(",".join(r) for r in rows)])
    raw = text.encode("utf-8")
    if draw(st.booleans()):
        raw += draw(st.binary(max_size=8))  # perhaps not UTF-8 at all
    return raw, draw(st.sampled_from(["y", "a", "missing"]))


@FUZZ
@given(csv_files(), st.sampled_from(["error", "drop", "impute"]))
def test_any_csv_file_loads_or_is_one_data_error(case: tuple[bytes, str], missing: str) -> None:
    raw, target = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(raw)
        try:
            bundle = load_data(
                DataConfig(name="csv", path=str(path), target=target, missing=missing,  # type: ignore[arg-type]
                           val_fraction=0.2, test_fraction=0.2)
            )  # fmt: skip
        except SkierError as exc:
            assert str(exc)
        else:
            assert len(bundle.train) > 0


@st.composite
def idx_files(draw: Any) -> bytes:
    magic = draw(st.sampled_from([b"\x00\x00", b"\x00\x01", b"PK"]))
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]))
    ndim = draw(st.integers(0, 4))
    dims = draw(st.lists(st.integers(0, 2**32 - 1), min_size=ndim, max_size=ndim))
    body = draw(st.binary(max_size=64))
    return magic + bytes([code, ndim]) + b"".join(struct.pack(">I", d) for d in dims) + body


@FUZZ
@given(idx_files(), idx_files())
def test_any_idx_pair_loads_or_is_one_data_error(images: bytes, labels: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "x.idx").write_bytes(images)
        (Path(folder) / "y.idx").write_bytes(labels)
        try:
            load_data(DataConfig(name="idx", path=str(Path(folder) / "x.idx"),
                                 labels_path=str(Path(folder) / "y.idx")))  # fmt: skip
        except SkierError as exc:
            assert str(exc)


arrays = st.one_of(
    st.integers(0, 6).map(lambda n: np.arange(n * 3, dtype=np.float32).reshape(n, 3)),
    st.integers(0, 6).map(lambda n: np.arange(n) % 2),
    st.just(np.array(["a", "b"])),
    st.just(np.zeros((2, 2, 2, 2, 2))),
    st.just(np.array(1.5)),
)


@FUZZ
@given(st.dictionaries(st.sampled_from(["x", "y", "z"]), arrays, max_size=3))
def test_any_npz_loads_or_is_one_data_error(contents: dict[str, np.ndarray]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **contents)  # type: ignore[arg-type]
        path.write_bytes(buffer.getvalue())
        try:
            load_data(DataConfig(name="npz", path=str(path), target="y"))
        except SkierError as exc:
            assert str(exc)


@pytest.mark.parametrize(
    "override",
    ["optim.lr=-1", "train.batch_size=[1", "data.name=mnist", "train=3", "optim.betas=[2, 3]",
     "model.hidden_sizes=[0]", "=1", "data.val_fraction=nan"],
)  # fmt: skip
def test_bad_overrides_on_the_cli_are_one_line_exit_2(override: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "skier", "train", "--set", override, "--out", "runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"CI": "true", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("skier: error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written for a refused command
