"""The toy world: procedurally drawn scenes and a tiny CLIP, VAE and UNets trained on them.

``scenes`` draws the world, ``tokenizer`` builds its CLIP tokenizer, ``train`` reproduces the model
family; the trained weights live under ``weights/`` and load as ``toyworld/<name>``.
"""

__all__: list[str] = []
