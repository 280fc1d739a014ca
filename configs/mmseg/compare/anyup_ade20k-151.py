# Protocol "anyup" (_base_/protocols/anyup.py) on ade20k-151; the upsampler is chosen by name, e.g.
#   --cfg-options model.neck.upsampler=anyup model.neck.pretrained=anyup_paper
# (tools/compare.py sets it, with each upsampler's arguments, for every upsampler it compares).
_base_ = ['../_base_/protocols/anyup.py', '../_base_/datasets/ade20k-151_448.py']
model = dict(decode_head=dict(num_classes={{_base_.num_classes}}))
