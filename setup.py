"""Only the optional C speedups of the ingest hot path; everything else is in pyproject.toml.

`optional=True`: where no C compiler is found the package installs without it and the pure-Python
parser (the reference implementation) does all the work.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rtanalytics.core._speedups",
            ["rtanalytics/core/_speedups.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "rtanalytics.adapters.memory._kernel",
            ["rtanalytics/adapters/memory/_kernel.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
