"""The network: ResNet18, its ImageNet weights, the int8 variant and where it runs (device, threads)."""
