import cv2
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


# --------------------------------------------------------------------------------- DICOM


def write_dicom(path, stored, *, photometric="MONOCHROME2", bits=12, syntax=None, **elements):
    """Minimal DX DICOM file with 16-bit allocated pixels, written with pydicom.

    With a compressed `syntax`, PixelData holds one encapsulated fragment that is not a valid
    codestream."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    ds.PixelData = stored.astype("<i2" if stored.dtype.kind == "i" else "<u2").tobytes()
    if meta.TransferSyntaxUID.is_compressed:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
        ds["PixelData"].VR = "OB"
    for name, value in elements.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def plain(**kw) -> ImageConfig:
    return ImageConfig(mean=0.0, std=1.0, **kw)


def bands(values, size=96, dtype=np.uint16) -> np.ndarray:
    """(size, size) image of vertical bands, one per value."""
    arr = np.zeros((size, size), dtype=dtype)
    for i, v in enumerate(values):
        arr[:, i * size // len(values) : (i + 1) * size // len(values)] = v
    return arr


def band_means(x: torch.Tensor, n: int) -> list[float]:
    size = x.shape[-1]
    return [float(x[0, :, i * size // n + 2 : (i + 1) * size // n - 2].mean()) for i in range(n)]


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = (np.arange(96 * 96).reshape(96, 96) % 4096).astype(np.uint16)
    m2 = load_image(write_dicom(tmp_path / "m2.dcm", stored), 96, plain())
    m1 = load_image(
        write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"), 96, plain()
    )
    torch.testing.assert_close(m1, 1 - m2, atol=1e-6, rtol=0)
    assert m2.min() == 0 and m2.max() == 1  # no VOI module: the 12-bit range


def test_dicom_rescale_applies_before_window(tmp_path):
    # v = 2 * stored - 1000; LINEAR window (PS3.3 C.11.2.1.2.1): center 1000, width 2000.
    stored = bands([200, 800, 1500, 3000])
    window = {"WindowCenter": 1000, "WindowWidth": 2000}
    rescaled = write_dicom(
        tmp_path / "r.dcm",
        stored,
        RescaleSlope=2,
        RescaleIntercept=-1000,
        RescaleType="US",
        **window,
    )
    expect = [np.clip((2 * s - 1000 - 999.5) / 1999 + 0.5, 0, 1) for s in (200, 800, 1500, 3000)]
    np.testing.assert_allclose(band_means(load_image(rescaled, 96, plain()), 4), expect, atol=1e-5)
    raw = write_dicom(tmp_path / "w.dcm", stored, **window)  # same window on stored values
    expect = [np.clip((s - 999.5) / 1999 + 0.5, 0, 1) for s in (200, 800, 1500, 3000)]
    np.testing.assert_allclose(band_means(load_image(raw, 96, plain()), 4), expect, atol=1e-5)


def test_dicom_voi_lut_sequence_preferred_over_window(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    lut = np.round(65535 * np.sqrt(np.arange(4096) / 4095)).astype(int)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUTDescriptor: entries, first, bits
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    stored = bands([0, 1024, 4095])
    path = write_dicom(
        tmp_path / "lut.dcm",
        stored,
        VOILUTSequence=Sequence([item]),
        WindowCenter=100,
        WindowWidth=10,
    )
    np.testing.assert_allclose(band_means(load_image(path, 96, plain()), 3), [0, 0.5, 1], atol=1e-4)


@pytest.mark.parametrize("bits,signed", [(12, False), (16, False), (16, True)])
def test_dicom_bit_depths_without_voi(tmp_path, bits, signed):
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    mid = (lo + hi) // 2
    path = write_dicom(
        tmp_path / "b.dcm", bands([lo, mid, hi], dtype=np.int16 if signed else np.uint16), bits=bits
    )
    expect = [0, (mid - lo) / (hi - lo), 1]
    np.testing.assert_allclose(band_means(load_image(path, 96, plain()), 3), expect, atol=1e-6)
    quarter = lo + (hi - lo) // 4  # an image using the lower half of the range only
    path = write_dicom(
        tmp_path / "q.dcm",
        bands([lo, quarter, mid], dtype=np.int16 if signed else np.uint16),
        bits=bits,
    )
    full = band_means(load_image(path, 96, plain()), 3)  # default: the stored bit range
    np.testing.assert_allclose(
        full, [0, (quarter - lo) / (hi - lo), (mid - lo) / (hi - lo)], atol=1e-6
    )
    stretched = band_means(load_image(path, 96, plain(dicom_range="minmax")), 3)
    np.testing.assert_allclose(stretched, [0, (quarter - lo) / (mid - lo), 1], atol=1e-6)


def test_dicom_decoding_matches_synthetic_export_truth(tmp_path):
    """Cross-check against the synthetic hospital export (medtrain.synth.generate, layout "dicom"):
    its pixel_truth PNGs are what a correct decoder recovers, written by independent code."""
    import json

    from medtrain.data.images import read_dicom
    from medtrain.synth.config import LAYOUTS, SynthConfig
    from medtrain.synth.generate import generate

    if "dicom" not in LAYOUTS:
        pytest.skip("synthetic DICOM export layout not available")
    generate(SynthConfig(layout="dicom", n=6, seed=4, image_size=64), tmp_path)
    variants = set()
    for line in (tmp_path / "dicom_truth.jsonl").read_text().splitlines():
        t = json.loads(line)
        x, _ = read_dicom(tmp_path / t["path"])
        truth = np.asarray(Image.open(tmp_path / t["truth"]), dtype=np.float32) / 255.0
        np.testing.assert_allclose(x * 255, truth * 255, atol=0.5, err_msg=t["variant"])
        variants.add(t["variant"])
    assert len(variants) >= 6


def test_dicom_found_by_magic_and_compressed_syntax_is_clear_error(tmp_path):
    from pydicom.uid import JPEG2000Lossless

    stored = bands([0, 4095])
    x = load_image(write_dicom(tmp_path / "no_suffix", stored), 48, plain())  # 'DICM' magic
    assert x.shape == (1, 48, 48)
    path = write_dicom(tmp_path / "j2k.dcm", stored, syntax=JPEG2000Lossless)
    with pytest.raises(
        DataError, match=r"j2k.dcm: pixel data in the compressed transfer syntax JPEG 2000"
    ):
        load_image(path, 48)
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 10)
    with pytest.raises(DataError, match="bad.dcm"):
        load_image(tmp_path / "bad.dcm", 48)


# ------------------------------------------------------------------------------ geometry


def test_crop_fills_square_pad_keeps_whole_image(tmp_path):
    arr = np.zeros((200, 100), dtype=np.uint8)
    arr[50:150] = 255  # tall image: white middle, black top and bottom quarters
    Image.fromarray(arr).save(tmp_path / "t.png")
    crop = load_image(tmp_path / "t.png", 64, plain(fit="crop"))
    torch.testing.assert_close(crop, torch.ones(1, 64, 64))  # center 100 x 100 -> all white
    pad = load_image(tmp_path / "t.png", 64, plain(fit="pad"))
    assert pad[0, :, :16].abs().max() == 0  # side padding
    assert pad[0, 0, 16:48].max() == 0 and pad[0, 32, 16:48].min() == 1  # black top, white middle


def test_large_jpeg_reduced_decode_matches_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1200, 0:1000]
    arr = (127 + 100 * np.sin(xx / 40) * np.cos(yy / 55) + rng.normal(0, 5, xx.shape)).clip(0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(tmp_path / "big.jpg", quality=95)
    fast = load_image(tmp_path / "big.jpg", 64, plain())  # DCT-scaled decode (1/8)
    ref = Image.open(tmp_path / "big.jpg").convert("F").resize((53, 64), Image.Resampling.BOX)
    ref = np.asarray(ref) / 255.0
    assert np.abs(fast[0, :, 5:58].numpy() - ref).mean() < 0.01


def test_image_config_validation():
    with pytest.raises(ValueError, match="fit must be one of"):
        ImageConfig(fit="stretch")
    with pytest.raises(ValueError, match="lcn must be one of"):
        ImageConfig(lcn="sobel")
    with pytest.raises(ValueError, match="needs image.lcn=gaussian"):
        ImageConfig(lcn="clahe", lcn_device="gpu")


# ------------------------------------------------------------------------ local contrast


def textured(h=96, w=80, seed=0) -> np.ndarray:
    """Smooth illumination x texture whose amplitude varies slowly: [0, 1] float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    light = 0.3 + 0.4 * xx + 0.1 * yy
    amp = 0.05 + 0.1 * yy
    return (light + amp * rng.standard_normal((h, w))).clip(0, 1).astype(np.float32)


