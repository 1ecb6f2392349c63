"""Reference model inputs from MONAI 1.4 for tests/preprocess_vs_monai.rs.

Writes synthetic NIfTI inputs (several shapes, spacings and orientations, including flipped,
permuted, oblique and sheared grids) into OUT/<case>/ and the tensors MONAI's transforms make from
them into OUT/<case>/expected.npy, and prints a JSON list of the cases with the `brainaged prepare`
arguments that name the same recipe.

Further arguments NAME=PATH add real images (converted from ../shared/dicom by the test): each
goes through the generic `resample` recipe (1 mm, 160 x 192 x 160, NormalizeIntensity) and,
placed on the 1 mm MNI grid, through BRAID's T1 chain.

usage: monai_reference.py OUT [NAME=PATH ...]
"""
import json
import math
import os
import sys

import nibabel as nib
import numpy as np
import torch
from monai.transforms import (
    CenterSpatialCrop,
    LoadImage,
    NormalizeIntensity,
    Orientation,
    ResizeWithPadOrCrop,
    Spacing,
)

torch.set_num_threads(2)
OUT = sys.argv[1]
rng = np.random.default_rng(4)


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = (math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def field(shape, lo, hi, background=True):
    """A smooth random image with a zero background outside an ellipsoid."""
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    v = np.zeros(shape)
    for _ in range(6):
        f = rng.uniform(1, 6, 3)
        p = rng.uniform(0, 2 * math.pi, 3)
        v += np.sin(f[0] * x + p[0]) * np.cos(f[1] * y + p[1]) * np.sin(f[2] * z + p[2])
    v = (v - v.min()) / (v.max() - v.min())
    v = lo + (hi - lo) * v
    if background:
        inside = (x / 0.85) ** 2 + (y / 0.9) ** 2 + (z / 0.8) ** 2 < 1.0
        v = np.where(inside, v, 0.0)
    return v.astype(np.float32)


def save(path, data, affine):
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, path)


load = LoadImage(image_only=True, ensure_channel_first=True, reader="NibabelReader")


def braid_chain(path):
    img = load(path)
    img = Orientation(axcodes="RAS")(img)
    img = CenterSpatialCrop((192, 228, 192))(img)
    img = Spacing(pixdim=(1.5, 1.5, 1.5), mode="bilinear")(img)
    return img


def resample_chain(path, spacing, shape, normalize):
    img = load(path)
    img = Orientation(axcodes="RAS")(img)
    img = Spacing(pixdim=spacing, mode="bilinear")(img)
    if shape is not None:
        img = ResizeWithPadOrCrop(shape)(img)
    if normalize:
        img = NormalizeIntensity(nonzero=True)(img)
    return img


