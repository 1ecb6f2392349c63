"""Reference resampling by scipy.ndimage.map_coordinates for tests/resample_vs_scipy.rs.

Writes OUT/src.nii.gz (random smooth image on an oblique grid), OUT/grid.nii.gz (an empty image
that only carries the target grid: another oblique, anisotropic, partly overlapping grid) and the
values scipy computes on that grid through the two affines: OUT/linear.nii.gz (order=1) and
OUT/nearest.nii.gz (order=0), both with zeros outside (mode="grid-constant").

usage: scipy_resample_reference.py OUT
"""
import math
import sys

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

out = sys.argv[1]
rng = np.random.default_rng(11)


def rot(a, b, c):
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    return (np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]]) @ np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
            @ np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]]))


def save(path, data, affine):
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, path)


src_shape = (61, 70, 45)
src_aff = np.eye(4)
src_aff[:3, :3] = rot(0.1, -0.2, 0.3) @ np.diag([1.1, 0.9, 1.7]) @ np.diag([-1, 1, 1])
src_aff[:3, 3] = [30.0, -35.0, -30.0]
x, y, z = np.meshgrid(*[np.linspace(0, 1, n) for n in src_shape], indexing="ij")
data = 100 * np.sin(7 * x + 1) * np.cos(5 * y) + 60 * z + rng.normal(0, 5, src_shape)
save(f"{out}/src.nii.gz", data, src_aff)
# Read back what the file holds (float32 affine and data) so both sides start from the same numbers.
src = nib.load(f"{out}/src.nii.gz")
src_aff = src.affine
data = src.get_fdata()

dst_shape = (50, 64, 40)
dst_aff = np.eye(4)
dst_aff[:3, :3] = rot(-0.25, 0.15, 0.05) @ np.diag([1.3, 1.2, 1.4])
dst_aff[:3, 3] = [-20.0, -40.0, -25.0]
save(f"{out}/grid.nii.gz", np.zeros(dst_shape), dst_aff)
dst_aff = nib.load(f"{out}/grid.nii.gz").affine

vox2vox = np.linalg.solve(src_aff, dst_aff)
ijk = np.stack(np.meshgrid(*[np.arange(n) for n in dst_shape], indexing="ij"), 0).reshape(3, -1)
coords = vox2vox[:3, :3] @ ijk + vox2vox[:3, 3:4]
for name, order in (("linear", 1), ("nearest", 0)):
    v = map_coordinates(data, coords, order=order, mode="grid-constant", cval=0.0)
    save(f"{out}/{name}.nii.gz", v.reshape(dst_shape), dst_aff)
print("ok")
