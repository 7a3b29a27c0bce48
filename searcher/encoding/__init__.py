"""Encoding: text to vectors (the chunker, the BERT encoder, its int8 ONNX path, the query encoder)."""
