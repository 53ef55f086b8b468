"""/v1/gradient: values, gradients and Hessians of an expression or program of the maths
language (:mod:`labcrunch_service.language`) at one point or a batch, on JAX or TensorFlow."""
