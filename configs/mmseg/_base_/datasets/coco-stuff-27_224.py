# COCO-Stuff-27 as LoftUp probes it (eval_seg.yaml load_size 224): resize + centre crop 224 for
# images and labels, batch 8, no flip; dataset type, root and lists as coco-stuff-27_448.py.
_base_ = './coco-stuff-27_448.py'
crop_size = 224
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='ResizeCenterCrop', size=crop_size),
    dict(type='PackSegInputs'),
]
test_pipeline = train_pipeline
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
