"""Deep-Z models: datasets from z-stacks, training, evaluation, export and runtimes.

Not implemented yet (see the README's status table). This layer never imports
``acquisition`` or Qt; it works on arrays and files.
"""
