# NYUv2 surface normals for the Probe3D protocol at 224 (AnyUp); no flip (Probe3D rotateflip=False).
# Normal maps: normals/{train,test}/<name>.png, RGB = (n + 1) * 127.5, 0 = invalid.
# Same images, crops and loaders as the depth set; the annotations and the metric differ.
_base_ = './nyu-depth_224.py'
crop_size = 224
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadNormalAnnotation'),
    dict(type='ResizeCenterCrop', size=crop_size),
    dict(type='PackNormalInputs'),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    dataset=dict(
        type='NYUNormalsDataset',
        data_prefix=dict(_delete_=True, img_path='images/train', normal_map_path='normals/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='NYUNormalsDataset',
        data_prefix=dict(_delete_=True, img_path='images/test', normal_map_path='normals/test'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='NormalMetric')
test_evaluator = val_evaluator
