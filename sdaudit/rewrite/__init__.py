"""Graph passes: instrument activation tensors, split a model into prefix and suffix."""
