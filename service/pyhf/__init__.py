"""/v1/pyhf: HistFactory likelihoods with pyhf on JAX — fits with exact Hessians, covariance and
ellipses, likelihood scans with gradients, CLs hypothesis tests and upper limits.

``router`` (HTTP) → ``schemas`` (bodies and answers) → one function per operation:
:func:`fit.fit`, :func:`scan.scan`, :func:`inference.hypotest`, :func:`inference.upper_limit`,
each building (or reusing) its model with :mod:`models`.
"""
