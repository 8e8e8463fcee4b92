"""Deployment files made from a testnet's genesis and keys: a Compose file (with Prometheus and
Grafana) and Kubernetes manifests, written by ``moderntensor testnet init --compose/--k8s``."""
