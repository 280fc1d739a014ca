from setuptools import find_packages, setup

setup(
    name="anyup_dense",
    version="0.1.0",
    description="Universal feature upsamplers (AnyUp, FeatUp JBU, FeatSharp) for MMSegmentation and Detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["anyup_dense", "anyup_dense.*"]),
    package_data={"anyup_dense": ["assets/*"]},
    install_requires=["torch>=2.4", "timm>=1.0", "numpy", "pillow", "matplotlib"],
    extras_require={
        "mmseg": ["mmengine==0.10.7", "mmcv-lite==2.1.0", "mmsegmentation==1.2.2", "ftfy", "regex",
                  "opencv-python"],
        # Detectron2 itself has no installable release on PyPI: run tools/install_detectron2.sh.
        "detectron2": ["pycocotools", "fvcore", "iopath", "yacs", "tabulate", "cloudpickle", "termcolor",
                       "omegaconf", "hydra-core", "tensorboard"],
        "triton": ["triton"],
        "dev": ["pytest", "scipy", "tqdm"],
    },
)
