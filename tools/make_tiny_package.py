#!/usr/bin/env python3
"""Writes small model packages with the exact input/output contracts of real ones, for tests of
packages, ensembles, bias correction and sex QA, with numpy reference answers.

brain-age package (OUT/tiny-age): image [N, 1, 4, 5, 6] and BRAID covariates [N, 6];
each fold k computes age = a_k * mean(image) + c_k . covariates + b_k (ONNX ReduceMean, MatMul).
Three folds, fold 1 and 2 with Smith bias parameters, fold 3 with Cole's, to test both.
sex package (OUT/tiny-sex): image [N, 1, 4, 5, 6] -> logits [N, 2] for classes [F, M].
OUT/reference.json: a random input (also as OUT/image.f32, OUT/covariates.f32, raw float32) and
numpy's answers per fold.

Usage: make_tiny_package.py OUT
"""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHAPE = [1, 4, 5, 6]


def save(model, path):
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def age_model(a, c, b):
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m4"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("Unsqueeze", ["m4", "ax1"], ["m"]),
        helper.make_node("Mul", ["m", "a"], ["am"]),
        helper.make_node("MatMul", ["covariates", "c"], ["cc"]),
        helper.make_node("Add", ["am", "cc"], ["s"]),
        helper.make_node("Add", ["s", "b"], ["age"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array([a], dtype=np.float32), "a"),
        numpy_helper.from_array(np.array(c, dtype=np.float32).reshape(6, 1), "c"),
        numpy_helper.from_array(np.array([b], dtype=np.float32), "b"),
    ]
    g = helper.make_graph(
        nodes, "tiny_age",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N"] + SHAPE),
         helper.make_tensor_value_info("covariates", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("age", TensorProto.FLOAT, ["N", 1])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def sex_model(w, b):
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m4"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("Unsqueeze", ["m4", "ax1"], ["m"]),
        helper.make_node("Mul", ["m", "w"], ["mw"]),
        helper.make_node("Add", ["mw", "b"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array(w, dtype=np.float32).reshape(1, 2), "w"),
        numpy_helper.from_array(np.array(b, dtype=np.float32).reshape(1, 2), "b"),
    ]
    g = helper.make_graph(
        nodes, "tiny_sex",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N"] + SHAPE)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(5)
    age_dir, sex_dir = os.path.join(out, "tiny-age"), os.path.join(out, "tiny-sex")
    os.makedirs(age_dir, exist_ok=True)
    os.makedirs(sex_dir, exist_ok=True)
    image = rng.normal(loc=1.0, size=[3] + SHAPE).astype(np.float32)
    cov = np.array([[1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 1, 0], [0.5, 0.5, 0.25, 0.25, 0.25, 0.25]],
                   dtype=np.float32)
    image.tofile(os.path.join(out, "image.f32"))
    cov.tofile(os.path.join(out, "covariates.f32"))
    mean_img = image.reshape(3, -1).mean(axis=1).astype(np.float64)
    biases = [("smith", -0.3, 12.0), ("smith", -0.2, 9.0), ("cole", 0.8, 14.0)]
    folds, toml, ages = [], [], [70.0, None, 50.0]
    for k in range(3):
        a, c, b = float(rng.uniform(5, 10)), rng.uniform(-2, 2, size=6).tolist(), float(rng.uniform(40, 60))
        name = f"tiny-age-fold-{k + 1}.onnx"
        sha = save(age_model(a, c, b), os.path.join(age_dir, name))
        pred = (a * mean_img + cov.astype(np.float64) @ np.array(c) + b).tolist()
        method, slope, intercept = biases[k]
        corrected = []
        for p, age in zip(pred, ages):
            if age is None:
                corrected.append(None)
            elif method == "smith":
                corrected.append(p - (slope * age + intercept))
            else:
                corrected.append((p - intercept) / slope)
        folds.append({"raw": pred, "corrected": corrected})
        toml += ["", "[[folds]]", f'file = "{name}"', f'sha256 = "{sha}"', "[folds.bias]",
                 f'method = "{method}"', f"slope = {slope!r}", f"intercept = {intercept!r}"]
    with open(os.path.join(age_dir, "model.toml"), "w") as f:
        f.write("\n".join([
            'name = "tiny-age"', 'version = "1"', 'task = "brain_age"', 'modality = "dwi"',
            'recipe = "test-identity"', "training_age_range = [45.0, 90.0]", "",
            "[[inputs]]", 'name = "image"', 'kind = "image"', "shape = [-1, 1, 4, 5, 6]", "",
            "[[inputs]]", 'name = "covariates"', 'kind = "covariates"', "shape = [-1, 6]",
            'encoding = "braid-demographics"', "", "[output]", 'name = "age"', 'semantics = "years"',
        ] + toml) + "\n")
    w, b = [-1.5, 1.5], [0.2, -0.2]
    sha = save(sex_model(w, b), os.path.join(sex_dir, "tiny-sex-fold-1.onnx"))
    logits = mean_img[:, None] * np.array(w)[None, :] + np.array(b)[None, :]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    with open(os.path.join(sex_dir, "model.toml"), "w") as f:
        f.write("\n".join([
            'name = "tiny-sex"', 'version = "1"', 'task = "sex"', 'modality = "t1w"',
            "sex_qa_threshold = 0.6", "",
            "[[inputs]]", 'name = "image"', 'kind = "image"', "shape = [-1, 1, 4, 5, 6]", "",
            "[output]", 'name = "logits"', 'semantics = "logits"', 'classes = ["F", "M"]', "",
            "[[folds]]", 'file = "tiny-sex-fold-1.onnx"', f'sha256 = "{sha}"',
        ]) + "\n")
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"image_shape": [3] + SHAPE, "covariates_shape": [3, 6], "ages": ages,
                   "age_folds": folds, "sex_probabilities": p.tolist()}, f, indent=1)


if __name__ == "__main__":
    main()
