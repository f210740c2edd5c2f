"""medtrain: medical vision-language pretraining at cluster scale.

The native extension in csrc/ is opt-in (MEDTRAIN_BUILD_EXT=1); without it the package is pure
Python and kernels fall back to their references.
"""

from setuptools import find_packages, setup

setup(
    name="medtrain",
    version="0.1.0",
    description="Medical vision-language pretraining (Swin + BERT + fusion) on DeepSpeed",
    packages=find_packages(include=["medtrain", "medtrain.*"]),
    package_data={"medtrain": ["presets/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "deepspeed>=0.15",
        "timm>=1.0",
        "transformers>=4.44",
        "tokenizers>=0.19",
        "tensorboard",
        "safetensors",
        "numpy",
        "pillow",
        "pyyaml",
        "scikit-learn",
        "pydicom",
        "webdataset",
        "opencv-python-headless",
    ],
    extras_require={"triton": ["triton"], "test": ["pytest", "ruff"]},
    entry_points={"console_scripts": ["medtrain=medtrain.cli:main"]},
)
