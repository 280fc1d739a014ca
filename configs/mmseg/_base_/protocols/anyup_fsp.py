# Protocol "anyup_fsp": AnyUp's feature-space preservation (AnyUp Tab. 5 / App. B.2 Tab. 11): a
# probe trained on the LOW-RESOLUTION features (neck at the patch stride: the 32x32 map itself,
# logits bilinearly resized to the labels) is applied without retraining to each upsampler's
# full-resolution output. Training = this config; evaluation = tools/test.py (or
# tools/compare.py) with model.neck = UpsamplerNeck(upsampler=NAME, out_strides=(1,)) and the
# trained probe loaded. Schedule and data as "anyup". Differs from AnyUp's: AnyUp applied Meta's
# released DINOv2 linear heads (trained with DINOv2's own recipe); this trains the probe here.
_base_ = './anyup.py'
patch_size = 14
model = dict(neck=dict(upsampler='bilinear', out_strides=(patch_size, )))
evaluate_upsamplers_on_frozen_probe = True
