"""Escape-time pictures of the Mandelbrot and Julia sets (/v1/fractal): PNG images, raw counts and
XYZ map tiles, computed with JAX."""