def lcn_reference(x: np.ndarray, sigma: float, eps: float) -> np.ndarray:
    """float64 direct implementation: explicit reflect padding and 1-D convolutions."""
    from medtrain.data.lcn import gaussian_kernel1d

    k = gaussian_kernel1d(sigma, min(x.shape) - 1).astype(np.float64)
    r = len(k) // 2

    def blur(a):
        p = np.pad(a, r, mode="reflect")  # == BORDER_REFLECT_101 / torch "reflect"
        p = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, p)
        return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, p)

    x = x.astype(np.float64)
    v = x - blur(x)
    return v / np.sqrt(blur(v * v) + eps * eps)


@pytest.mark.parametrize("shape,sigma", [((64, 64), 4.0), ((37, 53), 2.5), ((20, 90), 8.0)])
def test_gaussian_lcn_numpy_and_torch_match_float64_reference(shape, sigma):
    from medtrain.data.lcn import gaussian_lcn, gaussian_lcn_numpy

    x = textured(*shape, seed=len(shape) + shape[0])
    ref = lcn_reference(x, sigma, 0.01)
    ours_np = gaussian_lcn_numpy(x, sigma, 0.01)
    batch = torch.from_numpy(np.stack([x, x[::-1].copy()]))[:, None]  # (2, 1, H, W)
    ours_t = gaussian_lcn(batch, sigma, 0.01)
    np.testing.assert_allclose(ours_np, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours_t[0, 0].numpy(), ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        ours_t[1, 0].numpy(), lcn_reference(x[::-1], sigma, 0.01), atol=1e-4, rtol=0
    )
    assert ours_t.shape == batch.shape and ours_t.dtype == torch.float32
    bf16 = gaussian_lcn(batch.bfloat16(), sigma, 0.01)
    assert bf16.dtype == torch.bfloat16  # computed in fp32, returned in the input dtype


