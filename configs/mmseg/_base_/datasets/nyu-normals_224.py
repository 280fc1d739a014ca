# NYUv2 surface normals for the Probe3D protocol at 224 (AnyUp); no flip (Probe3D rotateflip=False).
# Normal maps: normals/{train,test}/<name>.png, RGB = (n + 1) * 127.5, 0 = invalid.
crop_size = 224
data_root = 'data/nyu'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadNormalAnnotation'),
    dict(type='ResizeCenterCrop', size=crop_size),
    dict(type='PackNormalInputs'),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='NYUNormalsDataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/train', normal_map_path='normals/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='NYUNormalsDataset',
        data_root=data_root,
        test_mode=True,
        data_prefix=dict(img_path='images/test', normal_map_path='normals/test'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='NormalMetric')
test_evaluator = val_evaluator
