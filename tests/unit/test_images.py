import numpy as np
import pytest
import torch
from PIL import Image

from medtrain.data.errors import DataError
from medtrain.data.images import ImageConfig, load_image


def test_8bit_gray_aspect_preserved_and_padded(tmp_path):
    arr = np.full((200, 100), 255, dtype=np.uint8)  # tall white image
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", 64)
    assert x.shape == (1, 64, 64) and x.dtype == torch.float32
    cfg = ImageConfig()
    white, pad = (1 - cfg.mean) / cfg.std, (0 - cfg.mean) / cfg.std
    assert torch.allclose(x[0, :, 16:48], torch.tensor(white))  # 64 x 32 content, centred
    assert torch.allclose(x[0, :, :16], torch.tensor(pad))
    assert torch.allclose(x[0, :, 48:], torch.tensor(pad))


def test_16bit_png_scaled_by_bit_depth(tmp_path):
    arr = np.full((128, 128), 65535 // 2, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "b.png")
    x = load_image(tmp_path / "b.png", 32, ImageConfig(mean=0.0, std=1.0))
    torch.testing.assert_close(x, torch.full((1, 32, 32), 0.5), atol=1e-3, rtol=0)


def test_rgb_converted_to_gray(tmp_path):
    Image.new("RGB", (80, 80), (200, 200, 200)).save(tmp_path / "c.jpg", quality=100)
    x = load_image(tmp_path / "c.jpg", 40, ImageConfig(mean=0.0, std=1.0))
    assert abs(x.mean().item() - 200 / 255) < 0.01


def test_truncated_jpeg_is_a_clear_error(tmp_path):
    Image.fromarray(np.random.randint(0, 255, (256, 256), dtype=np.uint8)).save(
        tmp_path / "t.jpg", quality=90
    )
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="t.jpg: unreadable or corrupt"):
        load_image(tmp_path / "t.jpg", 64)
    (tmp_path / "n.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="n.jpg"):
        load_image(tmp_path / "n.jpg", 64)


def test_wrong_mode_and_size_are_clear_errors(tmp_path):
    Image.new("CMYK", (100, 100)).save(tmp_path / "m.tiff")
    with pytest.raises(DataError, match="unsupported image mode 'CMYK'"):
        load_image(tmp_path / "m.tiff", 64)
    Image.new("L", (20, 20)).save(tmp_path / "s.png")
    with pytest.raises(DataError, match="smaller than"):
        load_image(tmp_path / "s.png", 64)
    Image.new("L", (400, 100)).save(tmp_path / "w.png")
    with pytest.raises(DataError, match="aspect ratio"):
        load_image(tmp_path / "w.png", 64)
