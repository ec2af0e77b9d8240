"""The controller's view of its cluster: sources that fill an :class:`~.store.ObjectStore`.

``kube`` lists and watches a Kubernetes API server through the official client; ``directory``
reads the same kinds from YAML files (``--source DIR``). ``kinds`` lists what they read.
"""
