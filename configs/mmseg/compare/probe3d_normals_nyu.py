# Protocol "probe3d_normals" (_base_/protocols/probe3d_normals.py) on nyu; the upsampler is chosen by name, e.g.
#   --cfg-options model.neck.upsampler=anyup model.neck.pretrained=anyup_paper
# (tools/compare.py sets it, with each upsampler's arguments, for every upsampler it compares).
_base_ = ['../_base_/protocols/probe3d_normals.py', '../_base_/datasets/nyu-normals_224.py']
