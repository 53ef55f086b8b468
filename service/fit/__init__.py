"""Straight-line fits y = m·x + q with uncertainties (/v1/fit/line): exact weighted least squares,
or minibatch gradient descent on JAX (optax) or TensorFlow (Keras)."""
