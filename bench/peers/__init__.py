"""`python -m bench.peers`: asyncinfer beside Ray Serve and BentoML serving the same ONNX model (driver.py)."""