def affine_from(rot, zooms, shape, centre=(0.0, 0.0, -10.0)):
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag(zooms)
    # Put the grid centre near `centre` in world space.
    a[:3, 3] = np.asarray(centre) - a[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return a


cases = []


def case(name, files, args, expected):
    d = os.path.join(OUT, name)
    np.save(os.path.join(d, "expected.npy"), expected[None].astype(np.float32))
    cases.append({"name": name, "args": args, "shape": list(expected[None].shape)})


def dti_case(name, shape, affine):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    fa, md = os.path.join(d, "fa.nii.gz"), os.path.join(d, "md.nii.gz")
    save(fa, field(shape, 0.05, 0.95), affine)
    save(md, field(shape, 0.3e-3, 3.0e-3), affine)
    expected = torch.cat([braid_chain(fa), braid_chain(md)]).numpy()
    args = ["--recipe", "braid-dti-affine", "--fa", fa, "--md", md, "--in-template-space"]
    case(name, [fa, md], args, expected)


def t1_case(name, shape, affine):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    t1 = os.path.join(d, "t1.nii.gz")
    save(t1, field(shape, 50.0, 1200.0), affine)
    img = NormalizeIntensity(nonzero=True)(braid_chain(t1))
    args = ["--recipe", "braid-t1-affine", "--t1", t1, "--in-template-space"]
    case(name, [t1], args, img.numpy())


def resample_case(name, shape, affine, spacing, out_shape, normalize):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    src = os.path.join(d, "image.nii.gz")
    save(src, field(shape, 10.0, 500.0), affine)
    img = resample_chain(src, spacing, out_shape, normalize)
    args = ["--recipe", "resample", "--input", src, "--spacing", ",".join(str(s) for s in spacing),
            "--shape", "none" if out_shape is None else ",".join(str(s) for s in out_shape)]
    if normalize:
        args.append("--normalize")
    case(name, [src], args, img.numpy())


# The ICBM 2009 1 mm grid that BRAID's maps live on.
mni = np.array([[1.0, 0, 0, -96], [0, 1, 0, -132], [0, 0, 1, -78], [0, 0, 0, 1]])
dti_case("dti_mni_ras", (193, 229, 193), mni)
# The same grid stored left-to-right flipped (LAS) with a shifted origin.
las = mni.copy()
las[0, 0], las[0, 3] = -1.0, 96.0 + 0.37
dti_case("dti_mni_las", (193, 229, 193), las)
# A larger template grid with anisotropic voxels and a slight rotation.
dti_case("dti_oblique_aniso", (200, 236, 170), affine_from(rotation(0.05, -0.03, 0.08), (0.95, 1.0, 1.12), (200, 236, 170)))
# T1 skull-stripped on the MNI grid itself: the case BRAID's T1 model sees.
t1_case("t1_mni_ras", (193, 229, 193), mni)
# T1: sagittal storage (PIR-like axis permutation), anisotropic.
pir = np.zeros((4, 4))
pir[1, 0], pir[2, 1], pir[0, 2], pir[3, 3] = -1.0, -1.2, 1.1, 1.0
pir[:3, 3] = [-90.0, 120.0, 140.0]
t1_case("t1_sagittal_pir", (176, 220, 180), pir)
# T1: oblique, flipped, on a grid smaller than the crop along one axis.
rot = rotation(0.2, 0.1, -0.15) @ np.diag([1.0, -1.0, 1.0])
t1_case("t1_oblique_flipped", (210, 240, 150), affine_from(rot, (0.9, 0.9, 1.3), (210, 240, 150)))
# Generic resample: a 2 mm sheared, oblique grid up to SFCN's 1 mm 160x192x160, normalised.
sheared = affine_from(rotation(-0.1, 0.25, 0.3), (2.0, 2.0, 2.2), (90, 108, 80))
sheared[:3, :3] = sheared[:3, :3] @ np.array([[1.0, 0.08, 0.0], [0.0, 1.0, 0.05], [0.0, 0.0, 1.0]])
resample_case("resample_sheared_2mm", (90, 108, 80), sheared, (1.0, 1.0, 1.0), (160, 192, 160), True)
# Generic resample where the spacing already matches within MONAI's tolerance (no resampling).
near = np.diag([1.0004, 0.9997, 1.0, 1.0])
near[:3, 3] = [-80, -100, -70]
resample_case("resample_unchanged", (150, 170, 140), near, (1.0, 1.0, 1.0), (160, 192, 160), False)
# Generic resample, downsampling from 0.8 mm with an LPS-stored grid and no final crop.
lps = np.diag([-0.8, -0.8, 0.8, 1.0])
lps[:3, 3] = [70, 90, -60]
resample_case("resample_lps_down", (181, 217, 151), lps, (1.7, 1.3, 2.0), None, False)

def real_cases(name, path):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    img = resample_chain(path, (1.0, 1.0, 1.0), (160, 192, 160), True)
    args = ["--recipe", "resample", "--input", path, "--spacing", "1", "--shape", "160,192,160", "--normalize"]
    case(name, [path], args, img.numpy())
    # BRAID's T1 chain sees images on the template grid, so put the real head on the 1 mm MNI
    # grid first (linear, zeros outside), as a registration would, and keep only voxels above
    # the median as a crude skull strip with a zero background.
    d2 = os.path.join(OUT, name + "_braid_t1")
    os.makedirs(d2, exist_ok=True)
    from nibabel.processing import resample_from_to
    on_grid = resample_from_to(nib.load(path), ((193, 229, 193), mni), order=1, mode="constant", cval=0.0)
    data = on_grid.get_fdata()
    data = np.where(data > np.median(data[data > 0]), data, 0.0)
    t1 = os.path.join(d2, "t1_mni.nii.gz")
    save(t1, data.astype(np.float32), mni)
    img = NormalizeIntensity(nonzero=True)(braid_chain(t1))
    case(name + "_braid_t1", [t1], ["--recipe", "braid-t1-affine", "--t1", t1, "--in-template-space"], img.numpy())


for extra in sys.argv[2:]:
    name, path = extra.split("=", 1)
    real_cases(name, path)

print(json.dumps(cases))
