"""Minimizing a function given as text (/v1/minimize): one optimizer, one or several learning
rates, each run's full history, on JAX (optax) or TensorFlow (Keras optimizers)."""
