# Protocol "loftup" (_base_/protocols/loftup.py) on coco-stuff-27; the upsampler is chosen by name, e.g.
#   --cfg-options model.neck.upsampler=anyup model.neck.pretrained=anyup_paper
# (tools/compare.py sets it, with each upsampler's arguments, for every upsampler it compares).
_base_ = ['../_base_/protocols/loftup.py', '../_base_/datasets/coco-stuff-27_224.py']
model = dict(decode_head=dict(num_classes={{_base_.num_classes}}))
