"""Only what pyproject.toml cannot say: the compiled binary-network kernel (edgesmith/runtime/kernels/bnn.cpp).

It is a plain C ABI loaded with ctypes (no Python headers or binding library needed), built by every
`pip install` with the machine's C++ compiler; runtime dispatch picks AVX-512 VPOPCNTDQ when the CPU has
it. ``optional=True``: a machine without a compiler still installs edgesmith, and the binary layers say
the kernel is missing (their standard-op lowering runs everywhere).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "edgesmith.runtime.kernels._bnn",
            sources=["edgesmith/runtime/kernels/bnn.cpp"],
            language="c++",
            extra_compile_args=["-O3", "-std=c++17", "-fno-strict-aliasing", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        )
    ]
)
