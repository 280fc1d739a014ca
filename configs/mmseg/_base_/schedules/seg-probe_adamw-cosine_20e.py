# JAFAR/AnyUp probe schedule: AdamW lr 5e-4, betas (0.9, 0.999), wd 1e-5; 20 epochs; one cosine
# over the run stepped per epoch (AnyUp's fix of JAFAR's per-iteration restarts); no warm-up.
max_epochs = 20
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=1e-5))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=0.0, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=5),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='ProbeVisualizationHook'))
log_processor = dict(by_epoch=True)
# Lean checkpoints: the frozen backbone and upsampler are rebuilt from their release on load,
# not saved again (anyup_dense/integrations/mmseg/lean_checkpoint.py).
custom_hooks = [dict(type='LeanCheckpointHook')]
