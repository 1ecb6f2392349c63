//! ONNX Runtime inference: model packages, ensembles, bias correction, joint-diffusion sampling.
