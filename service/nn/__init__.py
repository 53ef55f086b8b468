"""Dense (fully connected) networks: the seed notebook's Keras models as requests.

A network is our own JSON spec (inputs, layers of units/activation/use_bias, a seed or explicit
weights): never Keras' model JSON or HDF5/``.keras`` files, whose deserialisation can run code.
:mod:`.architecture`, :mod:`.data`, :mod:`.design` and :mod:`.checks` are plain numpy (the HTTP
process checks requests with them before queueing); :mod:`.dense` holds the entry functions,
which run the network on JAX (:mod:`.on_jax`) or Keras (:mod:`.on_tensorflow`).
"""
