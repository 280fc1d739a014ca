# Pascal VOC 2012, 21 classes, train 1,464 / val 1,449 (no SBD aug), as JAFAR/AnyUp.
_base_ = './seg-probe_448.py'
num_classes = 21
data_root = 'data/VOCdevkit/VOC2012'
train_dataloader = dict(
    dataset=dict(
        type='PascalVOCDataset',
        data_root=data_root,
        ann_file='ImageSets/Segmentation/train.txt',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass')))
val_dataloader = dict(
    dataset=dict(
        type='PascalVOCDataset',
        data_root=data_root,
        ann_file='ImageSets/Segmentation/val.txt',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass')))
test_dataloader = val_dataloader