def test_gaussian_lcn_output_is_locally_standardized():
    from medtrain.data.lcn import gaussian_kernel1d, gaussian_lcn_numpy

    x = textured(160, 160, seed=4)
    y = gaussian_lcn_numpy(x, 6.0, 1e-3)
    k = gaussian_kernel1d(6.0, 159)
    local_mean = cv2.sepFilter2D(y, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101)
    local_std = np.sqrt(cv2.sepFilter2D(y * y, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT_101))
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(local_mean[inner]).mean() < 0.05
    assert np.abs(local_std[inner] - 1).mean() < 0.1
    assert abs(x[inner].mean() - 0.55) < 0.1 and x[inner].std() < 0.3  # input was not


def test_gpu_lcn_path_defers_to_batch_transform(tmp_path):
    from medtrain.data.images import batch_transform

    Image.fromarray((textured(100, 100) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    worker = load_image(tmp_path / "x.png", 64, ImageConfig(lcn="gaussian", lcn_sigma=3.0))
    gpu_cfg = ImageConfig(lcn="gaussian", lcn_sigma=3.0, lcn_device="gpu")
    raw = load_image(tmp_path / "x.png", 64, gpu_cfg)
    assert raw.min() >= 0 and raw.max() <= 1  # fitted, not yet normalized
    on_device = batch_transform(raw[None], gpu_cfg)[0]
    torch.testing.assert_close(on_device, worker, atol=1e-4, rtol=0)
    assert torch.equal(batch_transform(worker[None], ImageConfig())[0], worker)  # identity


def test_clahe_raises_local_contrast_and_clip_limit_bounds_it(tmp_path):
    from medtrain.data.lcn import clahe

    x = 0.45 + 0.05 * (textured(128, 128, seed=2) - 0.5)  # low contrast
    low, high = clahe(x, 1.0, 8), clahe(x, 4.0, 8)
    assert x.std() < low.std() < high.std()
    assert low.min() >= 0 and high.max() <= 1
    Image.fromarray((x * 255).round().astype(np.uint8)).save(tmp_path / "c.png")
    cfg = ImageConfig(lcn="clahe", clahe_clip=4.0)
    got = load_image(tmp_path / "c.png", 128, cfg)[0].numpy()
    u8 = (x * 255).round().astype(np.uint8)  # what the PNG holds
    ref = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8)).apply(u8) / 255.0
    np.testing.assert_allclose(got, (ref - cfg.mean) / cfg.std, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gaussian_lcn_on_cuda_matches_numpy():
    from medtrain.data.lcn import gaussian_lcn, gaussian_lcn_numpy

    x = np.stack([textured(512, 512, seed=s) for s in range(4)])  # (4, 512, 512)
    ref = np.stack([gaussian_lcn_numpy(a, 8.0, 0.01) for a in x])
    got = gaussian_lcn(torch.from_numpy(x)[:, None].cuda(), 8.0, 0.01)[:, 0].cpu().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
