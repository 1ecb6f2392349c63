"""Scores a registration result in template space, the same way for every tool.

NCC: Pearson correlation of the warped image with the template inside the template brain mask.
Tissue Dice: inside the mask, the warped image's voxels are ranked and split into CSF/GM/WM
with the template's class sizes (argmax of 1 - GM - WM, GM, WM); Dice of GM and of WM with the
template's classes. Brain Dice (skull-stripped moving images only): warped > 20 % of its
maximum vs the template mask. Usage: bench_dir warped.nii.gz -> prints "ncc wm gm brain".
"""
import sys

import nibabel as nib
import numpy as np

d, warped_path = sys.argv[1], sys.argv[2]
fixed = nib.load(f"{d}/fixed.nii.gz").get_fdata()
mask = nib.load(f"{d}/fixed_mask.nii.gz").get_fdata() > 0.5
wm = nib.load(f"{d}/fixed_wm.nii.gz").get_fdata()
gm = nib.load(f"{d}/fixed_gm.nii.gz").get_fdata()
w = nib.load(warped_path).get_fdata()
if w.shape != fixed.shape:
    sys.exit(f"warped shape {w.shape} differs from the template's {fixed.shape}")
a, b = fixed[mask], w[mask]
ncc = float(np.corrcoef(a, b)[0, 1])
cls = np.argmax(np.stack([1 - gm - wm, gm, wm]), axis=0)[mask]
order = np.argsort(b, kind="stable")
pred = np.empty_like(cls)
n_csf, n_gm = (cls == 0).sum(), (cls == 1).sum()
pred[order[:n_csf]] = 0
pred[order[n_csf : n_csf + n_gm]] = 1
pred[order[n_csf + n_gm :]] = 2


def dice(x, y):
    return 2 * (x & y).sum() / max(x.sum() + y.sum(), 1)


brain = dice(w > 0.2 * w.max(), mask) if w.max() > 0 else 0.0
print(f"{ncc:.4f} {dice(pred == 2, cls == 2):.4f} {dice(pred == 1, cls == 1):.4f} {brain:.4f}")
