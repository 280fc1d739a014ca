# Probe3D schedule (configs/optimizer/ten_epoch.yaml): AdamW lr 5e-4, 10 epochs, linear warm-up
# over 1.5 epochs then cosine, both per iteration. Weight decay is not stated (AdamW default 0.01).
_base_ = './seg-probe_adamw-cosine_20e.py'
max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1.5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=1.5, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
