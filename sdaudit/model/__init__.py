"""Loading models and finding the activation tensors that can be audited."""
