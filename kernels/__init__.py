"""Ready-made kernels written with kiln (importable as `kiln.kernels`).

- `kiln.kernels.mandelbrot`: the Mandelbrot set; `python -m
  kiln.kernels.mandelbrot` compares CPython with kiln on a 960x540 grid.
"""
