# Protocol "loftup": LoftUp's probe (andrehuang/loftup 6620d9b, eval_seg.py, configs/eval_seg.yaml;
# LoftUp Tab. 3, arXiv 2504.14032 v1). Use with a datasets/*_224.py piece (224 resize + centre
# crop, 16x16 DINOv2 features, batch 8; COCO-Stuff-27 and Cityscapes-19). NAdam lr 1e-4 (the code;
# the paper says AdamW), constant lr, 10 epochs. Differs from the JAFAR family in size (224 vs
# 448), optimiser, lr, epochs and batch. Not reproduced: LoftUp trains the probe on labels
# nearest-downsampled to the feature grid ("train_small_res"); here it trains at full resolution.
_base_ = './anyup.py'
max_epochs = 10
optim_wrapper = dict(optimizer=dict(_delete_=True, type='NAdam', lr=1e-4))
param_scheduler = []
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
