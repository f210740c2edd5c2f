"""medtrain: medical vision-language pretraining at cluster scale.

The native extension in csrc/ is opt-in: MEDTRAIN_BUILD_EXT=1 builds it as `medtrain._C`
(CUDAExtension when a CUDA toolkit is found, for TORCH_CUDA_ARCH_LIST, default "9.0";
CppExtension otherwise or with MEDTRAIN_BUILD_CUDA=0). Without it the package is pure Python and
medtrain/kernels/native.py JIT-builds the same sources on first use, or kernels fall back to their
references.

    MEDTRAIN_BUILD_EXT=1 TORCH_CUDA_ARCH_LIST="9.0" pip install --no-build-isolation -e .
"""

import os

from setuptools import find_packages, setup


def native_extension() -> tuple[list, dict]:
    """(ext_modules, cmdclass) for MEDTRAIN_BUILD_EXT=1, else nothing."""
    if os.environ.get("MEDTRAIN_BUILD_EXT") != "1":
        return [], {}
    cuda = None
    if os.environ.get("MEDTRAIN_BUILD_CUDA", "1") != "0":
        from medtrain.kernels.native import cuda_home  # light: torch + stdlib

        cuda = cuda_home()
    if cuda is not None:  # before cpp_extension reads it (its own guess follows nvcc on PATH)
        os.environ.setdefault("CUDA_HOME", str(cuda))
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    # Same flags as the JIT build in medtrain/kernels/native.py.
    cxx = ["-O3", "-fopenmp", "-fno-trapping-math"]
    sources = ["csrc/bindings.cpp", "csrc/contrastive/contrastive.cpp"]
    kwargs = {"include_dirs": [os.path.abspath("csrc")], "extra_link_args": ["-fopenmp"]}
    if cuda is not None:
        ext = CUDAExtension(
            "medtrain._C",
            [*sources, "csrc/contrastive/contrastive_cuda.cu"],
            extra_compile_args={"cxx": [*cxx, "-DMEDTRAIN_WITH_CUDA"], "nvcc": ["-O3"]},
            **kwargs,
        )
    else:
        ext = CppExtension("medtrain._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = native_extension()

setup(
    name="medtrain",
    version="0.1.0",
    description="Medical vision-language pretraining (Swin + BERT + fusion) on DeepSpeed",
    packages=find_packages(include=["medtrain", "medtrain.*"]),
    # Presets and DeepSpeed JSONs ship inside the package (the checkout's ds_configs/ links here).
    package_data={"medtrain": ["presets/*.yaml", "ds_configs/*.json"]},
    python_requires=">=3.10",
    # requirements.txt pins the one checked set (make setup / make test). Lower bounds below are
    # the oldest releases with the APIs used (torch.library.custom_op: 2.4); transformers is held
    # to 5.x because the tokenizer files `medtrain tokenizer train` writes load only with 5.x.
    install_requires=[
        "torch>=2.4",
        "deepspeed>=0.15",
        "timm>=1.0",
        "transformers>=5,<6",
        "tokenizers",  # range set by transformers
        "tensorboard",
        "safetensors",
        "numpy",
        "pillow",
        "pyyaml",
        "scikit-learn",
        "matplotlib",  # ROC curves and report plots
        "pycocoevalcap",  # BLEU / ROUGE-L / CIDEr-D reference scorers (pure Python parts only)
        "pydicom",
        "webdataset",
        "opencv-python-headless",
    ],
    extras_require={"triton": ["triton"], "test": ["pytest", "ruff"]},
    entry_points={"console_scripts": ["medtrain=medtrain.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
