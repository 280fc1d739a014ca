# NYUv2 depth for the Probe3D protocol at 224 (AnyUp): shorter side -> 224, centre crop 224
# (= Probe3D's 480x480 centre crop, resized); metrics per image, then averaged; gt > 10 m ignored.
crop_size = 224
data_root = 'data/nyu'
meta_keys = ('img_path', 'depth_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
             'flip_direction', 'category_id')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='ResizeCenterCrop', size=crop_size),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='NYUDataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/train', depth_map_path='annotations/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='NYUDataset',
        data_root=data_root,
        test_mode=True,
        data_prefix=dict(img_path='images/test', depth_map_path='annotations/test'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# Absolute metrics (d1, rmse, ...) and Probe3D's scale-and-shift aligned ones (d1_aligned, rmse_aligned, ...).
val_evaluator = dict(type='AlignedDepthMetric', min_depth_eval=1e-3, max_depth_eval=10.0, crop_type=None)
test_evaluator = val_evaluator
